"""The kernel seam: every Linux system call bosun makes that the standard library lacks.

Everything above this module talks to the kernel through a `Kernel` object, so that logic
(mount plans, capability sets, namespace order) can be unit-tested with a fake that records
calls instead of making them. `LINUX` is the real one. ctypes is loaded on first use: the
runtime's start-up time is a benchmark target.
"""

from __future__ import annotations

import os

# clone/unshare flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

# statvfs f_flag bits that are locked on a mount and must be kept on a bind remount
ST_RDONLY = 1
ST_NOSUID = 2
ST_NODEV = 4
ST_NOEXEC = 8
ST_NOATIME = 1024
ST_NODIRATIME = 2048
ST_RELATIME = 4096

# prctl options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2 resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# x86_64 / aarch64 syscall numbers (the only architectures bosun is built for)
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "setns": 308, "openat2": 437,
               "keyctl": 250, "ioprio_set": 251, "sched_setattr": 314, "personality": 135,
               "bpf": 321, "seccomp": 317, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "setns": 268, "openat2": 437,
                "keyctl": 219, "ioprio_set": 30, "sched_setattr": 274, "personality": 92,
                "bpf": 280, "seccomp": 277, "mount_setattr": 442},
}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# mount_setattr(2): attributes, and the flags that apply them to a whole mount tree
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70  # the atime field: clear it to set one of the three below
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

# ioctls
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413
TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431


class Kernel:
    """Real Linux system calls through libc (ctypes, loaded lazily)."""

    def __init__(self) -> None:
        self._libc = None
        self._nr = None

    # -- plumbing --------------------------------------------------------------------------
    def _lib(self):
        if self._libc is None:
            import ctypes

            self._ctypes = ctypes
            self._libc = ctypes.CDLL(None, use_errno=True)
            self._libc.syscall.restype = ctypes.c_long
            self._libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
            self._libc.mount.argtypes = [
                ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
            ]
            self._nr = _SYSCALLS[os.uname().machine]
        return self._libc

    def _check(self, ret: int, what: str, path: str | None = None) -> int:
        if ret < 0:
            err = self._ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}", path)
        return ret

    def _syscall(self, name: str, *args) -> int:
        libc = self._lib()
        return self._check(libc.syscall(self._nr[name], *args), name)

    # -- namespaces --------------------------------------------------------------------------
    def unshare(self, flags: int) -> None:
        libc = self._lib()
        self._check(libc.unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int = 0) -> None:
        libc = self._lib()
        self._check(libc.setns(fd, nstype), "setns")

    def sethostname(self, name: str) -> None:
        b = name.encode()
        self._check(self._lib().sethostname(b, len(b)), "sethostname")

    def setdomainname(self, name: str) -> None:
        b = name.encode()
        self._check(self._lib().setdomainname(b, len(b)), "setdomainname")

    # -- mounts ------------------------------------------------------------------------------
    def mount(self, source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        libc = self._lib()
        enc = lambda s: s.encode() if s is not None else None  # noqa: E731
        ret = libc.mount(enc(source), target.encode(), enc(fstype), flags, enc(data))
        self._check(ret, f"mount {source or fstype or ''} on {target}", target)

    def umount2(self, target: str, flags: int = 0) -> None:
        self._check(self._lib().umount2(target.encode(), flags), f"umount {target}", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._lib()
        self._syscall("pivot_root", new_root.encode(), put_old.encode())

    def chroot(self, path: str) -> None:
        os.chroot(path)

    def openat2(self, dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
        libc = self._lib()
        ctypes = self._ctypes
        how = (ctypes.c_uint64 * 3)(flags | os.O_CLOEXEC, mode, resolve)
        return self._check(
            libc.syscall(self._nr["openat2"], dirfd, path.encode(), ctypes.byref(how),
                         ctypes.sizeof(how)),
            f"openat2 {path}", path)

    def mount_setattr(self, dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int
                      ) -> None:
        """Change the attributes of a mount (and, with AT_RECURSIVE, of all below it)."""
        libc = self._lib()
        ctypes = self._ctypes
        attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, 0)  # struct mount_attr
        self._check(libc.syscall(self._nr["mount_setattr"], dirfd, path.encode(), flags,
                                 ctypes.byref(attr), ctypes.sizeof(attr)),
                    f"mount_setattr {path}", path)

    def join_session_keyring(self, name: str) -> None:
        """keyctl(KEYCTL_JOIN_SESSION_KEYRING): a fresh session keyring, not the caller's."""
        self._lib()
        self._syscall("keyctl", 1, name.encode())

    def personality(self, persona: int) -> None:
        self._lib()
        self._syscall("personality", persona)

    def ioprio_set(self, klass: int, prio: int) -> None:
        self._lib()
        self._syscall("ioprio_set", 1, 0, klass << 13 | prio)  # IOPRIO_WHO_PROCESS, self

    def sched_setattr(self, policy: int, flags: int = 0, nice: int = 0, priority: int = 0,
                      runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
        self._lib()
        ctypes = self._ctypes

        class SchedAttr(ctypes.Structure):
            _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32),
                        ("flags", ctypes.c_uint64), ("nice", ctypes.c_int32),
                        ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                        ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]
        attr = SchedAttr(ctypes.sizeof(SchedAttr), policy, flags, nice, priority, runtime,
                         deadline, period)
        self._syscall("sched_setattr", 0, ctypes.byref(attr), 0)

    # -- seccomp ---------------------------------------------------------------------------
    def seccomp_set_filter(self, program: bytes, flags: int = 0) -> None:
        """seccomp(SECCOMP_SET_MODE_FILTER, flags, program): install a classic-BPF filter."""
        self._lib()
        ctypes = self._ctypes

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        buf = ctypes.create_string_buffer(program, len(program))
        prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
        self._syscall("seccomp", ctypes.c_long(1), ctypes.c_long(flags), ctypes.byref(prog))

    # -- eBPF (cgroup v2 device rules) -----------------------------------------------------
    def bpf_prog_load_cgroup_device(self, code: bytes) -> int:
        """BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd."""
        self._lib()
        ctypes = self._ctypes
        insns = ctypes.create_string_buffer(code, len(code))
        license = ctypes.create_string_buffer(b"Apache")
        log = ctypes.create_string_buffer(65536)
        attr = ctypes.create_string_buffer(72)
        import struct

        struct.pack_into("<IIQQIIQ", attr, 0, 15, len(code) // 8, ctypes.addressof(insns),
                         ctypes.addressof(license), 1, len(log), ctypes.addressof(log))
        struct.pack_into("<16s", attr, 48, b"bosun_devices")
        fd = self._lib().syscall(self._nr["bpf"], 5, attr, 72)
        if fd < 0:
            err = ctypes.get_errno()
            detail = " | ".join(log.value.decode(errors="replace").strip().splitlines()[-3:])
            raise OSError(err, os.strerror(err) + (f" ({detail})" if detail else ""))
        return fd

    def bpf_prog_attach_cgroup_device(self, cgroup_fd: int, prog_fd: int) -> None:
        """BPF_PROG_ATTACH as BPF_CGROUP_DEVICE with BPF_F_ALLOW_MULTI."""
        self._lib()
        import struct

        attr = self._ctypes.create_string_buffer(struct.pack("<IIIII", cgroup_fd, prog_fd, 6, 2, 0))
        self._check(self._lib().syscall(self._nr["bpf"], 8, attr, 20), "bpf(BPF_PROG_ATTACH)")

    # -- process attributes -------------------------------------------------------------------
    def prctl(self, option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
        return self._check(self._lib().prctl(option, a2, a3, a4, a5), "prctl")

    def capget(self) -> tuple[int, int, int]:
        """Return (effective, permitted, inheritable) of the calling thread."""
        self._lib()
        ctypes = self._ctypes
        hdr = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()
        self._syscall("capget", ctypes.byref(hdr), ctypes.byref(data))
        return (data[0] | data[3] << 32, data[1] | data[4] << 32, data[2] | data[5] << 32)

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._lib()
        ctypes = self._ctypes
        hdr = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
        m = 0xFFFFFFFF
        data = (ctypes.c_uint32 * 6)(
            effective & m, permitted & m, inheritable & m,
            effective >> 32, permitted >> 32, inheritable >> 32)
        self._syscall("capset", ctypes.byref(hdr), ctypes.byref(data))

    # -- thin wrappers kept here so tests can replace them --------------------------------------
    def mknod(self, name: str, mode: int, device: int, dir_fd: int) -> None:
        os.mknod(name, mode, device, dir_fd=dir_fd)

    def write_file(self, path: str, data: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)


LINUX = Kernel()


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40
