"""Docker's --detach-keys syntax ("ctrl-p,ctrl-q", "a,ctrl-@"), shared by the CLI (which
watches the local terminal for it) and the shim (which watches an attached client's input)."""

from __future__ import annotations

DEFAULT = "ctrl-p,ctrl-q"
_CONTROL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse(spec: str | None) -> bytes:
    """The bytes a terminal sends for `spec` (the default when empty). ValueError, with the
    offending part as its argument, for anything else."""
    out = bytearray()
    for part in (spec or DEFAULT).split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            c = part[5].lower()
            code = _CONTROL.get(c)
            if code is None and "a" <= c <= "z":
                code = ord(c) - ord("a") + 1
            if code is None:
                raise ValueError(part)
            out.append(code)
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise ValueError(part)
    return bytes(out)
