"""cgroup v2 end to end. Runs only where the host is pure v2 (the unified hierarchy at
/sys/fs/cgroup); this project's machine is hybrid v1, where v2 paths are unit-tested
against a fake tree (tests/unit/test_resources.py) and the v2 device program is exercised
on the unified hierarchy (test_devices_bpf.py)."""

import os

import pytest

pytestmark = pytest.mark.skipif(
    not os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
    reason="host is not pure cgroup v2 (hybrid v1 here)")


def _run(rt, bundles, cid, script, res):
    b = bundles.make(["sh", "-c", script],
                     edit=lambda c: c["linux"].__setitem__("resources", res))
    return rt("run", "--bundle", b, cid, check=False)


def test_limits_visible_inside(rt, bundles, cid):
    res = {"memory": {"limit": 64 << 20, "swap": 64 << 20}, "pids": {"limit": 20},
           "cpu": {"quota": 50000, "period": 100000, "shares": 1024},
           "devices": [{"allow": False, "access": "rwm"}]}
    p = _run(rt, bundles, cid, "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max "
             "/sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight; "
             "head -c1 /dev/urandom >/dev/null && echo urandom-ok", res)
    assert p.stdout.split("\n")[:5] == [str(64 << 20), "20", "50000 100000", "39",
                                       "urandom-ok"], (p.stdout, p.stderr)


def test_device_deny_enforced_by_ebpf(rt, bundles, cid):
    res = {"devices": [{"allow": True, "access": "rwm"},
                       {"allow": False, "type": "c", "major": 1, "minor": 9, "access": "rwm"}]}
    p = _run(rt, bundles, cid, "head -c1 /dev/urandom || echo denied", res)
    assert "denied" in p.stdout


def test_pause_resume(rt, bundles, cid):
    b = bundles.make(["sleep", "100"])
    rt("run", "-d", "--bundle", b, cid)
    rt("pause", cid)
    assert rt.state(cid)["status"] == "paused"
    rt("resume", cid)
    assert rt.state(cid)["status"] == "running"
    rt("delete", "--force", cid)
