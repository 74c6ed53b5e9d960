"""Snapshotters: where image layers are unpacked (keyed by chain ID) and where containers get
their root filesystem (keyed by a container key) -- what graph drivers are to Docker.

``OverlaySnapshotter(root)``, like Docker's overlay2::

    root/overlay/<id>/diff        the layer's own content, overlay-format whiteouts
    root/overlay/<id>/link        its short name ...
    root/overlay/l/<short>        ... a symlink to ../<id>/diff, so a mount's lowerdir lists
                                  "l/<short>" per layer: 128 layers stay far under the page
                                  that mount(2) copies its options into
    root/overlay/<id>/parent      the parent's chain ID (absent for a base layer)
    root/overlay/containers/<key>/{upper,work,merged,layers}

``VfsSnapshotter(root)``, the fallback where overlayfs is missing: each layer is a full copy
of its parent with the layer applied on top (root/vfs/<id>/rootfs), and a container gets a
copy of its top layer (root/vfs/containers/<key>/rootfs).

<id> is the chain ID's hex digest (``<algorithm>-<hex>`` for algorithms other than sha256).
Every operation is atomic and idempotent: a layer is prepared in ``.tmp-<id>`` and renamed
into place by commit, a container's directory is built aside and renamed, removal renames
away first and tolerates what is already gone. Reference counting and serialising concurrent
calls for the same chain ID or key are the metadata store's job.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import BinaryIO

from bosun import fstree
from bosun import kernel as K
from bosun.image.diff import is_whiteout, write_diff
from bosun.image.layer import OVERLAY_OPAQUE_XATTR, LayerError, LayerStats, apply_layer

_DIGEST = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([A-Za-z0-9=_-]{32,})")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_TMP = ".tmp-"  # prepared layers and containers being built
_TRASH = ".del-"  # being removed
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CLONE_FS = 0x00000200
_CHUNK = 1 << 20


class SnapshotError(Exception):
    pass


class SnapshotExists(SnapshotError):
    pass


class SnapshotNotFound(SnapshotError):
    pass


def _layer_name(chain_id: str) -> str:
    m = _DIGEST.fullmatch(chain_id) if isinstance(chain_id, str) else None
    if m is None:
        raise SnapshotError(f"invalid chain ID {chain_id!r}")
    algo, encoded = m.groups()
    return encoded if algo == "sha256" else f"{algo}-{encoded}"


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise SnapshotError(f"invalid container key {key!r}")
    return key


def _rmtree(path: str) -> None:
    try:
        fstree.rmtree(path)  # layers and upper dirs may be any depth
    except FileNotFoundError:
        pass


def _remove_aside(path: str, parent: str) -> None:
    """Remove a directory tree atomically as far as readers can tell: rename it away, then
    delete. Fine if it is already gone."""
    trash = os.path.join(parent, f"{_TRASH}{secrets.token_hex(8)}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    fstree.rmtree(trash)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# -- mounts ------------------------------------------------------------------------------------

def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points() -> list[str]:
    """Mount points in this mount namespace, as /proc/self/mountinfo lists them."""
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f]


def is_mounted(path: str) -> bool:
    return os.path.realpath(path) in mount_points()


def overlay_options() -> list[str]:
    """Options that keep every upper dir a self-contained diff: no redirects to lower
    directories, no metadata-only copy-ups; no index, so layers can be shared freely. Each
    only where the kernel knows it."""
    params = "/sys/module/overlay/parameters"
    return [f"{p}=off" for p in ("index", "redirect_dir", "metacopy")
            if os.path.exists(f"{params}/{p}")]


def mount_overlay(cwd: str, data: str, target: str) -> None:
    """mount(2) an overlay whose options name paths relative to `cwd`.

    A short-lived thread with a working directory of its own (unshare(CLONE_FS)) does it, so
    the relative paths resolve there while the process's cwd -- shared by all its threads --
    never changes."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            K.LINUX.unshare(_CLONE_FS)
            os.chdir(cwd)
            K.LINUX.mount("overlay", target, "overlay", 0, data)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    t = threading.Thread(target=run, name="bosun-overlay-mount", daemon=True)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def unmount_all(path: str) -> None:
    """Unmount everything stacked on `path` (lazily: a busy mount still leaves the tree)."""
    real = os.path.realpath(path)
    for _ in range(64):
        if real not in mount_points():
            return
        K.LINUX.umount2(real, K.MNT_DETACH)
    raise SnapshotError(f"{path}: still mounted")


def overlay_supported(root: str) -> bool:
    """Whether overlayfs works on the filesystem of `root`, with the whiteouts and opaque
    directories snapshots rely on: probed with a tiny overlay in a temporary directory."""
    os.makedirs(root, exist_ok=True)
    probe = tempfile.mkdtemp(prefix=".overlay-probe-", dir=root)
    try:
        for d in ("lower", "lower/d", "upper", "work", "merged"):
            os.mkdir(os.path.join(probe, d))
        for f in ("lower/f", "lower/d/x"):
            open(os.path.join(probe, f), "w").close()
        data = ",".join(overlay_options() + ["lowerdir=lower", "upperdir=upper",
                                             "workdir=work"])
        merged = os.path.join(probe, "merged")
        try:
            mount_overlay(probe, data, merged)
        except OSError:
            return False
        try:
            os.unlink(os.path.join(merged, "f"))
            shutil.rmtree(os.path.join(merged, "d"))
            os.mkdir(os.path.join(merged, "d"))
            upper = os.path.join(probe, "upper")
            return (is_whiteout(os.lstat(os.path.join(upper, "f")))
                    and os.getxattr(os.path.join(upper, "d"), OVERLAY_OPAQUE_XATTR) == b"y")
        except OSError:
            return False
        finally:
            unmount_all(merged)
    finally:
        shutil.rmtree(probe, ignore_errors=True)


# -- copying (vfs) -----------------------------------------------------------------------------

def _copy_xattrs(src, dst, follow: bool = True) -> None:
    """src and dst are both fds (follow=True) or both paths of the entries themselves."""
    for k in os.listxattr(src, follow_symlinks=follow):
        os.setxattr(dst, k, os.getxattr(src, k, follow_symlinks=follow), follow_symlinks=follow)


def _copy_data(src: int, dst: int) -> None:
    try:
        while os.copy_file_range(src, dst, 64 * _CHUNK):
            pass
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(src, 0, os.SEEK_SET)
    os.lseek(dst, 0, os.SEEK_SET)
    os.ftruncate(dst, 0)
    while chunk := os.read(src, _CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


def _copy_entry(s: int, d: int, name: str, st: os.stat_result) -> None:
    """Copy non-directory `name` from dir fd s to dir fd d. Owner before mode (chown clears
    setuid) and xattrs after both (chown clears security.capability)."""
    times = (st.st_atime_ns, st.st_mtime_ns)
    if stat.S_ISREG(st.st_mode):
        i = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=s)
        try:
            o = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                        | os.O_CLOEXEC, 0o600, dir_fd=d)
            try:
                _copy_data(i, o)
                os.fchown(o, st.st_uid, st.st_gid)
                os.fchmod(o, stat.S_IMODE(st.st_mode))
                _copy_xattrs(i, o)
                os.utime(o, ns=times)
            finally:
                os.close(o)
        finally:
            os.close(i)
        return
    src, dst = f"/proc/self/fd/{s}/{name}", f"/proc/self/fd/{d}/{name}"
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=s), name, dir_fd=d)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=d, follow_symlinks=False)
    else:  # device, fifo, socket
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=d)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=d, follow_symlinks=False)
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
        try:
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode))
        finally:
            os.close(fd)
    _copy_xattrs(src, dst, follow=False)
    os.utime(name, ns=times, dir_fd=d, follow_symlinks=False)


def copy_tree(src: str, dst: str) -> None:
    """Copy directory `src` to `dst` (created here) with all a layer can hold: types,
    contents, owners, modes, xattrs, times, and hard links within the tree."""
    links: dict[tuple[int, int], str] = {}
    sfd = os.open(src, _DIR_FLAGS)
    try:
        os.mkdir(dst, 0o700)
        dfd = os.open(dst, _DIR_FLAGS)
    except BaseException:
        os.close(sfd)
        raise
    # (src fd, dst fd, names left, src stat, path in the tree); directories get their
    # metadata when left, so that copying into them doesn't change their times again.
    stack = [(sfd, dfd, sorted(os.listdir(sfd), reverse=True), os.fstat(sfd), "")]
    try:
        while stack:
            s, d, names, st, rel = stack[-1]
            if not names:
                stack.pop()
                try:
                    os.fchown(d, st.st_uid, st.st_gid)
                    os.fchmod(d, stat.S_IMODE(st.st_mode))
                    _copy_xattrs(s, d)
                    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(s)
                    os.close(d)
                continue
            name = names.pop()
            cst = os.stat(name, dir_fd=s, follow_symlinks=False)
            if stat.S_ISDIR(cst.st_mode):
                os.mkdir(name, 0o700, dir_fd=d)
                cs = os.open(name, _DIR_FLAGS, dir_fd=s)
                try:
                    cd = os.open(name, _DIR_FLAGS, dir_fd=d)
                except BaseException:
                    os.close(cs)
                    raise
                stack.append((cs, cd, sorted(os.listdir(cs), reverse=True), cst,
                              f"{rel}{name}/"))
                continue
            key = (cst.st_dev, cst.st_ino)
            if cst.st_nlink > 1 and key in links:
                os.link(os.path.join(dst, links[key]), name, dst_dir_fd=d,
                        follow_symlinks=False)
                continue
            _copy_entry(s, d, name, cst)
            if cst.st_nlink > 1:
                links[key] = rel + name
    finally:
        for s, d, *_ in stack:
            os.close(s)
            os.close(d)


# -- the interface -----------------------------------------------------------------------------

class Snapshotter(ABC):
    """Layers by chain ID, containers by key. Subclasses say where content lives."""

    driver: str  # the directory under root, and the name recorded by the metadata store
    overlay_format: bool  # whether layers are unpacked with overlay whiteouts
    content: str  # a layer's content directory inside its directory

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)  # mountinfo shows real paths
        self.home = os.path.join(self.root, self.driver)
        self.containers = os.path.join(self.home, "containers")
        # Traversable but not listable: a container's root in a user namespace must reach
        # its rootfs through them.
        os.makedirs(self.containers, mode=0o711, exist_ok=True)
        os.chmod(self.home, 0o711)

    # -- layers --------------------------------------------------------------------------------
    def _layer(self, chain_id: str) -> str:
        return os.path.join(self.home, _layer_name(chain_id))

    def _partial(self, chain_id: str) -> str:
        return os.path.join(self.home, _TMP + _layer_name(chain_id))

    def partial_name(self, chain_id: str) -> str:
        """The name (in `home`) of the layer's directory while it is being prepared."""
        return os.path.basename(self._partial(chain_id))

    def has_layer(self, chain_id: str) -> bool:
        return os.path.isdir(self._layer(chain_id))

    def layer_dir(self, chain_id: str) -> str:
        """The content directory of a committed layer."""
        if not self.has_layer(chain_id):
            raise SnapshotNotFound(f"layer {chain_id} not found")
        return os.path.join(self._layer(chain_id), self.content)

    def parent(self, chain_id: str) -> str | None:
        if not self.has_layer(chain_id):
            raise SnapshotNotFound(f"layer {chain_id} not found")
        return _read(os.path.join(self._layer(chain_id), "parent")) or None

    def prepare_layer(self, chain_id: str, parent_chain_id: str | None = None) -> str:
        """Start a layer; return the directory to unpack it into. A stale attempt is
        discarded. SnapshotExists if the layer is already committed."""
        if self.has_layer(chain_id):
            raise SnapshotExists(f"layer {chain_id} already exists")
        if parent_chain_id is not None and not self.has_layer(parent_chain_id):
            raise SnapshotNotFound(f"parent layer {parent_chain_id} not found")
        tmp = self._partial(chain_id)
        _rmtree(tmp)
        os.mkdir(tmp, 0o700)
        if parent_chain_id is not None:
            _write(os.path.join(tmp, "parent"), parent_chain_id)
        target = os.path.join(tmp, self.content)
        self._init_layer(target, parent_chain_id)
        return target

    def commit_layer(self, chain_id: str) -> None:
        """Make a prepared layer visible. A no-op for a committed one."""
        final, tmp = self._layer(chain_id), self._partial(chain_id)
        if os.path.isdir(final):
            _rmtree(tmp)
            self._repair(final)
            return
        if not os.path.isdir(tmp):
            raise SnapshotNotFound(f"layer {chain_id} was not prepared")
        undo = self._before_commit(tmp, final)
        try:
            os.rename(tmp, final)
        except OSError as e:
            undo()
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            _rmtree(tmp)  # committed meanwhile by someone else: theirs stands

    def abort_layer(self, chain_id: str) -> None:
        """Discard a prepared, uncommitted layer."""
        _rmtree(self._partial(chain_id))

    def remove_layer(self, chain_id: str) -> None:
        """Remove a layer (committed or prepared); fine if it is gone. Whether anything still
        uses it is the caller's business."""
        final = self._layer(chain_id)
        extra = self._layer_extras(final)
        _remove_aside(final, self.home)
        for path in extra:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.abort_layer(chain_id)

    def unpack_layer(self, chain_id: str, parent_chain_id: str | None, stream: BinaryIO,
                     media_type: str | None = None,
                     expected_diff_id: str | None = None) -> LayerStats:
        """prepare + apply_layer + commit; nothing is left behind if anything fails,
        including a diff ID other than `expected_diff_id`."""
        target = self.prepare_layer(chain_id, parent_chain_id)
        try:
            stats = self.apply(target, stream, media_type, expected_diff_id)
        except BaseException:
            self.abort_layer(chain_id)
            raise
        self.commit_layer(chain_id)
        return stats

    def apply(self, target: str, stream: BinaryIO, media_type: str | None = None,
              expected_diff_id: str | None = None) -> LayerStats:
        """Unpack a layer into `target`, a directory prepare_layer() returned; LayerError
        if its diff ID is not `expected_diff_id`."""
        stats = apply_layer(stream, target, media_type=media_type, overlay=self.overlay_format)
        if expected_diff_id is not None and stats.diff_id != expected_diff_id:
            raise LayerError(f"layer diff ID {stats.diff_id} is not the expected "
                             f"{expected_diff_id}")
        return stats

    def check_chain(self, chain_ids: Sequence[str]) -> None:
        """Each layer committed and the parent of the next: a whole chain, base first."""
        parent = None
        for cid in chain_ids:
            if self.parent(cid) != parent:
                raise SnapshotError(f"layer {cid} does not follow {parent or 'nothing'} "
                                    f"(its parent is {self.parent(cid) or 'none'})")
            parent = cid

    # -- containers ----------------------------------------------------------------------------
    def _container(self, key: str) -> str:
        return os.path.join(self.containers, _check_key(key))

    def _existing(self, key: str) -> str:
        path = self._container(key)
        if not os.path.isdir(path):
            raise SnapshotNotFound(f"container snapshot {key} not found")
        return path

    def container_layers(self, key: str) -> list[str]:
        return json.loads(_read(os.path.join(self._existing(key), "layers")) or "[]")

    def mount_container(self, key: str, lower_chain_ids: Sequence[str]) -> str:
        """The container's root filesystem on the given layers (the whole chain, base first,
        as an image config lists them), created if new; return its path. Again for the same
        key gives the same path; other layers than at creation are an error."""
        chain = list(lower_chain_ids)
        path = self._container(key)
        created = False
        if not os.path.isdir(path):
            self.check_chain(chain)
            self._check_mountable(key, chain)
            tmp = tempfile.mkdtemp(prefix=_TMP, dir=self.containers)
            try:
                os.chmod(tmp, 0o711)
                self._init_container(tmp, chain)
                _write(os.path.join(tmp, "layers"), json.dumps(chain))
                os.rename(tmp, path)
                created = True
            except OSError as e:
                _rmtree(tmp)
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        if self.container_layers(key) != chain:
            raise SnapshotError(f"container snapshot {key} exists on other layers")
        try:
            return self._mount(path, key, chain)
        except BaseException:
            if created:
                _remove_aside(path, self.containers)
            raise

    def remove_container(self, key: str) -> None:
        """Unmount and delete a container's snapshot; fine if it is gone."""
        path = self._container(key)
        if os.path.isdir(path):
            self.unmount_container(key)
        _remove_aside(path, self.containers)

    def diff(self, key: str, out: BinaryIO) -> str:
        """Write the container's changes as a layer tar; return its diff ID."""
        return write_diff(self.upper_dir(key), out, self.diff_lower_dirs(key))

    def cleanup(self) -> None:
        """Remove what interrupted operations left. At start-up only: it also discards
        layers being prepared right now."""
        for parent in (self.home, self.containers):
            for name in os.listdir(parent):
                if name.startswith((_TMP, _TRASH)):
                    _rmtree(os.path.join(parent, name))

    # -- what subclasses provide ---------------------------------------------------------------
    @abstractmethod
    def _init_layer(self, target: str, parent_chain_id: str | None) -> None:
        """Create the directory a layer is unpacked into."""

    def _before_commit(self, tmp: str, final: str):
        """Last touches before the rename; returns an undo for a lost race."""
        return lambda: None

    def _repair(self, final: str) -> None:
        """Complete a layer committed by an interrupted commit."""

    def _layer_extras(self, final: str) -> list[str]:
        """Paths outside the layer's directory to remove with it."""
        return []

    def _check_mountable(self, key: str, chain: list[str]) -> None:
        pass

    @abstractmethod
    def _init_container(self, tmp: str, chain: list[str]) -> None: ...

    @abstractmethod
    def _mount(self, path: str, key: str, chain: list[str]) -> str: ...

    @abstractmethod
    def unmount_container(self, key: str) -> None: ...

    @abstractmethod
    def upper_dir(self, key: str) -> str:
        """Where the container's writes land (for write_diff)."""

    @abstractmethod
    def diff_lower_dirs(self, key: str) -> list[str] | None:
        """write_diff's lower_dirs for upper_dir(key): None for an overlay upper dir."""


class OverlaySnapshotter(Snapshotter):
    driver = "overlay"
    overlay_format = True
    content = "diff"

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.links = os.path.join(self.home, "l")
        self.empty = os.path.join(self.home, "empty")  # the lowerdir of a layerless container
        os.makedirs(self.links, mode=0o700, exist_ok=True)
        os.makedirs(self.empty, mode=0o755, exist_ok=True)

    def _init_layer(self, target: str, parent_chain_id: str | None) -> None:
        os.mkdir(target)
        os.chmod(target, 0o755)

    def _new_link(self, final: str) -> str:
        target = f"../{os.path.basename(final)}/{self.content}"
        while True:
            # 80 random bits, base32: 16 characters (Docker's are 26), unique by O_EXCL.
            short = base64.b32encode(secrets.token_bytes(10)).decode()
            try:
                os.symlink(target, os.path.join(self.links, short))
                return short
            except FileExistsError:
                continue

    def _before_commit(self, tmp: str, final: str):
        # The link first: a crash before the rename leaves a dangling symlink, never a
        # committed layer without one.
        short = self._new_link(final)
        _write(os.path.join(tmp, "link"), short)
        return lambda: os.unlink(os.path.join(self.links, short))

    def _repair(self, final: str) -> None:
        short = _read(os.path.join(final, "link"))
        if short is None:
            _write(os.path.join(final, "link"), self._new_link(final))
        elif not os.path.islink(os.path.join(self.links, short)):
            os.symlink(f"../{os.path.basename(final)}/{self.content}",
                       os.path.join(self.links, short))

    def _layer_extras(self, final: str) -> list[str]:
        short = _read(os.path.join(final, "link"))
        return [os.path.join(self.links, short)] if short else []

    def link_name(self, chain_id: str) -> str:
        short = _read(os.path.join(self._layer(chain_id), "link"))
        if short is None:
            raise SnapshotNotFound(f"layer {chain_id} not found")
        return short

    def mount_data(self, key: str, lower_chain_ids: Sequence[str]) -> str:
        """The overlay mount options for a container, paths relative to the home dir."""
        lowers = [f"l/{self.link_name(c)}" for c in reversed(lower_chain_ids)] or ["empty"]
        c = f"containers/{_check_key(key)}"
        return ",".join(overlay_options() + [f"lowerdir={':'.join(lowers)}",
                                             f"upperdir={c}/upper", f"workdir={c}/work"])

    def _check_mountable(self, key: str, chain: list[str]) -> None:
        data = self.mount_data(key, chain)
        limit = os.sysconf("SC_PAGE_SIZE") - 1  # mount(2) copies one page, NUL included
        if len(data.encode()) > limit:
            raise SnapshotError(f"{len(chain)} layers are too many for one overlay mount "
                                f"({len(data)} bytes of options, at most {limit})")

    def _init_container(self, tmp: str, chain: list[str]) -> None:
        for d, mode in (("upper", 0o755), ("work", 0o700), ("merged", 0o755)):
            os.mkdir(os.path.join(tmp, d))
            os.chmod(os.path.join(tmp, d), mode)

    def _mount(self, path: str, key: str, chain: list[str]) -> str:
        merged = os.path.join(path, "merged")
        if not is_mounted(merged):
            self._check_mountable(key, chain)
            try:
                mount_overlay(self.home, self.mount_data(key, chain), merged)
            except OSError as e:
                raise SnapshotError(f"mounting container snapshot {key}: {e.strerror}") from e
        return merged

    def unmount_container(self, key: str) -> None:
        path = self._container(key)
        if os.path.isdir(path):
            unmount_all(os.path.join(path, "merged"))

    def upper_dir(self, key: str) -> str:
        return os.path.join(self._existing(key), "upper")

    def diff_lower_dirs(self, key: str) -> list[str] | None:
        return None


class VfsSnapshotter(Snapshotter):
    driver = "vfs"
    overlay_format = False
    content = "rootfs"

    def _init_layer(self, target: str, parent_chain_id: str | None) -> None:
        if parent_chain_id is None:
            os.mkdir(target)
            os.chmod(target, 0o755)
        else:
            copy_tree(self.layer_dir(parent_chain_id), target)

    def _init_container(self, tmp: str, chain: list[str]) -> None:
        target = os.path.join(tmp, "rootfs")
        if chain:
            copy_tree(self.layer_dir(chain[-1]), target)
        else:
            os.mkdir(target)
            os.chmod(target, 0o755)

    def _mount(self, path: str, key: str, chain: list[str]) -> str:
        return os.path.join(path, "rootfs")

    def unmount_container(self, key: str) -> None:
        pass  # a copy, never mounted

    def upper_dir(self, key: str) -> str:
        return os.path.join(self._existing(key), "rootfs")

    def diff_lower_dirs(self, key: str) -> list[str] | None:
        chain = self.container_layers(key)
        return [self.layer_dir(chain[-1])] if chain else []


def new_snapshotter(root: str, driver: str | None = None) -> Snapshotter:
    """The snapshotter named `driver`, or overlay where it works and vfs elsewhere."""
    if driver is None:
        driver = "overlay" if overlay_supported(root) else "vfs"
    classes = {"overlay": OverlaySnapshotter, "vfs": VfsSnapshotter}
    if driver not in classes:
        raise SnapshotError(f"unknown snapshotter {driver!r}")
    return classes[driver](root)
