"""Docker's `local` volume driver and the volume service over it.

A volume NAME is the directory <root>/NAME/_data. With driver options (type, device, o, as
mount(8) takes them: a tmpfs, a bind of a host directory with o=bind, a block device), a file
system is mounted on _data when the first container starts with it and unmounted when the last
one stops; holders are recorded in SQLite (store.py), so a restarted daemon knows which mounts
are still wanted (reconcile). Names are checked against Docker's rule before they touch a path,
and a volume's subpath is opened with openat2(RESOLVE_BENEATH): neither `..` nor a symlink in a
volume can lead outside it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import threading
import time
from datetime import datetime

from bosun import fstree
from bosun import kernel as K
from bosun.filters import labels_match, matches
from bosun.volume.errors import Conflict, InvalidParameter, NotFound, VolumeError, op_error
from bosun.volume.store import VolumeRecord, VolumeStore

DRIVER = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # Docker 23+ marks anonymous volumes so
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Docker's RestrictedNamePattern
_VALID_OPTS = ("type", "device", "o")  # `size` needs project quotas, which bosun lacks
_REQUIRED_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_LIST_FILTERS = ("dangling", "driver", "label", "name")
_PRUNE_FILTERS = ("label", "label!", "all")


def check_name(name: str) -> None:
    """Docker's local driver rule; a name that passes is one path component, never `..`."""
    if len(name) == 1:
        raise InvalidParameter("volume name is too short, names should be at least two "
                               "alphanumeric characters")
    if not _NAME.fullmatch(name):
        raise InvalidParameter(
            f'"{name}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")
    if len(name) > 255:  # the directory's name: the kernel's NAME_MAX
        raise InvalidParameter("volume name is too long, names should be at most 255 "
                               "characters")


def check_options(opts: dict[str, str]) -> None:
    for key in opts:
        if key not in _VALID_OPTS:
            raise InvalidParameter(f'invalid option: "{key}"')
    for key, needs in _REQUIRED_OPTS.items():
        for other in needs if key in opts else ():
            if other not in opts:
                raise InvalidParameter(f'missing required option: "{other}"')


def rfc3339(t: float) -> str:
    """Go's time.RFC3339 in local time, as Docker prints CreatedAt."""
    s = datetime.fromtimestamp(int(t)).astimezone().isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def dir_size(path: str) -> int:
    """Bytes of the regular files under path, each inode once (Docker's directory.Size)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [path]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                elif (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def _flag(filters: dict, key: str) -> bool | None:
    values = filters.get(key) or []
    if not values:
        return None
    v = values[0].lower()
    if v not in ("true", "false", "1", "0"):
        raise InvalidParameter(f"invalid filter '{key}={values[0]}'")
    return v in ("true", "1")


class Volumes:
    def __init__(self, root: str, kernel=None, mount_points=None) -> None:
        """root: <data-root>/volumes. kernel: the seam mounts go through (a fake in unit
        tests); mount_points: a callable listing the mount points (/proc/self/mountinfo)."""
        if mount_points is None:
            from bosun.image.snapshot import mount_points
        self.root = os.path.realpath(root)
        self.k = kernel or K.LINUX
        self._mount_points = mount_points
        os.makedirs(self.root, 0o701, exist_ok=True)
        self.store = VolumeStore(os.path.join(self.root, "metadata.db"))
        self.lock = threading.RLock()  # create/remove/prune/mount of one daemon in turn

    def close(self) -> None:
        self.store.close()

    # -- paths -----------------------------------------------------------------------------

    def path(self, name: str) -> str:
        """The Mountpoint of volume `name` (checked: never outside root)."""
        check_name(name)
        return os.path.join(self.root, name, "_data")

    def open_subpath(self, name: str, subpath: str) -> int:
        """An O_PATH fd of `subpath` inside the volume. RESOLVE_BENEATH makes the kernel refuse
        any `..` or symlink (absolute or relative) that would leave the volume, and holding
        the fd (mounted via /proc/PID/fd/N) leaves no window for a swap after the check."""
        data = os.open(self.path(name), os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            return self.k.openat2(data, subpath, os.O_PATH | os.O_CLOEXEC,
                                  K.RESOLVE_BENEATH | K.RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            raise InvalidParameter(f"cannot access path {os.path.join(self.path(name), subpath)}"
                                   f": {e.strerror}") from None
        finally:
            os.close(data)

    # -- create / inspect / list -----------------------------------------------------------

    def create(self, name: str | None = None, *, driver: str | None = None,
               options: dict | None = None, labels: dict | None = None,
               anonymous: bool = False, ref: str | None = None) -> tuple[dict, bool]:
        """Create (or find: idempotent by name) a volume; `ref` is a container that uses it,
        recorded in the same transaction. Returns (inspect dict, whether it is new)."""
        driver = driver or DRIVER
        if driver != DRIVER:
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" '
                           "not found")
        name = name or secrets.token_hex(32)  # Docker: a random name, as for anonymous
        try:
            check_name(name)
            check_options(options or {})
        except VolumeError as e:
            raise op_error(type(e), "create", name, str(e)) from None
        if anonymous:
            labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
        # Sorted, as Go encodes a map (clients print them in that order); None stays None,
        # as Docker shows null for a volume made by `run -v` and {} for `volume create`'s.
        options = None if options is None else dict(sorted(options.items()))
        labels = None if labels is None else dict(sorted(labels.items()))
        with self.lock:
            vdir = os.path.join(self.root, name)
            fresh = not os.path.isdir(vdir)
            os.makedirs(os.path.join(vdir, "_data"), 0o755, exist_ok=True)
            os.chmod(vdir, 0o701)  # as dockerd: traversable, not listable
            try:
                rec, made = self.store.create(
                    VolumeRecord(name, driver, labels, options, time.time(), anonymous), ref)
            except BaseException:
                if fresh:
                    shutil.rmtree(vdir, ignore_errors=True)
                raise
        return self._view(rec), made

    def get(self, name: str) -> VolumeRecord:
        return self.store.get(name)

    def inspect(self, name: str) -> dict:
        return self._view(self.store.get(name))

    def _view(self, rec: VolumeRecord) -> dict:
        return {"CreatedAt": rfc3339(rec.created), "Driver": rec.driver,
                "Labels": rec.labels, "Mountpoint": self.path(rec.name), "Name": rec.name,
                "Options": rec.options, "Scope": "local"}

    def list(self, filters: dict | None = None) -> list[dict]:
        filters = filters or {}
        for key in filters:
            if key not in _LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        dangling = _flag(filters, "dangling")
        refs = self.store.refs()
        out = []
        for rec in self.store.list():
            if dangling is not None and dangling == (rec.name in refs):
                continue
            if filters.get("driver") and rec.driver not in filters["driver"]:
                continue
            if filters.get("name") and not matches(filters["name"], rec.name):
                continue
            if filters.get("label") and not labels_match(filters["label"], rec.labels or {}):
                continue
            out.append(self._view(rec))
        return out

    def refs(self) -> dict[str, list[str]]:
        return self.store.refs()

    def usage(self) -> list[dict]:
        """Every volume with UsageData (size of its data, number of containers), for
        /system/df."""
        refs = self.store.refs()
        out = []
        for rec in self.store.list():
            item = self._view(rec)
            item["UsageData"] = {"Size": dir_size(item["Mountpoint"]),
                                 "RefCount": len(refs.get(rec.name, ()))}
            out.append(item)
        return out

    # -- references ------------------------------------------------------------------------

    def add_ref(self, name: str, container: str) -> None:
        self.store.add_ref(name, container)

    def drop_refs(self, container: str) -> list[str]:
        return self.store.drop_refs(container)

    # -- remove / prune --------------------------------------------------------------------

    def remove(self, name: str, force: bool = False) -> bool:
        """Remove an unused volume (Conflict naming its users otherwise). force, as Docker's
        purge-on-error: a missing volume is no error and a failure to delete its data does
        not keep the record. Returns whether a volume was removed."""
        with self.lock:
            try:
                self.store.delete(name)
            except NotFound:
                if force:
                    return False
                raise
            try:
                self._destroy(name)
            except OSError as e:
                if not force:
                    raise VolumeError(f"remove {name}: {e}") from None
        return True

    def _destroy(self, name: str) -> None:
        """Delete the volume's directory, after unmounting whatever is on it: a bind of a
        host directory must never be emptied by the delete."""
        vdir = os.path.join(self.root, name)
        for mnt in sorted((m for m in self._mount_points() if m == vdir or
                           m.startswith(vdir + "/")), key=len, reverse=True):
            self.k.umount2(mnt, K.MNT_DETACH)
        if any(m.startswith(vdir + "/") for m in self._mount_points()):
            raise OSError(f"{vdir} is still mounted")
        fstree.rmtree(vdir)  # a container may have made it any depth

    def prune(self, filters: dict | None = None) -> dict:
        """Unused volumes: the anonymous ones, or all with the `all` filter (Docker 23+)."""
        filters = filters or {}
        for key in filters:
            if key not in _PRUNE_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        everything = bool(_flag(filters, "all"))
        deleted, reclaimed = [], 0
        with self.lock:
            refs = self.store.refs()
            for rec in self.store.list():
                if rec.name in refs or not (everything or rec.anonymous):
                    continue
                if filters.get("label") and not labels_match(filters["label"], rec.labels or {}):
                    continue
                if filters.get("label!") and labels_match(filters["label!"], rec.labels or {}):
                    continue
                size = 0 if rec.options else dir_size(self.path(rec.name))
                try:
                    self.remove(rec.name)
                except (Conflict, NotFound):  # taken meanwhile
                    continue
                deleted.append(rec.name)
                reclaimed += size
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}

    # -- mounts ----------------------------------------------------------------------------

    def acquire(self, name: str, holder: str) -> str:
        """The volume's Mountpoint for container `holder`, its file system mounted there if
        the volume has driver options and `holder` is the first user."""
        with self.lock:
            rec = self.store.get(name)
            path = self.path(name)
            if self.store.hold(name, holder) == 0 and rec.options and \
                    path not in self._mount_points():
                try:
                    self._mount(rec, path)
                except BaseException:
                    self.store.unhold(name, holder)
                    raise
        return path

    def release(self, name: str, holder: str) -> bool:
        """Drop `holder`'s use of the mount; unmount after the last. True if it held it."""
        with self.lock:
            left = self.store.unhold(name, holder)
            if left == 0:
                self._unmount_if_driven(name)
        return left is not None

    def _unmount_if_driven(self, name: str) -> None:
        try:
            rec = self.store.get(name)
        except NotFound:
            return
        path = self.path(name)
        if rec.options and path in self._mount_points():
            self.k.umount2(path, K.MNT_DETACH)

    def _mount(self, rec: VolumeRecord, path: str) -> None:
        """Docker's localVolume.mount: mount(device, _data, type, o)."""
        from bosun.runtime.rootfs import MountOptions

        o = rec.options
        mo = MountOptions((o.get("o") or "").split(",") if o.get("o") else [])
        flags = mo.flags
        try:
            self.k.mount(o["device"], path, o.get("type") or None, flags & ~K.MS_RDONLY
                         if mo.bind else flags, mo.data or None)
            if mo.bind and flags & K.MS_RDONLY:  # a bind takes ro only on a remount
                self.k.mount(None, path, None, flags | K.MS_REMOUNT, None)
            for p in mo.propagation:
                self.k.mount(None, path, None, p, None)
        except OSError as e:
            raise VolumeError(f"error while mounting volume '{path}': failed to mount local "
                              f"volume: mount {o['device']}:{path}, flags: {flags:#x}: "
                              f"{e.strerror or e}") from None

    def reconcile(self, containers: set[str], running: set[str]) -> list[str]:
        """At daemon start: forget the uses of containers that no longer exist and the mount
        holds of those not running, unmount what nobody holds any more, and delete
        directories without a record (a crash between their record and their files).
        Returns what it did, for the log."""
        done = []
        with self.lock:
            for name, cids in self.store.refs().items():
                for cid in cids:
                    if cid not in containers:
                        self.store.drop_refs(cid)
                        done.append(f"dropped reference of {cid[:12]} to {name}")
            for name, cids in self.store.holders().items():
                for cid in cids:
                    if cid not in running:
                        self.store.unhold(name, cid)
            held = self.store.holders()
            mounted = set(self._mount_points())
            known = set()
            for rec in self.store.list():
                known.add(rec.name)
                if rec.options and rec.name not in held and self.path(rec.name) in mounted:
                    self.k.umount2(self.path(rec.name), K.MNT_DETACH)
                    done.append(f"unmounted stale {rec.name}")
            for entry in os.listdir(self.root):
                full = os.path.join(self.root, entry)
                if entry not in known and _NAME.fullmatch(entry) and os.path.isdir(full) \
                        and not os.path.islink(full):
                    try:
                        self._destroy(entry)
                        done.append(f"removed orphan directory {entry}")
                    except OSError:
                        pass
        return done
