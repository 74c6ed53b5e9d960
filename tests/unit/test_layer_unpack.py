"""apply_layer on crafted tarballs: every entry type and its metadata, compression, whiteouts
in both modes, and hostile layers that try to reach outside the destination.

Hostile tests unpack into dest = <tmp>/a/b/dest and check that nothing outside dest changed:
every file under <tmp> (bytes, mode, owner, links) and /etc/passwd. Ownership, device nodes
and trusted.* xattrs need root; those tests skip otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
import tracemalloc
import uuid
from pathlib import Path

import pytest

from bosun.image.layer import (LayerError, Prefetcher, apply_layer, compression_from_media_type,
                               detect_compression)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")

T0 = 1_600_000_000  # a fixed mtime
CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # v2: cap_net_bind_service+ep


# -- building layers ---------------------------------------------------------------------------

def E(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None, uid: int = 0,
      gid: int = 0, mtime: float = T0, link: str = "", dev: tuple[int, int] = (0, 0),
      xattrs: dict[str, bytes] | None = None, pax: dict[str, str] | None = None):
    """One tar entry: (TarInfo, data)."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE,
             "block": tarfile.BLKTYPE}
    ti = tarfile.TarInfo(name)
    ti.type = types[kind]
    ti.mode = (0o755 if kind == "dir" else 0o644) if mode is None else mode
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    ti.size = len(data) if kind == "file" else 0
    headers = dict(pax or {})
    for k, v in (xattrs or {}).items():
        headers["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
    ti.pax_headers = headers
    return ti, (data if kind == "file" else None)


def make_tar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def apply(entries, dest, how="none", **kw):
    return apply_layer(io.BytesIO(compress(make_tar(entries), how)), str(dest), **kw)


def mode(p) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def dest(tmp_path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


# -- a destination with sentinels around it ----------------------------------------------------

def _state(path: Path, skip: Path) -> dict:
    """Everything under path except skip: type, mode, owner, size, nlink, content or target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p == skip:
                continue
            st = os.lstat(p)
            body = (os.readlink(p) if stat.S_ISLNK(st.st_mode)
                    else p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
            out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns, body)
    return out


def _passwd_state():
    st = os.stat("/etc/passwd")
    return (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns,
            Path("/etc/passwd").read_bytes())


class Arena:
    """dest two levels below tmp, with a sentinel file and directory outside it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.outside = tmp / "outside"
        self.outside.mkdir()
        self.sentinel = self.outside / "sentinel"
        self.sentinel.write_bytes(b"precious\n")
        self.sentinel.chmod(0o644)
        (self.outside / "keep").mkdir()
        (self.outside / "keep" / "file").write_bytes(b"keep\n")
        self.dest = tmp / "a" / "b" / "dest"
        self.dest.mkdir(parents=True)
        (tmp / "a" / "b" / "neighbour").write_bytes(b"n\n")
        self.before = _state(tmp, self.dest)
        self.passwd = _passwd_state()
        self.host_paths: list[str] = []  # host paths a broken unpacker would create

    def host_path(self, directory: str) -> str:
        """A unique, absent path on the host, removed again if a regression creates it."""
        path = os.path.join(directory, f"bosun-test-{uuid.uuid4().hex}")
        self.host_paths.append(path)
        return path

    def untouched(self) -> None:
        leaked = [p for p in self.host_paths if os.path.lexists(p)]
        for p in leaked:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        assert not leaked, f"written outside dest: {leaked}"
        assert _state(self.tmp, self.dest) == self.before
        assert _passwd_state() == self.passwd

    def inside(self, path: str) -> Path:
        """Where an absolute path inside the container lands."""
        return self.dest / path.lstrip("/")


@pytest.fixture
def arena(tmp_path) -> Arena:
    a = Arena(tmp_path)
    yield a
    a.untouched()  # every test here, whatever it asserts, must leave the outside alone


# -- compression and the diff ID ---------------------------------------------------------------

@pytest.mark.parametrize("how", ["none", "gzip", "zstd"])
def test_compression_detected_and_diff_id_of_uncompressed_stream(dest, how):
    raw = make_tar([E("hello", data=b"hello world\n"), E("dir", "dir")])
    stats = apply_layer(io.BytesIO(compress(raw, how)), str(dest))
    assert stats.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert stats.compression == how
    assert stats.size == len(b"hello world\n")
    assert (dest / "hello").read_bytes() == b"hello world\n"


def test_diff_id_covers_bytes_after_the_end_of_archive(dest):
    raw = make_tar([E("f", data=b"x")]) + b"\0" * 4096
    stats = apply_layer(io.BytesIO(gzip.compress(raw)), str(dest))
    assert stats.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_multi_member_gzip_and_multi_frame_zstd(dest):
    import zstandard

    raw = make_tar([E("f", data=b"a" * 5000), E("g", data=b"b" * 5000)])
    half = len(raw) // 2
    gz = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    assert apply_layer(io.BytesIO(gz), str(dest)).diff_id.endswith(hashlib.sha256(raw).hexdigest())
    c = zstandard.ZstdCompressor()
    zs = c.compress(raw[:half]) + c.compress(raw[half:])
    assert apply_layer(io.BytesIO(zs), str(dest)).diff_id.endswith(hashlib.sha256(raw).hexdigest())
    assert (dest / "g").read_bytes() == b"b" * 5000


def test_media_types():
    assert compression_from_media_type("application/vnd.oci.image.layer.v1.tar+gzip") == "gzip"
    assert compression_from_media_type(
        "application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    assert compression_from_media_type("application/vnd.oci.image.layer.v1.tar+zstd") == "zstd"
    assert compression_from_media_type("application/vnd.oci.image.layer.v1.tar") == "none"
    assert compression_from_media_type("application/octet-stream") is None
    with pytest.raises(LayerError):
        compression_from_media_type("application/vnd.oci.image.layer.v1.tar+encrypted")
    assert detect_compression(b"BZh91AY") == "bzip2"


def test_mislabelled_layer_read_by_its_bytes(dest, caplog):
    raw = make_tar([E("f", data=b"x")])
    with caplog.at_level(logging.WARNING, "bosun.image.layer"):
        stats = apply_layer(io.BytesIO(raw), str(dest),
                            media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    assert stats.compression == "none" and (dest / "f").read_bytes() == b"x"
    assert "says gzip" in caplog.text


@pytest.mark.parametrize("data", [b"not a tar at all" * 100, b"BZh91AY&SY" + b"\0" * 600,
                                  gzip.compress(b"garbage" * 200)])
def test_corrupt_or_unsupported_stream(dest, data):
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(data), str(dest))


def test_truncated_stream(dest):
    gz = gzip.compress(make_tar([E("f", data=os.urandom(100_000))]))
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(gz[: len(gz) // 2]), str(dest))


def test_empty_stream_is_an_empty_layer(dest):
    stats = apply_layer(io.BytesIO(b""), str(dest))
    assert stats.size == 0 and stats.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()


class _ZeroFileTar:
    """A tar of one file of n zero bytes, generated as it is read: never in memory."""

    def __init__(self, n: int) -> None:
        ti = tarfile.TarInfo("big")
        ti.size = n
        self.chunks = iter([ti.tobuf(tarfile.PAX_FORMAT)]
                           + [None] * (n // (1 << 20))
                           + [b"\0" * (n % (1 << 20) + (-n) % 512 + 1024)])
        self.buf = b""

    def read(self, k: int = -1) -> bytes:
        while len(self.buf) < k or k < 0:
            c = next(self.chunks, b"")
            if c == b"":
                break
            self.buf += b"\0" * (1 << 20) if c is None else c
        out, self.buf = (self.buf, b"") if k < 0 else (self.buf[:k], self.buf[k:])
        return out


def test_streamed_never_whole_in_memory(dest):
    n = 64 << 20
    h = hashlib.sha256()
    src = _ZeroFileTar(n)
    z = __import__("zlib").compressobj(wbits=31)
    gz = b""
    while chunk := src.read(1 << 20):
        h.update(chunk)
        gz += z.compress(chunk)
    gz += z.flush()
    assert len(gz) < 1 << 20
    tracemalloc.start()
    try:
        stats = apply_layer(io.BytesIO(gz), str(dest))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats.diff_id == "sha256:" + h.hexdigest() and stats.size == n
    assert (dest / "big").stat().st_size == n
    assert peak < 16 << 20, f"peak {peak} bytes"


# -- entry types and metadata ------------------------------------------------------------------

def test_files_dirs_modes_and_mtimes(dest):
    apply([
        E("d", "dir", mode=0o750, mtime=T0 + 1),
        E("d/sub", "dir", mode=0o1777, mtime=T0 + 2),
        E("d/sub/f", data=b"content", mode=0o640, mtime=T0 + 3),
        E("d/x", data=b"", mode=0o600, pax={"mtime": f"{T0 + 4}.123456789"}),
        E("implicit/parent/file", data=b"p"),
    ], dest)
    assert (dest / "d/sub/f").read_bytes() == b"content"
    assert mode(dest / "d") == 0o750 and mode(dest / "d/sub") == 0o1777
    assert mode(dest / "d/sub/f") == 0o640
    # directory times are set last, after their children were created
    assert os.lstat(dest / "d").st_mtime_ns == (T0 + 1) * 10**9
    assert os.lstat(dest / "d/sub").st_mtime_ns == (T0 + 2) * 10**9
    assert os.lstat(dest / "d/sub/f").st_mtime_ns == (T0 + 3) * 10**9
    assert os.lstat(dest / "d/x").st_mtime_ns == (T0 + 4) * 10**9 + 123456789
    assert mode(dest / "implicit") == 0o755 and mode(dest / "implicit/parent") == 0o755


@needs_root
def test_ownership_and_setuid_setgid_kept_after_chown(dest):
    apply([
        E("su", data=b"#!", mode=0o4755, uid=1000, gid=1000),
        E("sg", data=b"#!", mode=0o2755, uid=0, gid=50),
        E("both", data=b"#!", mode=0o6711, uid=123, gid=456),
        E("sgdir", "dir", mode=0o2775, uid=7, gid=8),
        E("link", "symlink", link="su", uid=1001, gid=1002),
    ], dest)
    st = os.lstat(dest / "su")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o4755)
    assert mode(dest / "sg") == 0o2755 and os.lstat(dest / "sg").st_gid == 50
    assert mode(dest / "both") == 0o6711
    assert (os.lstat(dest / "both").st_uid, os.lstat(dest / "both").st_gid) == (123, 456)
    assert mode(dest / "sgdir") == 0o2775 and os.lstat(dest / "sgdir").st_uid == 7
    st = os.lstat(dest / "link")  # lchown: the link itself
    assert (st.st_uid, st.st_gid) == (1001, 1002)


def test_symlinks_stored_as_is(dest):
    apply([
        E("abs", "symlink", link="/etc/passwd", mtime=T0 + 5),
        E("rel", "symlink", link="../../../../etc/shadow"),
        E("dangling", "symlink", link="nowhere/at/all"),
        E("dir/self", "symlink", link="."),
    ], dest)
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert os.readlink(dest / "rel") == "../../../../etc/shadow"
    assert os.readlink(dest / "dangling") == "nowhere/at/all"
    assert os.readlink(dest / "dir/self") == "."
    assert os.lstat(dest / "abs").st_mtime_ns == (T0 + 5) * 10**9


def test_hardlinks(dest):
    apply([
        E("bin/busybox", data=b"BB", mode=0o755),
        E("bin/sh", "hardlink", link="bin/busybox"),
        E("usr/bin/env", "hardlink", link="/bin/busybox"),  # absolute: inside the layer
        E("bin/self", data=b"s"),
        E("bin/self", "hardlink", link="bin/self"),  # a link to itself: nothing to do
    ], dest)
    ino = os.lstat(dest / "bin/busybox").st_ino
    assert os.lstat(dest / "bin/sh").st_ino == ino == os.lstat(dest / "usr/bin/env").st_ino
    assert os.lstat(dest / "bin/busybox").st_nlink == 3
    assert (dest / "bin/self").read_bytes() == b"s"


def test_hardlink_to_missing_or_directory_rejected(dest):
    with pytest.raises(LayerError, match="not in the layer"):
        apply([E("x", "hardlink", link="missing")], dest)
    with pytest.raises(LayerError):
        apply([E("d", "dir"), E("x", "hardlink", link="d")], dest)


def test_fifo(dest):
    apply([E("run/fifo", "fifo", mode=0o620, mtime=T0 + 9)], dest)
    st = os.lstat(dest / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    assert st.st_mtime_ns == (T0 + 9) * 10**9


@needs_root
def test_device_nodes(dest):
    apply([E("dev/null", "char", dev=(1, 3), mode=0o666, uid=0, gid=5),
           E("dev/loop9", "block", dev=(7, 9), mode=0o4660, uid=6, gid=6)], dest)
    st = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666 and st.st_gid == 5
    st = os.lstat(dest / "dev/loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 9)
    assert stat.S_IMODE(st.st_mode) == 0o4660 and st.st_uid == 6  # set after chown


def test_device_nodes_skipped_when_mknod_not_permitted(dest, monkeypatch, caplog):
    real = os.mknod

    def mknod(path, mode=0o600, device=0, *, dir_fd=None):
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            raise PermissionError(1, "Operation not permitted")
        return real(path, mode, device, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mknod", mknod)
    with caplog.at_level(logging.WARNING, "bosun.image.layer"):
        apply([E("dev/null", "char", dev=(1, 3)), E("dev/fifo", "fifo"),
               E("after", data=b"ok")], dest)
    assert not (dest / "dev/null").exists()
    assert stat.S_ISFIFO(os.lstat(dest / "dev/fifo").st_mode)
    assert (dest / "after").read_bytes() == b"ok"
    assert "mknod not permitted" in caplog.text


@needs_root
def test_xattrs_including_file_capabilities(dest):
    apply([
        E("bin/ping", data=b"ELF", mode=0o755, uid=1000,
          xattrs={"security.capability": CAP, "user.note": b"hello"}),
        E("dir", "dir", xattrs={"trusted.mine": b"\x00\xff\x01", "user.d": b"x"}),
        E("fifo", "fifo", xattrs={"trusted.f": b"1"}),
    ], dest)
    # chown (uid 1000) came first: the capability it would have cleared is still there
    assert os.getxattr(dest / "bin/ping", "security.capability") == CAP
    assert os.getxattr(dest / "bin/ping", "user.note") == b"hello"
    assert os.lstat(dest / "bin/ping").st_uid == 1000
    assert os.getxattr(dest / "dir", "trusted.mine") == b"\x00\xff\x01"
    assert os.getxattr(dest / "fifo", "trusted.f", follow_symlinks=False) == b"1"


@needs_root
def test_overlay_private_xattrs_in_tar_skipped(dest):
    apply([E("d", "dir", xattrs={"trusted.overlay.opaque": b"y",
                                 "trusted.overlay.redirect": b"/etc"}),
           E("f", data=b"x", xattrs={"trusted.overlay.metacopy": b""})], dest)
    assert not [k for k in os.listxattr(dest / "d") + os.listxattr(dest / "f")
                if k.startswith("trusted.overlay.")]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_and_non_ascii_names(dest, fmt):
    deep = "/".join(["directory-with-a-long-name"] * 8) + "/" + "f" * 200
    raw = make_tar([E(deep, data=b"deep"), E("ünï/cødé", data=b"u"),
                    E("lnk", "symlink", link="/" + deep), E("hl", "hardlink", link=deep)], fmt)
    apply_layer(io.BytesIO(raw), str(dest))
    assert (dest / deep).read_bytes() == b"deep"
    assert (dest / "ünï/cødé").read_bytes() == b"u"
    assert os.readlink(dest / "lnk") == "/" + deep
    assert os.lstat(dest / "hl").st_ino == os.lstat(dest / deep).st_ino


def test_non_utf8_name(dest):
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    apply([E(name, data=b"latin1")], dest)
    assert (dest / os.fsdecode(b"caf\xe9")).read_bytes() == b"latin1"
    assert b"caf\xe9" in os.listdir(os.fsencode(dest))


def test_root_entry_skipped(dest):
    dest.chmod(0o755)
    apply([E(".", "dir", mode=0o700), E("./", "dir", mode=0o777), E("./f", data=b"x")], dest)
    assert mode(dest) == 0o755 and (dest / "f").read_bytes() == b"x"


def test_replacing_entries(dest):
    (dest / "was_dir").mkdir()
    (dest / "was_dir/child").write_bytes(b"c")
    (dest / "was_file").write_bytes(b"f")
    (dest / "merged").mkdir()
    (dest / "merged/lower").write_bytes(b"lower")
    (dest / "was_link").symlink_to("/etc")
    apply([E("was_dir", data=b"now a file"), E("was_file", "dir", mode=0o711),
           E("merged", "dir", mode=0o700), E("merged/upper", data=b"upper"),
           E("was_link", data=b"now a file too"), E("f", data=b"1"), E("f", data=b"2")], dest)
    assert (dest / "was_dir").read_bytes() == b"now a file"
    assert (dest / "was_file").is_dir() and mode(dest / "was_file") == 0o711
    assert sorted(os.listdir(dest / "merged")) == ["lower", "upper"]
    assert mode(dest / "merged") == 0o700
    assert not (dest / "was_link").is_symlink()
    assert (dest / "f").read_bytes() == b"2"


def test_unsupported_entry_type(dest):
    ti, _ = E("vol", "file")
    ti.type = tarfile.GNUTYPE_LONGNAME[:0] + b"V"  # a GNU volume header
    with pytest.raises(LayerError):
        apply([(ti, b"")], dest)


# -- whiteouts ---------------------------------------------------------------------------------

def _lower(dest: Path) -> None:
    for p in ("a/x", "a/y", "b/deep/z", "c/old", "c/sub/old", "keep/k"):
        (dest / p).parent.mkdir(parents=True, exist_ok=True)
        (dest / p).write_bytes(p.encode())


def test_whiteouts_applied_to_a_plain_directory(dest):
    _lower(dest)
    apply([E("a/.wh.x"), E(".wh.b"), E("c", "dir"), E("c/.wh..wh..opq"), E("c/new", data=b"n"),
           E("c/sub", "dir"), E("c/sub/new2", data=b"n2"), E(".wh.missing"),
           E("nothere/.wh.x")], dest)
    assert sorted(os.listdir(dest / "a")) == ["y"]
    assert not (dest / "b").exists()
    # opaque: lower content gone at every depth, this layer's entries kept
    assert sorted(os.listdir(dest / "c")) == ["new", "sub"]
    assert sorted(os.listdir(dest / "c/sub")) == ["new2"]
    assert (dest / "keep/k").exists()
    assert not (dest / "nothere").exists()
    assert not [n for n in os.listdir(dest) if n.startswith(".wh.")]


def test_opaque_marker_before_or_after_the_layers_entries(dest):
    _lower(dest)
    apply([E("c/new", data=b"n"), E("c/.wh..wh..opq")], dest)
    assert os.listdir(dest / "c") == ["new"]


def test_whiteout_never_hides_the_same_layers_entry(dest):
    apply([E("f", data=b"mine"), E(".wh.f")], dest)
    assert (dest / "f").read_bytes() == b"mine"


def test_aufs_metadata_skipped(dest):
    apply([E(".wh..wh.plnk", "dir"), E(".wh..wh.plnk/123.456", data=b"x"),
           E(".wh..wh.aufs", data=b"")], dest)
    assert os.listdir(dest) == []


@pytest.mark.parametrize("name", [".wh.", ".wh..", "d/.wh.."])
def test_invalid_whiteouts_rejected(dest, name):
    (dest / "d").mkdir()
    (dest / "d/keep").write_bytes(b"k")
    with pytest.raises(LayerError, match="invalid whiteout"):
        apply([E(name)], dest)
    assert (dest / "d/keep").exists()


@needs_root
def test_whiteouts_converted_for_overlay(dest):
    apply([E("a", "dir", mode=0o711), E("a/.wh.x"), E("o", "dir"), E("o/.wh..wh..opq"),
           E("o/new", data=b"n"), E("deep/er/.wh.y"), E("top/.wh..wh..opq"), E("f", data=b"1"),
           E(".wh.f")], dest, overlay=True)
    st = os.lstat(dest / "a/x")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == (0, 0)
    assert mode(dest / "a") == 0o711
    assert os.getxattr(dest / "o", "trusted.overlay.opaque") == b"y"
    assert os.listdir(dest / "o") == ["new"]
    assert stat.S_ISCHR(os.lstat(dest / "deep/er/y").st_mode)
    assert os.getxattr(dest / "top", "trusted.overlay.opaque") == b"y"
    assert (dest / "f").read_bytes() == b"1"  # the same layer's entry stays
    assert not [p for p in dest.rglob(".wh.*")]


@needs_root
def test_directory_replacing_a_whiteout_hides_the_lower_one(tmp_path):
    """.wh.x then x/ in one layer: the lower x is gone and a new, empty x takes its place --
    for overlay, an opaque directory; flattened, a fresh one."""
    layer = [E(".wh.x"), E("x", "dir"), E("x/new", data=b"n")]
    upper = tmp_path / "upper"
    upper.mkdir()
    apply(layer, upper, overlay=True)
    assert os.getxattr(upper / "x", "trusted.overlay.opaque") == b"y"
    flat = tmp_path / "flat"
    (flat / "x").mkdir(parents=True)
    (flat / "x/old").write_bytes(b"o")
    apply(layer, flat)
    assert os.listdir(flat / "x") == ["new"]


# -- hostile layers ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "../../../../../../tmp/x",
                                  "..", "./../b/neighbour"])
def test_dotdot_escape_rejected(arena, name):
    with pytest.raises(LayerError, match="escapes"):
        apply([E(name, data=b"pwned", mode=0o4777)], arena.dest)


def test_dotdot_that_stays_inside_is_normalised(arena):
    apply([E("a/b/../c", data=b"ok")], arena.dest)
    assert (arena.dest / "a/c").read_bytes() == b"ok"


def test_absolute_names_are_inside_dest(arena):
    apply([E(str(arena.sentinel), data=b"pwned", mode=0o4777),
           E(str(arena.outside / "new"), data=b"pwned")], arena.dest)
    assert arena.inside(str(arena.sentinel)).read_bytes() == b"pwned"
    assert arena.inside(str(arena.outside / "new")).exists()


@pytest.mark.parametrize("target", ["/", "../../..", "../../../../../../../..", "/.."])
def test_symlink_planted_then_written_through(arena, target):
    rel_outside = os.path.relpath(arena.outside, "/")
    owned = arena.host_path("/etc")  # evil/etc/passwd-owned, unique
    newdir = arena.host_path("/tmp")
    apply([E("evil", "symlink", link=target),
           E(f"evil/{rel_outside}/sentinel", data=b"pwned", mode=0o4777),
           E("evil/outside/sentinel", data=b"pwned"),
           E(f"evil{owned}", data=b"pwned"),
           E(f"evil{newdir}", "dir", mode=0o777)], arena.dest)
    assert os.readlink(arena.dest / "evil") == target
    assert arena.inside(str(arena.sentinel)).read_bytes() == b"pwned"
    assert arena.inside(owned).read_bytes() == b"pwned"
    assert arena.inside(newdir).is_dir()


def test_symlink_in_lower_layer_written_through(arena):
    os.symlink(arena.outside, arena.dest / "lowerlink")  # as a lower layer would leave it
    os.symlink("../../../outside", arena.dest / "rel")
    apply([E("lowerlink/sentinel", data=b"pwned", mode=0o4777),
           E("lowerlink/new", data=b"pwned"), E("lowerlink/keep/file", data=b"pwned"),
           E("rel/sentinel", data=b"pwned")], arena.dest)
    assert arena.inside(str(arena.sentinel)).read_bytes() == b"pwned"
    assert (arena.dest / "outside/sentinel").read_bytes() == b"pwned"  # ../.. stopped at root


def test_dangling_symlink_parent_created_inside(arena):
    name = arena.host_path("/")
    apply([E("dl", "symlink", link=f"{name}/deeper"), E("dl/file", data=b"x")], arena.dest)
    assert arena.inside(name).joinpath("deeper/file").read_bytes() == b"x"


def test_symlink_loop_parent_rejected(arena):
    with pytest.raises(LayerError):
        apply([E("l1", "symlink", link="l2"), E("l2", "symlink", link="l1"),
               E("l1/x", data=b"x")], arena.dest)


def test_hardlink_to_host_file_rejected(arena):
    with pytest.raises(LayerError, match="not in the layer"):
        apply([E("pw", "hardlink", link="/etc/passwd")], arena.dest)
    with pytest.raises(LayerError, match="not in the layer"):
        apply([E("pw", "hardlink", link=str(arena.sentinel))], arena.dest)
    with pytest.raises(LayerError, match="escapes"):
        apply([E("pw", "hardlink", link="../../outside/sentinel")], arena.dest)


def test_hardlink_to_absolute_name_links_the_dest_copy(arena):
    (arena.dest / "etc").mkdir()
    (arena.dest / "etc/passwd").write_bytes(b"container passwd\n")
    apply([E("pw", "hardlink", link="/etc/passwd")], arena.dest)
    assert os.lstat(arena.dest / "pw").st_ino == os.lstat(arena.dest / "etc/passwd").st_ino


def test_hardlink_through_symlinked_directory_stays_inside(arena):
    os.symlink(arena.outside, arena.dest / "dirlink")
    with pytest.raises(LayerError, match="not in the layer"):
        apply([E("x", "hardlink", link="dirlink/sentinel")], arena.dest)
    with pytest.raises(LayerError, match="not in the layer"):
        apply([E("evil", "symlink", link="/"),
               E("x", "hardlink", link=f"evil/{arena.sentinel}")], arena.dest)


def test_hardlink_to_a_symlink_pointing_out(arena):
    apply([E("sl", "symlink", link=str(arena.sentinel)),
           E("hl", "hardlink", link="sl"),
           E("hl", data=b"pwned", mode=0o4777),  # replaces the link, never writes through
           E("hl2", "hardlink", link="sl")], arena.dest)
    assert os.readlink(arena.dest / "hl2") == str(arena.sentinel)  # the symlink itself
    assert os.lstat(arena.dest / "hl2").st_ino == os.lstat(arena.dest / "sl").st_ino
    assert (arena.dest / "hl").read_bytes() == b"pwned"


@pytest.mark.parametrize("overlay", [False, pytest.param(True, marks=needs_root)])
def test_whiteout_through_symlinked_parent(arena, overlay):
    rel = os.path.relpath(arena.outside, "/")
    apply([E("wl", "symlink", link=str(arena.outside)), E("wl/.wh.sentinel"),
           E("wl/.wh.keep"), E("up", "symlink", link="../../../.."),
           E(f"up/{rel}/.wh.sentinel"), E("ol", "symlink", link=str(arena.outside)),
           E("ol/.wh..wh..opq")], arena.dest, overlay=overlay)


def test_whiteout_through_symlink_from_lower(arena):
    os.symlink(arena.outside, arena.dest / "wl")
    os.symlink(arena.outside, arena.dest / "victim")
    (arena.dest / "c").mkdir()
    os.symlink(arena.outside, arena.dest / "c/link")
    apply([E("wl/.wh.sentinel"), E("wl/.wh..wh..opq"), E(".wh.victim"),
           E("c/.wh..wh..opq")], arena.dest)
    assert not os.path.lexists(arena.dest / "victim")  # the symlink went, not its target
    assert os.listdir(arena.dest / "c") == []


def test_replacing_lower_directory_holding_a_symlink_out(arena):
    (arena.dest / "r").mkdir()
    os.symlink(arena.outside, arena.dest / "r/l")
    apply([E("r", data=b"file now")], arena.dest)
    assert (arena.dest / "r").read_bytes() == b"file now"


@needs_root
def test_metadata_never_applied_through_a_symlink(arena):
    for n in ("cl", "cl2", "cl3", "cl4", "cl5"):
        os.symlink(arena.sentinel, arena.dest / n)
    os.symlink(arena.outside, arena.dest / "cld")
    apply([E("cl", "dir", mode=0o777, uid=4242, gid=4242),
           E("cl2", "symlink", link=str(arena.sentinel), uid=4242, gid=4242),
           E("cl3", "fifo", mode=0o4777, uid=4242),
           E("cl4", data=b"pwned", mode=0o4777, uid=4242, xattrs={"user.x": b"1"}),
           E("cl5", "hardlink", link="cl4"),
           E("cld", "dir", mode=0o777, uid=4242, xattrs={"trusted.x": b"1"}),
           E("cld/sentinel", data=b"pwned", mode=0o4777, uid=4242)], arena.dest)
    assert (arena.dest / "cl").is_dir() and not (arena.dest / "cl").is_symlink()
    assert os.lstat(arena.dest / "cl2").st_uid == 4242  # the link itself
    assert stat.S_ISFIFO(os.lstat(arena.dest / "cl3").st_mode)
    assert (arena.dest / "cld/sentinel").read_bytes() == b"pwned"


def test_nul_in_name_rejected(arena):
    ti, data = E("x", data=b"x")
    ti.pax_headers = {"path": "evil\0name"}
    with pytest.raises(LayerError):
        apply([(ti, data)], arena.dest)


# -- the read-ahead thread -------------------------------------------------------------------

def test_prefetcher_reads_everything_in_order_whatever_the_sizes_asked():
    data = bytes(range(256)) * 5000
    ahead = Prefetcher(io.BytesIO(data), chunk=1000, depth=2)
    try:
        got = [ahead.read(7), ahead.read(3000), ahead.read(0), ahead.read(-1), ahead.read(10)]
    finally:
        ahead.close()
    assert b"".join(got) == data and got[-1] == b""
    assert ahead.count == len(data)


def test_prefetcher_raises_the_sources_error_to_the_reader():
    class Broken:
        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 2:
                raise EOFError("truncated gzip")
            return b"x" * n

    ahead = Prefetcher(Broken(), chunk=10)
    try:
        assert ahead.read(20) == b"x" * 10 and ahead.read(20) == b"x" * 10
        with pytest.raises(EOFError, match="truncated"):
            ahead.read(20)
    finally:
        ahead.close()


def test_prefetcher_close_stops_a_thread_blocked_on_a_full_queue():
    ahead = Prefetcher(io.BytesIO(b"y" * 100_000), chunk=10, depth=1)
    assert ahead.read(5) == b"yyyyy"
    ahead.close()  # the thread is waiting to queue more: it must end, not hang
    assert not ahead._thread.is_alive()
