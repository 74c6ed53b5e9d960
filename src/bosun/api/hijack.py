"""Hand a hijacked connection to the engine as a plain socket.

The engine passes attach/exec connections to the container's shim by SCM_RIGHTS, which needs a
real kernel socket with nothing buffered in user space. A TLS connection (TCP API) or bytes the
client sent past its request head need a relay: a socket pair, pumped by two threads."""

from __future__ import annotations

import socket
import ssl
import threading


def plain(sock: socket.socket, leftover: bytes) -> socket.socket:
    if not isinstance(sock, ssl.SSLSocket) and not leftover:
        return sock
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if leftover:
        ours.sendall(leftover)

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def run() -> None:
        t = threading.Thread(target=pump, args=(sock, ours), daemon=True)
        t.start()
        pump(ours, sock)
        t.join()
        ours.close()
        sock.close()

    threading.Thread(target=run, daemon=True).start()
    return theirs
