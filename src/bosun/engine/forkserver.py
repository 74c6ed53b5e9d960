"""The fork-server: a small single-threaded Python process the daemon starts once, from which
every per-container monitor (shim) is forked.

Why: the daemon is multi-threaded (one thread per API connection), and forking a threaded
process is unsafe (locks held by other threads stay held in the child). Exec'ing a fresh
interpreter per container costs ~30 ms and ~8 MB each. A fork of this small, already-warm
process costs ~1 ms and shares its pages with every other shim.

What a shim costs is what it writes to after the fork (copy-on-write), so this process is
exec'd fresh rather than forked from the daemon, and imports only what shims and the runtime
need: never `threading`, whose at-fork handler alone made every shim ~0.5 MB bigger, nor the
daemon's API stack. `gc.freeze()` keeps the collector from touching the shared objects.
In ps they show as bosun-forksrv and a bosun-shim per container.

Protocol: SOCK_SEQPACKET, one JSON message per packet. The daemon sends
{"op": "shim", "args": {...}} with one file descriptor attached (SCM_RIGHTS): the socket on
which the shim reports the outcome of creating the container directly to the daemon. The
fork-server answers {"pid": shim_pid} at once and goes back to waiting, so creates run in
parallel. It exits when the daemon's end closes (the daemon died or shut down); shims live on.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys

from bosun.engine.wire import recv as _recv
from bosun.engine.wire import send as _send


class ForkServer:
    """The daemon's handle on the fork-server."""

    def __init__(self) -> None:
        import threading

        self.pid = 0
        self._proc = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        import subprocess

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Its own session: a terminal's ^C to the daemon's group must not reach it or
            # the shims. stderr stays the daemon's, for a crash's last words.
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "bosun.engine.forkserver", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True)
        finally:
            theirs.close()
        ours.set_inheritable(False)
        self.pid, self._sock = self._proc.pid, ours

    def spawn_shim(self, args: dict, result_fd: int) -> int:
        """Fork a shim with `args`; it reports on `result_fd` (which we keep open). Returns
        the shim's pid."""
        if self._sock is None:
            raise RuntimeError("fork-server not started")
        with self._lock:
            _send(self._sock, {"op": "shim", "args": args}, (result_fd,))
            reply, _ = _recv(self._sock)
        if not reply or "pid" not in reply:
            raise RuntimeError((reply or {}).get("error") or "fork-server went away")
        return reply["pid"]

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            self._proc.wait()
            self._proc, self.pid = None, 0


def _preload() -> None:
    """Import what a shim and the runtime's create need, so each fork shares it."""
    import bosun.engine.logs  # noqa: F401
    import bosun.engine.shim  # noqa: F401
    import bosun.runtime.cgroups  # noqa: F401
    import bosun.runtime.channel  # noqa: F401
    import bosun.runtime.create  # noqa: F401
    import bosun.runtime.delete  # noqa: F401
    import bosun.runtime.exec  # noqa: F401
    import bosun.runtime.init  # noqa: F401
    import bosun.runtime.process  # noqa: F401
    import bosun.runtime.resources  # noqa: F401
    import bosun.runtime.rootfs  # noqa: F401
    import binascii  # noqa: F401  (exec output capture)
    import fcntl  # noqa: F401
    import hashlib  # noqa: F401  (the seccomp cache key)
    import resource  # noqa: F401
    import selectors  # noqa: F401
    import struct  # noqa: F401
    import termios  # noqa: F401  (resize)
    from bosun.kernel import LINUX

    # libc's handle and the function pointers a shim calls: made lazily, they would cost each
    # shim ~1.3 MB of its own (measured with smaps_rollup's Private_Dirty).
    libc = LINUX._lib()
    for name in ("prctl", "syscall", "mount", "unshare", "setns"):
        getattr(libc, name)
    try:
        from bosun.runtime import seccomp_filter

        seccomp_filter._bindings()
    except Exception:  # noqa: BLE001  (no libseccomp: containers asking for it fail then)
        pass


def _serve(sock: socket.socket) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _set_name("bosun-forksrv")
    _preload()
    import gc

    gc.collect()
    gc.freeze()
    while True:
        _reap()
        ready, _, _ = select.select([sock], [], [], 1.0)
        if not ready:
            continue
        try:
            msg, fds = _recv(sock)
        except (OSError, ValueError):
            return
        if msg is None:
            return  # the daemon is gone
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            _send(sock, {"error": f"fork: {e.strerror}"})
            continue
        if pid == 0:
            code = 1
            try:
                sock.close()
                _set_name("bosun-shim")
                from bosun.engine import shim

                shim.main(msg["args"], fds[0] if fds else -1)
                code = 0
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})


def _set_name(name: str) -> None:
    """The process's name in ps and top (/proc/self/comm, at most 15 bytes): shims show as
    bosun-shim, not as python3.11 beside the daemon."""
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, name.encode()[:15])
    except OSError:
        pass
    finally:
        os.close(fd)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    """Entry point of the exec'd fork-server: argv[0] is the inherited socket's fd."""
    _serve(socket.socket(fileno=int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
