"""The attached half of run, start -a, attach and exec: a hijacked connection pumped between
our stdin/stdout/stderr and the container, the local terminal in raw mode while a tty is
attached, SIGWINCH forwarded as resizes, and (without a tty) signals forwarded as kills."""

from __future__ import annotations

import os
import select
import sys

from bosun.cli.containers import write_all
from bosun.cli.http import Demuxer


def detach_sequence(keys: str | None) -> bytes:
    """docker's --detach-keys ("ctrl-p,ctrl-q", "a,ctrl-@") as the bytes the terminal sends."""
    from bosun import detachkeys

    try:
        return detachkeys.parse(keys)
    except ValueError:
        raise ValueError(f"Invalid detach keys ({keys}) provided") from None


def terminal_size(fd: int) -> tuple[int, int] | None:
    import fcntl
    import termios

    try:
        raw = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols = int.from_bytes(raw[0:2], sys.byteorder), int.from_bytes(raw[2:4], sys.byteorder)
    return (rows, cols) if rows and cols else None


class Raw:
    """The local terminal in raw mode (keys go to the container as typed) until exit."""

    def __init__(self, fd: int) -> None:
        import termios
        import tty

        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)  # TCSAFLUSH would drop what was typed ahead

    def restore(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


class Resizer:
    """Keeps the container's (or exec's) tty the size of ours: now and on every SIGWINCH."""

    def __init__(self, client, path: str) -> None:
        import signal

        self.client, self.path = client, path
        self.signal = signal
        self.old = signal.signal(signal.SIGWINCH, lambda *_: self.resize())

    def resize(self, attempts: int = 1) -> None:
        from bosun.cli.http import APIError

        size = terminal_size(1) or terminal_size(0)
        if not size:
            return
        for i in range(attempts):
            try:
                self.client.call("POST", self.path, {"h": size[0], "w": size[1]})
                return
            except APIError:
                if i + 1 < attempts:  # the process may not have its tty yet
                    import time

                    time.sleep(0.01 * (i + 1))

    def stop(self) -> None:
        self.signal.signal(self.signal.SIGWINCH, self.old)


class SignalProxy:
    """Without a tty, signals we get are the container's (docker's --sig-proxy)."""

    FORWARD = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")

    def __init__(self, client, container: str) -> None:
        import signal

        self.signal = signal
        self.old = {}
        path = f"/containers/{container}/kill"

        def forward(sig, frame) -> None:
            try:
                client.call("POST", path, {"signal": str(sig)})
            except Exception:  # noqa: BLE001  (the container may be gone already)
                pass
        for name in self.FORWARD:
            num = getattr(signal, name)
            self.old[num] = signal.signal(num, forward)

    def stop(self) -> None:
        for num, old in self.old.items():
            self.signal.signal(num, old)


def pump(sock, leftover: bytes, tty: bool, stdin: bool, detach_keys: bytes | None = None
         ) -> bool:
    """Copy until the daemon ends the stream; True if the user typed the detach keys.

    Our stdin goes to the socket (its end is a half-close, so the container sees EOF); the
    socket's bytes go to stdout, or are demultiplexed to stdout/stderr without a tty."""
    import _socket

    demux = None if tty else Demuxer()
    typed = b""
    detached = False
    reading_stdin = stdin
    sys.stdout.flush()
    sys.stderr.flush()

    def output(data: bytes) -> None:
        if demux is None:
            write_all(1, data)
            return
        for stream, payload in demux.feed(data):
            write_all(2 if stream == 2 else 1, payload)

    if leftover:
        output(leftover)
    sock_fd = sock.fileno()
    sock.setblocking(False)  # a blocked send must not stop us reading (the container's
    pending = b""            # output would fill the socket and it would wait for us)
    shut = False
    while True:
        if stdin and not reading_stdin and not pending and not shut:
            shut = True  # our stdin ended: the container's gets EOF
            try:
                sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass
        rfds = [sock_fd] + ([0] if reading_stdin and not pending else [])
        ready, writable, _ = select.select(rfds, [sock_fd] if pending else [], [])
        if writable:
            try:
                pending = pending[sock.send(pending):]
            except BlockingIOError:
                pass
            except OSError:
                pending, reading_stdin = b"", False
        if 0 in ready:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                reading_stdin = False
            elif detach_keys:
                typed = (typed + data)[-len(detach_keys):]
                detached = detached or typed == detach_keys
            pending = data
        if sock_fd in ready:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            output(data)
    sock.close()
    return detached


def attach_io(cli, sock, leftover: bytes, *, tty: bool, stdin: bool, resize_path: str | None,
              container: str | None, sig_proxy: bool, detach_keys: str | None,
              after_start=None) -> bool:
    """Set up the terminal and signals around pump(); after_start() runs once the stream is
    ours (run and start -a start the container there). True if detached."""
    raw = resizer = proxy = None
    keys = detach_sequence(detach_keys) if stdin and tty else None
    try:
        if tty and stdin and os.isatty(0):
            raw = Raw(0)
        if after_start is not None:
            after_start()
        if tty and resize_path and (os.isatty(1) or os.isatty(0)):
            resizer = Resizer(cli.client, resize_path)
            resizer.resize(attempts=5)
        if not tty and sig_proxy and container:
            proxy = SignalProxy(cli.client, container)
        return pump(sock, leftover, tty, stdin, keys)
    finally:
        if raw is not None:
            raw.restore()
        if resizer is not None:
            resizer.stop()
        if proxy is not None:
            proxy.stop()
