"""The cgroup v2 device program assembler (no kernel needed)."""

import struct

import pytest

from bosun.runtime import devices_bpf as D
from bosun.runtime.errors import ConfigError


def decode(code: bytes):
    out = []
    for i in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack("<BBhi", code[i:i + 8])
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def run(code: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """A tiny interpreter for the instructions the assembler emits."""
    regs = [0] * 11
    ctx = [access << 16 | dev_type, major, minor]
    prog = decode(code)
    pc = 0
    while True:
        op, dst, src, off, imm = prog[pc]
        pc += 1
        if op == D._LDXW:
            regs[dst] = ctx[off // 4]
        elif op == D._MOV64_X:
            regs[dst] = regs[src]
        elif op == D._MOV64_K:
            regs[dst] = imm & 0xFFFFFFFFFFFFFFFF
        elif op == D._AND64_K:
            regs[dst] &= imm & 0xFFFFFFFFFFFFFFFF
        elif op == D._RSH64_K:
            regs[dst] >>= imm
        elif op == D._JNE_K:
            if regs[dst] != imm & 0xFFFFFFFFFFFFFFFF:
                pc += off
        elif op == D._EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


R, W, M = 2, 4, 1
CHAR, BLOCK = 2, 1
RULES = [{"allow": False, "access": "rwm"},
         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
         {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
         {"allow": True, "type": "c", "major": 136, "access": "rw"},
         {"allow": False, "type": "c", "major": 136, "minor": 7, "access": "w"}]


@pytest.mark.parametrize("dev,access,want", [
    ((CHAR, 1, 3), R | W, 1),           # null rw
    ((CHAR, 1, 3), M, 1),
    ((CHAR, 1, 5), R, 1),               # zero read
    ((CHAR, 1, 5), W, 0),               # zero write: the rule covers only r
    ((CHAR, 1, 9), R, 0),               # urandom: deny-all
    ((BLOCK, 1, 3), R, 0),              # type matters
    ((CHAR, 136, 4), R | W, 1),         # major wildcard minor
    ((CHAR, 136, 7), W, 0),             # a later deny wins over an earlier allow
    ((CHAR, 136, 7), R, 1),             # ...only for the access it names
])
def test_last_matching_rule_decides(dev, access, want):
    code = D.assemble(RULES)
    assert run(code, dev[0], access, dev[1], dev[2]) == want


def test_nothing_matching_is_denied_and_allow_all_short_circuits():
    assert run(D.assemble([{"allow": True, "type": "c", "major": 1, "minor": 3}]),
               CHAR, R, 1, 9) == 0
    code = D.assemble([{"allow": False, "type": "c", "major": 1, "minor": 9},
                       {"allow": True, "access": "rwm"}])
    # the allow-all is last, so it decides everything; nothing may follow its exit
    assert run(code, CHAR, R, 1, 9) == 1
    assert decode(code)[-1][0] == D._EXIT and len(decode(code)) == 8


@pytest.mark.parametrize("rule", [{"type": "x"}, {"type": "c", "access": "rx"}])
def test_bad_rules_rejected(rule):
    with pytest.raises(ConfigError):
        D.assemble([rule])
