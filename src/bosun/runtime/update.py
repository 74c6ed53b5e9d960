"""update: change a live container's resource limits (runc update)."""

from __future__ import annotations

from bosun.runtime import resources
from bosun.runtime.errors import RuntimeErr, StateError
from bosun.runtime.state import STOPPED, Container

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """"64m", "1g", "1024", "-1" → bytes (binary units, as Docker and runc read them)."""
    s = text.strip().lower()
    if s == "-1":
        return -1
    if s.endswith("b") and len(s) > 1 and s[-2] in "kmgt":
        s = s[:-1]
    num, unit = (s[:-1], s[-1]) if s and s[-1] in _UNITS and not s[-1].isdigit() else (s, "")
    try:
        value = float(num)
    except ValueError:
        raise RuntimeErr(f"invalid size {text!r}") from None
    if not 0 <= value < float("inf"):  # also refuses inf and nan
        raise RuntimeErr(f"invalid size {text!r}")
    return int(value * _UNITS[unit])


def merge(base: dict, change: dict) -> dict:
    """Nested merge of an OCI resources object (lists are replaced whole)."""
    out = dict(base)
    for k, v in change.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def update(root: str, cid: str, change: dict) -> None:
    c = Container.load(root, cid)
    if c.status() == STOPPED:
        raise StateError(f"container {cid!r} is not running")
    resources.apply(c.record.get("cgroups") or {}, change)
    linux = c.config.setdefault("linux", {})
    linux["resources"] = merge(linux.get("resources") or {}, change)
    c.save()
