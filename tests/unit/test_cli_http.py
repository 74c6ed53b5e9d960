"""bosun's own HTTP/1.1 client (framing, streams, hijack), the frame demuxer, and how
`bosun` shapes errors: one line each, docker's exit codes, never a traceback."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from bosun.cli import main
from bosun.cli.http import APIError, Client, Demuxer, Unreachable, query_string


class FakeDaemon:
    """A unix socket that answers each connection with the next canned response."""

    def __init__(self, path: str, responses: list[bytes]) -> None:
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.host = f"unix://{path}"
        self.thread = threading.Thread(target=self._serve, args=(responses,), daemon=True)
        self.thread.start()

    def _serve(self, responses: list[bytes]) -> None:
        for resp in responses:
            conn, _ = self.sock.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            self.requests.append(data)
            for piece in resp.split(b"|"):  # "|" marks where the bytes are sent apart
                conn.sendall(piece)
            if b"Upgrade" in data:
                self.upgraded = conn
                self.echo = conn.recv(100)
                conn.sendall(b"bye")
            conn.close()


@pytest.fixture
def fake(tmp_path):
    made = []

    def make(*responses: bytes) -> FakeDaemon:
        d = FakeDaemon(str(tmp_path / f"d{len(made)}.sock"), list(responses))
        made.append(d)
        return d
    yield make
    for d in made:
        d.sock.close()


def test_content_length_and_query(fake):
    d = fake(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n'
             b'\r\n{"a": [1]}\n')
    c = Client(d.host)
    assert c.call("GET", "/x", {"all": True, "no": False, "skip": None, "f": 'a b/{"c"}'}) == \
        {"a": [1]}
    line = d.requests[0].split(b"\r\n")[0]
    assert line == b"GET /x?all=1&f=a%20b%2F%7B%22c%22%7D HTTP/1.1"


def test_chunked_stream_split_anywhere(fake):
    body = b'8\r\n{"id":1|}\r\n6\r\n{"id"|:\r\n2\r\n2}\r\n0\r\n\r\n'
    d = fake(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    r = Client(d.host).stream("POST", "/images/create")
    assert list(r.json_stream()) == [{"id": 1}, {"id": 2}]


def test_body_until_close_and_no_body(fake):
    d = fake(b"HTTP/1.1 200 OK\r\n\r\nraw |bytes", b"HTTP/1.1 204 No Content\r\n\r\n")
    c = Client(d.host)
    assert c.stream("GET", "/logs").read() == b"raw bytes"
    assert c.call("POST", "/containers/x/start") is None


def test_errors_carry_the_daemons_message(fake):
    d = fake(b'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 39'
             b'\r\n\r\n{"message":"No such container: nosuch"}',
             b"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\nplain")
    c = Client(d.host)
    with pytest.raises(APIError) as e:
        c.call("GET", "/containers/nosuch/json")
    assert (e.value.status, str(e.value)) == (404, "No such container: nosuch")
    with pytest.raises(APIError, match="^plain$"):
        c.call("GET", "/x")


def test_hijack_keeps_bytes_read_with_the_head(fake):
    d = fake(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly")
    sock, leftover = Client(d.host).hijack("POST", "/containers/x/attach", {"stream": True})
    assert b"Connection: Upgrade\r\nUpgrade: tcp" in d.requests[0]
    got = leftover
    sock.sendall(b"hello")
    while not got.endswith(b"bye"):
        got += sock.recv(100)
    sock.close()
    assert got == b"earlybye" and d.echo == b"hello"


def test_unreachable(tmp_path):
    with pytest.raises(Unreachable):
        Client(f"unix://{tmp_path}/none.sock").call("GET", "/_ping")


def test_demuxer_frames_from_any_pieces():
    frames = (b"\x01\0\0\0\0\0\0\x03out" + b"\x02\0\0\0\0\0\0\x04err\n" +
              b"\x01\0\0\0\0\0\0\0" + b"\x01\0\0\0\0\0\x01\x00" + b"x" * 256)
    for step in (1, 3, 7, len(frames)):
        d = Demuxer()
        got = []
        for i in range(0, len(frames), step):
            got += list(d.feed(frames[i:i + step]))
        assert got == [(1, b"out"), (2, b"err\n"), (1, b""), (1, b"x" * 256)]
        assert d.pending == 0


def test_query_string():
    assert query_string({}) == ""
    assert query_string({"t": 0, "name": "a:b@c"}) == "?t=0&name=a%3Ab%40c"


# -- main: errors ----------------------------------------------------------------------------

def test_cannot_connect_is_one_line(tmp_path, capsys):
    host = f"unix://{tmp_path}/none.sock"
    assert main(["-H", host, "ps"]) == 1
    assert capsys.readouterr().err == (f"Cannot connect to the bosun daemon at {host}. Is the "
                                       "bosun daemon running? (start it with: bosun daemon)\n")
    assert main(["-H", host, "run", "busybox"]) == 125


def test_host_from_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    main(["ps"])
    assert "docker.sock" in capsys.readouterr().err
    monkeypatch.setenv("BOSUN_HOST", f"unix://{tmp_path}/bosun.sock")
    main(["ps"])
    assert "bosun.sock" in capsys.readouterr().err
    main(["-H", f"{tmp_path}/flag.sock", "ps"])
    assert f"unix://{tmp_path}/flag.sock" in capsys.readouterr().err


def test_default_host(monkeypatch, capsys):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("BOSUN_HOST", raising=False)
    if os.path.exists("/run/bosun/bosun.sock"):
        pytest.skip("a daemon is running on the default socket")
    assert main(["ps"]) == 1
    assert "unix:///run/bosun/bosun.sock" in capsys.readouterr().err


def test_api_error_shape(fake, capsys):
    d = fake(b'HTTP/1.1 404 Not Found\r\nContent-Length: 39\r\n\r\n'
             b'{"message":"No such container: nosuch"}')
    assert main(["-H", d.host, "logs", "nosuch"]) == 1
    assert capsys.readouterr().err == "Error response from daemon: No such container: nosuch\n"


def test_unknown_command_and_flag(capsys):
    assert main(["frobnicate"]) == 1
    assert capsys.readouterr().err == ("bosun: unknown command: bosun frobnicate\n\n"
                                       "Run 'bosun --help' for more information\n")
    assert main(["--frob", "ps"]) == 125
    assert capsys.readouterr().err.startswith("unknown flag: --frob\n\nUsage:  bosun [OPTIONS]")
    assert main(["ps", "--help"]) == 0
    assert "Usage:  bosun ps [OPTIONS]" in capsys.readouterr().out


def test_internal_errors_are_one_line(fake, capsys, monkeypatch):
    monkeypatch.delenv("BOSUN_DEBUG", raising=False)
    d = fake(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!")
    assert main(["-H", d.host, "ps"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("bosun: ")


def test_daemon_dispatch_unchanged(monkeypatch):
    import bosun.daemon

    seen = []
    monkeypatch.setattr(bosun.daemon, "main", lambda argv: seen.append(argv) or 7)
    assert main(["daemon", "-H", "unix:///x", "--data-root", "/d"]) == 7
    assert seen == [["-H", "unix:///x", "--data-root", "/d"]]
