"""The runtime <-> container sync channel (a SOCK_SEQPACKET pair, one JSON message each)
and the SCM_RIGHTS hand-over of a pty master to a console socket."""

from __future__ import annotations

import json
import socket

from bosun.runtime.errors import RuntimeErr


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def send(self, kind: str, **data) -> None:
        data["t"] = kind
        self.sock.send(json.dumps(data).encode())

    def recv(self, *expect: str) -> dict:
        raw = self.sock.recv(65536)
        if not raw:
            raise EOFError("peer went away")
        msg = json.loads(raw)
        if msg["t"] == "error":
            raise RuntimeErr(msg["msg"])
        if expect and msg["t"] not in expect:
            raise RuntimeErr(f"sync: expected {'/'.join(expect)}, got {msg['t']}")
        return msg

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def send_fd(sock_path_or_sock, fd: int, name: str = "/dev/ptmx") -> None:
    """Send fd over a unix socket (a path to connect to, or a connected socket)."""
    if isinstance(sock_path_or_sock, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(sock_path_or_sock)
            socket.send_fds(s, [name.encode()], [fd])
        finally:
            s.close()
    else:
        socket.send_fds(sock_path_or_sock, [name.encode()], [fd])


def connect_console(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RuntimeErr(f"cannot connect to console socket {path}: {e.strerror}") from None
    return s


def recv_fd(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise RuntimeErr("console socket: no file descriptor received")
    return fds[0]
