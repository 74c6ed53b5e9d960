"""The websocket attach relay (bosun.api.websocket) without a container: the engine's end is
played by the test, the client by wsproto's client side or websocket-client."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from bosun.api.http import BadRequest, Request, Router, Server
from bosun.api.websocket import Demuxer, WebSocketUpgrade, accept_token, relay


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


class Client:
    """The client side of a relayed websocket, over a socket pair."""

    def __init__(self, *, multiplexed: bool = True, binary: bool = True, stdin: bool = True,
                 leftover: bytes = b""):
        self.sock, server_side = socket.socketpair()
        self.sock.settimeout(5)
        self.ws = Connection(ConnectionType.CLIENT)
        ours, self.engine = socket.socketpair()
        relay(server_side, leftover, ours, multiplexed=multiplexed, binary=binary, stdin=stdin)
        self.engine.settimeout(5)
        self.pending: list = []

    def send(self, event) -> None:
        self.sock.sendall(self.ws.send(event))

    def event(self):
        while not self.pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    def messages_until_close(self) -> tuple[list, CloseConnection]:
        out = []
        while not isinstance(ev := self.event(), CloseConnection):
            out.append(ev)
        return out, ev

    def close(self) -> None:
        self.sock.close()
        self.engine.close()


@pytest.fixture
def client():
    made: list[Client] = []

    def make(**kw) -> Client:
        made.append(Client(**kw))
        return made[-1]
    yield make
    for c in made:
        c.close()


def test_demuxer_strips_headers_across_any_split():
    stream = frame(1, b"hello ") + frame(2, b"") + frame(2, b"world\n") + frame(1, b"x" * 70000)
    want = b"hello world\n" + b"x" * 70000
    for size in (1, 3, 7, 8, 9, 13, 4096, len(stream)):
        d = Demuxer()
        got = b"".join(d.feed(stream[i:i + size]) for i in range(0, len(stream), size))
        assert got == want, size


def test_output_is_demultiplexed_into_binary_messages_then_closed(client):
    c = client()
    c.engine.sendall(frame(1, b"out\n"))
    assert c.event() == BytesMessage(data=b"out\n")
    # A frame split over two writes: payload passed on as it comes, never a header byte.
    c.engine.sendall(frame(2, b"err\n")[:6])
    c.engine.sendall(frame(2, b"err\n")[6:] + frame(1, b"more"))
    c.engine.close()  # the container exited: the client is told, then the socket closes
    msgs, close = c.messages_until_close()
    assert b"".join(m.data for m in msgs) == b"err\nmore"
    assert all(isinstance(m, BytesMessage) for m in msgs)
    assert close.code == 1000
    c.send(close.response())
    assert c.sock.recv(100) == b""


def test_tty_output_passes_through_raw(client):
    c = client(multiplexed=False)
    raw = frame(1, b"looks like a header")
    c.engine.sendall(raw)
    c.engine.shutdown(socket.SHUT_WR)
    msgs, _ = c.messages_until_close()
    assert b"".join(m.data for m in msgs) == raw


def test_text_frames_keep_split_characters_whole(client):
    c = client(multiplexed=False, binary=False)
    data = "héllo ✓\n".encode()
    c.engine.sendall(data[:2])  # "h" and half of "é"
    first = c.event()
    assert first == TextMessage(data="h")
    c.engine.sendall(data[2:])
    c.engine.shutdown(socket.SHUT_WR)
    msgs, _ = c.messages_until_close()
    msgs.insert(0, first)
    assert all(isinstance(m, TextMessage) for m in msgs)
    assert "".join(m.data for m in msgs) == "héllo ✓\n"


def test_client_messages_are_stdin_and_pings_are_answered(client):
    c = client(leftover=Connection(ConnectionType.CLIENT).send(TextMessage(data="early ")))
    c.send(TextMessage(data="ls\n"))
    c.send(BytesMessage(data=b"\x00\xff"))
    c.send(Ping(payload=b"p"))
    assert c.event() == Pong(payload=b"p")
    want = b"early ls\n\x00\xff"
    got = b""
    while len(got) < len(want):
        got += c.engine.recv(100)
    assert got == want


def test_client_close_ends_the_engine_side(client):
    c = client()
    c.send(CloseConnection(code=1000))
    assert isinstance(ev := c.event(), CloseConnection) and ev.code == 1000
    assert c.ws.state is ConnectionState.CLOSED
    assert c.engine.recv(100) == b""  # the shim would drop this client
    with pytest.raises(OSError):  # and its writes fail rather than pile up
        for _ in range(1000):
            c.engine.sendall(b"x" * 65536)


def test_client_vanishing_ends_the_engine_side(client):
    c = client()
    c.sock.close()
    assert c.engine.recv(100) == b""


def test_without_stdin_client_messages_are_dropped(client):
    c = client(stdin=False)
    c.send(BytesMessage(data=b"ignored"))
    c.send(Ping(payload=b""))
    assert isinstance(c.event(), Pong)
    c.engine.close()
    msgs, close = c.messages_until_close()
    assert msgs == [] and close.code == 1000


def test_protocol_error_closes_with_its_code(client):
    c = client()
    c.sock.sendall(b"\x81\x05hello")  # an unmasked client frame
    ev = c.event()
    assert isinstance(ev, CloseConnection) and ev.code == 1002
    assert c.engine.recv(100) == b""


# --- handshake ----------------------------------------------------------------------------------

HANDSHAKE = {"Upgrade": "websocket", "Connection": "keep-alive, Upgrade",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def test_accept_token_is_rfc6455s():
    assert accept_token(Request("GET", "/", HANDSHAKE)) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("change", [{"Upgrade": "tcp"}, {"Connection": "close"},
                                    {"Sec-WebSocket-Version": "8"},
                                    {"Sec-WebSocket-Key": "short"}])
def test_not_a_handshake_is_bad_request(change):
    with pytest.raises(BadRequest):
        accept_token(Request("GET", "/", {**HANDSHAKE, **change}))


def test_upgrade_through_the_server(tmp_path):
    websocket = pytest.importorskip("websocket")
    router = Router()

    def echo(req):
        def take(sock, leftover):
            ours, end = socket.socketpair()
            relay(sock, leftover, ours, multiplexed=False, binary=True, stdin=True)

            def pump():  # the "engine": echoes stdin back as output, until the client goes
                while data := end.recv(100):
                    end.sendall(data.upper())
                end.close()
            threading.Thread(target=pump, daemon=True).start()
        return WebSocketUpgrade(req, take)
    router.add("GET", "/ws", echo)
    path = str(tmp_path / "api.sock")
    srv = Server(router, unix_path=path)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        ws = websocket.create_connection("ws://localhost/v1.47/ws", socket=s, timeout=5)
        assert ws.getstatus() == 101 and ws.getheaders()["api-version"] == "1.47"
        ws.send("hi")
        assert ws.recv() == b"HI"
        ws.close()
        # Not a handshake: a plain HTTP error, the connection is not taken over.
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.1 400 ") and b"websocket" in reply
    finally:
        srv.shutdown()
