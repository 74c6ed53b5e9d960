"""write_diff: tree -> layer tar -> apply_layer reproduces the tree; the output is byte-for-byte
deterministic; overlay upper dirs' whiteouts and opaque dirs become .wh. entries; a full tree
compared with its lowers gives only the changes. Ownership, devices and trusted.* xattrs
(overlay's whiteouts and opaque marks) need root; those tests skip otherwise."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from bosun.image.diff import write_diff
from bosun.image.layer import apply_layer
from bosun.image.snapshot import copy_tree

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")
T0 = 1_650_000_000
CAP = bytes.fromhex("0100000200200000000000000000000000000000")


def tree(root, dir_mtimes: bool = True) -> dict[str, tuple]:
    """Everything under root by relative path: type, mode, owner, mtime (s), content or
    target or device, content xattrs, and hard-link group (the first path of the inode)."""
    out: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                body = Path(p).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                body = st.st_rdev
            else:
                body = None
            xattrs = {k: os.getxattr(p, k, follow_symlinks=False)
                      for k in os.listxattr(p, follow_symlinks=False)
                      if not k.startswith("trusted.overlay.")}
            isdir = stat.S_ISDIR(st.st_mode)
            mtime = st.st_mtime_ns // 10**9 if dir_mtimes or not isdir else None
            group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not isdir else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime, body,
                        xattrs, group)
    return out


def set_times(root: Path, t: int = T0) -> None:
    """Fixed mtimes everywhere, directories last (deepest first)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)
    os.utime(root, (t, t))


def diff_bytes(upper, lower_dirs=None) -> tuple[bytes, str]:
    buf = io.BytesIO()
    digest = write_diff(str(upper), buf, lower_dirs)
    return buf.getvalue(), digest


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return t.getmembers()


def build_rich_tree(root: Path, reverse: bool = False) -> None:
    """A tree with every kind of entry; `reverse` creates the entries in the opposite order
    (other inode numbers, other order on disk), which must not change the diff."""
    long = root / ("long-" * 30) / ("name-" * 40)
    create = [
        lambda: (root / "etc").mkdir(),
        lambda: (root / "etc/passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n"),
        lambda: (root / "bin").mkdir(),
        lambda: (root / "bin/busybox").write_bytes(b"\x7fELF" + bytes(range(256)) * 40),
        lambda: os.link(root / "bin/busybox", root / "bin/sh"),
        lambda: os.link(root / "bin/busybox", root / "bin/ls"),
        lambda: (root / "bin/rel").symlink_to("busybox"),
        lambda: (root / "abs").symlink_to("/etc/passwd"),
        lambda: (root / "dangling").symlink_to("no/such/thing"),
        lambda: (root / "empty").write_bytes(b""),
        lambda: os.mkfifo(root / "fifo"),
        lambda: (root / "tmp").mkdir(),
        lambda: long.parent.mkdir(),
        lambda: long.write_bytes(b"long"),
        lambda: (root / "ünïcödé").write_bytes(b"u"),
        lambda: Path(os.fsdecode(os.fsencode(root) + b"/caf\xe9")).write_bytes(b"l1"),
        lambda: (root / "x.attr").write_bytes(b"x"),
        lambda: os.mkdir(root / "sgid"),
    ]
    if ROOT:
        create.append(lambda: os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3)))
    # metadata after creation, in this order: chown clears setuid bits and capabilities
    meta = [
        lambda: os.chmod(root / "tmp", 0o1777),
        lambda: os.setxattr(root / "x.attr", "user.b", b"2"),
        lambda: os.setxattr(root / "x.attr", "user.a", b"\x00\xff"),
        lambda: os.chmod(root / "sgid", 0o2770),
    ]
    if ROOT:
        meta += [
            lambda: os.chown(root / "etc/passwd", 1000, 1001),
            lambda: os.chown(root / "sgid", 5, 6),
            lambda: os.chmod(root / "sgid", 0o2770),
            lambda: os.setxattr(root / "sgid", "trusted.t", b"t"),
            lambda: os.lchown(root / "abs", 7, 8),
            lambda: os.chmod(root / "bin/busybox", 0o4755),
            lambda: os.setxattr(root / "bin/busybox", "security.capability", CAP),
        ]
    pending = create[::-1] if reverse else create
    while pending:  # in reverse, an entry whose parent or target is missing waits a round
        left = []
        for step in pending:
            try:
                step()
            except (FileNotFoundError, NotADirectoryError):
                left.append(step)
        assert len(left) < len(pending)
        pending = left
    for step in meta:
        step()
    set_times(root)


def test_round_trip_reproduces_the_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    build_rich_tree(src)
    data, digest = diff_bytes(src)
    dst = tmp_path / "dst"
    dst.mkdir()
    stats = apply_layer(io.BytesIO(data), str(dst))
    assert stats.diff_id == digest
    assert tree(dst) == tree(src)


def test_output_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    build_rich_tree(a)
    build_rich_tree(b, reverse=True)
    first, d1 = diff_bytes(a)
    assert diff_bytes(a) == (first, d1)  # twice the same tree
    assert diff_bytes(b) == (first, d1)  # the same content made another way


def test_headers_normalised(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    build_rich_tree(src)
    os.utime(src / "empty", ns=(T0 * 10**9 + 999, T0 * 10**9 + 123_456_789))
    data, _ = diff_bytes(src)
    ms = members(data)
    names = [m.name for m in ms]
    assert names == sorted(names, key=lambda n: [os.fsencode(p) for p in n.split("/")])
    for m in ms:
        assert m.uname == "" and m.gname == ""
        assert not {"atime", "ctime", "mtime", "uname", "gname"} & set(m.pax_headers)
        assert isinstance(m.mtime, int)
    assert data[257:265] == b"ustar\x0000"  # POSIX (PAX) headers
    empty = next(m for m in ms if m.name == "empty")
    assert empty.mtime == T0  # whole seconds, as Docker
    sh = next(m for m in ms if m.name == "bin/sh")
    assert sh.islnk() and sh.linkname == "bin/busybox"
    assert next(m for m in ms if m.name == "bin/ls").linkname == "bin/busybox"


def test_symlinks_archived_never_followed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOP-SECRET-CONTENT")
    (src / "leak").symlink_to(secret)
    (src / "dirleak").symlink_to(tmp_path)
    os.mkfifo(src / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "sock"))
        data, _ = diff_bytes(src)
    assert b"TOP-SECRET-CONTENT" not in data
    ms = {m.name: m for m in members(data)}
    assert set(ms) == {"dirleak", "fifo", "leak"}  # the socket is skipped
    assert ms["leak"].issym() and ms["leak"].size == 0


@needs_root
def test_overlay_upper_whiteouts_and_opaque_dirs(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "new").write_bytes(b"n")
    os.mknod(upper / "gone", stat.S_IFCHR, 0)
    os.link(upper / "gone", upper / "gone2")  # overlayfs shares one whiteout inode
    (upper / "opq").mkdir()
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "opq", "user.kept", b"k")
    (upper / "opq/child").write_bytes(b"c")
    (upper / "copied").mkdir()
    os.setxattr(upper / "copied", "trusted.overlay.origin", b"\x00" * 8)
    os.setxattr(upper / "copied", "trusted.overlay.impure", b"y")
    os.mknod(upper / "copied/.wh.odd-name", stat.S_IFCHR, 0)
    set_times(upper)
    data, _ = diff_bytes(upper)
    ms = members(data)
    assert [m.name for m in ms] == [
        "copied", "copied/.wh..wh.odd-name", ".wh.gone", ".wh.gone2", "new", "opq",
        "opq/.wh..wh..opq", "opq/child"]
    by = {m.name: m for m in ms}
    for n in (".wh.gone", ".wh.gone2", "opq/.wh..wh..opq"):
        assert by[n].isreg() and by[n].size == 0
    assert by["copied"].pax_headers == {}  # overlay's bookkeeping is not content
    assert by["opq"].pax_headers == {"SCHILY.xattr.user.kept": "k"}

    # applied onto the lower it came from: deletions and the opaque dir take effect
    lower = tmp_path / "lower"
    for p in ("gone", "gone2", "opq/old", "opq/deeper/old", "copied/keep"):
        (lower / p).parent.mkdir(parents=True, exist_ok=True)
        (lower / p).write_bytes(b"old")
    apply_layer(io.BytesIO(data), str(lower))
    assert sorted(os.listdir(lower)) == ["copied", "new", "opq"]
    assert os.listdir(lower / "opq") == ["child"]
    assert os.listdir(lower / "copied") == ["keep"]


def test_full_tree_compared_with_its_lower(tmp_path):
    lower = tmp_path / "lower"
    for p in ("etc/hosts", "etc/passwd", "usr/share/doc/a", "usr/share/doc/b", "var/log/x",
              "var/log/y", "deep/er/still/same", "chmodded", "replaced"):
        (lower / p).parent.mkdir(parents=True, exist_ok=True)
        (lower / p).write_bytes(p.encode())
    set_times(lower)
    upper = tmp_path / "upper"
    copy_tree(str(lower), str(upper))
    assert not members(diff_bytes(upper, [str(lower)])[0])  # a copy: no changes

    (upper / "etc/passwd").write_bytes(b"changed")
    os.chmod(upper / "chmodded", 0o600)
    (upper / "usr/share/doc/b").unlink()
    for n in ("x", "y"):
        (upper / "var/log" / n).unlink()
    (upper / "var/log").rmdir()
    (upper / "deep/er/still/new").write_bytes(b"new")
    (upper / "replaced").unlink()
    (upper / "replaced").mkdir()
    (upper / "replaced/inside").write_bytes(b"i")
    os.setxattr(upper / "etc/hosts", "user.x", b"1")
    data, _ = diff_bytes(upper, [str(lower)])
    names = [m.name for m in members(data)]
    assert "usr/share/doc/a" not in names and "deep/er/still/same" not in names
    assert {"etc/passwd", "etc/hosts", "chmodded", "usr/share/doc/.wh.b", "var/.wh.log",
            "deep/er/still/new", "replaced", "replaced/inside"} <= set(names)
    # the directories above each change are there, before it
    assert names.index("deep") < names.index("deep/er") < names.index("deep/er/still/new")

    flattened = tmp_path / "flattened"
    copy_tree(str(lower), str(flattened))
    apply_layer(io.BytesIO(data), str(flattened))
    assert tree(flattened) == tree(upper)


@needs_root
def test_compared_with_a_stack_of_overlay_layers(tmp_path):
    """lower_dirs in overlay format, topmost first: whiteouts and opaque dirs of the lowers
    hide what is below them, as in the mounted view."""
    l1, l2 = tmp_path / "l1", tmp_path / "l2"
    for p in ("a/1", "a/2", "o/old", "f", "d/x"):
        (l1 / p).parent.mkdir(parents=True, exist_ok=True)
        (l1 / p).write_bytes(b"l1")
    (l2 / "a").mkdir(parents=True)
    os.mknod(l2 / "a/1", stat.S_IFCHR, 0)  # a/1 deleted by l2
    (l2 / "o").mkdir()
    os.setxattr(l2 / "o", "trusted.overlay.opaque", b"y")
    (l2 / "o/new").write_bytes(b"l2")
    os.mknod(l2 / "d", stat.S_IFCHR, 0)  # d deleted by l2
    set_times(l1)
    set_times(l2)
    merged = tmp_path / "merged"  # what the mount shows, built by hand
    for p, body in (("a/2", b"l1"), ("o/new", b"l2"), ("f", b"l1")):
        (merged / p).parent.mkdir(parents=True, exist_ok=True)
        (merged / p).write_bytes(body)
    set_times(merged)
    os.utime(merged / "a", ns=(0, os.lstat(l2 / "a").st_mtime_ns))
    os.utime(merged / "o", ns=(0, os.lstat(l2 / "o").st_mtime_ns))
    assert [m.name for m in members(diff_bytes(merged, [str(l2), str(l1)])[0])] == []

    (merged / "o/new").unlink()
    (merged / "f").unlink()
    names = [m.name for m in members(diff_bytes(merged, [str(l2), str(l1)])[0])]
    assert names == [".wh.f", "o", "o/.wh.new"]
