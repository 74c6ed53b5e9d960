"""Errors the runtime reports to its caller as one line, never as a traceback."""


class RuntimeErr(Exception):
    """A user-facing runtime failure. `str()` is the one-line message."""


class ConfigError(RuntimeErr):
    """config.json is malformed or asks for something invalid."""


class NotFound(RuntimeErr):
    pass


class StateError(RuntimeErr):
    """The operation is not valid in the container's current state."""
