"""Attach over a websocket (GET /containers/{id}/attach/ws).

The engine hands attach connections to the container's shim, which speaks a plain byte stream:
output (in 8-byte-header frames when the container has no tty) one way, stdin the other. A
websocket client speaks messages instead, so the engine gets one end of a socket pair and two
threads translate: each read of output becomes one message, de-multiplexed first (dockerd
never multiplexes a websocket: stdout and stderr arrive merged, as raw bytes), and each client
message becomes stdin. The handshake is answered here, the frames are wsproto's."""

from __future__ import annotations

import base64
import binascii
import codecs
import socket
import struct
import threading
from collections.abc import Callable

from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import ProtocolError, generate_accept_token

from bosun.api.http import BadRequest, Hijack, Request

_RECV_SIZE = 64 << 10
_CLOSE_WAIT = 5.0  # how long a client may take to answer our close frame


# --- handshake ---------------------------------------------------------------------------------

def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",")}


def accept_token(request: Request) -> bytes:
    """Sec-WebSocket-Accept for an RFC 6455 opening handshake; BadRequest (before anything
    is taken over) when the request is not one."""
    h = request.headers
    if "websocket" not in _tokens(h.get("Upgrade")) or "upgrade" not in _tokens(
            h.get("Connection")):
        raise BadRequest("not a websocket handshake: 'Upgrade: websocket' and "
                         "'Connection: Upgrade' are required")
    if h.get("Sec-WebSocket-Version", "").strip() != "13":
        raise BadRequest("unsupported websocket version: only 13 is supported")
    key = h.get("Sec-WebSocket-Key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise BadRequest("missing or malformed Sec-WebSocket-Key")
    return generate_accept_token(key.encode("ascii"))


class WebSocketUpgrade(Hijack):
    """A Hijack answered with `101 Switching Protocols` to a websocket handshake; the
    callback gets the socket after it (and any frames that came with the request)."""

    __slots__ = ("accept",)

    def __init__(self, request: Request, callback: Callable[[socket.socket, bytes], None], *,
                 abandon: Callable[[], None] | None = None) -> None:
        self.accept = accept_token(request)
        super().__init__(callback, abandon=abandon)

    def head(self, request: Request) -> list[bytes]:
        return [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
                b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + self.accept]


# --- the relay ---------------------------------------------------------------------------------

class Demuxer:
    """Undoes Docker's stream multiplexing ([stream, 0, 0, 0, big-endian length] before each
    payload) across reads of any size; payloads are passed on as they come, not whole."""

    __slots__ = ("_head", "_left")

    def __init__(self) -> None:
        self._head = b""
        self._left = 0  # payload bytes still due in the current frame

    def feed(self, data: bytes) -> bytes:
        out, pos, end = [], 0, len(data)
        while pos < end:
            if self._left:
                n = min(self._left, end - pos)
                out.append(data[pos:pos + n])
                pos += n
                self._left -= n
                continue
            take = min(8 - len(self._head), end - pos)
            self._head += data[pos:pos + take]
            pos += take
            if len(self._head) == 8:
                self._left = struct.unpack(">I", self._head[4:])[0]
                self._head = b""
        return b"".join(out)


def relay(sock: socket.socket, leftover: bytes, ours: socket.socket, *, multiplexed: bool,
          binary: bool, stdin: bool) -> None:
    """Serve a websocket whose handshake is done on `sock` (a plain or TLS socket) on two
    threads, relaying to `ours`, one end of a socket pair whose other end the engine attaches;
    both sockets are the relay's now. Output read from `ours` goes out as messages (binary,
    or text as old API versions want); client messages are written to it when `stdin`, else
    dropped. When the output ends (the container exited, the client detached) the client gets
    a close frame; when the client closes or vanishes, `ours` is shut so the shim drops it."""
    ws = Connection(ConnectionType.SERVER)
    lock = threading.Lock()  # one frame on the wire at a time; wsproto's state with it

    def send(event: Event) -> bool:
        with lock:
            try:
                sock.sendall(ws.send(event))
            except (ProtocolError, OSError):
                return False  # closing or gone
        return True

    def from_client() -> None:
        data, to_engine = leftover, stdin
        try:
            while True:
                with lock:
                    ws.receive_data(data)
                    events = list(ws.events())
                for event in events:
                    if isinstance(event, Message):
                        payload = event.data.encode() if isinstance(event.data, str) \
                            else bytes(event.data)
                        if to_engine and payload:
                            try:
                                ours.sendall(payload)
                            except OSError:  # the shim is done with us: drop further input
                                to_engine = False
                    elif isinstance(event, Ping):
                        send(event.response())
                    elif isinstance(event, CloseConnection):
                        # The client's close (answered), its answer to ours, or a protocol
                        # error wsproto reports as one (sent to the client).
                        send(event.response())
                        return
                data = sock.recv(_RECV_SIZE)
                if not data:
                    return
        except (OSError, ProtocolError):
            pass
        finally:
            _shut(ours)  # the shim sees its client gone

    def run() -> None:
        reader = threading.Thread(target=from_client, name="bosun-ws-in", daemon=True)
        reader.start()
        demux = Demuxer() if multiplexed else None
        # Text frames must be UTF-8: keep a character split across reads whole.
        text = None if binary else codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while True:
                data = ours.recv(_RECV_SIZE)
                if not data:
                    break
                if demux is not None:
                    data = demux.feed(data)
                event = BytesMessage(data=data) if text is None else TextMessage(
                    data=text.decode(data))
                if event.data and not send(event):
                    break
        except OSError:
            pass
        send(CloseConnection(code=CloseReason.NORMAL_CLOSURE))  # no-op once closing
        reader.join(_CLOSE_WAIT)
        _shut(sock)  # wakes a reader still waiting for a client that never answered,
        _shut(ours)  # or one blocked on a container that reads no stdin
        reader.join()
        sock.close()
        ours.close()

    threading.Thread(target=run, name="bosun-ws-out", daemon=True).start()


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
