"""Docker's default seccomp profile, as data, specialised per container like Docker does.

The rules follow the profile Docker publishes (moby's profiles/seccomp/default.json): an
allow-list with EPERM for everything else; a few syscalls allowed only with safe arguments;
groups of syscalls allowed only when the container's bounding set holds the capability that
makes them useful. Docker filters that profile by capabilities and architecture when it
creates a container; `default_profile` does the same and returns a plain OCI `linux.seccomp`
object. Everything else is refused with EPERM: syscalls never listed (keyctl, add_key,
request_key, userfaultfd, swapon, kexec_load, ...) and the gated ones when the container
lacks their capability (unshare, mount, setns without CAP_SYS_ADMIN, ...).

One deliberate deviation: Docker >= 19.03 allows ptrace, process_vm_readv and
process_vm_writev to every container on kernels >= 4.8. bosun gates them on CAP_SYS_PTRACE,
as Docker did before 19.03, so a container without that capability cannot ptrace at all
(not even PTRACE_TRACEME), whatever the kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from bosun.kernel import (CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS,
                          CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS)

EPERM = 1
ENOSYS = 38
AF_VSOCK = 40

# Allowed to every container, whatever its capabilities. Names a kernel or libseccomp does
# not know on some architecture (the *32 and *_time64 variants, socketcall, ...) are skipped
# when the filter is built.
ALWAYS = (
    # files, directories and descriptors
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
    "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock", "fstat", "fstat64",
    "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat",
    "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link", "linkat", "_llseek",
    "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at",
    "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "rename",
    "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "splice", "stat", "stat64",
    "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat", "utime",
    "utimensat", "utimensat_time64", "utimes", "vmsplice", "write", "writev",
    # extended attributes
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr",
    "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
    # waiting for events: poll/select/epoll, eventfd, signalfd, timerfd, inotify, pipes
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect",
    "pipe", "pipe2", "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64",
    "select", "signalfd", "signalfd4", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
    # ioctl, asynchronous I/O and io_uring, I/O priorities
    "ioctl", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "io_setup", "io_submit", "io_uring_enter", "io_uring_register",
    "io_uring_setup", "ioprio_get", "ioprio_set",
    # memory
    "brk", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock",
    "mlock2", "mlockall", "map_shadow_stack", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock",
    "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    # processes and threads (clone and clone3 are below: they depend on CAP_SYS_ADMIN)
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getcpu",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "get_thread_area", "gettid", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "pidfd_open",
    "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "restart_syscall", "rseq",
    "seccomp", "setpgid", "setpriority", "setrlimit", "set_robust_list", "setsid",
    "set_thread_area", "set_tid_address", "sysinfo", "tgkill", "tkill", "ugetrlimit",
    "uname", "vfork", "wait4", "waitid", "waitpid",
    "futex", "futex_time64", "futex_waitv",
    # signals
    "alarm", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn",
    # scheduling
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield",
    # user and group ids
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid",
    "getuid32", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
    # clocks and timers (setting the clock needs CAP_SYS_TIME, below)
    "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "getitimer", "gettimeofday", "nanosleep", "setitimer", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "times",
    # sockets (socket itself is conditional, below)
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
    "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
    # System V IPC and POSIX message queues
    "ipc", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget", "mq_getsetattr", "mq_notify",
    "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink",
)

# personality(2) only with these arguments: PER_LINUX, PER_LINUX32, UNAME26,
# UNAME26|PER_LINUX32, and 0xffffffff (query the current persona).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Without CAP_SYS_ADMIN, clone may not create namespaces (CLONE_NEWTIME cannot be passed to
# clone(2) at all: its bit is part of the exit-signal field there).
CLONE_NS_FLAGS = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
                  | CLONE_NEWNET | CLONE_NEWCGROUP)

# Allowed only when the bounding set holds the capability, in the order Docker lists them.
# A syscall may appear under several capabilities: any one of them allows it.
BY_CAPABILITY = (
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
    ("CAP_SYS_ADMIN", (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
        "setns", "syslog", "umount", "umount2", "unshare")),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_CHROOT", ("chroot",)),
    ("CAP_SYS_MODULE", ("delete_module", "init_module", "finit_module")),
    ("CAP_SYS_PACCT", ("acct",)),
    # Deviation from Docker >= 19.03 (see the module docstring): ptrace, process_vm_readv
    # and process_vm_writev are here only, not allowed to every container on kernels >= 4.8.
    ("CAP_SYS_PTRACE", ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                        "process_vm_writev", "ptrace")),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_TIME", ("settimeofday", "stime", "clock_settime", "clock_settime64")),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_SYS_NICE", ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
)

_ARM = ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
        "cacheflush", "set_tls")

# uname machine → (OCI architectures the filter covers, syscalls allowed only there).
# The native architecture comes first, then the ones its processes can also run as
# (i386 and x32 binaries on x86_64, 32-bit ARM on aarch64). An unknown machine gets no
# architectures list, which means "the native one only".
ARCHES = {
    "x86_64": (("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
               ("arch_prctl", "modify_ldt")),
    "aarch64": (("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"), _ARM),
    "armv7l": ((), _ARM),
    "armv8l": ((), _ARM),
    "i386": ((), ("modify_ldt",)),
    "i686": ((), ("modify_ldt",)),
    "ppc64le": (("SCMP_ARCH_PPC64LE",), ("sync_file_range2", "swapcontext")),
    "s390x": (("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
              ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr")),
    "riscv64": (("SCMP_ARCH_RISCV64",), ("riscv_flush_icache",)),
}


def _cap_name(name: str) -> str:
    name = name.strip().upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def _allow(names, **extra) -> dict:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **extra}


def default_profile(capabilities: Iterable[str], arch: str | None = None) -> dict:
    """Docker's default profile for a container whose bounding set is `capabilities`
    (names with or without CAP_), on machine `arch` (default: this host's, as uname -m).
    Returns a new `linux.seccomp` object each call."""
    caps = {_cap_name(c) for c in capabilities or ()}
    machine = arch or os.uname().machine
    architectures, arch_only = ARCHES.get(machine, ((), ()))
    admin = "CAP_SYS_ADMIN" in caps

    syscalls = [_allow(ALWAYS + arch_only)]
    syscalls.append(_allow(["socket"], args=[
        {"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]))
    for persona in PERSONALITIES:
        syscalls.append(_allow(["personality"], args=[
            {"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]))
    if not admin:
        # s390 passes the clone flags second
        flags_at = 1 if machine.startswith("s390") else 0
        syscalls.append(_allow(["clone"], args=[
            {"index": flags_at, "value": CLONE_NS_FLAGS, "valueTwo": 0,
             "op": "SCMP_CMP_MASKED_EQ"}]))
        # ENOSYS, not EPERM: libcs then fall back to clone(2), whose flags can be checked
        # (clone3 passes them in memory, out of a seccomp filter's reach).
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    for cap, names in BY_CAPABILITY:
        if cap in caps:
            syscalls.append(_allow(names))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": list(architectures),
        "syscalls": syscalls,
    }


def profile_for_config(config: dict, arch: str | None = None) -> dict:
    """default_profile for an OCI config, keyed on its process's bounding capabilities (as
    Docker does)."""
    bounding = ((config.get("process") or {}).get("capabilities") or {}).get("bounding") or ()
    return default_profile(bounding, arch)
