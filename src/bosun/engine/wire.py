"""The engine's local wire: SOCK_SEQPACKET unix sockets carrying one JSON message per packet
and file descriptors by SCM_RIGHTS (daemon ↔ fork-server ↔ shims).

Socket paths are reached through /proc/self/fd/N of their directory: a sun_path holds 108
bytes, and a data root plus a 64-hex container ID easily exceeds that."""

from __future__ import annotations

import json
import os
import socket

_INT = 4


def send(sock: socket.socket, msg: dict, fds: tuple[int, ...] = ()) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
            b"".join(fd.to_bytes(_INT, "little") for fd in fds))] if fds else []
    sock.sendmsg([json.dumps(msg).encode()], anc)


def recv(sock: socket.socket, maxfds: int = 4) -> tuple[dict | None, list[int]]:
    """(message, fds); (None, []) at end of stream."""
    data, anc, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(maxfds * _INT))
    fds = [int.from_bytes(d[i:i + _INT], "little")
           for lvl, kind, d in anc if lvl == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
           for i in range(0, len(d) - len(d) % _INT, _INT)]
    for fd in fds:
        os.set_inheritable(fd, False)
    return (json.loads(data) if data else None), fds


def _via_dir(path: str, op) -> None:
    d = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        op(f"/proc/self/fd/{d}/{os.path.basename(path)}")
    finally:
        os.close(d)


def bind(sock: socket.socket, path: str) -> None:
    _via_dir(path, sock.bind)


def connect(sock: socket.socket, path: str) -> None:
    _via_dir(path, sock.connect)
