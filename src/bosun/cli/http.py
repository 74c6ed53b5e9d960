"""HTTP/1.1 to the daemon on `_socket` alone.

`socket` (enum, selectors) and `http.client` (email.parser) together cost more start-up time
than a whole `bosun ps` may take, so this speaks the protocol itself: one connection a
request, Content-Length, chunked and read-to-close bodies, responses whose body is read later
(`POST /wait` before start) and hijacked connections (attach, exec) that become raw sockets.
"""

from __future__ import annotations

import _socket

from bosun import quickjson

DEFAULT_HOST = "unix:///run/bosun/bosun.sock"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class Unreachable(Exception):
    """The daemon's socket is missing or refuses connections."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.host = host


class APIError(Exception):
    """A non-2xx answer; str() is the daemon's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def quote(s: str, safe: str = "") -> str:
    ok = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in s.encode())


def path_of(name: str) -> str:
    """A container or image reference as a path segment (images keep their / and :)."""
    return quote(name, "/:@")


def query_string(params: dict) -> str:
    """Skips None and False; True is "1" (what the API's boolean parameters take); a list
    repeats its key (`names=a&names=b`, `changes=…` as docker's client sends them)."""
    parts = []
    for k, v in params.items():
        if v is None or v is False:
            continue
        for item in (v if isinstance(v, list) else [v]):
            parts.append(f"{k}={'1' if item is True else quote(str(item))}")
    return "?" + "&".join(parts) if parts else ""


class Response:
    def __init__(self, sock, method: str) -> None:
        self.sock = sock
        self.buf = b""
        self._method = method
        self._left: int | None = None  # bytes of the body (or current chunk) still unread
        self._chunked = False
        self._done = False
        self._read_head()

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        return data

    def _read_head(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            data = self._recv()
            if not data:
                raise APIError(502, "the daemon closed the connection without an answer")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status in (101, 204, 304) or self._method == "HEAD":
            self._done = self.status != 101
            self._left = 0
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
        # else: the body ends when the daemon closes the connection

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def _fill(self) -> bool:
        data = self._recv()
        self.buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise APIError(502, "the daemon closed the connection mid-response")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def chunks(self):
        """The body, piece by piece as it arrives (a stream has no end until the daemon's)."""
        while not self._done:
            if self._chunked:
                if not self._left:
                    size = int(self._line().split(b";")[0], 16)
                    if size == 0:
                        while self._line():  # trailers, then the empty line
                            pass
                        self._done = True
                        break
                    self._left = size
                if not self.buf and not self._fill():
                    raise APIError(502, "the daemon closed the connection mid-response")
                piece, self.buf = self.buf[:self._left], self.buf[self._left:]
                self._left -= len(piece)
                if not self._left:
                    self._line()  # the CRLF after each chunk
                yield piece
            elif self._left is not None:
                if self._left == 0:
                    self._done = True
                    break
                if not self.buf and not self._fill():
                    raise APIError(502, "the daemon closed the connection mid-response")
                piece, self.buf = self.buf[:self._left], self.buf[self._left:]
                self._left -= len(piece)
                yield piece
            else:
                if self.buf:
                    piece, self.buf = self.buf, b""
                    yield piece
                elif not self._fill():
                    self._done = True
        self.close()

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def json(self):
        body = self.read()
        return quickjson.loads(body) if body.strip() else None

    def json_stream(self):
        """Objects of a JSON-lines stream (pull progress, events) as each one completes."""
        text = ""
        scan = quickjson._scanner
        for piece in self.chunks():
            text += piece.decode("utf-8", "replace")
            i = 0
            while True:
                while i < len(text) and text[i] in " \t\r\n":
                    i += 1
                if i >= len(text):
                    break
                try:
                    obj, end = scan(text, i)
                except (StopIteration, ValueError, SystemError):
                    break  # incomplete: wait for more
                yield obj
                i = end
            text = text[i:]

    def error(self) -> APIError:
        body = self.read()
        message = body.decode("utf-8", "replace").strip()
        if self.content_type.startswith("application/json") or message.startswith("{"):
            try:
                message = quickjson.loads(body).get("message", message)
            except (ValueError, AttributeError):
                pass
        return APIError(self.status, message or f"HTTP {self.status}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Client:
    def __init__(self, host: str | None = None) -> None:
        self.host = host or DEFAULT_HOST

    def connect(self):
        host = self.host
        try:
            if host.startswith("unix://"):
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                s.connect(host[len("unix://"):])
            elif host.startswith(("tcp://", "http://")):
                addr = host.split("://", 1)[1].rstrip("/")
                name, _, port = addr.rpartition(":")
                s = _socket.socket(_socket.AF_INET6 if name.startswith("[") else _socket.AF_INET,
                                   _socket.SOCK_STREAM)
                s.connect((name.strip("[]") or "127.0.0.1", int(port or 2375)))
            else:
                raise Unreachable(host)
        except OSError:
            raise Unreachable(host) from None
        return s

    def send(self, method: str, path: str, params: dict | None = None, body=None,
             headers: dict | None = None, upgrade: bool = False) -> Response:
        """Send one request; the Response has its head read, the body left to the caller.

        body: a JSON-able object, bytes (a tar), or an iterator of bytes (a tar of unknown
        length — `load`, `import -`, `cp` — sent chunked as it is read)."""
        data = b""
        head = [f"{method} {path}{query_string(params or {})} HTTP/1.1", "Host: bosun"]
        if body is not None and not isinstance(body, (bytes, dict, list)):
            return self._send_chunked(method, head, body, headers)
        if body is not None:
            data = body if isinstance(body, bytes) else quickjson.dumps(body).encode()
            head.append("Content-Type: " + ("application/x-tar" if isinstance(body, bytes)
                                            else "application/json"))
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(data)}")
        if upgrade:
            head += ["Connection: Upgrade", "Upgrade: tcp"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        s = self.connect()
        try:
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            return Response(s, method)
        except OSError as e:
            s.close()
            raise APIError(502, f"lost the connection to the daemon: {e}") from None
        except BaseException:
            s.close()
            raise

    def _send_chunked(self, method: str, head: list[str], body, headers: dict | None
                      ) -> Response:
        head += ["Content-Type: application/x-tar", "Transfer-Encoding: chunked"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s = self.connect()
        try:
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            for piece in body:
                if piece:
                    s.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            s.sendall(b"0\r\n\r\n")
            return Response(s, method)
        except OSError as e:
            # the daemon may have answered (an error) and closed before taking it all
            try:
                return Response(s, method)
            except Exception:  # noqa: BLE001
                s.close()
                raise APIError(502, f"lost the connection to the daemon: {e}") from None
        except BaseException:
            s.close()
            raise

    def call(self, method: str, path: str, params: dict | None = None, body=None,
             headers: dict | None = None):
        """A request whose answer is JSON (or nothing); APIError for non-2xx."""
        r = self.send(method, path, params, body, headers)
        if r.status >= 400:
            raise r.error()
        return r.json()

    def stream(self, method: str, path: str, params: dict | None = None, body=None,
               headers: dict | None = None) -> Response:
        r = self.send(method, path, params, body, headers)
        if r.status >= 400:
            raise r.error()
        return r

    def hijack(self, method: str, path: str, params: dict | None = None, body=None):
        """Take the connection over (attach, exec start): (socket, bytes already read)."""
        r = self.send(method, path, params, body, upgrade=True)
        if r.status >= 400:
            raise r.error()
        if r.status not in (101, 200):
            r.close()
            raise APIError(r.status, f"unexpected answer to {path}: HTTP {r.status}")
        sock, leftover = r.sock, r.buf
        r.sock = None
        return sock, leftover


class Demuxer:
    """Docker's multiplexed stream: 8-byte headers (stream id, 3 zero bytes, big-endian
    length) each followed by that many bytes. Fed arbitrary pieces, yields whole frames."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes):
        self.buf += data
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < 8 + size:
                break
            stream, payload = self.buf[0], self.buf[8:8 + size]
            self.buf = self.buf[8 + size:]
            yield stream, payload

    @property
    def pending(self) -> int:
        return len(self.buf)
