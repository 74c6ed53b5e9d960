"""linux.seccomp → a classic-BPF program, made by libseccomp (its own Python bindings; no
hand-made BPF).

`compile` runs in the runtime before it forks, so a bad profile fails `create` and the
container's init needs neither libseccomp nor the host's files after pivot_root. Compiling
Docker's default profile costs ~11 ms, more than the rest of a container's set-up together, so
programs are cached by a digest of the profile and of what else shapes the output. `load`
happens as late as possible (right before execve when noNewPrivileges is set; otherwise before
capabilities are dropped, since loading then needs CAP_SYS_ADMIN) — as runc does.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from bosun.runtime.errors import ConfigError, RuntimeErr

_ARCHES = {
    "SCMP_ARCH_X86": "X86", "SCMP_ARCH_X86_64": "X86_64", "SCMP_ARCH_X32": "X32",
    "SCMP_ARCH_ARM": "ARM", "SCMP_ARCH_AARCH64": "AARCH64", "SCMP_ARCH_MIPS": "MIPS",
    "SCMP_ARCH_MIPS64": "MIPS64", "SCMP_ARCH_MIPS64N32": "MIPS64N32",
    "SCMP_ARCH_MIPSEL": "MIPSEL", "SCMP_ARCH_MIPSEL64": "MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32": "MIPSEL64N32", "SCMP_ARCH_PPC": "PPC", "SCMP_ARCH_PPC64": "PPC64",
    "SCMP_ARCH_PPC64LE": "PPC64LE", "SCMP_ARCH_S390": "S390", "SCMP_ARCH_S390X": "S390X",
    "SCMP_ARCH_PARISC": "PARISC", "SCMP_ARCH_PARISC64": "PARISC64",
    "SCMP_ARCH_RISCV64": "RISCV64",
}
_OPS = {"SCMP_CMP_NE": "NE", "SCMP_CMP_LT": "LT", "SCMP_CMP_LE": "LE", "SCMP_CMP_EQ": "EQ",
        "SCMP_CMP_GE": "GE", "SCMP_CMP_GT": "GT", "SCMP_CMP_MASKED_EQ": "MASKED_EQ"}
_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": "CTL_TSYNC", "SECCOMP_FILTER_FLAG_LOG": "CTL_LOG",
          "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "CTL_SSB"}
_FLAG_BITS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
              "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
EPERM = 1
BPF_MAXINSNS = 4096


class Program(NamedTuple):
    """A compiled filter: sock_filter instructions (8 bytes each) and seccomp(2) flags."""
    code: bytes
    flags: int


def _bindings():
    try:
        import seccomp
    except ImportError:
        raise RuntimeErr("linux.seccomp is set but libseccomp's Python bindings are not "
                         "installed (Debian: python3-seccomp)") from None
    return seccomp


def action(sc, name: str, errno_ret: int | None, default_errno: int | None):
    """An OCI action name → a libseccomp action value."""
    if name == "SCMP_ACT_ALLOW":
        return sc.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return sc.ERRNO(errno_ret if errno_ret is not None else
                        default_errno if default_errno is not None else EPERM)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return sc.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return sc.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return sc.TRAP
    if name == "SCMP_ACT_LOG":
        return sc.LOG
    if name == "SCMP_ACT_TRACE":
        return sc.TRACE(errno_ret if errno_ret is not None else EPERM)
    if name == "SCMP_ACT_NOTIFY":
        raise ConfigError("seccomp action SCMP_ACT_NOTIFY (a listener) is not supported")
    raise ConfigError(f"unknown seccomp action {name!r}")


def build(cfg: dict):
    """Compile linux.seccomp into a libseccomp SyscallFilter (not loaded)."""
    if not isinstance(cfg, dict):
        raise ConfigError("linux.seccomp must be an object")
    sc = _bindings()
    default_errno = cfg.get("defaultErrnoRet")
    if cfg.get("listenerPath"):
        raise ConfigError("seccomp listenerPath (notify) is not supported")
    f = sc.SyscallFilter(action(sc, cfg.get("defaultAction") or "", None, default_errno))
    # bosun handles no_new_privs itself (noNewPrivileges); libseccomp would force it on.
    f.set_attr(sc.Attr.CTL_NNP, 0)
    for flag in cfg.get("flags") or ():
        attr = _FLAGS.get(flag)
        if attr is None:
            raise ConfigError(f"seccomp flag {flag!r} is not supported")
        f.set_attr(getattr(sc.Attr, attr), 1)
    for arch in cfg.get("architectures") or ():
        name = _ARCHES.get(arch)
        if name is None:
            raise ConfigError(f"unknown seccomp architecture {arch!r}")
        a = getattr(sc.Arch, name)
        try:
            if not f.exist_arch(a):
                f.add_arch(a)
        except (RuntimeError, ValueError):
            pass  # libseccomp can't add every architecture to every native one; runc skips too
    for rule in cfg.get("syscalls") or ():
        if not isinstance(rule, dict) or not isinstance(rule.get("names"), list):
            raise ConfigError("each seccomp syscalls entry needs a names array")
        # a rule's errnoRet defaults to EPERM; defaultErrnoRet is for defaultAction only
        act = action(sc, rule.get("action") or "", rule.get("errnoRet"), None)
        conds = [_arg(sc, a) for a in rule.get("args") or ()]
        # libseccomp ANDs the conditions of one rule but refuses two on the same argument;
        # runc then adds one rule per condition (an OR), and so do we.
        indexes = [a.get("index") for a in rule.get("args") or ()]
        groups = [[c] for c in conds] if len(set(indexes)) != len(indexes) else [conds]
        for name in rule["names"]:
            if not _known(sc, name):
                continue  # a syscall this libseccomp/architecture doesn't know: skip, as runc
            for group in groups:
                try:
                    f.add_rule(act, name, *group)
                except RuntimeError as e:
                    if "-13" in str(e):  # EACCES: the rule's action is the default action
                        break
                    raise ConfigError(f"seccomp rule for {name}: {e}") from None
    return f


def _known(sc, name) -> bool:
    """libseccomp knows the name (-1 is __NR_SCMP_ERROR; other negatives are its pseudo
    numbers for syscalls that exist only on other architectures, which it maps itself)."""
    try:
        return sc.resolve_syscall(sc.Arch.NATIVE, name) != -1
    except (ValueError, RuntimeError, TypeError):
        return False


def _arg(sc, a: dict):
    if not isinstance(a, dict):
        raise ConfigError("seccomp args entries must be objects")
    op = _OPS.get(a.get("op"))
    if op is None:
        raise ConfigError(f"unknown seccomp operator {a.get('op')!r}")
    index = a.get("index")
    if not isinstance(index, int) or not 0 <= index < 6:
        raise ConfigError("seccomp argument index must be 0..5")
    return sc.Arg(index, getattr(sc, op), a.get("value", 0), a.get("valueTwo", 0))


def compile(cfg: dict, cache_dir: str | None = None) -> Program:  # noqa: A001
    """linux.seccomp → Program, through the cache in `cache_dir` (a directory only root
    writes, like the runtime's state root) when given."""
    if not isinstance(cfg, dict):
        raise ConfigError("linux.seccomp must be an object")
    flags = 0
    for flag in cfg.get("flags") or ():
        if flag not in _FLAG_BITS:
            raise ConfigError(f"seccomp flag {flag!r} is not supported")
        flags |= _FLAG_BITS[flag]
    path = None
    if cache_dir:
        path = os.path.join(cache_dir, _cache_key(cfg) + ".bpf")
        try:
            with open(path, "rb") as f:
                code = f.read(BPF_MAXINSNS * 8 + 1)
            if code and len(code) % 8 == 0 and len(code) <= BPF_MAXINSNS * 8:
                return Program(code, flags)
        except OSError:
            pass
    code = _export(build(cfg))
    if path:
        from bosun.runtime.state import atomic_write

        try:
            os.makedirs(cache_dir, 0o700, exist_ok=True)
            atomic_write(path, code, 0o600, durable=False)  # lost on a crash: compiled again
        except OSError:
            pass  # a cache that cannot be written only costs time
    return Program(code, flags)


def _cache_key(cfg: dict) -> str:
    """The profile, and what else decides the program: the architecture, libseccomp's API
    level (the kernel's features it found) and the bindings' build (libseccomp's version)."""
    import hashlib

    from bosun import quickjson

    sc = _bindings()
    st = os.stat(sc.__file__)
    meta = [os.uname().machine, sc.get_api(), st.st_size, st.st_mtime_ns]
    # Key order as given: the same producer gives the same text; another order only misses.
    return hashlib.sha256(quickjson.dumps([meta, cfg]).encode()).hexdigest()


def _export(f) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as out:
        try:
            f.export_bpf(out)
        except (OSError, RuntimeError) as e:
            raise ConfigError(f"cannot compile seccomp profile: {e}") from None
        out.seek(0)
        code = out.read()
    if not code or len(code) % 8 or len(code) > BPF_MAXINSNS * 8:
        raise ConfigError(f"seccomp profile compiles to {len(code) // 8} instructions; the "
                          f"kernel takes at most {BPF_MAXINSNS}")
    return code


def load(prog: Program, kernel=None) -> None:
    from bosun import kernel as K

    try:
        (kernel or K.LINUX).seccomp_set_filter(prog.code, prog.flags)
    except OSError as e:
        raise RuntimeErr(f"cannot load seccomp filter: {e.strerror or e}") from None
