"""Copy-up: a new, empty volume mounted over a directory of the image gets that directory's
content (Docker's copyExistingContents), with owners, modes and times.

Both sides are walked by directory fd with O_NOFOLLOW: a symlink in the image is copied as a
symlink, never followed, so the copy reads only below the source and writes only below the
volume, whatever the image holds."""

from __future__ import annotations

import os
import stat

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_empty(path: str) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def copy_up(src_fd: int, dst_path: str) -> bool:
    """Copy the directory `src_fd` (an fd, left open) into the empty directory dst_path,
    and give dst_path the source's owner and mode. False if there was nothing to do (the
    volume is not empty)."""
    if not is_empty(dst_path):
        return False
    src = os.open(".", _DIR, dir_fd=src_fd)
    dst = os.open(dst_path, _DIR)
    try:
        _copy_dir(src, dst)
        _meta(os.fstat(src), dst)
    finally:
        os.close(src)
        os.close(dst)
    return True


def _meta(st: os.stat_result, fd: int) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_dir(src: int, dst: int) -> None:
    for name in os.listdir(src):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            s = os.open(name, _DIR, dir_fd=src)
            d = os.open(name, _DIR, dir_fd=dst)
            try:
                _copy_dir(s, d)
                _meta(st, d)
            finally:
                os.close(s)
                os.close(d)
            continue
        if stat.S_ISREG(mode):
            _copy_file(src, dst, name, st)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(name, mode, st.st_rdev, dir_fd=dst)
        else:
            continue  # sockets are not content
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        if not stat.S_ISLNK(mode):
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def _copy_file(src: int, dst: int, name: str, st: os.stat_result) -> None:
    s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
    try:
        d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600, dir_fd=dst)
        try:
            left = st.st_size
            while left > 0:
                try:
                    n = os.copy_file_range(s, d, left)
                except OSError:  # a pair of file systems the kernel cannot do: read/write
                    n = 0
                if n <= 0:
                    while chunk := os.read(s, 1 << 20):
                        os.write(d, chunk)
                    break
                left -= n
        finally:
            os.close(d)
    finally:
        os.close(s)
