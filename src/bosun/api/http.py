"""The Docker Engine API's wire layer: HTTP/1.1 (h11) over a unix socket, or over TCP with
mutual TLS, one daemon thread per connection.

Threads rather than asyncio because handlers call the engine, a blocking library. A handler is
`handler(request) -> Response | Stream | Hijack`; it may raise `bosun.engine.errors` kinds,
which become Docker's status codes and `{"message": ...}` bodies. Routing follows dockerd: an
optional `/v1.NN` prefix (checked against the supported range), 404 "page not found" for an
unknown path and for a known path with the wrong method, HEAD answered by the GET handler.
"""

from __future__ import annotations

import email.utils
import errno
import grp
import http
import json
import logging
import os
import re
import secrets
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

import h11

from bosun import __version__
from bosun.engine import errors

log = logging.getLogger("bosun.api")

MIN_API_VERSION = "1.24"
MAX_API_VERSION = "1.47"
DEFAULT_BODY_LIMIT = 32 << 20  # Request.body()/json(); uploads use Request.stream()

_RECV_SIZE = 64 << 10
_MAX_HEADER_BYTES = 1 << 20  # X-Registry-Config can be large; Go's default is 1 MiB too
_DRAIN_LIMIT = 1 << 20  # unread request body we still swallow to keep a connection alive
_BACKLOG = 128
_TLS_HANDSHAKE_TIMEOUT = 30.0
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


# --- errors -------------------------------------------------------------------------------

class BadRequest(errors.InvalidParameter):
    """A malformed request (bad JSON body, bad query parameter): 400."""


class PayloadTooLarge(BadRequest):
    """A request body over the handler's cap: 413."""


_STATUS_BY_KIND: dict[type, int] = {
    PayloadTooLarge: 413,
    errors.InvalidParameter: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.NotModified: 304,
    errors.Forbidden: 403,
    errors.Unavailable: 503,
    errors.NotImplementedErr: 501,
    errors.SystemErr: 500,
}


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception: its engine error kind's, else 500."""
    for cls in type(exc).__mro__:
        status = _STATUS_BY_KIND.get(cls)
        if status is not None:
            return status
    return 500


def error_response(exc: BaseException, request: Request | None = None) -> Response:
    """Docker's error shape: `{"message": ...}` (304 has no body). Unexpected exceptions are
    logged with their traceback, engine errors of 5xx kinds without."""
    status = status_for(exc)
    if status == 304:
        return Response(304)
    message = str(exc) or type(exc).__name__
    where = f"{request.method} {request.path}" if request is not None else "request"
    if not isinstance(exc, errors.EngineError):
        log.error("handler for %s failed: %s", where, message, exc_info=exc)
    elif status >= 500:
        log.error("handler for %s returned error: %s", where, message)
    return Response(status, {"message": message})


def json_bytes(value: Any) -> bytes:
    """JSON as Go's encoder writes it: compact, UTF-8, one trailing newline."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# --- handler results -------------------------------------------------------------------------

HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]] | None


def _header_list(headers: HeaderItems) -> list[tuple[str, str]]:
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


class Response:
    """A complete response. `body`: bytes, str (text/plain), dict or list (JSON), or None."""

    __slots__ = ("status", "body", "headers", "content_type")

    def __init__(self, status: int = 200, body: bytes | str | dict | list | None = None,
                 headers: HeaderItems = None, content_type: str | None = None):
        if body is None:
            data = b""
        elif isinstance(body, (dict, list)):
            data = json_bytes(body)
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            data = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            data = bytes(body)
        self.status = status
        self.body = data
        self.headers = _header_list(headers)
        self.content_type = content_type


class Stream:
    """A body of unknown length, sent chunked as the iterator yields (bytes or str). An empty
    chunk sends nothing but checks whether the client has gone, so a producer waiting for
    something to say (events, logs -f) can stop early. The iterator's close() is always
    called. Errors a handler can foresee belong before it returns the Stream: once the headers
    are out, an exception from the iterator only cuts the stream short (and is logged)."""

    __slots__ = ("iterable", "status", "content_type", "headers")

    def __init__(self, iterable: Iterable[bytes | str], status: int = 200,
                 content_type: str | None = "application/json", headers: HeaderItems = None):
        self.iterable = iterable
        self.status = status
        self.content_type = content_type
        self.headers = _header_list(headers)


RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


class Hijack:
    """Take the connection over (attach, exec start). The server answers `101 UPGRADED` when
    the request asked to upgrade, else 200 without a length, then calls
    `callback(sock, leftover)`: the socket (an SSLSocket on TCP: use its recv/sendall, not its
    fd) and any bytes the client sent past the request. The callback owns the socket and must
    close it; it runs on the connection's thread. When the client is gone before that,
    `abandon()` (if given) is called instead, to release what the handler set up for it."""

    __slots__ = ("abandon", "callback", "content_type", "deferred", "headers")

    def __init__(self, callback: Callable[..., None], *, multiplexed: bool = False,
                 headers: HeaderItems = None, abandon: Callable[[], None] | None = None,
                 deferred: bool = False):
        self.callback = callback
        self.content_type = MULTIPLEXED_STREAM if multiplexed else RAW_STREAM
        self.headers = _header_list(headers)
        self.abandon = abandon
        # deferred: the callback is called as callback(sock, leftover, respond) before the
        # head is sent, and calls respond() once what the client may rely on when it has the
        # answer is in place (an attach registered before the client goes on to start).
        self.deferred = deferred

    def head(self, request: Request) -> list[bytes]:
        """The status line and headers before the stream (the server adds its common
        headers); a subclass may answer another upgrade (websocket.WebSocketUpgrade)."""
        if "upgrade" in request.headers:
            return [b"HTTP/1.1 101 UPGRADED", b"Content-Type: " + self.content_type.encode(),
                    b"Connection: Upgrade", b"Upgrade: tcp"]
        return [b"HTTP/1.1 200 OK", b"Content-Type: " + self.content_type.encode()]


Handler = Callable[["Request"], "Response | Stream | Hijack"]


# --- requests ------------------------------------------------------------------------------

class Headers(dict):
    """Request headers by lower-cased name; lookups ignore case. Repeats are joined by ", "."""

    __slots__ = ()

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        out = cls()
        for name, value in pairs:
            key = name.lower()
            prev = dict.get(out, key)
            dict.__setitem__(out, key, value if prev is None else f"{prev}, {value}")
        return out


_VERSION_PREFIX = re.compile(r"/v([0-9.]+)(/.*)\Z", re.DOTALL)
_FALSE_WORDS = frozenset(("", "0", "no", "false", "none"))  # Docker's BoolValue


class Request:
    """One API request. `path` is percent-decoded and without the `/v1.NN` prefix, whose
    number is `version` (None without a prefix). `query` maps names to lists of values."""

    __slots__ = ("method", "target", "path", "version", "query", "headers", "path_params",
                 "_body", "_chunks")

    def __init__(self, method: str, target: str, headers: HeaderItems | Headers = None,
                 body: bytes | Iterable[bytes] = b""):
        self.method = method
        self.target = target
        raw_path, _, qs = target.partition("?")
        path = unquote(raw_path) if "%" in raw_path else raw_path
        m = _VERSION_PREFIX.match(path)
        self.version: str | None = None
        if m is not None:
            self.version, path = m.group(1), m.group(2)
        self.path = path
        self.query: dict[str, list[str]] = (
            parse_qs(qs, keep_blank_values=True) if qs else {})
        self.headers = headers if isinstance(headers, Headers) else Headers.from_pairs(
            _header_list(headers))
        self.path_params: dict[str, str] = {}
        if isinstance(body, (bytes, bytearray)):
            self._body: bytes | None = bytes(body)
            self._chunks: Iterator[bytes] | None = None
        else:
            self._body, self._chunks = None, iter(body)

    # body

    def stream(self) -> Iterator[bytes]:
        """The body's chunks as they arrive (chunked or Content-Length framing undone).
        Once only, and not after a partial body()."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        chunks, self._chunks = self._chunks, None
        if chunks is None:
            raise RuntimeError("request body already consumed")
        yield from chunks

    def body(self, limit: int = DEFAULT_BODY_LIMIT) -> bytes:
        """The whole body (cached); PayloadTooLarge past `limit` bytes."""
        if self._body is None:
            parts, size = [], 0
            for chunk in self.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is larger than {limit} bytes")
                parts.append(chunk)
            self._body = b"".join(parts)
        elif len(self._body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        return self._body

    def json(self, limit: int = DEFAULT_BODY_LIMIT) -> Any:
        """The body as JSON; None when empty; BadRequest("invalid JSON: ...") when malformed."""
        raw = self.body(limit)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":
                raise BadRequest("unexpected content after JSON") from None
            raise BadRequest(f"invalid JSON: {e}") from None
        except ValueError as e:  # not UTF-8
            raise BadRequest(f"invalid JSON: {e}") from None
        except RecursionError:  # nested deeper than the parser's stack
            raise BadRequest("invalid JSON: exceeded max depth") from None

    # query

    def q(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter `name`, or `default` when absent."""
        values = self.query.get(name)
        return values[0] if values else default

    def q_bool(self, name: str, default: bool = False) -> bool:
        """Docker's boolean: absent → default; "", 0, no, false, none → False; else True."""
        value = self.q(name)
        if value is None:
            return default
        return value.strip().lower() not in _FALSE_WORDS

    def q_int(self, name: str, default: int = 0) -> int:
        """An integer parameter; absent or empty → default; BadRequest when not a number."""
        value = self.q(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise BadRequest(f"invalid value for {name}: {value!r} is not an integer") from None

    def q_json(self, name: str, default: Any = None) -> Any:
        """A JSON-encoded parameter (`filters`); absent or empty → default."""
        value = self.q(name)
        if value is None or value == "":
            return default
        try:
            return json.loads(value)
        except (ValueError, RecursionError) as e:
            what = "filter" if name == "filters" else f"{name} parameter"
            raise BadRequest(f"invalid {what}: {e}") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


# --- routing -------------------------------------------------------------------------------

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    """"/images/{name:path}/json" → a regex: {x} is one path segment, {x:path} one or more."""
    out, pos = ["^"], 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]) + r"\Z")
    return re.compile("".join(out), re.DOTALL)


def _first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


def version_key(version: str) -> tuple[int, ...]:
    """"1.24" → (1, 24); like Docker's versions.compare, non-numbers count as 0 and trailing
    zeros do not matter."""
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


class Router:
    """Method + path pattern → handler. Patterns are compiled once, in `add`; exact paths are
    looked up in a dict, patterns are tried in the order added (bucketed by first segment)."""

    def __init__(self, *, min_version: str = MIN_API_VERSION,
                 max_version: str = MAX_API_VERSION):
        self.min_version, self.max_version = min_version, max_version
        self._min, self._max = version_key(min_version), version_key(max_version)
        self._static: dict[tuple[str, str], Handler] = {}
        # method → first segment ("*": a parameter) → [(regex, handler)]
        self._patterns: dict[str, dict[str, list[tuple[re.Pattern[str], Handler]]]] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        method = method.upper()
        if "{" not in pattern:
            self._static[(method, pattern)] = handler
            return
        first = _first_segment(pattern)
        bucket = "*" if "{" in first else first
        by_segment = self._patterns.setdefault(method, {})
        by_segment.setdefault(bucket, []).append((_compile_pattern(pattern), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator form of add()."""
        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler
        return register

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler and path parameters for a request, or None."""
        handler = self._static.get((method, path))
        if handler is not None:
            return handler, {}
        by_segment = self._patterns.get(method)
        if by_segment:
            for bucket in (by_segment.get(_first_segment(path)), by_segment.get("*")):
                for regex, handler in bucket or ():
                    m = regex.match(path)
                    if m is not None:
                        return handler, m.groupdict()
        if method == "HEAD":
            return self.resolve("GET", path)
        return None

    def check_version(self, version: str) -> None:
        key = version_key(version)
        if key < self._min:
            raise BadRequest(
                f"client version {version} is too old. Minimum supported API version is "
                f"{self.min_version}, please upgrade your client to a newer version")
        if key > self._max:
            raise BadRequest(f"client version {version} is too new. Maximum supported API "
                             f"version is {self.max_version}")

    def dispatch(self, request: Request) -> Response | Stream | Hijack:
        """Route, check the version, run the handler. Raises what the handler raises, NotFound
        for an unknown route (dockerd answers a wrong method the same way)."""
        found = self.resolve(request.method, request.path)
        if found is None:
            raise errors.NotFound("page not found")
        handler, request.path_params = found
        if request.version is not None:
            self.check_version(request.version)
        return handler(request)


# --- one connection --------------------------------------------------------------------------

class _ClientGone(Exception):
    """Writing to the client failed: it closed or reset the connection."""


_HIJACKED = object()


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the client has shut its end. poll's RDHUP rather than a peeked read: bytes the
    client sent before leaving (a TLS close_notify, say) must not make it look alive."""
    poller = select.poll()
    poller.register(sock, _GONE)
    return any(events & _GONE for _, events in poller.poll(0))


_GONE = select.POLLRDHUP | select.POLLHUP | select.POLLERR


def _close_iterator(it: Iterator, source: Iterable) -> None:
    close = getattr(it, "close", None) or getattr(source, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        log.exception("closing a response stream failed")


class _Connection:
    __slots__ = ("server", "sock", "h11", "body_done")

    def __init__(self, server: Server, sock: socket.socket):
        self.server, self.sock = server, sock
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        self.body_done = False

    def serve(self) -> None:
        hijacked = False
        try:
            while True:
                event = self.next_event()
                if type(event) is not h11.Request:
                    return  # ConnectionClosed between requests
                outcome = self.handle(event)
                if outcome is _HIJACKED:
                    hijacked = True
                    return
                if not outcome or not self.next_cycle():
                    return
        except h11.RemoteProtocolError as e:
            self.send_protocol_error(e)
        except (OSError, _ClientGone):
            pass
        except Exception:
            log.exception("API connection failed")
        finally:
            if not hijacked:
                self.sock.close()

    # reading

    def next_event(self) -> Any:
        conn = self.h11
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if conn.they_are_waiting_for_100_continue:
                self.send(conn.send(h11.InformationalResponse(status_code=100, headers=[],
                                                               reason=b"Continue")))
            try:
                data = self.sock.recv(_RECV_SIZE)
            except (ConnectionError, TimeoutError):
                data = b""
            conn.receive_data(data)

    def body_chunks(self) -> Iterator[bytes]:
        while not self.body_done:
            try:
                event = self.next_event()
            except h11.RemoteProtocolError as e:
                raise BadRequest(f"malformed request body: {e}") from None
            if type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) is h11.EndOfMessage:
                self.body_done = True
            else:
                raise BadRequest("request body ended unexpectedly")

    def drain(self) -> bool:
        """Read what the handler left of the request body; False if too much or broken."""
        left = _DRAIN_LIMIT
        try:
            while not self.body_done:
                event = self.next_event()
                if type(event) is h11.Data:
                    left -= len(event.data)
                    if left < 0:
                        return False
                elif type(event) is h11.EndOfMessage:
                    self.body_done = True
                else:
                    return False
        except h11.RemoteProtocolError:
            return False
        return True

    def next_cycle(self) -> bool:
        if not self.body_done and not self.drain():
            return False
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self.body_done = False
            return True
        return False

    # writing

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise _ClientGone() from e

    def handle(self, event: h11.Request) -> object:
        """Answer one request; returns a true value to keep the connection, _HIJACKED when a
        handler took it over."""
        self.body_done = False
        request = Request(event.method.decode("ascii"), event.target.decode("latin-1"),
                          Headers((k.decode("latin-1"), v.decode("latin-1"))
                                  for k, v in _merged(event.headers)),
                          self.body_chunks())
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", request.method, request.target)
        try:
            result = self.server.router.dispatch(request)
        except Exception as e:
            result = error_response(e, request)
        if isinstance(result, Response):
            return self.send_response(request, result)
        if isinstance(result, Stream):
            return self.send_stream(request, result)
        if isinstance(result, Hijack):
            return self.hijack(request, result)
        error = TypeError(f"handler returned {type(result).__name__}, not a Response")
        return self.send_response(request, error_response(error, request))

    def _head(self, status: int, content_type: str | None, extra: list[tuple[str, str]]
              ) -> h11.Response:
        headers: list[tuple[Any, Any]] = self.server._common_headers()
        if content_type:
            headers.append((b"Content-Type", content_type))
        headers.extend(extra)
        return h11.Response(status_code=status, headers=headers,
                            reason=_REASONS.get(status, b""))

    def send_response(self, request: Request, resp: Response) -> bool:
        conn = self.h11
        # A client waiting for "100 Continue" whose body the handler never read may never send
        # it: don't wait to drain it, close instead.
        keep = not conn.they_are_waiting_for_100_continue
        status = resp.status
        bodyless = status in (204, 304) or status < 200
        extra = resp.headers
        if not bodyless:
            extra = [*extra, (b"Content-Length", b"%d" % len(resp.body))]
        out = conn.send(self._head(status, None if status == 304 else resp.content_type, extra))
        if resp.body and not bodyless and request.method != "HEAD":
            out += conn.send(h11.Data(data=resp.body))
        out += conn.send(h11.EndOfMessage())
        self.send(out)
        return keep

    def send_stream(self, request: Request, stream: Stream) -> bool:
        conn, source = self.h11, stream.iterable
        it = iter(source)
        try:
            self.send(conn.send(self._head(stream.status, stream.content_type, stream.headers)))
            if request.method != "HEAD":
                for chunk in it:
                    if not chunk:
                        if _peer_closed(self.sock):
                            return False
                        continue
                    if type(chunk) is str:
                        chunk = chunk.encode()
                    self.send(conn.send(h11.Data(data=chunk)))
            self.send(conn.send(h11.EndOfMessage()))
            return True
        except _ClientGone:
            return False
        except Exception:
            log.exception("response stream for %s %s failed", request.method, request.path)
            return False
        finally:
            _close_iterator(it, source)

    def hijack(self, request: Request, hj: Hijack) -> object:
        try:
            # The body must be consumed so that what follows it is the raw stream.
            if not self.drain():
                raise _ClientGone()
            leftover, _ = self.h11.trailing_data
            lines = hj.head(request)
            for name, value in [*self.server._common_headers(), *hj.headers]:
                lines.append(_b(name) + b": " + _b(value))
            head = b"\r\n".join(lines) + b"\r\n\r\n"
            if not hj.deferred:
                self.send(head)
        except _ClientGone:
            if hj.abandon is not None:
                hj.abandon()
            return False
        try:
            if hj.deferred:
                sent = []

                def respond() -> None:
                    if not sent:
                        sent.append(True)
                        try:
                            self.sock.sendall(head)
                        except OSError:
                            pass  # the client is gone: the stream's end shows it

                hj.callback(self.sock, leftover, respond)
            else:
                hj.callback(self.sock, leftover)
        except Exception:
            log.exception("hijacked connection for %s %s failed", request.method, request.path)
            self.sock.close()
        return _HIJACKED

    def send_protocol_error(self, e: h11.RemoteProtocolError) -> None:
        conn = self.h11
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = json_bytes({"message": str(e)})
        try:
            head = self._head(e.error_status_hint or 400, "application/json",
                              [(b"Content-Length", b"%d" % len(body))])
            self.sock.sendall(conn.send(head) + conn.send(h11.Data(data=body))
                              + conn.send(h11.EndOfMessage()))
        except (OSError, h11.LocalProtocolError):
            pass


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _merged(headers: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """Repeated header names joined with ", " (h11 gives lower-cased names)."""
    seen: dict[bytes, bytes] = {}
    for name, value in headers:
        seen[name] = seen[name] + b", " + value if name in seen else value
    return iter(seen.items())


# --- the server ------------------------------------------------------------------------------

class _Listener:
    __slots__ = ("sock", "address", "ssl_context")

    def __init__(self, sock: socket.socket, address: Any, ssl_context: ssl.SSLContext | None):
        self.sock, self.address, self.ssl_context = sock, address, ssl_context


def _group_id(group: str | int | None) -> int | None:
    """The gid for the socket's group; None (skip) when no such group exists."""
    if group is None or isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        log.debug("socket group %s does not exist; leaving the socket's group alone", group)
        return None


def _bind_unix(path: str, mode: int, group: str | int | None) -> socket.socket:
    """Bind to a temporary name beside `path`, set mode and group, then rename into place:
    a client never sees the socket with the wrong permissions."""
    directory = os.path.dirname(os.path.abspath(path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        for _ in range(100):
            tmp = os.path.join(directory, f".{secrets.token_hex(4)}.tmp")
            try:
                sock.bind(tmp)
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
        else:
            raise OSError(errno.EADDRINUSE, f"no free temporary socket name in {directory}")
        try:
            sock.listen(_BACKLOG)
            os.chmod(tmp, mode)
            gid = _group_id(group)
            if gid is not None:
                os.chown(tmp, -1, gid)
            os.rename(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_tcp(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Server:
    """Listens on a unix socket and/or on TCP (TLS only) and serves `router`. Binds in the
    constructor; `serve_forever()` accepts until `shutdown()`."""

    def __init__(self, router: Router, *, unix_path: str | None = None, unix_mode: int = 0o660,
                 unix_group: str | int | None = None, tcp: tuple[str, int] | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        if tcp is not None and ssl_context is None:
            raise ValueError("refusing to serve the API over TCP without TLS")
        if unix_path is None and tcp is None:
            raise ValueError("no address to listen on: give unix_path and/or tcp")
        self.router = router
        self._listeners: list[_Listener] = []
        self._unix_path: str | None = None
        self._unix_ident: tuple[int, int] | None = None
        self._static_headers = [
            (b"Api-Version", router.max_version.encode()),
            (b"Docker-Experimental", b"false"),
            (b"Ostype", b"linux"),
            (b"Server", f"bosun/{__version__} (linux)".encode()),
        ]
        self._date: tuple[int, bytes] = (0, b"")
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._serving = False
        self._closed = False
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            if unix_path is not None:
                sock = _bind_unix(unix_path, unix_mode, unix_group)
                st = os.stat(unix_path)
                self._unix_path, self._unix_ident = unix_path, (st.st_dev, st.st_ino)
                self._listeners.append(_Listener(sock, unix_path, None))
            if tcp is not None:
                sock = _bind_tcp(*tcp)
                self._listeners.append(_Listener(sock, sock.getsockname()[:2], ssl_context))
        except BaseException:
            self._close()
            raise

    @property
    def address(self) -> str | tuple[str, int]:
        """The unix socket's path, or (host, port) when listening on TCP only."""
        return self._listeners[0].address

    @property
    def addresses(self) -> list[str | tuple[str, int]]:
        return [lst.address for lst in self._listeners]

    def serve_forever(self) -> None:
        """Accept connections until shutdown(); each one is served on its own daemon thread."""
        with self._lock:
            if self._stop.is_set():
                return
            self._serving = True
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self._wake_r, selectors.EVENT_READ, None)
                for lst in self._listeners:
                    lst.sock.setblocking(False)
                    sel.register(lst.sock, selectors.EVENT_READ, lst)
                while not self._stop.is_set():
                    for key, _ in sel.select():
                        if key.data is not None and not self._stop.is_set():
                            self._accept(key.data)
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting, close the listening sockets and remove the unix socket file (if it
        is still ours). Connections being served carry on."""
        with self._lock:
            self._stop.set()
            serving = self._serving
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if serving:
            self._stopped.wait(timeout)
        self._close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for lst in self._listeners:
            lst.sock.close()
        if self._unix_path is not None:
            try:
                st = os.stat(self._unix_path)
                if (st.st_dev, st.st_ino) == self._unix_ident:  # not a successor's socket
                    os.unlink(self._unix_path)
            except OSError:
                pass
        self._wake_r.close()
        self._wake_w.close()

    def _accept(self, lst: _Listener) -> None:
        try:
            sock, _ = lst.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as e:
            log.warning("accepting an API connection failed: %s", e)
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.1)  # out of descriptors or memory: don't spin
            return
        sock.setblocking(True)
        if lst.ssl_context is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._serve_connection, args=(sock, lst.ssl_context),
                         name="bosun-api-conn", daemon=True).start()

    def _serve_connection(self, sock: socket.socket, ssl_context: ssl.SSLContext | None
                          ) -> None:
        if ssl_context is not None:
            # The handshake happens here, not in the accept loop, so a slow or hostile client
            # delays no one else.
            try:
                sock.settimeout(_TLS_HANDSHAKE_TIMEOUT)
                sock = ssl_context.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            except OSError as e:
                log.info("TLS handshake with an API client failed: %s", e)
                sock.close()
                return
        _Connection(self, sock).serve()

    def _common_headers(self) -> list[tuple[bytes, bytes]]:
        now = int(time.time())
        at, date = self._date
        if at != now:
            date = email.utils.formatdate(now, usegmt=True).encode()
            self._date = (now, date)
        return [*self._static_headers, (b"Date", date)]
