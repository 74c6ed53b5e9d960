"""Write a layer tarball from a container's changes.

Two sources:
- an overlayfs upper directory (``lower_dirs=None``): everything in it is a change; overlay's
  whiteouts (0:0 character devices) become ``.wh.<name>`` entries and opaque directories
  (``trusted.overlay.opaque=y``) a ``.wh..wh..opq`` entry right after the directory;
- a complete tree compared with its lower layers (``lower_dirs`` given, topmost first, read
  with overlay's merge rules -- a single full tree, as the vfs snapshotter has, is the simple
  case): entries new or changed in type, mode, owner, size, mtime, rdev, link target or xattrs
  are written, with the directories above them; what the lowers have and the tree lacks
  becomes a whiteout.

The output is deterministic for the same tree: depth-first in byte order of names, PAX format,
numeric uid/gid with empty user and group names, mtime in whole seconds (as Docker) and no
atime/ctime, xattrs sorted; whiteout and opaque markers carry fixed metadata. Hard links
within the tree become tar hard links to the first path written. Sockets are skipped (tar
can't carry them). overlayfs bookkeeping (``trusted.overlay.*``) and host SELinux labels
(``security.selinux``) are not content and are left out.

``tree_changes`` walks the same way and lists what changed as `docker diff` does (Docker's
change kinds), for the vfs snapshotter's full trees.

The tree may be written by an untrusted container: it is walked with directory fds and
nothing in it is followed -- a symlink is archived as a symlink, never read through.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import BinaryIO

from bosun.image.layer import (OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, PAX_XATTR_PREFIX,
                               WHITEOUT_OPAQUE, WHITEOUT_PREFIX)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SKIP_XATTRS = ("security.selinux",)


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self._out.write(data)
        return len(data)


def write_diff(upper_dir: str, out: BinaryIO, lower_dirs: Sequence[str] | None = None) -> str:
    """Write the layer tar (uncompressed) of `upper_dir` to `out`; return its diff ID."""
    w = _HashingWriter(out)
    with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _Diff(tar, compare=lower_dirs is not None).run(upper_dir, list(lower_dirs or ()))
    return "sha256:" + w.sha.hexdigest()


CHANGE_MODIFY, CHANGE_ADD, CHANGE_DELETE = 0, 1, 2  # Docker's archive.ChangeType


def tree_changes(tree: str, lower_dirs: Sequence[str]) -> list[tuple[str, int]]:
    """What `tree` adds, modifies and deletes against its lowers (topmost first), as `docker
    diff` lists them: ("/path", CHANGE_*) in path order. Below an added directory everything
    is added; a deleted directory is one entry; a directory above a change counts as
    modified (Docker's ChangesDirs does the same)."""
    walk = _Changes()
    walk.run(tree, list(lower_dirs))
    return sorted(walk.out)


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs's whiteout: a character device 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _fdpath(fd: int, name: str) -> str:
    return f"/proc/self/fd/{fd}/{name}"


def _xattrs(dfd: int, name: str) -> dict[str, bytes]:
    """The entry's xattrs that are content, read without following it."""
    path = _fdpath(dfd, name)
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for k in sorted(keys):
        if k.startswith(OVERLAY_XATTR_PREFIX) or k in _SKIP_XATTRS:
            continue
        try:
            out[k] = os.getxattr(path, k, follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile, or not readable by us
    return out


def _is_opaque(dfd: int, name: str) -> bool:
    try:
        return os.getxattr(_fdpath(dfd, name), OVERLAY_OPAQUE_XATTR,
                           follow_symlinks=False) == b"y"
    except OSError:
        return False


def _marker(name: str) -> tarfile.TarInfo:
    """A whiteout or opaque marker: an empty file with fixed metadata, so that the same
    change gives the same bytes whichever snapshotter recorded it."""
    ti = tarfile.TarInfo(name)
    ti.mode = 0o600
    ti.uname = ti.gname = ""
    return ti


@dataclass
class _Dir:
    fd: int  # the directory in the tree
    rel: str  # its path in the tar, "" for the root, else ending with "/"
    lowers: list[int]  # fds of the lower directories merged under it, topmost first
    names: list[str]  # entries still to visit, largest first (popped from the end)
    deleted: set[str] = field(default_factory=set)  # names only the lowers have
    header: tarfile.TarInfo | None = None  # not written yet: only if something below changes

    def close(self) -> None:
        for fd in (self.fd, *self.lowers):
            os.close(fd)


class _Diff:
    def __init__(self, tar: tarfile.TarFile | None, compare: bool) -> None:
        self.tar = tar
        self.compare = compare
        self.kind = CHANGE_MODIFY  # of the entry being visited (for tree_changes)
        self.links: dict[tuple[int, int], str] = {}  # (dev, ino) -> first path written

    def run(self, upper: str, lowers: list[str]) -> None:
        fd = os.open(upper, _DIR_FLAGS)
        lfds: list[int] = []
        try:
            for d in lowers:
                lfds.append(os.open(d, _DIR_FLAGS))
        except BaseException:
            for x in (fd, *lfds):
                os.close(x)
            raise
        stack = [self.frame(fd, "", lfds)]
        try:
            while stack:
                top = stack[-1]
                if not top.names:
                    stack.pop().close()
                    continue
                child = self.visit(stack, top, top.names.pop())
                if child is not None:
                    stack.append(child)
        finally:
            for d in stack:
                d.close()

    def frame(self, fd: int, rel: str, lowers: list[int],
              header: tarfile.TarInfo | None = None) -> _Dir:
        names = set(os.listdir(fd))
        deleted: set[str] = set()
        if self.compare:
            deleted = self.lower_names(lowers) - names
            names |= deleted
        return _Dir(fd, rel, lowers, sorted(names, key=os.fsencode, reverse=True), deleted,
                    header)

    @staticmethod
    def lower_names(lowers: list[int]) -> set[str]:
        """Names in the merged view of the lower directories (whiteouts hide lower ones)."""
        seen: set[str] = set()
        visible: set[str] = set()
        for lfd in lowers:
            for n in os.listdir(lfd):
                if n in seen:
                    continue
                seen.add(n)
                if not is_whiteout(os.stat(n, dir_fd=lfd, follow_symlinks=False)):
                    visible.add(n)
        return visible

    @staticmethod
    def lower_entry(lowers: list[int], name: str) -> tuple[os.stat_result, int] | None:
        """The topmost lower's (stat, dir fd) for name; None if absent or whited out."""
        for lfd in lowers:
            try:
                st = os.stat(name, dir_fd=lfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            return None if is_whiteout(st) else (st, lfd)
        return None

    @staticmethod
    def lower_children(lowers: list[int], name: str) -> list[int]:
        """fds of the lower directories merged under `name` (overlay's rules)."""
        out: list[int] = []
        try:
            for lfd in lowers:
                try:
                    st = os.stat(name, dir_fd=lfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    break  # a whiteout or a non-directory hides everything below it
                out.append(os.open(name, _DIR_FLAGS, dir_fd=lfd))
                if _is_opaque(lfd, name):
                    break
        except BaseException:
            for fd in out:
                os.close(fd)
            raise
        return out

    # -- one entry -----------------------------------------------------------------------------
    def visit(self, stack: list[_Dir], d: _Dir, name: str) -> _Dir | None:
        path = d.rel + name
        if name in d.deleted:
            self.kind = CHANGE_DELETE
            self.emit(stack, _marker(d.rel + WHITEOUT_PREFIX + name))
            return None
        st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
        if not self.compare and is_whiteout(st):
            self.emit(stack, _marker(d.rel + WHITEOUT_PREFIX + name))
            return None
        if stat.S_ISSOCK(st.st_mode):
            return None
        xattrs = _xattrs(d.fd, name)
        lower = self.lower_entry(d.lowers, name) if self.compare else None
        self.kind = CHANGE_ADD if self.compare and lower is None else CHANGE_MODIFY
        changed = not self.compare or lower is None or not self.same(
            st, xattrs, d.fd, name, *lower)
        if stat.S_ISDIR(st.st_mode):
            header = self.header(path, st, xattrs)
            fd = os.open(name, _DIR_FLAGS, dir_fd=d.fd)
            try:
                lowers = (self.lower_children(d.lowers, name)
                          if lower is not None and stat.S_ISDIR(lower[0].st_mode) else [])
            except BaseException:
                os.close(fd)
                raise
            child = self.frame(fd, path + "/", lowers, None if changed else header)
            if changed:
                self.emit(stack, header)
                if not self.compare and _is_opaque(d.fd, name):
                    self.emit(stack, _marker(f"{path}/{WHITEOUT_OPAQUE}"))
            return child
        if changed:
            self.entry(stack, d, name, path, st, xattrs)
        return None

    @staticmethod
    def same(st: os.stat_result, xattrs: dict[str, bytes], dfd: int, name: str,
             lst: os.stat_result, lfd: int) -> bool:
        if (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns) != (
                lst.st_mode, lst.st_uid, lst.st_gid, lst.st_mtime_ns):
            return False
        if stat.S_ISREG(st.st_mode) and st.st_size != lst.st_size:
            return False
        if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and st.st_rdev != lst.st_rdev:
            return False
        if stat.S_ISLNK(st.st_mode) and (os.readlink(name, dir_fd=dfd)
                                         != os.readlink(name, dir_fd=lfd)):
            return False
        return xattrs == _xattrs(lfd, name)

    def header(self, path: str, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(path)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = st.st_mtime_ns // 1_000_000_000
        ti.type = tarfile.DIRTYPE if stat.S_ISDIR(st.st_mode) else tarfile.REGTYPE
        ti.pax_headers = {PAX_XATTR_PREFIX + k: v.decode("utf-8", "surrogateescape")
                          for k, v in xattrs.items()}
        return ti

    def entry(self, stack: list[_Dir], d: _Dir, name: str, path: str, st: os.stat_result,
              xattrs: dict[str, bytes]) -> None:
        ti = self.header(path, st, xattrs)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            ti.type = tarfile.LNKTYPE
            ti.linkname = self.links[key]
            self.emit(stack, ti)
            return
        if stat.S_ISREG(st.st_mode):
            # O_NOFOLLOW: the entry can't have become a symlink to a host file since the
            # stat; O_NONBLOCK: nor a fifo to hang on. The fstat must be the same file.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=d.fd)
            with open(fd, "rb", closefd=True) as f:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != key:
                    raise OSError(f"{path}: changed while being archived")
                ti = self.header(path, fst, xattrs)
                ti.size = fst.st_size
                self.emit(stack, ti, f)
        else:
            if stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(name, dir_fd=d.fd)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
            else:
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.emit(stack, ti)
        if st.st_nlink > 1:
            self.links[key] = path

    def emit(self, stack: list[_Dir], ti: tarfile.TarInfo, fileobj=None) -> None:
        """Write an entry, after the headers of the directories above it still unwritten."""
        for d in stack:
            if d.header is not None:
                self.write(d.header, None, CHANGE_MODIFY)  # unchanged, above a change
                d.header = None
        self.write(ti, fileobj, self.kind)

    def write(self, ti: tarfile.TarInfo, fileobj, kind: int) -> None:
        self.tar.addfile(ti, fileobj)


class _Changes(_Diff):
    """_Diff's walk of a full tree against its lowers, listing changes instead of a tar."""

    def __init__(self) -> None:
        super().__init__(None, compare=True)
        self.out: list[tuple[str, int]] = []

    def entry(self, stack: list[_Dir], d: _Dir, name: str, path: str, st: os.stat_result,
              xattrs: dict[str, bytes]) -> None:
        self.emit(stack, self.header(path, st, xattrs))  # the path is all we need: no reads

    def write(self, ti: tarfile.TarInfo, fileobj, kind: int) -> None:
        path = ti.name
        if kind == CHANGE_DELETE:  # the whiteout marker: .wh.<name>
            head, _, name = path.rpartition("/")
            path = (head + "/" if head else "") + name[len(WHITEOUT_PREFIX):]
        self.out.append(("/" + path, kind))
