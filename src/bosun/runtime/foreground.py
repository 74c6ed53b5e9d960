"""Foreground mode for run and exec: forward signals, relay a terminal, reap, exit status."""

from __future__ import annotations

import _signal as signal  # the C module: `signal` adds enums and start-up time
import os

_NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGWINCH,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGURG}


class Forwarder:
    """Install before the process starts, so no signal is lost between start and wait."""

    def __init__(self) -> None:
        self.pid = 0
        self.master = -1
        self.pending: list[int] = []
        for sig in signal.valid_signals():
            if sig in _NOT_FORWARDED or sig >= signal.SIGRTMIN:
                continue
            try:
                signal.signal(sig, self._on_signal)
            except (OSError, ValueError):
                pass
        signal.signal(signal.SIGWINCH, self._on_winch)

    def _on_signal(self, sig, frame) -> None:
        if self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        else:
            self.pending.append(sig)

    def _on_winch(self, sig, frame) -> None:
        if self.master >= 0:
            copy_winsize(0, self.master)

    def attach(self, pid: int, master: int = -1) -> None:
        self.pid, self.master = pid, master
        for sig in self.pending:
            self._on_signal(sig, None)
        self.pending.clear()

    def wait(self) -> int:
        if self.master >= 0:
            self._relay()
        _, status = os.waitpid(self.pid, 0)
        return exit_code(status)

    def _relay(self) -> None:
        import select

        stdin_tty = os.isatty(0)
        saved = None
        if stdin_tty:
            import termios
            import tty

            saved = termios.tcgetattr(0)
            tty.setraw(0)
            copy_winsize(0, self.master)
        fds = [self.master, 0]
        try:
            while True:
                try:
                    ready, _, _ = select.select(fds, [], [])
                except InterruptedError:
                    continue
                if self.master in ready:
                    try:
                        data = os.read(self.master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    _write_all(1, data)
                if 0 in ready:
                    data = os.read(0, 65536)
                    if not data:
                        fds.remove(0)
                        if not stdin_tty:
                            _write_all(self.master, b"\x04")  # EOF on the pty
                        continue
                    _write_all(self.master, data)
        finally:
            if saved is not None:
                import termios

                termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def copy_winsize(src: int, dst: int) -> None:
    import fcntl

    from bosun import kernel as K

    try:
        size = fcntl.ioctl(src, K.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, K.TIOCSWINSZ, size)
    except OSError:
        pass


def console_size(fd: int = 0) -> dict | None:
    """fd's terminal size as an OCI consoleSize, or None when fd is not a sized terminal."""
    import fcntl
    import struct

    from bosun import kernel as K

    try:
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, K.TIOCGWINSZ, b"\0" * 8))[:2]
    except OSError:
        return None
    return {"height": rows, "width": cols} if rows and cols else None


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
