"""The network layer's error kinds. They mirror the engine's (bosun.engine.errors) by name so
the engine can map them one to one; this layer sits below the engine and imports nothing
from it."""


class NetworkError(Exception):
    """A network failure the caller should show as is (no traceback)."""


class InvalidParameter(NetworkError):
    pass


class NotFound(NetworkError):
    pass


class Conflict(NetworkError):
    pass


class Forbidden(NetworkError):
    pass


class AddressExhausted(NetworkError):
    """No free address left in a network's range, or no free subnet in the pools."""
