"""Capability names <-> numbers and masks (include/uapi/linux/capability.h)."""

from __future__ import annotations

import pytest

from bosun import kernel as K
from bosun.kernel import caps


@pytest.mark.parametrize("name,number", [
    ("CAP_CHOWN", 0), ("CAP_DAC_OVERRIDE", 1), ("CAP_KILL", 5), ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8), ("CAP_NET_BIND_SERVICE", 10), ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13), ("CAP_SYS_CHROOT", 18), ("CAP_SYS_PTRACE", 19), ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_RESOURCE", 24), ("CAP_MKNOD", 27), ("CAP_AUDIT_WRITE", 29), ("CAP_SETFCAP", 31),
    ("CAP_MAC_ADMIN", 33), ("CAP_SYSLOG", 34), ("CAP_AUDIT_READ", 37), ("CAP_PERFMON", 38),
    ("CAP_BPF", 39), ("CAP_CHECKPOINT_RESTORE", 40),
])
def test_numbers_match_the_kernel(name, number):
    assert caps.NUMBERS[name] == number
    assert caps.to_mask([name]) == 1 << number


def test_table_is_dense_and_unique():
    assert len(caps.NAMES) == len(set(caps.NAMES)) == 41
    assert sorted(caps.NUMBERS.values()) == list(range(41))
    assert all(n.startswith("CAP_") and n == n.upper() for n in caps.NAMES)


def test_mask_of_several():
    assert caps.to_mask(["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]) == 1 | 1 << 5 | 1 << 21
    assert caps.to_mask(["CAP_KILL", "CAP_KILL"]) == 1 << 5


@pytest.mark.parametrize("names", [None, [], ()])
def test_empty_mask(names):
    assert caps.to_mask(names) == 0


@pytest.mark.parametrize("spelling", ["CAP_KILL", "cap_kill", "KILL", "kill", "Cap_Kill"])
def test_names_are_case_insensitive_and_prefix_optional(spelling):
    assert caps.to_mask([spelling]) == 1 << 5


@pytest.mark.parametrize("bad", ["CAP_MAKE_COFFEE", "CAP_", "", "CAP_KILLX", "41"])
def test_unknown_name(bad):
    with pytest.raises(ValueError) as ei:
        caps.to_mask(["CAP_CHOWN", bad])
    assert str(ei.value) == f"unknown capability {bad!r}"


def test_unknown_name_message_uses_what():
    with pytest.raises(ValueError, match="unknown ambient capability 'NOPE'"):
        caps.to_mask(["NOPE"], what="ambient capability")


def test_to_names():
    assert caps.to_names(0) == []
    assert caps.to_names(1 << 5 | 1) == ["CAP_CHOWN", "CAP_KILL"]
    assert caps.to_names(1 << 40) == ["CAP_CHECKPOINT_RESTORE"]
    assert caps.to_names(1 << 41 | 1 << 63) == []     # bits beyond the table are ignored


def test_round_trip():
    full = (1 << len(caps.NAMES)) - 1
    assert caps.to_mask(caps.to_names(full)) == full
    some = ["CAP_NET_RAW", "CAP_AUDIT_WRITE", "CAP_BPF"]
    assert caps.to_names(caps.to_mask(some)) == some


def test_last_cap_reads_proc(tmp_path, monkeypatch):
    f = tmp_path / "cap_last_cap"
    f.write_text("38\n")
    real_open = open
    monkeypatch.setattr(K, "open", lambda p, *a, **kw: real_open(
        f if p == "/proc/sys/kernel/cap_last_cap" else p, *a, **kw), raising=False)
    assert K.last_cap() == 38


def test_last_cap_fallback(monkeypatch):
    def no_proc(*a, **kw):
        raise PermissionError(13, "denied")

    monkeypatch.setattr(K, "open", no_proc, raising=False)
    assert K.last_cap() == 40


def test_last_cap_on_this_host():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert K.last_cap() == int(f.read())
