"""The last steps before execve: rlimits, user, capabilities, no_new_privs, cwd, fds.

Shared by the container's init and by `exec`; runs in the target namespaces, as root, and
leaves the process exactly as process.json describes it.
"""

from __future__ import annotations

import os

from bosun import kernel as K
from bosun.kernel import caps
from bosun.runtime.errors import RuntimeErr
from bosun.runtime.spec import RLIMITS

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def env_dict(env) -> dict[str, str]:
    out = {}
    for e in env or ():
        k, sep, v = e.partition("=")
        if k:
            out[k] = v
    return out


def set_rlimits(process: dict) -> None:
    if not process.get("rlimits"):
        return  # preload() imported resource only if there are rlimits (docker sets none)
    import resource

    for rl in process.get("rlimits") or ():
        kind = RLIMITS[rl["type"]]
        try:
            resource.setrlimit(kind, (rl["soft"], rl["hard"]))
        except (ValueError, OSError):
            cur = resource.getrlimit(kind)
            raise RuntimeErr(
                f"cannot set {rl['type']} to soft={rl['soft']} hard={rl['hard']}: the current "
                f"hard limit is {cur[1]} and raising it needs CAP_SYS_RESOURCE") from None


def set_oom_score_adj(process: dict) -> None:
    adj = process.get("oomScoreAdj")
    if adj is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(adj))
    except OSError as e:
        raise RuntimeErr(f"cannot set oomScoreAdj {adj}: {e.strerror} "
                         "(lowering it needs CAP_SYS_RESOURCE)") from None


def lookup_executable(arg0: str, env: dict) -> str:
    """Resolve args[0] against the container's PATH, as execvp would, inside the container."""
    if "/" in arg0:
        candidates = [arg0]
    else:
        candidates = [os.path.join(d or ".", arg0)
                      for d in env.get("PATH", DEFAULT_PATH).split(":")]
    denied = None
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if not (st.st_mode & 0o170000 == 0o100000):
            continue
        if os.access(c, os.X_OK, effective_ids=True):
            return c
        denied = c
    if denied:
        raise RuntimeErr(f"exec: {arg0!r}: permission denied")
    where = "no such file or directory" if "/" in arg0 else "executable file not found in $PATH"
    raise RuntimeErr(f"exec: {arg0!r}: {where}")


def home_for(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def set_user_and_caps(process: dict, kernel: K.Kernel = K.LINUX) -> None:
    """Bounding set, then setuid (keeping caps), then the other four sets, as runc does."""
    k = kernel
    cfg = process.get("capabilities")
    if cfg is not None:
        bounding = caps.to_mask(cfg.get("bounding"))
        for cap in range(K.last_cap() + 1):
            if not bounding >> cap & 1:
                try:
                    k.prctl(K.PR_CAPBSET_DROP, cap)
                except OSError:
                    pass  # the kernel does not know this capability
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    k.prctl(K.PR_SET_KEEPCAPS, 1)
    groups = user.get("additionalGids") or []
    if groups or _setgroups_allowed():
        os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    k.prctl(K.PR_SET_KEEPCAPS, 0)
    if cfg is not None:
        k.capset(caps.to_mask(cfg.get("effective")), caps.to_mask(cfg.get("permitted")),
                 caps.to_mask(cfg.get("inheritable")))
        k.prctl(K.PR_CAP_AMBIENT, K.PR_CAP_AMBIENT_CLEAR_ALL)
        for name in cfg.get("ambient") or ():
            try:
                k.prctl(K.PR_CAP_AMBIENT, K.PR_CAP_AMBIENT_RAISE, caps.NUMBERS[name])
            except OSError:
                pass  # runc ignores ambient caps that are not also permitted and inheritable


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def enter_cwd(cwd: str) -> None:
    """chdir, then prove the result is inside our root (CVE-2024-21626: a cwd through a
    leaked fd or /proc/self/fd would otherwise land the process on the host)."""
    try:
        os.chdir(cwd)
    except OSError as e:
        raise RuntimeErr(f"cannot chdir to {cwd}: {e.strerror}") from None
    try:
        here = os.getcwd()  # glibc: ENOENT when the cwd is not below our root
    except OSError:
        here = ""
    if not here.startswith("/"):
        raise RuntimeErr(f"cwd {cwd} is outside the container root")


def cloexec_from(first: int) -> None:
    """Mark every fd >= first close-on-exec, so no host fd outlives execve (fds that bosun
    itself opens already are). The fds below first are passed on, inheritable."""
    import fcntl

    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(first, 1024)
    for fd in fds:
        if fd >= first:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            except OSError:
                pass
    for fd in range(3, first):
        os.set_inheritable(fd, True)


def container_env(process: dict, extra: dict | None = None) -> dict[str, str]:
    env = env_dict(process.get("env"))
    if extra:
        env.update(extra)
    if "PATH" not in env:
        env["PATH"] = DEFAULT_PATH
    return env


_PERSONALITY = {"LINUX": 0x0000, "LINUX32": 0x0008}
_IOPRIO_CLASS = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
_SCHED_POLICY = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                 "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
_SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
                "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
                "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
                "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}


def check_scheduling(config: dict) -> None:
    """Validate linux.personality, process.ioPriority and process.scheduler (create time)."""
    from bosun.runtime.errors import ConfigError

    pers = (config.get("linux") or {}).get("personality")
    if pers is not None:
        if not isinstance(pers, dict) or pers.get("domain") not in _PERSONALITY:
            raise ConfigError("linux.personality.domain must be LINUX or LINUX32")
        if pers.get("flags"):
            raise ConfigError("linux.personality flags are not supported")
    if (config.get("linux") or {}).get("intelRdt") is not None:
        raise ConfigError("linux.intelRdt is not supported")
    process = config.get("process") or {}
    io = process.get("ioPriority")
    if io is not None:
        if not isinstance(io, dict) or io.get("class") not in _IOPRIO_CLASS:
            raise ConfigError("process.ioPriority.class must be IOPRIO_CLASS_RT, _BE or _IDLE")
        if not isinstance(io.get("priority", 0), int) or not 0 <= io.get("priority", 0) <= 7:
            raise ConfigError("process.ioPriority.priority must be 0..7")
    sched = process.get("scheduler")
    if sched is not None:
        if not isinstance(sched, dict) or sched.get("policy") not in _SCHED_POLICY:
            raise ConfigError(f"unknown scheduler policy {sched.get('policy') if isinstance(sched, dict) else sched!r}")
        for f in sched.get("flags") or ():
            if f not in _SCHED_FLAGS:
                raise ConfigError(f"unknown scheduler flag {f!r}")


def set_scheduling(config: dict, kernel: K.Kernel = K.LINUX) -> None:
    """personality, I/O priority and scheduling policy: all inherited across execve."""
    pers = (config.get("linux") or {}).get("personality")
    if pers is not None:
        kernel.personality(_PERSONALITY[pers["domain"]])
    process = config.get("process") or {}
    io = process.get("ioPriority")
    if io is not None:
        try:
            kernel.ioprio_set(_IOPRIO_CLASS[io["class"]], io.get("priority", 0))
        except OSError as e:
            raise RuntimeErr(f"cannot set I/O priority: {e.strerror}") from None
    sched = process.get("scheduler")
    if sched is not None:
        flags = 0
        for f in sched.get("flags") or ():
            flags |= _SCHED_FLAGS[f]
        try:
            kernel.sched_setattr(_SCHED_POLICY[sched["policy"]], flags, sched.get("nice", 0),
                                 sched.get("priority", 0), sched.get("runtime", 0),
                                 sched.get("deadline", 0), sched.get("period", 0))
        except OSError as e:
            raise RuntimeErr(f"cannot set scheduler {sched['policy']}: {e.strerror}") from None


def apparmor_enabled(sysfs: str = "/sys/module/apparmor/parameters/enabled") -> bool:
    try:
        with open(sysfs) as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def selinux_enabled(selinuxfs: str = "/sys/fs/selinux") -> bool:
    return os.path.exists(os.path.join(selinuxfs, "enforce"))


def set_security_labels(process: dict, apparmor: bool | None = None,
                        selinux: bool | None = None) -> None:
    """process.apparmorProfile / selinuxLabel, applied at the next execve — on hosts that run
    AppArmor / SELinux; elsewhere ignored, as runc does."""
    profile = process.get("apparmorProfile")
    if profile and (apparmor_enabled() if apparmor is None else apparmor):
        _write_attr(["/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"],
                    f"exec {profile}", f"AppArmor profile {profile!r}")
    label = process.get("selinuxLabel")
    if label and (selinux_enabled() if selinux is None else selinux):
        _write_attr(["/proc/self/attr/exec"], label, f"SELinux label {label!r}")


def _write_attr(paths: list[str], value: str, what: str) -> None:
    for p in paths:
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise RuntimeErr(f"cannot apply {what}: {e.strerror}") from None
        try:
            os.write(fd, value.encode())
            return
        except OSError as e:
            raise RuntimeErr(f"cannot apply {what}: {e.strerror}") from None
        finally:
            os.close(fd)
    raise RuntimeErr(f"cannot apply {what}: the kernel has no attr interface for it")
