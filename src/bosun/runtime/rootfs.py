"""The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.

Mount destinations are resolved inside the rootfs with openat2(RESOLVE_IN_ROOT), and the
mount is made on /proc/self/fd/N of the resolved directory, so a symlink in an untrusted
rootfs can never redirect a mount onto the host.
"""

from __future__ import annotations

import errno
import os
import stat

from bosun import kernel as K
from bosun.runtime.errors import RuntimeErr

# option -> (clear?, flag)
_FLAGS = {
    "defaults": (False, 0), "ro": (False, K.MS_RDONLY), "rw": (True, K.MS_RDONLY),
    "suid": (True, K.MS_NOSUID), "nosuid": (False, K.MS_NOSUID),
    "dev": (True, K.MS_NODEV), "nodev": (False, K.MS_NODEV),
    "exec": (True, K.MS_NOEXEC), "noexec": (False, K.MS_NOEXEC),
    "sync": (False, K.MS_SYNCHRONOUS), "async": (True, K.MS_SYNCHRONOUS),
    "dirsync": (False, K.MS_DIRSYNC), "remount": (False, K.MS_REMOUNT),
    "mand": (False, K.MS_MANDLOCK), "nomand": (True, K.MS_MANDLOCK),
    "atime": (True, K.MS_NOATIME), "noatime": (False, K.MS_NOATIME),
    "diratime": (True, K.MS_NODIRATIME), "nodiratime": (False, K.MS_NODIRATIME),
    "bind": (False, K.MS_BIND), "rbind": (False, K.MS_BIND | K.MS_REC),
    "relatime": (False, K.MS_RELATIME), "norelatime": (True, K.MS_RELATIME),
    "strictatime": (False, K.MS_STRICTATIME), "nostrictatime": (True, K.MS_STRICTATIME),
    "lazytime": (False, K.MS_LAZYTIME), "nolazytime": (True, K.MS_LAZYTIME),
    "silent": (False, K.MS_SILENT), "loud": (True, K.MS_SILENT),
    "nosymfollow": (False, K.MS_NOSYMFOLLOW), "symfollow": (True, K.MS_NOSYMFOLLOW),
}
PROPAGATION = {
    "private": K.MS_PRIVATE, "rprivate": K.MS_PRIVATE | K.MS_REC,
    "shared": K.MS_SHARED, "rshared": K.MS_SHARED | K.MS_REC,
    "slave": K.MS_SLAVE, "rslave": K.MS_SLAVE | K.MS_REC,
    "unbindable": K.MS_UNBINDABLE, "runbindable": K.MS_UNBINDABLE | K.MS_REC,
}
# The OCI spec's recursive options: mount_setattr(AT_RECURSIVE) on the mount and everything
# below it. option -> (attributes to set, attributes to clear)
_ATIME = K.MOUNT_ATTR__ATIME
_RECURSIVE = {
    "rro": (K.MOUNT_ATTR_RDONLY, 0), "rrw": (0, K.MOUNT_ATTR_RDONLY),
    "rnosuid": (K.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, K.MOUNT_ATTR_NOSUID),
    "rnodev": (K.MOUNT_ATTR_NODEV, 0), "rdev": (0, K.MOUNT_ATTR_NODEV),
    "rnoexec": (K.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, K.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (K.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, K.MOUNT_ATTR_NODIRATIME),
    # the atime mode is one field: set one value by clearing the whole field
    "rrelatime": (K.MOUNT_ATTR_RELATIME, _ATIME), "rnorelatime": (K.MOUNT_ATTR_STRICTATIME, _ATIME),
    "rnoatime": (K.MOUNT_ATTR_NOATIME, _ATIME), "ratime": (K.MOUNT_ATTR_RELATIME, _ATIME),
    "rstrictatime": (K.MOUNT_ATTR_STRICTATIME, _ATIME),
    "rnostrictatime": (K.MOUNT_ATTR_RELATIME, _ATIME),
    "rnosymfollow": (K.MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, K.MOUNT_ATTR_NOSYMFOLLOW),
}
# idmapped mounts are not supported yet.
_UNSUPPORTED = {"idmap", "ridmap"}
# Flags that bind remounts must carry over, or the kernel refuses in a user namespace.
_LOCKED = ((K.ST_RDONLY, K.MS_RDONLY), (K.ST_NOSUID, K.MS_NOSUID), (K.ST_NODEV, K.MS_NODEV),
           (K.ST_NOEXEC, K.MS_NOEXEC), (K.ST_NOATIME, K.MS_NOATIME),
           (K.ST_NODIRATIME, K.MS_NODIRATIME), (K.ST_RELATIME, K.MS_RELATIME))


class MountOptions:
    __slots__ = ("flags", "propagation", "data", "bind", "rset", "rclr")

    def __init__(self, options) -> None:
        self.flags = 0
        self.rset = self.rclr = 0  # recursive attributes (mount_setattr)
        self.propagation: list[int] = []
        data = []
        for opt in options or ():
            if opt in _FLAGS:
                clear, flag = _FLAGS[opt]
                self.flags = self.flags & ~flag if clear else self.flags | flag
            elif opt in PROPAGATION:
                self.propagation.append(PROPAGATION[opt])
            elif opt in _RECURSIVE:
                on, off = _RECURSIVE[opt]
                self.rset = (self.rset & ~off) | on
                self.rclr = (self.rclr & ~on) | off
            elif opt in _UNSUPPORTED:
                raise RuntimeErr(f"mount option {opt!r} is not supported")
            else:
                data.append(opt)
        self.data = ",".join(data)
        self.bind = bool(self.flags & K.MS_BIND)


def locked_flags(path: str) -> int:
    st = os.statvfs(path)
    return sum(ms for st_flag, ms in _LOCKED if st.f_flag & st_flag)


def fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class Rootfs:
    """Builds one container's filesystem view; runs inside the container's mount namespace."""

    def __init__(self, config: dict, kernel: K.Kernel = K.LINUX, userns: bool = False,
                 cgroup_dirs: dict | None = None, cgroupns: bool = False,
                 enter_cgroupns=None) -> None:
        self.config = config
        self.k = kernel
        self.root = config["root"]["path"]
        self.linux = config.get("linux") or {}
        self.userns = userns
        self.cgroup_dirs = cgroup_dirs or {}
        self.cgroupns = cgroupns
        self.enter_cgroupns = enter_cgroupns  # called before mounting cgroup2 in its namespace
        self.rootfd = -1

    # -- path resolution inside the root ----------------------------------------------------
    def open_in_root(self, path: str, flags: int = os.O_PATH) -> int:
        return self.k.openat2(self.rootfd, path.lstrip("/") or ".", flags,
                              K.RESOLVE_IN_ROOT | K.RESOLVE_NO_MAGICLINKS)

    def mkdir_all(self, path: str, file: bool = False, _links: int = 0) -> int:
        """Create path (and parents) inside the root; return an O_PATH fd to it."""
        parts = [p for p in path.split("/") if p and p != "."]
        fd = os.dup(self.rootfd)
        try:
            for i, name in enumerate(parts):
                if name == "..":
                    raise RuntimeErr(f"path {path!r} must not contain '..'")
                sub = "/".join(parts[: i + 1])
                try:
                    nfd = self.open_in_root(sub)
                except FileNotFoundError:
                    last = i == len(parts) - 1
                    try:
                        if last and file:
                            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC
                                             | os.O_NOFOLLOW, 0o644, dir_fd=fd))
                        else:
                            os.mkdir(name, 0o755, dir_fd=fd)
                    except OSError as e:
                        if not isinstance(e, FileExistsError) and e.errno != errno.ELOOP:
                            raise
                        # A dangling symlink: create its target, resolved inside the root.
                        target = self._link_target(fd, name)
                        if target is not None:
                            if _links >= 40:
                                raise RuntimeErr(
                                    f"path {path!r}: too many symbolic links") from None
                            os.close(fd)
                            fd = -1
                            rest = "/".join(parts[i + 1:])
                            return self.mkdir_all(f"{target}/{rest}", file, _links + 1)
                    nfd = self.open_in_root(sub)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise

    def _link_target(self, dirfd: int, name: str) -> str | None:
        """Where symlink `name` in `dirfd` points, as a clean path inside the root."""
        try:
            link = os.readlink(name, dir_fd=dirfd)
        except OSError:
            return None  # not a symlink
        if not link.startswith("/"):
            here = os.path.relpath(os.readlink(fdpath(dirfd)), self.root)
            link = f"/{here}/{link}"
        return os.path.normpath("/" + link.lstrip("/"))  # ".." stops at the root

    # -- the sequence --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything before pivot_root: propagation, the root bind, mounts, /dev."""
        k = self.k
        # Make every mount we see a slave (or what was asked), so no mount leaks to the host.
        prop = PROPAGATION.get(self.linux.get("rootfsPropagation") or "", K.MS_SLAVE | K.MS_REC)
        k.mount(None, "/", None, prop)
        self._make_parent_private(self.root)
        k.mount(self.root, self.root, None, K.MS_BIND | K.MS_REC)
        self.rootfd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        dev_bound = False
        for m in self.config.get("mounts") or ():
            self.mount_one(m)
            if m["destination"].rstrip("/") == "/dev" and MountOptions(m.get("options")).bind:
                dev_bound = True
        if not dev_bound:
            self.create_devices()

    def _make_parent_private(self, path: str) -> None:
        """pivot_root refuses when the new root's parent mount is shared."""
        best, best_len = "/", 0
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mnt = line.split()[4]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best_len:
                    best, best_len = mnt, len(mnt)
        self.k.mount(None, best, None, K.MS_PRIVATE)

    def mount_one(self, m: dict) -> None:
        k = self.k
        dest = m["destination"]
        typ = m.get("type") or ""
        src = m.get("source") or ""
        opts = MountOptions(m.get("options"))
        if typ == "bind":
            opts.bind = True
            opts.flags |= K.MS_BIND
        if typ == "cgroup" and not opts.bind:
            return self._mount_cgroup(dest, opts)
        if opts.bind:
            try:
                is_file = not stat.S_ISDIR(os.stat(src).st_mode)
            except OSError as e:
                raise RuntimeErr(f"bind mount source {src!r}: {e.strerror}") from None
            fd = self.mkdir_all(dest, file=is_file)
        else:
            fd = self.mkdir_all(dest)
            if typ in ("proc", "sysfs") and not stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise RuntimeErr(f"{typ} mount destination {dest!r} is not a directory")
        try:
            if opts.bind:
                k.mount(src, fdpath(fd), None, opts.flags & (K.MS_BIND | K.MS_REC))
                extra = opts.flags & ~(K.MS_BIND | K.MS_REC | K.MS_REMOUNT)
                if extra:
                    self._remount_bind(dest, extra)
            else:
                flags = opts.flags & ~K.MS_REMOUNT
                try:
                    k.mount(src or typ, fdpath(fd), typ or None, flags, opts.data or None)
                except PermissionError:
                    if typ != "sysfs" or not self.userns:
                        raise
                    # Without a network namespace of its own a user namespace can't mount sysfs:
                    # fall back to a read-only bind of the host's, as runc does.
                    k.mount("/sys", fdpath(fd), None, K.MS_BIND | K.MS_REC)
                    self._remount_bind(dest, flags | K.MS_RDONLY)
        finally:
            os.close(fd)
        if opts.rset or opts.rclr:
            fd = self.open_in_root(dest)  # the new mount, with its submounts
            try:
                k.mount_setattr(fd, "", K.AT_EMPTY_PATH | K.AT_RECURSIVE, opts.rset, opts.rclr)
            finally:
                os.close(fd)
        for p in opts.propagation:
            fd = self.open_in_root(dest)
            try:
                k.mount(None, fdpath(fd), None, p)
            finally:
                os.close(fd)

    def _remount_bind(self, dest: str, flags: int) -> None:
        fd = self.open_in_root(dest)  # re-open: the old fd points below the new mount
        try:
            path = fdpath(fd)
            self.k.mount(None, path, None,
                         K.MS_BIND | K.MS_REMOUNT | flags | locked_flags(path))
        finally:
            os.close(fd)

    def _mount_cgroup(self, dest: str, opts: MountOptions) -> None:
        """cgroup v1: a tmpfs with one bind per hierarchy; v2: the unified hierarchy."""
        k = self.k
        flags = opts.flags & ~(K.MS_BIND | K.MS_REC | K.MS_REMOUNT)
        from bosun.runtime import cgroups

        hier = cgroups.hierarchies()
        if list(hier) == [cgroups.UNIFIED]:
            fd = self.mkdir_all(dest)
            try:
                if self.cgroupns:
                    if self.enter_cgroupns is not None:
                        self.enter_cgroupns()
                    k.mount("cgroup2", fdpath(fd), "cgroup2", flags)
                else:
                    k.mount(self.cgroup_dirs.get(cgroups.UNIFIED, hier[cgroups.UNIFIED]),
                            fdpath(fd), None, K.MS_BIND)
                    self._remount_bind(dest, flags)
            finally:
                os.close(fd)
            return
        fd = self.mkdir_all(dest)
        try:
            k.mount("tmpfs", fdpath(fd), "tmpfs", flags & ~K.MS_RDONLY, "mode=755")
        finally:
            os.close(fd)
        seen = {}
        for ctrl, mnt in hier.items():
            if ctrl == cgroups.UNIFIED:
                name = "unified"
            else:
                name = os.path.basename(mnt)
            if mnt in seen:
                continue
            seen[mnt] = name
            sub = f"{dest.rstrip('/')}/{name}"
            src = self.cgroup_dirs.get(ctrl) or mnt
            if not os.path.isdir(src):
                continue
            sfd = self.mkdir_all(sub)
            try:
                k.mount(src, fdpath(sfd), None, K.MS_BIND | K.MS_REC)
            finally:
                os.close(sfd)
            self._remount_bind(sub, flags | K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC)
        # co-mounted controllers (cpu,cpuacct) get the usual symlinks
        for ctrl, mnt in hier.items():
            name = seen.get(mnt)
            if name and ctrl != name and "," in name and ctrl in name.split(","):
                try:
                    dfd = self.open_in_root(dest)
                    try:
                        os.symlink(name, ctrl, dir_fd=dfd)
                    finally:
                        os.close(dfd)
                except (FileExistsError, OSError):
                    pass
        if flags & K.MS_RDONLY:
            self._remount_bind(dest, flags)

    # -- /dev ----------------------------------------------------------------------------------
    DEFAULT_DEVICES = (
        ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
        ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
    )
    DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                 ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
                 ("pts/ptmx", "/dev/ptmx"))

    def create_devices(self) -> None:
        devices = [{"path": p, "type": t, "major": ma, "minor": mi, "fileMode": 0o666,
                    "uid": 0, "gid": 0} for p, t, ma, mi in self.DEFAULT_DEVICES]
        paths = {d["path"] for d in devices}
        for d in self.linux.get("devices") or ():
            if d.get("path") in paths:
                devices = [x for x in devices if x["path"] != d["path"]]
            devices.append(d)
        for d in devices:
            self.create_device(d)
        for target, link in self.DEV_LINKS:
            dfd = self.mkdir_all(os.path.dirname(link))
            try:
                os.symlink(target, os.path.basename(link), dir_fd=dfd)
            except FileExistsError:
                pass
            finally:
                os.close(dfd)

    def create_device(self, d: dict) -> None:
        path = d.get("path")
        if not isinstance(path, str) or not path.startswith("/dev/"):
            raise RuntimeErr(f"device path {path!r} must be under /dev")
        kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        kind = kinds.get(d.get("type"))
        if kind is None:
            raise RuntimeErr(f"device {path}: unknown type {d.get('type')!r}")
        mode = d.get("fileMode")
        mode = 0o666 if mode is None else mode & 0o7777
        dfd = self.mkdir_all(os.path.dirname(path))
        name = os.path.basename(path)
        try:
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            try:
                if self.userns:
                    raise PermissionError(errno.EPERM, "mknod in a user namespace")
                self.k.mknod(name, kind | mode, os.makedev(d.get("major", 0), d.get("minor", 0)),
                             dir_fd=dfd)
            except PermissionError:
                # mknod is not permitted (user namespace): bind the host's device instead.
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                                 0o000, dir_fd=dfd))
                fd = self.open_in_root(path)
                try:
                    self.k.mount(path, fdpath(fd), None, K.MS_BIND)
                finally:
                    os.close(fd)
                return
            os.chown(name, d.get("uid") or 0, d.get("gid") or 0, dir_fd=dfd,
                     follow_symlinks=False)
        finally:
            os.close(dfd)

    # -- switching root ----------------------------------------------------------------------
    def pivot(self, no_pivot: bool = False) -> None:
        k = self.k
        if no_pivot:
            os.chdir(self.root)
            k.mount(self.root, "/", None, K.MS_MOVE)
            k.chroot(".")
            os.chdir("/")
            return
        oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.chdir(self.root)
            k.pivot_root(".", ".")
            # The old root is now stacked under "."; detach it without letting the unmount
            # propagate back to the host.
            os.fchdir(oldroot)
            k.mount(None, ".", None, K.MS_SLAVE | K.MS_REC)
            k.umount2(".", K.MNT_DETACH)
        finally:
            os.close(oldroot)
        os.chdir("/")
        if self.rootfd >= 0:
            os.close(self.rootfd)
            self.rootfd = -1

    def finalize(self) -> None:
        """After pivot_root: masked and read-only paths, a read-only root, propagation."""
        k = self.k
        for p in self.linux.get("readonlyPaths") or ():
            try:
                k.mount(p, p, None, K.MS_BIND | K.MS_REC)
            except FileNotFoundError:
                continue
            k.mount(None, p, None, K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | K.MS_REC
                    | locked_flags(p))
        for p in self.linux.get("maskedPaths") or ():
            try:
                st = os.stat(p)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                k.mount("tmpfs", p, "tmpfs", K.MS_RDONLY)
            else:
                k.mount("/dev/null", p, None, K.MS_BIND)
        if self.config["root"].get("readonly"):
            k.mount(None, "/", None, K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | locked_flags("/"))
        prop = self.linux.get("rootfsPropagation")
        if prop:
            k.mount(None, "/", None, PROPAGATION[prop])

    def mount_console(self, slave_path: str) -> None:
        try:
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC
                             | os.O_NOFOLLOW, 0o600))
        except OSError:
            pass
        self.k.mount(slave_path, "/dev/console", None, K.MS_BIND)
