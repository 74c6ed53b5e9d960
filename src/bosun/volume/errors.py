"""The volume layer's error kinds. They mirror the engine's (bosun.engine.errors) by name so
the engine maps them one to one; this layer sits below the engine and imports nothing from
it. Messages are Docker's (its volume store's OpErr: "OP NAME: ERROR[ - [refs]]")."""


class VolumeError(Exception):
    """A volume failure the caller should show as is (no traceback)."""


class InvalidParameter(VolumeError):
    pass


class NotFound(VolumeError):
    pass


class Conflict(VolumeError):
    pass


def op_error(kind: type[VolumeError], op: str, name: str, msg: str,
             refs: list[str] | None = None) -> VolumeError:
    text = f"{op} {name}: {msg}" if name else f"{op}: {msg}"
    if refs:
        text += " - [" + ", ".join(refs) + "]"
    return kind(text)
