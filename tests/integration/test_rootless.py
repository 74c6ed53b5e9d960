"""`bosun-runtime spec --rootless` run by an unprivileged user (nobody) on this machine."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "bosun-runtime"

NOBODY = 65534


def as_nobody(args, cwd, env=None):
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           "--inh-caps=-all", "--bounding-set=-all", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=env or {"PATH": os.environ["PATH"]}, stdin=subprocess.DEVNULL)


@pytest.fixture
def rootless_bundle(busybox_rootfs):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    # not under pytest's tmp_path: that is root's alone (0700)
    work = Path(tempfile.mkdtemp(prefix="bosun-rootless-"))
    try:
        yield _prepare(work, busybox_rootfs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prepare(work, busybox_rootfs):
    shutil.copytree(busybox_rootfs, work / "rootfs", symlinks=True)
    os.chmod(work, 0o755)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(work)], check=True)
    if as_nobody([BIN, "--version"], work).returncode != 0:
        pytest.skip("the unprivileged user cannot execute bosun-runtime from this checkout")
    p = as_nobody([BIN, "spec", "--rootless"], work)
    assert p.returncode == 0, p.stderr
    return work


def _set_args(bundle, args, edit=None):
    path = bundle / "config.json"
    c = json.loads(path.read_text())
    c["process"]["terminal"] = False
    c["process"]["args"] = args
    if edit:
        edit(c)
    path.write_text(json.dumps(c))


def test_rootless_spec_runs_for_an_unprivileged_user(rootless_bundle, cid):
    c = json.loads((rootless_bundle / "config.json").read_text())
    assert {"type": "user"} in c["linux"]["namespaces"]
    assert c["linux"]["uidMappings"] == [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    _set_args(rootless_bundle, ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname; "
                                            "touch /tmp/made && stat -c %u /tmp/made"],
              lambda c: c["root"].__setitem__("readonly", False))
    state = rootless_bundle / "state"
    p = as_nobody([BIN, "--root", state, "run", cid], rootless_bundle)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", str(NOBODY), "1"]
    assert out[2] == "bosun"
    assert out[3] == "0"
    # the file made by "root" inside belongs to nobody on the host
    assert (rootless_bundle / "rootfs" / "tmp" / "made").stat().st_uid == NOBODY
    assert "without a cgroup" in p.stderr
    assert not os.listdir(state)


def test_rootless_resource_limits_fail_clearly(rootless_bundle, cid):
    _set_args(rootless_bundle, ["true"], lambda c: c["linux"].__setitem__(
        "resources", {"memory": {"limit": 64 << 20}}))
    state = rootless_bundle / "state"
    p = as_nobody([BIN, "--root", state, "run", cid], rootless_bundle)
    assert p.returncode == 1
    assert "need write access to the cgroup hierarchy" in p.stderr
    assert "Traceback" not in p.stderr
    assert not os.path.exists(state) or not os.listdir(state)
