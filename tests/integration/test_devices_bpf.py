"""cgroup v2 device rules: the eBPF program loaded and attached on the real kernel.

This host is hybrid (v1 devices controller), so containers use devices.allow/deny; the v2
path is exercised directly on a cgroup of the unified hierarchy, where BPF device programs
are enforced whatever v1 does.
"""

import os
import uuid

import pytest

from bosun.runtime import cgroups, devices_bpf


@pytest.fixture
def v2_cgroup():
    mounts = cgroups.hierarchies()
    if cgroups.UNIFIED not in mounts:
        pytest.skip("no cgroup2 hierarchy mounted on this host")
    d = os.path.join(mounts[cgroups.UNIFIED], f"bosun-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(d)
    yield d
    os.rmdir(d)


def _probe(d, attempts):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")
            res = []
            for path, mode in attempts:
                try:
                    os.close(os.open(path, mode))
                    res.append("ok")
                except OSError as e:
                    res.append(e.strerror)
            os.write(w, ",".join(res).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return out.split(",")


def test_device_program_enforces_rules(v2_cgroup):
    devices_bpf.attach(v2_cgroup, [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
    ])
    got = _probe(v2_cgroup, [("/dev/null", os.O_RDWR), ("/dev/zero", os.O_RDONLY),
                             ("/dev/zero", os.O_WRONLY), ("/dev/urandom", os.O_RDONLY)])
    assert got == ["ok", "ok", "Operation not permitted", "Operation not permitted"]
    # outside the cgroup nothing changed
    os.close(os.open("/dev/urandom", os.O_RDONLY))
