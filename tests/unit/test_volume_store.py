"""bosun.volume without root: names, options, create/remove/prune/list, references, mount
reference counts (a fake kernel records the mounts), reconcile, subpath safety, copy-up."""

from __future__ import annotations

import os
import stat

import pytest

from bosun import kernel as K
from bosun.volume import Conflict, InvalidParameter, NotFound
from bosun.volume.copyup import copy_up
from bosun.volume.local import ANONYMOUS_LABEL, Volumes


class FakeKernel:
    def __init__(self):
        self.mounted: list[str] = []
        self.calls: list[tuple] = []

    def mount(self, source, target, fstype, flags, data):
        self.calls.append(("mount", source, target, fstype, flags, data))
        if not flags & (K.MS_REMOUNT | K.MS_PRIVATE | K.MS_SHARED | K.MS_SLAVE):
            self.mounted.append(target)

    def umount2(self, target, flags=0):
        self.calls.append(("umount", target))
        self.mounted.remove(target)

    def openat2(self, *args):
        return K.LINUX.openat2(*args)


@pytest.fixture
def vols(tmp_path):
    k = FakeKernel()
    v = Volumes(str(tmp_path / "volumes"), kernel=k, mount_points=lambda: list(k.mounted))
    yield v
    v.close()


@pytest.mark.parametrize("name,msg", [
    ("a", "volume name is too short"),
    ("..", "includes invalid characters"),
    ("../etc", "includes invalid characters"),
    ("a/b", "includes invalid characters"),
    ("-ab", "includes invalid characters"),
    (".hidden", "includes invalid characters"),
    ("a" * 256, "volume name is too long"),  # not a 500 from ENAMETOOLONG
])
def test_bad_names(vols, name, msg):
    with pytest.raises(InvalidParameter, match=msg) as e:
        vols.create(name)
    assert str(e.value).startswith(f"create {name}: ")
    assert os.listdir(vols.root) == ["metadata.db"] or "metadata.db" in os.listdir(vols.root)
    assert not any(os.path.isdir(os.path.join(vols.root, d)) for d in os.listdir(vols.root))


def test_create_is_idempotent_and_inspect(vols):
    v, made = vols.create("data", labels={"a": "b"})
    assert made and v["Name"] == "data" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Mountpoint"] == os.path.join(vols.root, "data", "_data")
    assert os.path.isdir(v["Mountpoint"]) and v["Labels"] == {"a": "b"}
    assert v["CreatedAt"].endswith("Z") or "+" in v["CreatedAt"] or "-" in v["CreatedAt"][19:]
    again, made = vols.create("data")
    assert not made and again == v
    with pytest.raises(NotFound, match="^get nope: no such volume$"):
        vols.inspect("nope")


def test_random_name_and_anonymous_label(vols):
    v, _ = vols.create(anonymous=True)
    assert len(v["Name"]) == 64 and v["Labels"] == {ANONYMOUS_LABEL: ""}
    plain, _ = vols.create()
    assert plain["Labels"] is None and plain["Options"] is None  # null, as dockerd's


def test_options_checked(vols):
    with pytest.raises(InvalidParameter, match='invalid option: "size"'):
        vols.create("x1", options={"size": "1g"})
    with pytest.raises(InvalidParameter, match='missing required option: "device"'):
        vols.create("x2", options={"type": "tmpfs"})
    with pytest.raises(NotFound, match='plugin "nfsplugin" not found'):
        vols.create("x3", driver="nfsplugin")


def test_remove_in_use_and_force(vols):
    vols.create("busy", ref="c1")
    vols.add_ref("busy", "c2")
    with pytest.raises(Conflict, match=r"^remove busy: volume is in use - \[c1, c2\]$"):
        vols.remove("busy", force=True)  # force never removes a volume in use, as Docker
    assert vols.drop_refs("c1") == ["busy"]
    vols.drop_refs("c2")
    assert vols.remove("busy")
    assert not os.path.exists(os.path.join(vols.root, "busy"))
    with pytest.raises(NotFound, match="^get busy: no such volume$"):
        vols.remove("busy")
    assert vols.remove("busy", force=True) is False


def test_list_filters(vols):
    vols.create("alpha", labels={"team": "a"}, ref="c1")
    vols.create("beta", labels={"team": "b", "x": ""})
    names = lambda **f: [v["Name"] for v in vols.list({k: v for k, v in f.items()})]  # noqa
    assert names() == ["alpha", "beta"]
    assert names(dangling=["true"]) == ["beta"]
    assert names(dangling=["0"]) == ["alpha"]
    assert names(name=["alp"]) == ["alpha"]
    assert names(label=["team=b"]) == ["beta"] and names(label=["x"]) == ["beta"]
    assert names(driver=["local"]) == ["alpha", "beta"] and names(driver=["nfs"]) == []
    with pytest.raises(InvalidParameter, match="invalid filter 'bogus'"):
        vols.list({"bogus": ["1"]})
    with pytest.raises(InvalidParameter, match="invalid filter 'dangling=maybe'"):
        vols.list({"dangling": ["maybe"]})


def test_prune_anonymous_by_default_all_with_filter(vols):
    anon, _ = vols.create(anonymous=True)
    with open(os.path.join(anon["Mountpoint"], "f"), "wb") as f:
        f.write(b"x" * 1000)
    vols.create("named")
    used, _ = vols.create(anonymous=True, ref="c1")
    r = vols.prune()
    assert r == {"VolumesDeleted": [anon["Name"]], "SpaceReclaimed": 1000}
    assert vols.prune({"all": ["true"], "label!": ["keep"]})["VolumesDeleted"] == ["named"]
    assert [v["Name"] for v in vols.list()] == [used["Name"]]


def test_driver_options_mount_refcounted(vols):
    vols.create("tmp", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=5"})
    path = vols.acquire("tmp", "c1")
    assert vols.k.calls == [("mount", "tmpfs", path, "tmpfs", 0, "size=1m,uid=5")]
    vols.acquire("tmp", "c2")
    vols.acquire("tmp", "c2")  # the same holder twice holds once
    assert len(vols.k.calls) == 1
    assert vols.release("tmp", "c1") and vols.k.mounted == [path]
    assert vols.release("tmp", "c2") and vols.k.mounted == []
    assert not vols.release("tmp", "c2")


def test_bind_option_read_only_remounts(vols, tmp_path):
    vols.create("bb", options={"type": "none", "device": str(tmp_path), "o": "bind,ro"})
    path = vols.acquire("bb", "c1")
    assert vols.k.calls[0] == ("mount", str(tmp_path), path, "none", K.MS_BIND, None)
    assert vols.k.calls[1][4] == K.MS_BIND | K.MS_RDONLY | K.MS_REMOUNT
    # remove of a mounted volume unmounts first, and never deletes the host's directory
    (tmp_path / "keep").write_text("host data")
    vols.release("bb", "c1")
    vols.k.mounted.append(path)  # a stale mount (e.g. a crash)
    vols.remove("bb")
    assert (tmp_path / "keep").read_text() == "host data" and vols.k.mounted == []


def test_reconcile(vols):
    vols.create("tmp", options={"type": "tmpfs", "device": "tmpfs"}, ref="gone")
    vols.acquire("tmp", "gone")
    vols.create("kept", ref="alive")
    os.makedirs(os.path.join(vols.root, "orphan", "_data"))
    done = vols.reconcile(containers={"alive"}, running={"alive"})
    assert vols.k.mounted == [] and vols.refs() == {"kept": ["alive"]}
    assert not os.path.exists(os.path.join(vols.root, "orphan"))
    assert any("orphan" in d for d in done)


def test_subpath_stays_inside(vols, tmp_path):
    v, _ = vols.create("sp")
    data = v["Mountpoint"]
    os.makedirs(os.path.join(data, "sub", "deeper"))
    os.symlink("/etc", os.path.join(data, "abs"))
    os.symlink("../../..", os.path.join(data, "rel"))
    os.symlink("sub/deeper", os.path.join(data, "inside"))
    fd = vols.open_subpath("sp", "inside")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == os.path.join(data, "sub", "deeper")
    finally:
        os.close(fd)
    for bad in ("../..", "abs", "rel", "sub/../../..", "missing"):
        with pytest.raises(InvalidParameter, match="cannot access path"):
            vols.open_subpath("sp", bad)


def test_copy_up(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("hello")
    os.chmod(src / "d" / "f", 0o640)
    os.chmod(src, 0o1777)
    os.symlink("/etc/passwd", src / "link")
    os.mkfifo(src / "fifo")
    dst = tmp_path / "dst"
    dst.mkdir()
    fd = os.open(src, os.O_PATH)
    try:
        assert copy_up(fd, str(dst))
        assert not copy_up(fd, str(dst))  # not empty any more: nothing copied
    finally:
        os.close(fd)
    assert (dst / "d" / "f").read_text() == "hello"
    assert stat.S_IMODE(os.stat(dst / "d" / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o1777
    assert os.readlink(dst / "link") == "/etc/passwd"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
