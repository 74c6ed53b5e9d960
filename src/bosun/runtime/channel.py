"""The runtime <-> container sync channel (a SOCK_SEQPACKET pair, one JSON message each)
and the SCM_RIGHTS hand-over of a pty master to a console socket.

Built on _socket rather than socket: the `socket` module's enums cost start-up time on
every container start.
"""

from __future__ import annotations

import _socket

from bosun import quickjson
from bosun.runtime.errors import RuntimeErr

_INT = 4  # sizeof(int) of an fd in SCM_RIGHTS


class Channel:
    def __init__(self, sock) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def send(self, kind: str, **data) -> None:
        data["t"] = kind
        self.sock.send(quickjson.dumps(data).encode())

    def recv(self, *expect: str) -> dict:
        raw = self.sock.recv(65536)
        if not raw:
            raise EOFError("peer went away")
        msg = quickjson.loads(raw)
        if msg["t"] == "error":
            raise RuntimeErr(msg["msg"])
        if expect and msg["t"] not in expect:
            raise RuntimeErr(f"sync: expected {'/'.join(expect)}, got {msg['t']}")
        return msg

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def send_fd(sock, fd: int, name: str = "/dev/ptmx") -> None:
    """Send fd over a connected unix socket, with the file's name as the payload (as runc)."""
    sock.sendmsg([name.encode()],
                 [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(_INT, "little"))])


def connect_console(path: str):
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RuntimeErr(f"cannot connect to console socket {path}: {e.strerror}") from None
    return s


def recv_fd(sock) -> int:
    _, ancdata, _, _ = sock.recvmsg(4096, _socket.CMSG_SPACE(_INT))
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= _INT:
            return int.from_bytes(data[:_INT], "little")
    raise RuntimeErr("console socket: no file descriptor received")
