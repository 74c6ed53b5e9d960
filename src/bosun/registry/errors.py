"""Errors of the registry client. Every failure the client reports is a `RegistryError`
carrying a one-line message fit for a user; the registry's own JSON error body
(`{"errors": [{"code", "message", "detail"}]}`) is kept in `.errors` and its first code in
`.code`."""

from __future__ import annotations

import json
from typing import Any


class RegistryError(Exception):
    """A registry operation failed. `status` is the HTTP status when there was a response."""

    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None,
                 errors: list[dict[str, Any]] | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors or []
        if code is not None:
            self.code = code
        elif self.errors:
            self.code = str(self.errors[0].get("code") or "") or type(self).code


class UnauthorizedError(RegistryError):
    """Authentication failed or is required (UNAUTHORIZED, HTTP 401)."""
    code = "UNAUTHORIZED"


class DeniedError(RegistryError):
    """Authenticated, but not allowed (DENIED, HTTP 403)."""
    code = "DENIED"


class NotFoundError(RegistryError):
    """Something does not exist (HTTP 404)."""


class NameUnknownError(NotFoundError):
    code = "NAME_UNKNOWN"


class ManifestUnknownError(NotFoundError):
    code = "MANIFEST_UNKNOWN"


class BlobUnknownError(NotFoundError):
    code = "BLOB_UNKNOWN"


class TooManyRequestsError(RegistryError):
    """Rate limited (TOOMANYREQUESTS, HTTP 429), still so after the retries."""
    code = "TOOMANYREQUESTS"


class DigestMismatchError(RegistryError):
    """Content does not match its digest (or its announced size)."""
    code = "DIGEST_INVALID"


class RegistryConnectionError(RegistryError):
    """The registry could not be reached, or the connection kept failing."""


class ProtocolError(RegistryError):
    """The registry answered something the distribution API does not allow."""


class CredentialsError(RegistryError):
    """The credentials file or a credential helper could not be read or written."""


_BY_CODE: dict[str, type[RegistryError]] = {
    "UNAUTHORIZED": UnauthorizedError,
    "DENIED": DeniedError,
    "NAME_UNKNOWN": NameUnknownError,
    "MANIFEST_UNKNOWN": ManifestUnknownError,
    "BLOB_UNKNOWN": BlobUnknownError,
    "TOOMANYREQUESTS": TooManyRequestsError,
}
_BY_STATUS: dict[int, type[RegistryError]] = {
    401: UnauthorizedError,
    403: DeniedError,
    404: NotFoundError,
    429: TooManyRequestsError,
}


def parse_error_body(body: bytes) -> list[dict[str, Any]]:
    """The `errors` list of a registry error body; [] when the body is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errs = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errs, list):
        return []
    return [e for e in errs if isinstance(e, dict)]


def error_from_response(what: str, status: int, reason: str, body: bytes,
                        default_code: str | None = None) -> RegistryError:
    """Build the error for a failed response: `<what>: CODE: message` (all the registry's
    errors, joined), or the HTTP status and a snippet of a non-JSON body.

    default_code stands in when the registry sent no body (a HEAD request's 404)."""
    errors = parse_error_body(body)
    if not errors and default_code:
        errors = [{"code": default_code, "message": reason.lower() or default_code.lower()}]
    if errors:
        parts = []
        for e in errors:
            code, msg = str(e.get("code") or "").upper(), str(e.get("message") or "")
            parts.append(f"{code}: {msg}" if code and msg else code or msg)
        detail = "; ".join(parts)
        cls = _BY_CODE.get(str(errors[0].get("code") or "").upper()) or _BY_STATUS.get(status)
    else:
        snippet = body[:200].decode("utf-8", "replace").strip()
        detail = f"HTTP {status} {reason}".rstrip() + (f": {snippet}" if snippet else "")
        cls = _BY_STATUS.get(status)
    if cls is None:
        cls = RegistryError
    return cls(f"{what}: {detail}", status=status, errors=errors)
