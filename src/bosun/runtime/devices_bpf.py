"""Device rules on cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the
container's cgroup, since v2 has no devices.allow/deny files.

The program is assembled here from the OCI rule list (a dozen instructions per rule) and
loaded with the bpf() system call. Semantics follow the v1 devices controller as runc
emulates it: the *last* rule whose type, major, minor match and whose access covers the
requested access decides; nothing matching means deny.

Context the kernel passes (struct bpf_cgroup_dev_ctx): u32 access_type (access << 16 | type),
u32 major, u32 minor.
"""

from __future__ import annotations

import os
import struct

from bosun.runtime.errors import ConfigError, RuntimeErr

BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2
ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD / READ / WRITE
TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}

# opcodes
_LDXW = 0x61        # BPF_LDX | BPF_MEM | BPF_W
_MOV64_X = 0xBF     # BPF_ALU64 | BPF_MOV | BPF_X
_MOV64_K = 0xB7     # BPF_ALU64 | BPF_MOV | BPF_K
_AND64_K = 0x57     # BPF_ALU64 | BPF_AND | BPF_K
_RSH64_K = 0x77     # BPF_ALU64 | BPF_RSH | BPF_K
_JNE_K = 0x55       # BPF_JMP | BPF_JNE | BPF_K
_EXIT = 0x95        # BPF_JMP | BPF_EXIT

R0, R1, R2, R3, R4, R5, R6 = range(7)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _access_mask(access: str) -> int:
    mask = 0
    for ch in access or "rwm":
        if ch not in ACCESS:
            raise ConfigError(f"device rule access {access!r} must be made of r, w and m")
        mask |= ACCESS[ch]
    return mask


def assemble(rules: list[dict]) -> bytes:
    """OCI linux.resources.devices → eBPF byte code."""
    prog = [
        insn(_LDXW, R2, R1, 0),        # r2 = ctx->access_type
        insn(_MOV64_X, R3, R2),        # r3 = r2 & 0xffff  (device type)
        insn(_AND64_K, R3, imm=0xFFFF),
        insn(_RSH64_K, R2, imm=16),    # r2 >>= 16         (requested access)
        insn(_LDXW, R4, R1, 4),        # r4 = ctx->major
        insn(_LDXW, R5, R1, 8),        # r5 = ctx->minor
    ]
    for rule in reversed(rules):       # the last matching rule wins: test it first
        block: list[tuple] = []        # (code, dst, src, imm) of conditional jumps / moves
        t = rule.get("type") or "a"
        if t not in ("a", "b", "c"):
            raise ConfigError(f"device rule type {t!r} must be a, b or c")
        if t != "a":
            block.append(("jne", R3, TYPES[t]))
        mask = _access_mask(rule.get("access") or "rwm")
        if mask != 0b111:
            block.append(("mov", R6, R2))
            block.append(("and", R6, ~mask & 0xFFFFFFFF))
            block.append(("jne", R6, 0))      # asks for access the rule doesn't cover
        if t != "a":
            for reg, key in ((R4, "major"), (R5, "minor")):
                v = rule.get(key)
                if v is not None and v >= 0:
                    block.append(("jne", reg, v))
        block.append(("ret", 1 if rule.get("allow") else 0))
        n = len(block) + 1                    # "ret" is two instructions
        for i, op in enumerate(block):
            if op[0] == "jne":
                prog.append(insn(_JNE_K, op[1], off=n - i - 1, imm=op[2]))
            elif op[0] == "mov":
                prog.append(insn(_MOV64_X, op[1], op[2]))
            elif op[0] == "and":
                prog.append(insn(_AND64_K, op[1], imm=_s32(op[2])))
            else:
                prog.append(insn(_MOV64_K, R0, imm=op[1]))
                prog.append(insn(_EXIT))
        if len(block) == 1:
            return b"".join(prog)             # matches everything: earlier rules can't matter
    prog.append(insn(_MOV64_K, R0, imm=0))     # nothing matched: deny
    prog.append(insn(_EXIT))
    return b"".join(prog)


def _s32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def attach(cgroup_dir: str, rules: list[dict], kernel=None) -> None:
    """Load the program for `rules` and attach it to the cgroup v2 directory."""
    from bosun import kernel as K

    k = kernel or K.LINUX
    code = assemble(rules)
    try:
        prog_fd = k.bpf_prog_load_cgroup_device(code)
    except OSError as e:
        raise RuntimeErr(f"cannot load the cgroup device eBPF program: {e.strerror}") from None
    try:
        dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            k.bpf_prog_attach_cgroup_device(dfd, prog_fd)
        except OSError as e:
            raise RuntimeErr(f"cannot attach the device program to {cgroup_dir}: "
                             f"{e.strerror}") from None
        finally:
            os.close(dfd)
    finally:
        os.close(prog_fd)
