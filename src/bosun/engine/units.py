"""Docker's size strings ("64m", "1.5g", "100k", plain bytes) as bytes."""

from __future__ import annotations

import re

from bosun.engine.errors import InvalidParameter

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$", re.I)
_MULT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str | int) -> int:
    """Binary units as Docker's RAMInBytes: "1k" is 1024 bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise InvalidParameter(f"invalid size: '{text}'")
    return int(float(m.group(1)) * _MULT[m.group(2).lower()])
