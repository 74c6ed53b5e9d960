"""The engine's error kinds, after Docker's errdefs: each says what went wrong, not how a
transport reports it. The API maps a kind to a status code (InvalidParameter → 400, NotFound →
404, Conflict → 409, …); `str()` is the message a user sees."""


class EngineError(Exception):
    """An engine failure the caller should show as is (no traceback)."""


class InvalidParameter(EngineError):
    pass


class NotFound(EngineError):
    pass


class Conflict(EngineError):
    pass


class NotModified(EngineError):
    pass


class Forbidden(EngineError):
    pass


class Unavailable(EngineError):
    pass


class NotImplementedErr(EngineError):
    pass


class SystemErr(EngineError):
    pass
