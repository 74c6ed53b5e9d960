"""`docker diff` on the vfs snapshotter: the container's full copy of the image compared with
the image's top layer, listed as Docker lists it (Kind 0 modified, 1 added, 2 deleted)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bosun.engine.containers.changes import snapshot_changes
from bosun.image.snapshot import VfsSnapshotter

T0 = 1_650_000_000
BASE = "sha256:" + "a" * 64
TOP = "sha256:" + "b" * 64


def populate(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in dirnames + filenames:  # old times: a rewrite inside the same tick still shows
            os.utime(os.path.join(dirpath, n), (T0, T0), follow_symlinks=False)


def image(tmp_path: Path) -> VfsSnapshotter:
    snaps = VfsSnapshotter(str(tmp_path / "store"))
    populate(Path(snaps.prepare_layer(BASE)), {
        "bin/sh": "sh", "bin/gone": "x", "etc/passwd": "root:x:0:0\n", "etc/hosts": "h\n",
        "olddir/a/b": "b", "usr/lib/x": "x"})
    snaps.commit_layer(BASE)
    top = Path(snaps.prepare_layer(TOP, BASE))  # a second layer: the diff is against both
    (top / "etc" / "hosts").unlink()
    (top / "etc" / "motd").write_text("hi\n")
    snaps.commit_layer(TOP)
    return snaps


def test_vfs_changes_list_added_modified_and_deleted(tmp_path):
    snaps = image(tmp_path)
    rootfs = Path(snaps.mount_container("c1", [BASE, TOP]))
    assert snapshot_changes(snaps, "c1", [BASE, TOP]) == []  # a fresh copy: no changes

    (rootfs / "etc" / "passwd").write_text("root:x:0:0\nme:x:1000:1000\n")
    (rootfs / "bin" / "gone").unlink()
    shutil.rmtree(rootfs / "olddir")
    (rootfs / "new").write_text("n")
    (rootfs / "newdir" / "sub").mkdir(parents=True)
    (rootfs / "newdir" / "sub" / "f").write_text("f")
    os.symlink("/etc/passwd", rootfs / "usr" / "link")
    os.chmod(rootfs / "etc" / "motd", 0o600)  # metadata only: modified too

    kinds = {ch["Path"]: ch["Kind"] for ch in snapshot_changes(snaps, "c1", [BASE, TOP])}
    assert kinds == {
        "/bin": 0, "/bin/gone": 2,
        "/etc": 0, "/etc/motd": 0, "/etc/passwd": 0,
        "/new": 1,
        "/newdir": 1, "/newdir/sub": 1, "/newdir/sub/f": 1,  # all of an added tree
        "/olddir": 2,  # a deleted directory is one entry
        "/usr": 0, "/usr/link": 1,  # /usr/lib, untouched, is not listed
    }
    paths = [ch["Path"] for ch in snapshot_changes(snaps, "c1", [BASE, TOP])]
    assert paths == sorted(paths)


def test_vfs_changes_of_a_layerless_container(tmp_path):
    snaps = VfsSnapshotter(str(tmp_path / "store"))
    rootfs = Path(snaps.mount_container("c2", []))
    (rootfs / "d").mkdir()
    (rootfs / "d" / "f").write_text("x")
    assert snapshot_changes(snaps, "c2", []) == [{"Path": "/d", "Kind": 1},
                                                 {"Path": "/d/f", "Kind": 1}]
