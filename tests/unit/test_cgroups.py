"""cgroups: hierarchies from mountinfo, path resolution, pids, freezer state, removal.

Everything runs against a fake cgroupfs: plain directories and files in a temporary
directory, described by a fake mountinfo file.
"""

from __future__ import annotations

import functools
import os

import pytest

from bosun.runtime import cgroups
from bosun.runtime.cgroups import UNIFIED
from bosun.runtime.errors import RuntimeErr

V1_LINES = """\
25 1 0:23 / {cg} ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
30 25 0:26 / {cg}/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,name=systemd
31 25 0:27 / {cg}/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
32 25 0:28 / {cg}/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
33 25 0:29 / {cg}/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
34 25 0:30 / {cg}/freezer rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,freezer
35 25 0:31 / {cg}/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset,release_agent=/sbin/x
36 25 0:32 / {cg}/net_cls,net_prio rw,nosuid shared:15 - cgroup cgroup rw,net_cls,net_prio
37 25 0:33 / {cg}/misc rw,nosuid shared:16 - cgroup cgroup rw,name=misc
38 25 0:34 / {cg}/unified rw,nosuid,nodev,noexec,relatime shared:17 - cgroup2 cgroup2 rw,nsdelegate
39 1 254:0 / /data rw,relatime - ext4 /dev/vda rw
40 1 0:35 / {cg}/elsewhere rw - cgroup2 cgroup2 rw
"""

V2_LINES = """\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
26 22 0:25 / {cg} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def write_mountinfo(tmp_path, text):
    cg = tmp_path / "cg"
    cg.mkdir(exist_ok=True)
    mi = tmp_path / "mountinfo"
    mi.write_text(text.format(cg=cg))
    return str(mi), str(cg)


@pytest.fixture
def v1(tmp_path, monkeypatch):
    mi, cg = write_mountinfo(tmp_path, V1_LINES)
    monkeypatch.setattr(cgroups, "hierarchies", functools.partial(cgroups.hierarchies, mi))
    monkeypatch.setattr(cgroups, "own_cgroups", lambda pid="self": {
        "memory": "/user.slice/session-1.scope", UNIFIED: "/user.slice/u",
        "name=systemd": "/user.slice/s"})
    return cg


@pytest.fixture
def v2(tmp_path, monkeypatch):
    mi, cg = write_mountinfo(tmp_path, V2_LINES)
    monkeypatch.setattr(cgroups, "hierarchies", functools.partial(cgroups.hierarchies, mi))
    monkeypatch.setattr(cgroups, "own_cgroups", lambda pid="self": {UNIFIED: "/init.scope"})
    return cg


# -- hierarchies -------------------------------------------------------------------------------

def test_hierarchies_v1_hybrid(tmp_path):
    mi, cg = write_mountinfo(tmp_path, V1_LINES)
    assert cgroups.hierarchies(mi) == {
        "name=systemd": f"{cg}/systemd",
        "cpu": f"{cg}/cpu,cpuacct", "cpuacct": f"{cg}/cpu,cpuacct",
        "memory": f"{cg}/memory", "pids": f"{cg}/pids", "freezer": f"{cg}/freezer",
        "cpuset": f"{cg}/cpuset",
        "net_cls": f"{cg}/net_cls,net_prio", "net_prio": f"{cg}/net_cls,net_prio",
        "name=misc": f"{cg}/misc",
        UNIFIED: f"{cg}/unified",          # the first cgroup2 mount wins
    }


def test_hierarchies_v2(tmp_path):
    mi, cg = write_mountinfo(tmp_path, V2_LINES)
    assert cgroups.hierarchies(mi) == {UNIFIED: cg}


def test_hierarchies_none(tmp_path):
    mi = tmp_path / "mi"
    mi.write_text("22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
                  "23 22 0:5 / /sys rw - sysfs sysfs rw\n")
    assert cgroups.hierarchies(str(mi)) == {}


def test_hierarchies_without_optional_fields(tmp_path):
    mi = tmp_path / "mi"
    mi.write_text("23 22 0:5 / /c rw - cgroup none rw,blkio\n")
    assert cgroups.hierarchies(str(mi)) == {"blkio": "/c"}


def test_hierarchies_ignore_non_controller_options(tmp_path):
    mi = tmp_path / "mi"
    mi.write_text(
        "30 25 0:26 / /c/systemd rw shared:9 - cgroup cgroup rw,xattr,name=systemd\n"
        "31 25 0:27 / /c/cpuset rw shared:10 - cgroup cgroup rw,cpuset,clone_children,noprefix\n")
    assert cgroups.hierarchies(str(mi)) == {"name=systemd": "/c/systemd", "cpuset": "/c/cpuset"}


def test_hierarchies_on_this_host_are_mount_points():
    for ctrl, mnt in cgroups.hierarchies().items():
        assert os.path.isabs(mnt), (ctrl, mnt)


# -- resolve -----------------------------------------------------------------------------------

V1_RESOLVED = ("name=systemd", "cpu", "cpuacct", "memory", "pids", "freezer", "cpuset",
               "net_cls", "net_prio", UNIFIED)


def test_resolve_absolute_path_v1(v1):
    dirs = cgroups.resolve("/docker/abc", "ignored")
    mnt = cgroups.hierarchies()
    assert sorted(dirs) == sorted(V1_RESOLVED)            # name=misc is not ours to use
    for ctrl, d in dirs.items():
        assert d == os.path.join(mnt[ctrl], "docker", "abc")
    assert dirs["cpu"] == dirs["cpuacct"] == f"{v1}/cpu,cpuacct/docker/abc"


def test_resolve_default_is_slash_id(v2):
    assert cgroups.resolve("", "ctr1") == {UNIFIED: f"{v2}/ctr1"}
    assert cgroups.resolve(None, "ctr2") == {UNIFIED: f"{v2}/ctr2"}


def test_resolve_relative_path_is_below_own_cgroup(v1):
    dirs = cgroups.resolve("pod/ctr", "x")
    assert dirs["memory"] == f"{v1}/memory/user.slice/session-1.scope/pod/ctr"
    assert dirs[UNIFIED] == f"{v1}/unified/user.slice/u/pod/ctr"
    assert dirs["name=systemd"] == f"{v1}/systemd/user.slice/s/pod/ctr"
    assert dirs["pids"] == f"{v1}/pids/pod/ctr"           # not in own_cgroups: the root


def test_resolve_relative_v2(v2):
    assert cgroups.resolve("a", "x") == {UNIFIED: f"{v2}/init.scope/a"}


def test_resolve_normalizes(v2):
    assert cgroups.resolve("/a/./b/../c//", "x") == {UNIFIED: f"{v2}/a/c"}


@pytest.mark.parametrize("path", ["system.slice:docker:abc", "user.slice:podman:x", "a:b"])
def test_resolve_systemd_form_refused(v2, path):
    with pytest.raises(RuntimeErr, match="systemd") as ei:
        cgroups.resolve(path, "x")
    assert repr(path) in str(ei.value)


def test_resolve_absolute_path_with_colon_is_a_path(v2):
    assert cgroups.resolve("/a:b", "x") == {UNIFIED: f"{v2}/a:b"}


@pytest.mark.parametrize("path", ["/../escape", "/a/../../escape", "/..", "../../../../x",
                                  "/../cg2/x"])
def test_resolve_escaping_path_refused(v2, path):
    with pytest.raises(RuntimeErr, match="escapes the cgroup hierarchy"):
        cgroups.resolve(path, "x")


def test_resolve_escape_checked_per_hierarchy(v1):
    # <cg>/cpu,cpuacct/../memory/x is a cgroup directory, but of another hierarchy
    with pytest.raises(RuntimeErr, match="escapes"):
        cgroups.resolve("/../memory/x", "x")


def test_own_cgroups_of_this_process():
    own = cgroups.own_cgroups()
    with open("/proc/self/cgroup") as f:
        lines = f.read().splitlines()
    assert own
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [UNIFIED]:
            assert own[c] == path


# -- pids --------------------------------------------------------------------------------------

def procs(d, *pids):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "cgroup.procs"), "w") as f:
        f.write("".join(f"{p}\n" for p in pids))


def test_pids_walks_sub_cgroups(tmp_path):
    d = tmp_path / "ctr"
    procs(d, 10, 11)
    procs(d / "a", 12)
    procs(d / "a" / "b", 13, 14)
    procs(d / "empty")
    (d / "nofile").mkdir()
    assert sorted(cgroups.pids({"pids": str(d)})) == [10, 11, 12, 13, 14]


def test_pids_prefers_pids_then_memory_then_unified(tmp_path):
    for name, pid in (("pids", 1), ("memory", 2), ("unified", 3), ("cpu", 4)):
        procs(tmp_path / name, pid)
    every = {k: str(tmp_path / k) for k in ("cpu", "unified", "memory", "pids")}
    assert cgroups.pids(every) == [1]
    del every["pids"]
    assert cgroups.pids(every) == [2]
    del every["memory"]
    assert cgroups.pids(every) == [3]
    del every["unified"]
    assert cgroups.pids(every) == [4]


def test_pids_of_nothing(tmp_path):
    assert cgroups.pids({}) == []
    assert cgroups.pids({"pids": str(tmp_path / "gone")}) == []


# -- freezer -------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,frozen", [("FROZEN\n", True), ("THAWED\n", False),
                                            ("FREEZING\n", False)])
def test_is_frozen_v1(tmp_path, content, frozen):
    (tmp_path / "freezer.state").write_text(content)
    assert cgroups.is_frozen({"freezer": str(tmp_path), "memory": "/nonexistent"}) is frozen


@pytest.mark.parametrize("content,frozen", [("1\n", True), ("0\n", False)])
def test_is_frozen_v2(tmp_path, content, frozen):
    (tmp_path / "cgroup.freeze").write_text(content)
    assert cgroups.is_frozen({UNIFIED: str(tmp_path)}) is frozen


def test_hybrid_without_v1_freezer_reads_the_v2_freeze(tmp_path):
    # freeze() falls back to cgroup.freeze there, so the status must read it too
    (tmp_path / "cgroup.freeze").write_text("1\n")
    assert cgroups.is_frozen({UNIFIED: str(tmp_path), "memory": str(tmp_path)}) is True
    (tmp_path / "cgroup.freeze").write_text("0\n")
    assert cgroups.is_frozen({UNIFIED: str(tmp_path), "memory": str(tmp_path)}) is False


def test_is_frozen_missing_files(tmp_path):
    assert cgroups.is_frozen({"freezer": str(tmp_path / "gone")}) is False
    assert cgroups.is_frozen({UNIFIED: str(tmp_path / "gone")}) is False
    assert cgroups.is_frozen({}) is False


def test_thaw(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "freezer.state").write_text("FROZEN")
    cgroups.thaw({"freezer": str(tmp_path / "v1")})
    assert (tmp_path / "v1" / "freezer.state").read_text() == "THAWED"
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cgroup.freeze").write_text("1")
    cgroups.thaw({UNIFIED: str(tmp_path / "v2")})
    assert (tmp_path / "v2" / "cgroup.freeze").read_text() == "0"
    cgroups.thaw({UNIFIED: str(tmp_path / "gone")})   # errors are ignored


# -- join / remove -----------------------------------------------------------------------------

def test_join_creates_and_writes_pid_once_per_directory(tmp_path):
    shared = str(tmp_path / "cpu,cpuacct" / "a" / "ctr")
    mem = str(tmp_path / "memory" / "ctr")
    cgroups.join(4242, {"cpu": shared, "cpuacct": shared, "memory": mem})
    for d in (shared, mem):
        with open(os.path.join(d, "cgroup.procs")) as f:
            assert f.read() == "4242"


def test_join_copies_cpuset_down(tmp_path):
    top = tmp_path / "cpuset"
    mid = top / "mid"
    ctr = mid / "ctr"
    ctr.mkdir(parents=True)
    (top / "cpuset.cpus").write_text("0-3\n")
    (top / "cpuset.mems").write_text("0\n")
    for d in (mid, ctr):           # the kernel creates these files empty in a new v1 cpuset
        (d / "cpuset.cpus").write_text("")
        (d / "cpuset.mems").write_text("")
    cgroups.join(7, {"cpuset": str(ctr)})
    for d in (mid, ctr):
        assert (d / "cpuset.cpus").read_text() == "0-3"
        assert (d / "cpuset.mems").read_text() == "0"
    assert (ctr / "cgroup.procs").read_text() == "7"


def test_remove_deepest_first(tmp_path):
    ctr = tmp_path / "memory" / "ctr"
    for sub in ("a/b/c", "a/d", "e"):
        (ctr / sub).mkdir(parents=True)
    shared = tmp_path / "cpu" / "ctr"
    shared.mkdir(parents=True)
    cgroups.remove({"memory": str(ctr), "cpu": str(shared), "cpuacct": str(shared),
                    "pids": str(tmp_path / "pids" / "gone")})
    assert not ctr.exists() and not shared.exists()
    assert (tmp_path / "memory").is_dir()            # only the container's cgroup goes


def test_remove_busy_cgroup_is_an_error(tmp_path):
    ctr = tmp_path / "ctr"
    (ctr / "sub").mkdir(parents=True)
    (ctr / "sub" / "busy").write_text("")            # stands in for a cgroup with tasks
    with pytest.raises(RuntimeErr, match=f"cannot remove cgroup {ctr}/sub"):
        cgroups.remove({"pids": str(ctr)})
    assert ctr.is_dir()
