"""Snapshotters on the real kernel: overlay layers and containers (whiteouts and opaque dirs
in the layers, in the upper dir and in its diff), a 128-layer stack, the vfs fallback giving
the same trees, idempotent operations, and a busybox container run by bosun-runtime on an
overlay rootfs. Every fixture unmounts what is under its store, even when a test fails."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from bosun import kernel as K
from bosun.image.diff import write_diff
from bosun.image.layer import LayerError, apply_layer
from bosun.image.snapshot import (OverlaySnapshotter, SnapshotError, SnapshotExists,
                                  SnapshotNotFound, VfsSnapshotter, copy_tree, mount_points,
                                  new_snapshotter, overlay_supported)

T0 = 1_700_000_000


# -- helpers -----------------------------------------------------------------------------------

def E(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None, uid: int = 0,
      gid: int = 0, link: str = ""):
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE}
    ti = tarfile.TarInfo(name)
    ti.type = types[kind]
    ti.mode = (0o755 if kind == "dir" else 0o644) if mode is None else mode
    ti.uid, ti.gid, ti.mtime, ti.linkname = uid, gid, T0, link
    ti.size = len(data) if kind == "file" else 0
    return ti, (data if kind == "file" else None)


def make_tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def diff_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The image spec's ChainID of each layer."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def tree(root, dir_mtimes: bool = True) -> dict[str, tuple]:
    """Everything under root: type, mode, owner, mtime (s), content/target, xattrs, and
    hard-link group."""
    out: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            isdir = stat.S_ISDIR(st.st_mode)
            body = (Path(p).read_bytes() if stat.S_ISREG(st.st_mode)
                    else os.readlink(p) if stat.S_ISLNK(st.st_mode) else st.st_rdev)
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False)
                      for k in os.listxattr(p, follow_symlinks=False)
                      if not k.startswith("trusted.overlay.")}
            group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not isdir else None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, st.st_mtime_ns // 10**9 if dir_mtimes or not isdir else None,
                        body, xattrs, group)
    return out


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return t.getnames()


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    return [m for m in mount_points() if m.startswith(prefix)]


@pytest.fixture
def store(tmp_path):
    """A snapshot root; whatever is still mounted under it is unmounted at teardown (and
    reported: a test must not leave mounts behind)."""
    root = tmp_path / "store"
    root.mkdir()
    yield root
    left = mounts_under(root)
    for m in sorted(left, key=len, reverse=True):
        K.LINUX.umount2(m, K.MNT_DETACH)
    assert not mounts_under(root)
    assert not left, f"mounts left behind: {left}"


@pytest.fixture
def overlay(store) -> OverlaySnapshotter:
    return OverlaySnapshotter(str(store))


@pytest.fixture
def vfs(store) -> VfsSnapshotter:
    return VfsSnapshotter(str(store))


# Three layers as an image builder would write them (parent directories included):
# L2 changes a file and deletes one, L3 makes a directory opaque and deletes a file.
LAYERS = [
    make_tar([
        E("bin", "dir"), E("bin/busybox", data=b"BB", mode=0o755),
        E("bin/sh", "hardlink", link="bin/busybox"), E("bin/ls", "symlink", link="busybox"),
        E("etc", "dir"), E("etc/passwd", data=b"root:x:0:0\n"), E("etc/group", data=b"root\n"),
        E("gone", data=b"to be deleted"), E("opq", "dir"), E("opq/old1", data=b"1"),
        E("opq/sub", "dir"), E("opq/sub/old2", data=b"2"), E("usr", "dir"),
        E("usr/share", "dir"), E("usr/share/doc", "dir", mode=0o750),
        E("usr/share/doc/a", data=b"a"), E("usr/share/doc/b", data=b"b"),
        E("home", "dir"), E("home/user", "dir", mode=0o700, uid=1000, gid=1000),
        E("home/user/.profile", data=b"PS1=$\n", uid=1000, gid=1000),
    ]),
    make_tar([
        E("etc", "dir"), E("etc/passwd", data=b"root:x:0:0\nuser:x:1000:1000\n"),
        E(".wh.gone"), E("new2", data=b"new in 2", mode=0o4755),
        E("usr", "dir"), E("usr/share", "dir"), E("usr/share/doc", "dir", mode=0o750),
        E("usr/share/doc/c", data=b"c"),
    ]),
    make_tar([
        E("opq", "dir", mode=0o711), E("opq/.wh..wh..opq"), E("opq/new3", data=b"3"),
        E("usr", "dir"), E("usr/share", "dir"), E("usr/share/doc", "dir", mode=0o750),
        E("usr/share/doc/.wh.a"),
    ]),
]
DIFF_IDS = [diff_id(t) for t in LAYERS]
CHAIN = chain_ids(DIFF_IDS)


def unpack_all(snap, layers=LAYERS) -> list[str]:
    ids = chain_ids([diff_id(t) for t in layers])
    parent = None
    for data, cid in zip(layers, ids, strict=True):
        stats = snap.unpack_layer(cid, parent, io.BytesIO(data), expected_diff_id=diff_id(data))
        assert stats.diff_id == diff_id(data)
        parent = cid
    return ids


def change(root: Path) -> None:
    """What a container does: write, modify, delete, and recreate a lower directory."""
    (root / "hello").write_bytes(b"hello")
    (root / "etc/group").write_bytes(b"root\nuser\n")
    (root / "usr/share/doc/b").unlink()
    shutil.rmtree(root / "bin")
    (root / "bin").mkdir()
    (root / "bin/only").write_bytes(b"only this")
    os.chmod(root / "home/user/.profile", 0o600)
    for p in ("hello", "etc/group", "bin/only"):  # the same times in every snapshotter
        os.utime(root / p, (T0 + 5, T0 + 5))


def flattened(tmp: Path, layers=LAYERS) -> Path:
    """The layers applied one on another to a plain directory."""
    d = tmp / f"flat-{len(os.listdir(tmp))}"
    d.mkdir()
    d.chmod(0o755)
    for data in layers:
        apply_layer(io.BytesIO(data), str(d))
    return d


# -- overlay -----------------------------------------------------------------------------------

def test_overlay_supported_probe_leaves_nothing(store):
    assert overlay_supported(str(store))
    assert os.listdir(store) == []
    assert isinstance(new_snapshotter(str(store)), OverlaySnapshotter)
    assert isinstance(new_snapshotter(str(store), "vfs"), VfsSnapshotter)


def test_overlay_layers_container_and_diff(overlay, store, tmp_path):
    unpack_all(overlay)
    home = store / "overlay"
    # each layer in its own dir, whiteouts in overlay's format, reachable by short link
    l2, l3 = Path(overlay.layer_dir(CHAIN[1])), Path(overlay.layer_dir(CHAIN[2]))
    st = os.lstat(l2 / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(l3 / "opq", "trusted.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(l3 / "usr/share/doc/a").st_mode)
    for cid in CHAIN:
        short = (Path(overlay._layer(cid)) / "link").read_text()
        assert (home / "l" / short).resolve() == Path(overlay.layer_dir(cid)).resolve()
    assert overlay.parent(CHAIN[2]) == CHAIN[1] and overlay.parent(CHAIN[0]) is None

    merged = Path(overlay.mount_container("c1", CHAIN))
    assert str(merged) in mount_points()
    with open("/proc/self/mountinfo") as f:
        line = next(x for x in f if f" {merged} " in x)
    assert " - overlay overlay " in line and "lowerdir=l/" in line
    assert (merged / "etc/passwd").read_bytes() == b"root:x:0:0\nuser:x:1000:1000\n"
    assert not (merged / "gone").exists()
    assert sorted(os.listdir(merged / "opq")) == ["new3"]
    assert sorted(os.listdir(merged / "usr/share/doc")) == ["b", "c"]
    assert os.lstat(merged / "bin/sh").st_ino == os.lstat(merged / "bin/busybox").st_ino
    assert tree(merged) == tree(flattened(tmp_path))  # the same view as flattening

    change(merged)
    upper = Path(overlay.upper_dir("c1"))
    st = os.lstat(upper / "usr/share/doc/b")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # overlay's whiteout
    assert os.getxattr(upper / "bin", "trusted.overlay.opaque") == b"y"
    assert (upper / "hello").read_bytes() == b"hello"

    buf = io.BytesIO()
    did = overlay.diff("c1", buf)
    assert did == diff_id(buf.getvalue())
    names = tar_names(buf.getvalue())
    assert {"usr/share/doc/.wh.b", "bin/.wh..wh..opq", "bin/only", "hello",
            "etc/group"} <= set(names)
    assert names.index("bin") + 1 == names.index("bin/.wh..wh..opq")
    again = io.BytesIO()
    assert overlay.diff("c1", again) == did and again.getvalue() == buf.getvalue()

    # the diff on top of the image's layers gives the container's view
    flat = flattened(tmp_path)
    apply_layer(io.BytesIO(buf.getvalue()), str(flat))
    assert tree(flat, dir_mtimes=False) == tree(merged, dir_mtimes=False)
    # and committed as a layer, it mounts to the same view
    top = chain_ids(DIFF_IDS + [did])[-1]
    overlay.unpack_layer(top, CHAIN[-1], io.BytesIO(buf.getvalue()), expected_diff_id=did)
    merged2 = Path(overlay.mount_container("c2", CHAIN + [top]))
    assert tree(merged2, dir_mtimes=False) == tree(merged, dir_mtimes=False)

    for key in ("c1", "c2"):
        overlay.unmount_container(key)
        overlay.remove_container(key)
    assert not mounts_under(store)
    assert os.listdir(home / "containers") == []
    for cid in [top, *reversed(CHAIN)]:
        overlay.remove_layer(cid)
    assert sorted(os.listdir(home)) == ["containers", "empty", "l"]
    assert os.listdir(home / "l") == []


def test_128_layer_stack(overlay, store):
    ids = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(128)]
    parent = None
    for i, cid in enumerate(ids):
        d = Path(overlay.prepare_layer(cid, parent))
        (d / f"layer-{i}").write_text(str(i))
        (d / "top").write_text(str(i))
        overlay.commit_layer(cid)
        parent = cid
    data = overlay.mount_data("deep", ids)
    assert len(data.encode()) < 4096, len(data)
    assert data.count("l/") == 128
    merged = Path(overlay.mount_container("deep", ids))
    assert (merged / "layer-0").read_text() == "0"
    assert (merged / "layer-127").read_text() == "127"
    assert (merged / "top").read_text() == "127"
    assert len(os.listdir(merged)) == 129
    overlay.remove_container("deep")
    assert not mounts_under(store)


def test_too_many_layers_refused_before_mounting(overlay, store):
    ids = ["sha256:" + hashlib.sha256(f"x{i}".encode()).hexdigest() for i in range(300)]
    parent = None
    for cid in ids:
        overlay.prepare_layer(cid, parent)
        overlay.commit_layer(cid)
        parent = cid
    with pytest.raises(SnapshotError, match="too many"):
        overlay.mount_container("deep", ids)
    assert os.listdir(store / "overlay/containers") == []


def test_layerless_container(overlay, vfs):
    for snap in (overlay, vfs):
        merged = Path(snap.mount_container("scratch", []))
        (merged / "f").write_bytes(b"x")
        buf = io.BytesIO()
        snap.diff("scratch", buf)
        assert tar_names(buf.getvalue()) == ["f"]
        snap.remove_container("scratch")


def test_idempotent_and_atomic(overlay, store):
    a, b = CHAIN[0], CHAIN[1]
    d = Path(overlay.prepare_layer(a))
    (d / "stale").write_text("x")
    d = Path(overlay.prepare_layer(a))  # a stale attempt is discarded
    assert os.listdir(d) == []
    assert not overlay.has_layer(a)
    apply_layer(io.BytesIO(LAYERS[0]), str(d), overlay=True)
    overlay.commit_layer(a)
    overlay.commit_layer(a)  # again: nothing to do
    with pytest.raises(SnapshotExists):
        overlay.prepare_layer(a)
    with pytest.raises(SnapshotNotFound):
        overlay.commit_layer(b)
    with pytest.raises(SnapshotNotFound):
        overlay.prepare_layer(CHAIN[2], b)

    # a crash between commit's rename and ... nothing: the link is made before the rename;
    # a lost link is repaired by committing again
    short = (Path(overlay._layer(a)) / "link").read_text()
    os.unlink(store / "overlay/l" / short)
    overlay.commit_layer(a)
    assert (store / "overlay/l" / short).is_symlink()

    # a wrong diff ID leaves nothing behind
    with pytest.raises(LayerError, match="expected"):
        overlay.unpack_layer(b, a, io.BytesIO(LAYERS[1]), expected_diff_id=DIFF_IDS[2])
    assert not overlay.has_layer(b)
    assert not [n for n in os.listdir(store / "overlay") if n.startswith(".")]
    # so does a hostile one
    with pytest.raises(LayerError):
        overlay.unpack_layer(b, a, io.BytesIO(make_tar([E("../x", data=b"x")])))
    assert not overlay.has_layer(b)
    overlay.unpack_layer(b, a, io.BytesIO(LAYERS[1]))

    with pytest.raises(SnapshotError, match="does not follow"):
        overlay.mount_container("c", [b])  # not the whole chain
    with pytest.raises(SnapshotError, match="invalid container key"):
        overlay.mount_container("../x", [a])
    with pytest.raises(SnapshotError, match="invalid chain ID"):
        overlay.prepare_layer("../../etc")
    m1 = overlay.mount_container("c", [a, b])
    m2 = overlay.mount_container("c", [a, b])  # again: the same mount, not a second one
    assert m1 == m2 and mount_points().count(m1) == 1
    with pytest.raises(SnapshotError, match="other layers"):
        overlay.mount_container("c", [a])
    overlay.unmount_container("c")
    overlay.unmount_container("c")
    assert m1 not in mount_points()
    assert overlay.mount_container("c", [a, b]) == m1  # mounted again, upper kept
    overlay.remove_container("c")
    overlay.remove_container("c")
    overlay.unmount_container("never-existed")
    overlay.remove_layer(b)
    overlay.remove_layer(b)
    overlay.remove_layer(CHAIN[2])

    os.mkdir(store / "overlay/.tmp-leftover")
    os.mkdir(store / "overlay/containers/.del-leftover")
    overlay.cleanup()
    assert not [n for n in os.listdir(store / "overlay") if n.startswith(".")]
    assert os.listdir(store / "overlay/containers") == []


# -- vfs ---------------------------------------------------------------------------------------

def test_vfs_gives_the_same_trees(overlay, vfs, tmp_path):
    unpack_all(overlay)
    unpack_all(vfs)
    assert tree(vfs.layer_dir(CHAIN[-1])) == tree(flattened(tmp_path))
    om = Path(overlay.mount_container("c", CHAIN))
    vm = Path(vfs.mount_container("c", CHAIN))
    assert tree(om) == tree(vm)
    change(om)
    change(vm)
    assert tree(om, dir_mtimes=False) == tree(vm, dir_mtimes=False)

    # both diffs, applied to the image, give the container's view
    for snap, view in ((overlay, om), (vfs, vm)):
        buf = io.BytesIO()
        snap.diff("c", buf)
        flat = flattened(tmp_path)
        apply_layer(io.BytesIO(buf.getvalue()), str(flat))
        assert tree(flat, dir_mtimes=False) == tree(view, dir_mtimes=False)
    # vfs's diff holds only the changes
    buf = io.BytesIO()
    vfs.diff("c", buf)
    names = set(tar_names(buf.getvalue()))
    assert "etc/passwd" not in names and "opq/new3" not in names
    assert {"hello", "etc/group", "usr/share/doc/.wh.b", "home/user/.profile"} <= names
    vfs.remove_container("c")
    overlay.remove_container("c")
    for cid in reversed(CHAIN):
        vfs.remove_layer(cid)
    assert os.listdir(Path(vfs.home)) == ["containers"]


def test_copy_tree_keeps_everything(tmp_path):
    src = tmp_path / "src"
    apply_layer(io.BytesIO(make_tar([
        E("d", "dir", mode=0o2750, uid=3, gid=4), E("d/su", data=b"x", mode=0o4711, uid=5),
        E("d/hl", "hardlink", link="d/su"), E("ln", "symlink", link="/d/su", uid=6)])),
        str(src.mkdir() or src))
    os.mkfifo(src / "fifo")
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(src / "d/su", "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))
    os.setxattr(src / "d", "trusted.x", b"1")
    copy_tree(str(src), str(tmp_path / "dst"))
    assert tree(tmp_path / "dst") == tree(src)


# -- end to end --------------------------------------------------------------------------------

def test_busybox_container_on_an_overlay_rootfs(overlay, busybox_rootfs, bundles, rt, cid):
    """The busybox tree as an image layer (write_diff of a full tree), a container on it run
    by bosun-runtime, and its changes read back as a layer."""
    buf = io.BytesIO()
    did = write_diff(str(busybox_rootfs), buf, lower_dirs=[])
    base = did  # a base layer's chain ID is its diff ID
    overlay.unpack_layer(base, None, io.BytesIO(buf.getvalue()), expected_diff_id=did)
    merged = overlay.mount_container(cid, [base])
    try:
        script = "echo hi > /greeting && rm /bin/vi && head -1 /etc/passwd"
        b = bundles.make(["sh", "-c", script],
                         edit=lambda c: c["root"].update(path=merged))
        p = rt("run", "--bundle", b, cid)
        assert p.stdout.strip() == "root:x:0:0:root:/root:/bin/sh"
        out = io.BytesIO()
        overlay.diff(cid, out)
        names = tar_names(out.getvalue())
        assert "bin/.wh.vi" in names and "greeting" in names
    finally:
        overlay.remove_container(cid)
