"""Go's syntaxes that docker's tools accept and print: strconv.Quote, time.ParseDuration and
go-units' sizes (RAMInBytes, HumanSize). A leaf module the CLI, the API and the engine share;
`re` is imported only by the parsers that need it (the CLI's start-up is a benchmark).
"""

from __future__ import annotations

import functools


class GoSyntaxError(ValueError):
    """str() is Go's own error text."""


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(s: str) -> str:
    """Go's %q / strconv.Quote for a string (as Docker's messages show values)."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
@functools.cache
def _pattern(name: str):
    import re

    return re.compile({"duration": r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)",
                       # go-units' RAMInBytes, which also takes a space before the unit
                       "ram": r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$"}[name], re.I)
_INT64_MAX = (1 << 63) - 1


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1h30m", "1.5s", "300ms", "-2s", "0")."""
    orig = text
    bad = GoSyntaxError(f"time: invalid duration {go_quote(orig)}")
    neg = False
    if text[:1] in ("-", "+"):
        neg = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise bad
    total = 0
    while text:
        m = _pattern("duration").match(text)
        number, unit = m.group(1), m.group(2)
        if number in ("", "."):
            raise bad
        if not unit:
            raise GoSyntaxError(f"time: missing unit in duration {go_quote(orig)}")
        scale = _DURATION_UNITS.get(unit)
        if scale is None:
            raise GoSyntaxError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(orig)}")
        whole, _, frac = number.partition(".")
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // (10 ** len(frac))
        total += value
        if total > _INT64_MAX:
            raise bad
        text = text[m.end():]
    return -total if neg else total


_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str | int) -> int:
    """go-units RAMInBytes: binary multiples ("64m", "1.5GiB", "100000")."""
    if isinstance(text, int):
        return text
    m = _pattern("ram").match(str(text))
    if not m:
        raise GoSyntaxError(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _RAM_UNITS[m.group(2).lower()])


_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSizeWithPrecision: decimal units, %.{precision}g ("2.155MB")."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{_DECIMAL_UNITS[i]}"
