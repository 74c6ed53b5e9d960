"""Attach over a websocket (GET /containers/{id}/attach/ws) from the docker SDK's
`APIClient.attach_socket(..., ws=True)`, which uses websocket-client."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_containers_after"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

docker = pytest.importorskip("docker")
websocket = pytest.importorskip("websocket")

ALL = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}


def api(daemon, version: str = "1.47"):
    """An APIClient whose websockets reach the daemon's unix socket: docker-py builds the
    ws:// URL (path, version prefix, query) but only from an http(s):// base URL, so over
    a unix socket it must be given the connection."""
    a = docker.APIClient(base_url=daemon.host, version=version, timeout=60)

    def connect(url: str):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(daemon.socket))
        return websocket.create_connection(url.replace("http+docker://", "ws://", 1),
                                           socket=s, timeout=30)
    a._create_websocket_connection = connect
    return a


def receive(ws, until: bytes | None = None) -> tuple[list[tuple[int, bytes]], int | None]:
    """(opcode, data) of each message until `until` was seen in them or the server closed
    (then its close code, else None)."""
    got: list[tuple[int, bytes]] = []
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:  # websocket-client has answered it
            return got, int.from_bytes(frame.data[:2], "big")
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            got.append((opcode, frame.data))
            if until is not None and until in b"".join(d for _, d in got):
                return got, None


def assert_closed(ws) -> None:
    """After the close handshake the server ends the connection."""
    ws.sock.settimeout(10)
    assert ws.sock.recv(1) == b""
    ws.shutdown()


def test_tty_shell_command_and_output(client, daemon):
    a = api(daemon)
    ct = a.create_container("busybox", ["sh"], tty=True, stdin_open=True)
    a.start(ct)
    ws = a.attach_socket(ct, ALL, ws=True)
    ws.send_binary(b"echo $((6 * 7))\n")  # the echoed command line does not contain 42
    got, _ = receive(ws, until=b"42\r\n")
    assert {op for op, _ in got} == {websocket.ABNF.OPCODE_BINARY}
    ws.send("exit\n")  # a text message is stdin too
    _, code = receive(ws)  # the shell exited: so did the container, and the stream
    assert code == 1000
    assert_closed(ws)
    assert a.wait(ct, timeout=30)["StatusCode"] == 0


def test_no_tty_messages_are_raw_output_without_headers(client, daemon):
    a = api(daemon)
    ct = a.create_container("busybox", ["sh", "-c", "echo out; echo err >&2; echo out2"])
    ws = a.attach_socket(ct, {"stdout": 1, "stderr": 1, "stream": 1}, ws=True)
    a.start(ct)  # attached before start: nothing is missed
    got, code = receive(ws)
    assert code == 1000
    for _, data in got:  # no 8-byte [stream, 0, 0, 0, size] header anywhere
        assert data[:1] not in (b"\x00", b"\x01", b"\x02") and b"\x00" not in data
    assert sorted(b"".join(d for _, d in got).splitlines()) == [b"err", b"out", b"out2"]
    assert_closed(ws)

    # Only the streams asked for (API >= 1.42).
    ct = a.create_container("busybox", ["sh", "-c", "echo out; echo err >&2"])
    ws = a.attach_socket(ct, {"stderr": 1, "stream": 1}, ws=True)
    a.start(ct)
    got, _ = receive(ws)
    assert b"".join(d for _, d in got) == b"err\n"
    ws.close()


def test_logs_replays_earlier_output(client, daemon):
    a = api(daemon)
    ct = a.create_container("busybox", ["sh", "-c", "echo before; sleep 2; echo after"])
    a.start(ct)
    deadline = time.monotonic() + 10
    while a.logs(ct) != b"before\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ws = a.attach_socket(ct, {"logs": 1, "stdout": 1, "stream": 1}, ws=True)
    got, code = receive(ws)
    assert code == 1000 and b"".join(d for _, d in got) == b"before\nafter\n"
    ws.close()
    # logs without stream: the replay, then the close
    ws = a.attach_socket(ct, {"logs": 1, "stdout": 1}, ws=True)
    got, code = receive(ws)
    assert code == 1000 and b"".join(d for _, d in got) == b"before\nafter\n"
    ws.close()


def test_unknown_container_is_404_before_upgrade(client, daemon):
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        api(daemon).attach_socket("no-such-container", ALL, ws=True)
    assert e.value.status_code == 404
    assert json.loads(e.value.resp_body) == {"message": "No such container: no-such-container"}
    # Not a websocket handshake: 400, and nothing attached.
    a = api(daemon)
    ct = a.create_container("busybox", ["true"])
    r = a._get(a._url("/containers/{0}/attach/ws", ct["Id"]), params={"stream": 1})
    assert r.status_code == 400 and "websocket" in r.json()["message"]


def test_closed_when_the_container_exits(client, daemon):
    a = api(daemon)
    ct = a.create_container("busybox", ["sleep", "300"])
    a.start(ct)
    ws = a.attach_socket(ct, ALL, ws=True)
    ws.ping(b"still there?")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"still there?"
    a.kill(ct)
    t0 = time.monotonic()
    got, code = receive(ws)
    assert got == [] and code == 1000 and time.monotonic() - t0 < 10
    assert_closed(ws)


def test_old_api_versions_text_frames_and_all_streams(client, daemon):
    # Before 1.28 dockerd sent text frames; before 1.42 it attached every stream whatever
    # the query said.
    a = api(daemon, "1.27")
    ct = a.create_container("busybox", ["sh", "-c", "echo out; echo err >&2"])
    ws = a.attach_socket(ct, {"stream": 1}, ws=True)
    a.start(ct)
    got, code = receive(ws)
    assert code == 1000 and {op for op, _ in got} == {websocket.ABNF.OPCODE_TEXT}
    assert sorted(b"".join(d for _, d in got).splitlines()) == [b"err", b"out"]
    ws.close()


def test_client_going_away_detaches_only(client, daemon):
    a = api(daemon)
    ct = a.create_container("busybox", ["sh", "-c", "while :; do echo tick; sleep 0.1; done"])
    a.start(ct)
    assert a.inspect_container(ct)["State"]["Running"]  # (its connection stays open)
    threads = len(os.listdir(f"/proc/{daemon.proc.pid}/task"))
    for _ in range(3):  # each client sees the stream; leaving does not stop the container
        ws = a.attach_socket(ct, {"stdout": 1, "stream": 1}, ws=True)
        receive(ws, until=b"tick\n")
        ws.shutdown()
    assert a.inspect_container(ct)["State"]["Running"]
    deadline = time.monotonic() + 10  # and the relays' threads are gone
    while len(os.listdir(f"/proc/{daemon.proc.pid}/task")) > threads:
        assert time.monotonic() < deadline
        time.sleep(0.05)
