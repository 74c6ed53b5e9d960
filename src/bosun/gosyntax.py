"""Go's syntaxes that docker's tools accept and print: strconv.Quote, time.ParseDuration,
RFC 3339 times and Docker's timestamps (GetTimestamp), go-units' sizes (RAMInBytes,
HumanSize). A leaf module the CLI, the API and the engine share;
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


# -- times ---------------------------------------------------------------------------------

_NS = 1_000_000_000


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (no datetime import needed)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _digits(text: str, n: int | None = None) -> int:
    if not text or not text.isascii() or not text.isdigit() or (n is not None and len(text) != n):
        raise ValueError(text)
    return int(text)


def parse_rfc3339_ns(text: str, local_offset: int | None = None) -> int:
    """`YYYY-MM-DD[THH[:MM[:SS[.frac]]]]` with a zone ("Z" or ±HH:MM), or without one when
    `local_offset` (seconds east of UTC) is given → unix nanoseconds. ValueError otherwise."""
    zone = 0
    if text.endswith("Z"):
        text = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        sign = 1 if text[-6] == "+" else -1
        zone = sign * (_digits(text[-5:-3], 2) * 3600 + _digits(text[-2:], 2) * 60)
        text = text[:-6]
    elif local_offset is not None:
        zone = local_offset
    else:
        raise ValueError("no time zone")
    date, _, clock = text.partition("T")
    parts = date.split("-")
    if len(parts) != 3:
        raise ValueError(date)
    y, m, d = _digits(parts[0], 4), _digits(parts[1], 2), _digits(parts[2], 2)
    if not 1 <= m <= 12 or not 1 <= d <= _days_in_month(y, m):
        raise ValueError(date)
    hms, frac = clock, ""
    if "." in clock:
        hms, _, frac = clock.partition(".")
        _digits(frac)
    fields = [_digits(f, 2) for f in hms.split(":")] if "T" in text else []
    if len(fields) > 3 or (frac and len(fields) != 3):
        raise ValueError(clock)
    hour, minute, second = (fields + [0, 0, 0])[:3]
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(clock)
    seconds = _days_from_civil(y, m, d) * 86400 + hour * 3600 + minute * 60 + second - zone
    return seconds * _NS + int(frac[:9].ljust(9, "0") or 0)


def _parse_unix(value: str) -> float:
    """`seconds[.fraction]` (Docker's parseTimestamp) → float."""
    sec, dot, frac = value.partition(".")
    sign = -1 if sec.startswith("-") else 1
    seconds = _digits(sec[1:] if sec[:1] in "+-" else sec)
    nanos = int(frac[:9].ljust(9, "0")) if dot and _digits(frac) >= 0 else 0
    return sign * seconds + nanos / _NS


def parse_timestamp(value: str, now: float | None = None) -> float:
    """A `since`/`until` value as Docker accepts it (moby's GetTimestamp): a Go duration
    ("10m": that long before now, whole seconds), an RFC 3339 date or time (local time when
    it has no zone), or unix seconds with an optional fraction. "" is 0 (not set).
    GoSyntaxError for anything else."""
    import time

    if value == "":
        return 0.0
    now = time.time() if now is None else now
    if value != "0":
        try:
            return float((int(now * _NS) - parse_duration(value)) // _NS)
        except ValueError:
            pass
    # as GetTimestamp: no zone written (no "Z", "+" or three dashes) means local time
    in_location = not any(ch in value for ch in "zZ+") and value.count("-") != 3
    local = time.localtime(now).tm_gmtoff if in_location else None
    try:
        return parse_rfc3339_ns(value.replace("z", "Z"), local) / _NS
    except ValueError:
        if "-" in value:
            raise GoSyntaxError(f'parsing time "{value}": not an RFC 3339 time') from None
    try:
        return _parse_unix(value)
    except ValueError:
        raise GoSyntaxError(
            f'failed to parse value as time or duration: "{value}"') from None
