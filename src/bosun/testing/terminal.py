"""A command on the slave side of a new pty, for tests of interactive CLIs (`run -it`,
`exec -it`, `attach`): the test types into the master and reads what the command writes to
its terminal, resizes it as a terminal emulator would, and collects the exit status."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str], *, rows: int = 24,
                 cols: int = 80) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the size is set before the command starts, so it reads ours at once
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.argv = argv
        self.pid, self.fd = pid, fd
        self.buf = b""
        self.status: int | None = None

    def _read(self, timeout: float) -> bool:
        """Append what comes within timeout; False at end of output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the slave's last holder is gone
            data = b""
        self.buf += data
        return bool(data)

    def expect(self, pattern: bytes, timeout: float = 15) -> re.Match:
        """Wait for pattern (a regex) in the output; consume the output up to its end."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            ended = left <= 0 or not self._read(min(left, 0.5))
            if ended and not rx.search(self.buf):
                raise AssertionError(f"{pattern!r} not seen; output: {self.buf!r}")

    def type(self, text: bytes) -> None:
        os.write(self.fd, text)

    def resize(self, rows: int, cols: int) -> None:
        """As a terminal emulator does: the kernel sends the command SIGWINCH."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.argv[:3]} did not exit; output: {self.buf!r}")
            self._read(0.1)  # keep draining, so it never blocks writing
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.status = -9
        os.close(self.fd)


def check_size(t: Terminal, rows: int, cols: int) -> None:
    """`stty size` inside follows the outer terminal (the resize is asynchronous: retry)."""
    want = f"S{rows}x{cols}".encode()
    for _ in range(20):
        t.type(b"echo S$(stty size | tr ' ' x)\n")
        m = t.expect(rb"S(\d+)x(\d+)")
        if m.group(0) == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"terminal size is {m.group(0)!r}, not {want!r}")
