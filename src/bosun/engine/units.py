"""Docker's size strings ("64m", "1.5g", "100k", plain bytes) as bytes."""

from __future__ import annotations

from bosun.engine.errors import InvalidParameter


def parse_size(text: str | int) -> int:
    """Binary units as Docker's RAMInBytes: "1k" is 1024 bytes."""
    from bosun.gosyntax import GoSyntaxError, ram_in_bytes

    try:
        return ram_in_bytes(text)
    except GoSyntaxError as e:
        raise InvalidParameter(str(e)) from None
