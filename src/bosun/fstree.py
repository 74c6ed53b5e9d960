"""Removing directory trees whose shape someone else chose (a container's writable layer, a
volume, an image layer), however deep.

shutil.rmtree recurses once per level (Python 3.11), so a tree a few thousand directories
deep — one `mkdir -p` or one layer tarball away — raised RecursionError and was left behind.
`rmtree` here walks with one open directory at a time: it goes down by openat(O_NOFOLLOW) and
back up through "..", checking that ".." is still the directory it came from, so a symlink or
a directory moved meanwhile never takes it outside the tree.
"""

from __future__ import annotations

import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _clear(fd: int) -> list[str]:
    """Unlink everything but directories in fd; the directories' names."""
    subdirs = []
    with os.scandir(fd) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            subdirs.append(entry.name)
            continue
        try:
            os.unlink(entry.name, dir_fd=fd)
        except FileNotFoundError:
            pass
    return subdirs


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def rmtree(path: str, dir_fd: int | None = None) -> None:
    """Remove the directory `path` (relative to dir_fd if given) and all below it, never
    following a symlink. FileNotFoundError if it is missing, as shutil.rmtree."""
    st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        # per level above fd: (its identity, its subdirectories still to do, fd's name in it)
        above: list[tuple[tuple[int, int], list[str], str]] = []
        pending = _clear(fd)
        while True:
            if pending:
                name = pending.pop()
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                above.append((_ident(fd), pending, name))
                os.close(fd)
                fd = child
                pending = _clear(fd)
                continue
            if not above:
                break
            ident, pending, name = above.pop()
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            if _ident(fd) != ident:
                raise OSError(errno.ESTALE, f"a directory under {path} moved while it was "
                                            "being removed")
            try:
                os.rmdir(name, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
    os.rmdir(path, dir_fd=dir_fd)
