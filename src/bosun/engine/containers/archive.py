"""docker cp and docker export: a container's files as tar streams, and tar streams into it.

Paths are resolved as the container sees them, on its root filesystem plus its bind mounts
and volumes (inspect's Mounts of type bind and volume) and the /etc files the engine
bind-mounts (hostname, hosts, resolv.conf). The walk is ours, one component at a time: `..`
never climbs above "/", a symlink's target is read and resolved from the container's root
(absolute) or its directory (relative), and a component that is a mount destination
continues on the mount's source. Every open below a root (the rootfs or a mount source) is an
openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS) of a path the walk already found symlink-free,
so a symlink planted by the container, even while we walk, can at worst fail the request --
never reach the host.

As in Docker: the last component of a path is not followed for stat and archive (unless the
path ends in "/" or "/."), and is followed for extraction; `..` in the request is cleaned
lexically first (Go's filepath.Join). Uploaded tars are unpacked with the image layer's
unpacker (bosun.image.layer), rooted at the destination directory (Docker chroots there), with
docker cp's rules on top: `.wh.` names are ordinary files, noOverwriteDirNonDir, and copyUIDGID.

A stopped container's snapshot is mounted for the duration and unmounted afterwards, unless it
was mounted already or the container started meanwhile. A volume mounted with a subpath is
walked from its subpath, opened beneath the volume (RESOLVE_BENEATH). Not resolved: tmpfs
mounts (as Docker, whose view gives each request an empty tmpfs) -- their paths fall through
to the rootfs; extraction does not cross mount points below the destination directory.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import stat as st_
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bosun import kernel as K
from bosun.engine.container import REMOVING
from bosun.engine.errors import Conflict, InvalidParameter, NotFound, SystemErr

_RESOLVE = K.RESOLVE_IN_ROOT | K.RESOLVE_NO_SYMLINKS | K.RESOLVE_NO_MAGICLINKS
_MAX_LINKS = 40  # symlinks followed in one resolution, as the kernel's limit
_READ_CHUNK = 1 << 20
_FLUSH_AT = 256 << 10  # bytes of tar gathered before a chunk goes out
_BLOCK = tarfile.BLOCKSIZE
_CAPABILITY_XATTR = "security.capability"  # the one xattr Docker's tar writer carries

# Go's os.FileMode type bits (io/fs), what X-Docker-Container-Path-Stat's "mode" holds.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20


# -- pure helpers ------------------------------------------------------------------------------

def go_file_mode(mode: int) -> int:
    """A stat st_mode as Go's os.FileMode (what Docker's API sends): permission bits, then
    Go's own bits for the type and for setuid/setgid/sticky."""
    out = mode & 0o777
    kind = st_.S_IFMT(mode)
    out |= {st_.S_IFDIR: GO_MODE_DIR, st_.S_IFLNK: GO_MODE_SYMLINK,
            st_.S_IFBLK: GO_MODE_DEVICE, st_.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
            st_.S_IFIFO: GO_MODE_NAMED_PIPE, st_.S_IFSOCK: GO_MODE_SOCKET}.get(kind, 0)
    if mode & st_.S_ISUID:
        out |= GO_MODE_SETUID
    if mode & st_.S_ISGID:
        out |= GO_MODE_SETGID
    if mode & st_.S_ISVTX:
        out |= GO_MODE_STICKY
    return out


def go_time(ns: int) -> str:
    """Unix nanoseconds as Go marshals a time.Time (RFC 3339, fraction without trailing
    zeros), in UTC."""
    sec, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else text + "Z"


def docker_abs_path(path: str) -> str:
    """The request's path as Docker takes it: filepath.Join("/", path) -- cleaned, `..`
    resolved lexically -- with a trailing "/" or "/." of the original kept
    (PreserveTrailingDotOrSeparator): they ask for what a directory symlink points to."""
    if "\0" in path:  # no file has one; os calls would raise ValueError (a 500)
        raise InvalidParameter(f"invalid path {path!r}: it contains a NUL byte")
    cleaned = posixpath.normpath("/" + path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if go_base(path) == "." and go_base(cleaned) != ".":
        cleaned += "." if cleaned.endswith("/") else "/."
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def go_base(path: str) -> str:
    """Go's filepath.Base: the last element, trailing slashes ignored; "/" for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def follows_last(abs_path: str) -> bool:
    """Whether the last component is resolved too: a trailing "/" or "/." makes lstat(2)
    follow a symlink there, as it does for Docker in the container's view."""
    return abs_path.endswith("/") or go_base(abs_path) == "."


def path_stat(name: str, st: os.stat_result, link_target: str = "") -> dict:
    """Docker's ContainerPathStat (the X-Docker-Container-Path-Stat header, base64 JSON)."""
    return {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": go_time(st.st_mtime_ns), "linkTarget": link_target}


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


# -- the container's mounts --------------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    dest: tuple[str, ...]  # components of the destination in the container
    source: str  # the host path (a directory or a file)
    rw: bool
    volume: bool  # one of the container's volumes/binds (the /etc files are not)


def container_mounts(doc: dict) -> list[Mount]:
    """The mounts a path can fall in: inspect's Mounts of type bind and volume, then the
    engine's /etc files (unless the user mounted something there)."""
    out: list[Mount] = []
    for m in doc.get("Mounts") or ():
        src = m.get("Source") or ""
        if m.get("Type") in ("bind", "volume") and src.startswith("/"):
            out.append(Mount(tuple(_split(m.get("Destination") or "")), src,
                             bool(m.get("RW", True)), True))
    taken = {m.dest for m in out}
    for key, dest in (("HostnamePath", "etc/hostname"), ("HostsPath", "etc/hosts"),
                      ("ResolvConfPath", "etc/resolv.conf")):
        src = doc.get(key) or ""
        if src and tuple(_split(dest)) not in taken:
            writable = not (doc.get("HostConfig") or {}).get("ReadonlyRootfs")
            out.append(Mount(tuple(_split(dest)), src, writable, False))
    return [m for m in out if m.dest]


# -- resolving inside the container ------------------------------------------------------------

Handle = tuple[int, str]  # (directory fd, name in it) or (fd of the entry itself, "")


class ContainerFS:
    """A container's filesystem tree: the rootfs with the given mounts on it. Holds fds;
    close() when done."""

    def __init__(self, rootfs: str, mounts: Iterable[Mount] = ()) -> None:
        self.root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.mounts = sorted(mounts, key=lambda m: len(m.dest), reverse=True)  # deepest first
        self._mount_fds: dict[tuple[str, ...], int] = {}

    def close(self) -> None:
        for fd in (self.root, *self._mount_fds.values()):
            os.close(fd)
        self._mount_fds.clear()
        self.root = -1

    def __enter__(self) -> ContainerFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- where a resolved path lives --------------------------------------------------------------
    def mount_of(self, parts: list[str]) -> Mount | None:
        for m in self.mounts:
            if tuple(parts[:len(m.dest)]) == m.dest:
                return m
        return None

    def is_mount_point(self, parts: list[str]) -> bool:
        return any(m.dest == tuple(parts) for m in self.mounts)

    def child_mounts(self, parts: list[str]) -> set[str]:
        """Names in directory `parts` that are mount points (created at start if missing)."""
        n = len(parts)
        return {m.dest[n] for m in self.mounts
                if len(m.dest) == n + 1 and m.dest[:n] == tuple(parts)}

    def _mount_fd(self, m: Mount) -> int:
        fd = self._mount_fds.get(m.dest)
        if fd is None:
            # The source is the user's own host path: followed, as mount(2) follows it.
            fd = os.open(m.source, os.O_PATH | os.O_CLOEXEC)
            self._mount_fds[m.dest] = fd
        return fd

    def handle(self, parts: list[str]) -> Handle:
        """A handle of the symlink-free container path `parts` (the caller closes its fd)."""
        m = self.mount_of(parts)
        base, rel = (self.root, parts) if m is None else (self._mount_fd(m), parts[len(m.dest):])
        if not rel:
            return os.dup(base), ""
        for _ in range(16):
            try:
                return K.LINUX.openat2(base, "/".join(rel[:-1]) or ".",
                                       os.O_PATH | os.O_DIRECTORY, _RESOLVE), rel[-1]
            except BlockingIOError:  # EAGAIN: a rename raced with the lookup; try again
                continue
        raise OSError(errno.EAGAIN, "path resolution keeps racing with renames")

    def lstat(self, parts: list[str]) -> os.stat_result:
        fd, name = self.handle(parts)
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False) if name else os.fstat(fd)
        finally:
            os.close(fd)

    def readlink(self, parts: list[str]) -> str:
        fd, name = self.handle(parts)
        try:
            return os.readlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def resolve(self, path: str, follow_last: bool, lenient: bool = False) -> list[str]:
        """The components of `path` with every symlink on the way resolved in the container
        (the last one only with follow_last). Raises FileNotFoundError or NotADirectoryError
        for a path that does not exist -- unless `lenient`, which returns what could be
        resolved with the rest appended (Docker's FollowSymlinkInScope on a broken link)."""
        done: list[str] = []
        todo = _split(path)[::-1]  # a stack: the next component is at the end
        links = 0
        missing = False
        while todo:
            comp = todo.pop()
            if comp == ".":
                continue
            if comp == "..":
                if done:
                    done.pop()
                continue
            cand = done + [comp]
            if missing or (not todo and not follow_last):
                done = cand
                continue
            try:
                st = self.lstat(cand)
            except (FileNotFoundError, NotADirectoryError):
                if not lenient:
                    raise
                missing, done = True, cand
                continue
            if st_.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = self.readlink(cand)
                if target.startswith("/"):
                    done = []
                todo.extend(reversed(_split(target)))
                continue
            if todo and not st_.S_ISDIR(st.st_mode):
                if not lenient:
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                missing = True
            done = cand
        return done


def _open(h: Handle, flags: int) -> int:
    """Open the entry behind a handle itself, never following a symlink in its place."""
    fd, name = h
    if name:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


def _lstat(h: Handle) -> os.stat_result:
    fd, name = h
    return os.stat(name, dir_fd=fd, follow_symlinks=False) if name else os.fstat(fd)


# -- the container's rootfs, mounted for the duration ------------------------------------------

_borrow_lock = threading.Lock()
_borrowed: dict[str, list] = {}  # container id → [requests using it, path] of a mount we made


def _acquire_rootfs(engine, c) -> tuple[str, bool]:
    """(the rootfs path, whether we mounted it and must give it back)."""
    from bosun.image.snapshot import is_mounted

    # c.lock: start and exit (un)mount under it, so they don't interleave with us.
    with c.lock:
        if c.removed:
            raise NotFound(f"No such container: {c.id}")
        if c.status == REMOVING:
            raise Conflict(f"container {c.id} is being removed")
        with _borrow_lock:
            held = _borrowed.get(c.id)
            if held is not None:
                held[0] += 1
                return held[1], True
            path = c.meta.get("rootfs")
            if path and is_mounted(path):
                return path, False
            path = engine.images.snapshots.mount_container(c.id, c.meta.get("chain") or [])
            _borrowed[c.id] = [1, path]
            return path, True


def _release_rootfs(engine, c, borrowed: bool) -> None:
    if not borrowed:
        return
    with c.lock:
        with _borrow_lock:
            held = _borrowed.get(c.id)
            if held is not None and held[0] > 1:
                held[0] -= 1
                return
            _borrowed.pop(c.id, None)
        # Started meanwhile (its rootfs is in use) or removed (unmounted with it): leave it.
        if c.running or c.removed:
            return
        try:
            engine.images.snapshots.unmount_container(c.id)
        except Exception:  # noqa: BLE001  (a leftover mount goes with the next exit or rm)
            pass


@contextmanager
def container_fs(engine, c, *, mounts: bool = True) -> Iterator[ContainerFS]:
    """The container's filesystem (with its bind mounts unless mounts=False) for the block."""
    path, borrowed = _acquire_rootfs(engine, c)
    try:
        fs = ContainerFS(path, container_mounts(c.doc) if mounts else ())
        try:
            if mounts:
                _open_subpaths(engine, c, fs)
            yield fs
        finally:
            fs.close()
    finally:
        _release_rootfs(engine, c, borrowed)


def _open_subpaths(engine, c, fs: ContainerFS) -> None:
    """A volume mounted with a subpath shows only that directory: its mount starts from the
    subpath, opened beneath the volume as the start did (never a path string to follow)."""
    for m in c.meta.get("mounts") or ():
        if m.get("Type") == "volume" and m.get("Subpath") and m.get("Name"):
            dest = tuple(_split(m.get("Destination") or ""))
            if dest in fs._mount_fds or not any(x.dest == dest for x in fs.mounts):
                continue
            fs._mount_fds[dest] = engine.volumes.open_subpath(m["Name"], m["Subpath"])


def _not_found(path: str, ref: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {ref}")


# -- stat --------------------------------------------------------------------------------------

def _stat(fs: ContainerFS, path: str, ref: str) -> tuple[dict, list[str]]:
    abs_path = docker_abs_path(path)
    follow = follows_last(abs_path)
    try:
        parts = fs.resolve(abs_path, follow)
        st = fs.lstat(parts)
        if follow and not st_.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")  # "file/", as lstat(2)
    except FileNotFoundError:
        raise _not_found(path, ref) from None
    except NotADirectoryError:
        # Not a 404: the CLI would take the path for a new name and write over the file.
        raise InvalidParameter(f"lstat {abs_path}: not a directory") from None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:  # the request's fault, not the daemon's
            raise InvalidParameter(f"lstat {abs_path}: {e.strerror}") from None
        raise SystemErr(f"lstat {abs_path}: {e.strerror}") from None
    target = ""
    if st_.S_ISLNK(st.st_mode):
        # Docker's linkTarget: the link resolved all the way, as far as it goes if broken.
        target = "/" + "/".join(fs.resolve("/".join(parts), True, lenient=True))
    return path_stat(go_base(abs_path), st, target), parts


def stat_path(engine, c, path: str, *, ref: str | None = None) -> dict:
    """HEAD /containers/{id}/archive: Docker's ContainerPathStat of `path` in the container.
    `ref` is the container as the client named it (Docker's 404 message repeats it)."""
    with container_fs(engine, c) as fs:
        return _stat(fs, path, ref or c.name)[0]


# -- tar writing -------------------------------------------------------------------------------

def _tar_header(arcname: str, st: os.stat_result, *, kind: bytes, size: int = 0,
                linkname: str = "", xattrs: dict[str, bytes] | None = None) -> bytes:
    ti = tarfile.TarInfo(arcname)
    ti.type = kind
    ti.mode = st_.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = st.st_mtime_ns // 1_000_000_000  # whole seconds, as Docker writes them
    ti.size = size
    ti.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if xattrs:
        ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                          for k, v in xattrs.items()}
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _capability(fd: int) -> dict[str, bytes]:
    try:
        return {_CAPABILITY_XATTR: os.getxattr(fd, _CAPABILITY_XATTR)}
    except OSError:
        return {}


@dataclass
class _Frame:
    fd: int  # the directory, open for listing
    names: list[str]  # entries still to visit, last first
    arc: str  # its name in the tar, with a trailing "/" (or "" for an unnamed root)
    parts: list[str]  # its container path


class _TarWriter:
    """A tree as tar chunks, streamed: directories walked with fds, nothing followed, mount
    points entered (cross_mounts) on their sources. Entries in Go's order (sorted names),
    hard links within the tar, sockets skipped (as Docker), regular files read through an
    O_NOFOLLOW | O_NONBLOCK fd and checked to be what was listed."""

    def __init__(self, fs: ContainerFS, cross_mounts: bool) -> None:
        self.fs = fs
        self.cross_mounts = cross_mounts
        self.links: dict[tuple[int, int], str] = {}
        self.buf = bytearray()

    def flush(self, force: bool = False) -> Iterator[bytes]:
        if self.buf and (force or len(self.buf) >= _FLUSH_AT):
            out, self.buf = bytes(self.buf), bytearray()
            yield out

    def run(self, parts: list[str], arcname: str, include_root: bool = True) -> Iterator[bytes]:
        """The tar of the entry at `parts` named `arcname` (for a directory, its tree);
        include_root=False leaves the top directory's own entry out (docker export)."""
        stack: list[_Frame] = []
        try:
            h = self.fs.handle(parts)
            try:
                yield from self.entry(stack, h, arcname, parts, include_root)
            finally:
                os.close(h[0])
            while stack:
                top = stack[-1]
                if not top.names:
                    os.close(stack.pop().fd)
                    continue
                name = top.names.pop()
                child = top.parts + [name]
                if self.cross_mounts and self.fs.is_mount_point(child):
                    h = self.fs.handle(child)
                    try:
                        yield from self.entry(stack, h, top.arc + name, child, True)
                    finally:
                        os.close(h[0])
                else:
                    yield from self.entry(stack, (top.fd, name), top.arc + name, child, True)
            yield from self.flush(force=True)
            yield b"\0" * (2 * _BLOCK)
        finally:
            for f in stack:
                os.close(f.fd)

    def entry(self, stack: list[_Frame], h: Handle, arc: str, parts: list[str],
              emit: bool) -> Iterator[bytes]:
        try:
            st = _lstat(h)
        except FileNotFoundError:
            return  # removed since it was listed
        mode = st.st_mode
        if st_.S_ISDIR(mode):
            fd = _open(h, os.O_RDONLY | os.O_DIRECTORY)
            try:
                names = set(os.listdir(fd))
                if self.cross_mounts:
                    names |= self.fs.child_mounts(parts)
                names = sorted(names, key=os.fsencode, reverse=True)
            except BaseException:
                os.close(fd)
                raise
            prefix = arc + "/" if arc and not arc.endswith("/") else arc
            stack.append(_Frame(fd, names, prefix, parts))
            if emit:
                self.buf += _tar_header(prefix, st, kind=tarfile.DIRTYPE)
        elif st_.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                self.buf += _tar_header(arc, st, kind=tarfile.LNKTYPE,
                                        linkname=self.links[key])
            else:
                yield from self.regular(h, arc, st)
                if st.st_nlink > 1:
                    self.links[key] = arc
        elif st_.S_ISLNK(mode):
            fd, name = h
            self.buf += _tar_header(arc, st, kind=tarfile.SYMTYPE,
                                    linkname=os.readlink(name, dir_fd=fd))
        elif st_.S_ISFIFO(mode):
            self.buf += _tar_header(arc, st, kind=tarfile.FIFOTYPE)
        elif st_.S_ISCHR(mode) or st_.S_ISBLK(mode):
            self.buf += _tar_header(arc, st, kind=tarfile.CHRTYPE if st_.S_ISCHR(mode)
                                    else tarfile.BLKTYPE)
        # sockets: tar cannot carry them; Docker skips them too
        yield from self.flush()

    def regular(self, h: Handle, arc: str, st: os.stat_result) -> Iterator[bytes]:
        fd = _open(h, os.O_RDONLY | os.O_NONBLOCK)
        try:
            fst = os.fstat(fd)
            if not st_.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev,
                                                                           st.st_ino):
                raise OSError(errno.EAGAIN, f"{arc}: changed while being archived")
            size = fst.st_size
            self.buf += _tar_header(arc, fst, kind=tarfile.REGTYPE, size=size,
                                    xattrs=_capability(fd))
            left = size
            while left:
                yield from self.flush()
                data = os.read(fd, min(left, _READ_CHUNK))
                if not data:
                    # Shrunk while we read (the container is live): pad to the size the
                    # header promised, so the tar stays readable.
                    data = b"\0" * left
                self.buf += data
                left -= len(data)
            self.buf += b"\0" * (-size % _BLOCK)
        finally:
            os.close(fd)


class _Closing:
    """An iterator that runs `cleanup` once: at its end, on an error, or on close()."""

    def __init__(self, it: Iterator[bytes], cleanup: Callable[[], None]) -> None:
        self._it = it
        self._cleanup: Callable[[], None] | None = cleanup

    def __iter__(self) -> _Closing:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._it)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            try:
                close = getattr(self._it, "close", None)
                if close is not None:
                    close()
            finally:
                cleanup()


def _streaming(engine, c, mounts: bool,
               make: Callable[[ContainerFS], tuple[object, Iterator[bytes]]]):
    """Open the container's filesystem, let `make` check what it must and build a tar
    iterator; the filesystem stays open (and mounted) until the iterator is done or closed."""
    cm = container_fs(engine, c, mounts=mounts)
    fs = cm.__enter__()
    try:
        result, it = make(fs)
    except BaseException as e:
        cm.__exit__(type(e), e, e.__traceback__)
        raise
    return result, _Closing(it, lambda: cm.__exit__(None, None, None))


# -- docker cp out -----------------------------------------------------------------------------

def get_archive(engine, c, path: str, *, ref: str | None = None
                ) -> tuple[dict, Iterator[bytes]]:
    """GET /containers/{id}/archive: (the path's stat, the tar of it). The tar's top entry is
    named after the path's last component ("." for "dir/."), as Docker's; a symlink at the
    end is archived as a symlink. Errors come before the first byte; call the iterator's
    close() if it is not read to the end."""
    def make(fs: ContainerFS):
        stat, parts = _stat(fs, path, ref or c.name)
        arc = stat["name"] if stat["name"] != "/" else "."
        return stat, _TarWriter(fs, cross_mounts=True).run(parts, arc)

    stat, it = _streaming(engine, c, True, make)
    engine.emit(c, "archive-path")
    return stat, it


def export(engine, c) -> Iterator[bytes]:
    """GET /containers/{id}/export: the container's root filesystem as a tar (no volumes or
    bind mounts, as Docker's), streamed."""
    def make(fs: ContainerFS):
        return None, _TarWriter(fs, cross_mounts=False).run([], "", include_root=False)

    _, it = _streaming(engine, c, False, make)
    engine.emit(c, "export")
    return it


# -- docker cp in ------------------------------------------------------------------------------

class _ChunkReader:
    """read() over an iterable of byte chunks (the request body as it arrives)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = self._buf + b"".join(self._it)
            self._buf = b""
            return data
        while len(self._buf) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data


@functools.cache
def _unpacker_class():
    """The image layer's unpacker with docker cp's rules (see the module docstring).

    Built on first use from layer's private `_Unpacker`: layer.apply_layer has no hook for
    these rules yet."""
    from bosun.image import layer

    class CopyUnpacker(layer._Unpacker):
        def __init__(self, root_fd: int, dest: str, owner: tuple[int, int] | None,
                     no_overwrite_dir_non_dir: bool) -> None:
            super().__init__(root_fd, overlay=False)
            self.dest = dest
            self.owner = owner
            self.no_overwrite = no_overwrite_dir_non_dir
            self._tar: tarfile.TarFile | None = None

        def entry(self, tar, m) -> None:
            self._tar = tar
            super().entry(tar, m)

        def whiteout(self, m, parent: str, name: str) -> None:
            # docker cp unpacks without whiteout handling: a .wh. name is just a name.
            pfd = self.mkdir_all(parent)
            try:
                self.create(self._tar, m, pfd, name, f"{parent}/{name}" if parent else name)
            finally:
                os.close(pfd)

        def create(self, tar, m, pfd: int, name: str, rel: str) -> None:
            if self.no_overwrite:
                self.check_overwrite(m, pfd, name, rel)
            super().create(tar, m, pfd, name, rel)

        def check_overwrite(self, m, pfd: int, name: str, rel: str) -> None:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                return
            where = posixpath.join(self.dest, rel)
            if st_.S_ISDIR(st.st_mode) and not m.isdir():
                raise layer.LayerError(f'cannot overwrite directory "{where}" with '
                                       f'non-directory "{self.dest}"')
            if not st_.S_ISDIR(st.st_mode) and m.isdir():
                raise layer.LayerError(f'cannot overwrite non-directory "{where}" with '
                                       f'directory "{self.dest}"')

        def chown(self, m, do) -> None:
            if self.owner is not None:
                m.uid, m.gid = self.owner  # `do` reads them when called
            super().chown(m, do)

    return CopyUnpacker


def _untar(stream, dest_fd: int, dest: str, owner: tuple[int, int] | None,
           no_overwrite_dir_non_dir: bool) -> None:
    import gzip

    from bosun.image import layer

    reader = stream if hasattr(stream, "read") else _ChunkReader(stream)
    try:
        # Docker's Untar takes what its DecompressStream knows: gzip, bzip2, xz, zstd.
        src, _ = layer.open_decompressed(reader)
        unpacker = _unpacker_class()(dest_fd, dest, owner, no_overwrite_dir_non_dir)
        unpacker.run(layer.HashingReader(src))
    except layer.LayerError as e:
        raise InvalidParameter(str(e)) from None
    except (*layer.stream_errors(), gzip.BadGzipFile) as e:
        raise InvalidParameter(f"invalid tar stream: {e}") from None


def put_archive(engine, c, path: str, stream: Iterable[bytes], *,
                no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False,
                ref: str | None = None) -> None:
    """PUT /containers/{id}/archive: unpack the (untrusted, maybe compressed) tar `stream` --
    byte chunks or a file object -- into the directory `path` of the container."""
    ref = ref or c.name
    with container_fs(engine, c) as fs:
        try:
            parts = fs.resolve(docker_abs_path(path), follow_last=True)
            st = fs.lstat(parts)
        except FileNotFoundError:
            raise _not_found(path, ref) from None
        except NotADirectoryError:
            st = None
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise
            raise InvalidParameter(f"{path}: {e.strerror}") from None
        if st is None or not st_.S_ISDIR(st.st_mode):
            raise InvalidParameter("extraction point is not a directory")
        m = fs.mount_of(parts)
        if m is not None and m.volume:
            if not m.rw:
                raise InvalidParameter("mounted volume is marked read-only")
        elif (c.doc.get("HostConfig") or {}).get("ReadonlyRootfs"):
            raise InvalidParameter("container rootfs is marked read-only")
        owner = _copy_owner(fs, c) if copy_uid_gid else None
        h = fs.handle(parts)
        try:
            dest_fd = _open(h, os.O_PATH | os.O_DIRECTORY)
        finally:
            os.close(h[0])
        try:
            _untar(stream, dest_fd, "/" + "/".join(parts), owner, no_overwrite_dir_non_dir)
        except FileNotFoundError:
            raise _not_found(path, ref) from None
        finally:
            os.close(dest_fd)
    engine.emit(c, "extract-to-dir")


def _copy_owner(fs: ContainerFS, c) -> tuple[int, int] | None:
    """copyUIDGID: the container's user (looked up in its own /etc/passwd), or None -- the
    tar's owners -- when it runs as the image's default user, as Docker does."""
    from bosun.engine.createconfig import resolve_user

    user = (c.doc.get("Config") or {}).get("User") or ""
    if not user:
        return None
    uid, gid, _ = resolve_user(fs.root, user)
    return uid, gid
