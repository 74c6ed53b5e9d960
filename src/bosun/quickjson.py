"""JSON through CPython's C accelerator (_json) alone.

`import json` pulls in `re`, which pulls in `enum`: about 10 ms, a quarter of the runtime's
start-up. The C scanner and encoder that `json` itself uses need neither, so the runtime's
hot path reads config.json and writes state.json with them directly. Behaviour matches
json.loads/json.dumps (strict strings, no NaN/Infinity) for everything the runtime handles;
pretty-printed output for humans still goes through `json`.
"""

from __future__ import annotations

import _json

_WS = " \t\n\r"


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constants)



_scanner = _json.make_scanner(_Context())
def _unserializable(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_encoder = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii, None, ": ", ", ",
                              False, False, False)


def loads(s: str | bytes):
    """Parse a JSON document; ValueError (with the offset) if it is not one."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    end = len(s)
    i = 0
    while i < end and s[i] in _WS:
        i += 1
    try:
        obj, i = _scanner(s, i)
    except StopIteration as e:
        raise ValueError(f"expecting a value at offset {e.value}") from None
    except SystemError:
        # The C scanner reports syntax errors with json.decoder's exception class, which it
        # expects to be imported already. Errors are rare: let json say what is wrong.
        import json

        json.loads(s)
        raise
    while i < end and s[i] in _WS:
        i += 1
    if i != end:
        raise ValueError(f"extra data at offset {i}")
    return obj


def dumps(obj) -> str:
    """Compact JSON (the separators json.dumps uses by default); TypeError for other types."""
    return "".join(_encoder(obj, 0))
