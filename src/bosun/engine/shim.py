"""The per-container monitor (shim): what containerd-shim is to Docker.

Forked from the fork-server (never exec'd), one per container. It creates the container with
the runtime library, then owns the container's stdio for its whole life: it writes the log,
serves attached clients (the hijacked API connections are handed to it, so a stream survives a
daemon restart), runs execs, and, as the child subreaper, reaps the container's init and records
its exit status in `exit.json` before it cleans up with the runtime and exits. The daemon talks
to it over `shim.sock` (SOCK_SEQPACKET, one JSON message per packet, fds by SCM_RIGHTS):

    {"op": "subscribe"}                       → {"ok", "pid"}; later {"event": "exit", …} and
                                                {"event": "exec-exit", "exec_id", "exit_code"}
    {"op": "attach", stdin, stdout, stderr,   + the client socket; output is framed with
     "detach_keys"}                             Docker's 8-byte headers unless the tty is on
    {"op": "exec", "exec_id", "process",      + the client socket unless detached
     stdin, stdout, stderr, "capture"?}       → {"ok", "pid"} or {"error"}; with "capture": N
                                                its exec-exit also carries "output" (the first
                                                N bytes of stdout+stderr, base64), "truncated"
    {"op": "kill_exec", "exec_id", "signal"}  → {"ok"} or {"error"} (healthcheck timeouts)
    {"op": "resize", "h", "w", "exec_id"?}    {"op": "close_stdin"}

One thread, one epoll loop: no locks, and the fork shares nearly all its memory.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import time

from bosun.engine import wire
from bosun.engine.wire import recv as _recv
from bosun.engine.wire import send as _send

EXIT_FILE = "exit.json"
SOCK_FILE = "shim.sock"
DRAIN_SECONDS = 2.0  # after the process exits, how long output may still trickle in
_CHUNK = 32768


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's --detach-keys as bytes; ValueError worded as the daemon's."""
    from bosun import detachkeys

    try:
        return detachkeys.parse(spec)
    except ValueError as e:
        raise ValueError(f"Unknown character: '{e.args[0]}'") from None


def frame(stream: int, data: bytes) -> bytes:
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Client:
    """An attached API connection (hijacked, handed over to us)."""

    def __init__(self, sock: socket.socket, msg: dict, mux: bool) -> None:
        self.sock = sock
        self.stdin = bool(msg.get("stdin"))
        self.streams = {1} if msg.get("stdout") else set()
        if msg.get("stderr"):
            self.streams.add(2)
        self.mux = mux
        self.detach = parse_detach_keys(msg.get("detach_keys")) if self.stdin else b""
        self.pending = b""
        self.paused = False  # not read while the process's stdin is full
        sock.settimeout(10)  # a client that stops reading is dropped, not waited on forever

    def send(self, stream: int, data: bytes) -> bool:
        if stream not in self.streams:
            return True
        try:
            self.sock.sendall(frame(stream, data) if self.mux else data)
            return True
        except OSError:
            return False

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Proc:
    """The container's init or one exec: its pid, pipes (or pty master) and clients."""

    def __init__(self, exec_id: str | None, tty: bool) -> None:
        self.exec_id = exec_id
        self.tty = tty
        self.pid = 0
        self.outputs: dict[int, int] = {}  # fd → stream (1 stdout, 2 stderr)
        self.stdin = -1  # where client input goes: a pipe's write end or the pty master
        self.master = -1
        self.inbuf = bytearray()  # client input the process has not read yet
        self.eof_pending = False  # close stdin once inbuf is written
        self.clients: list[Client] = []
        self.status: int | None = None
        self.deadline = 0.0
        self.capture = 0  # keep this many bytes of output (a healthcheck's), when > 0
        self.captured: bytearray | None = None
        self.truncated = False

    def stdio(self, want_stdin: bool, devnull: int) -> tuple[list[int], list[int]]:
        """Make the pipes; return (fds for the child's 0,1,2, our ends to close on failure)."""
        if want_stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(w, False)  # only our end: the child's read end stays blocking
            self.stdin = w
        else:
            r = devnull
        o_r, o_w = os.pipe2(os.O_CLOEXEC)
        e_r, e_w = os.pipe2(os.O_CLOEXEC)
        self.outputs = {o_r: 1, e_r: 2}
        theirs = [r, o_w, e_w]
        return theirs, [fd for fd in theirs if fd != devnull]


class Shim:
    def __init__(self, args: dict) -> None:
        self.args = args
        self.id = args["id"]
        self.root = args["root"]
        self.dir = args["dir"]
        self.sel = selectors.DefaultSelector()
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.listener: socket.socket | None = None
        self.subscribers: list[socket.socket] = []
        self.init = Proc(None, bool(args.get("tty")))
        self.procs: dict[int, Proc] = {}
        self.log = None
        self.stdin_once = bool(args.get("stdin_once"))
        self.wake_r = self.wake_w = -1

    # -- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        from bosun.kernel import LINUX, PR_SET_CHILD_SUBREAPER

        LINUX.prctl(PR_SET_CHILD_SUBREAPER, 1)  # the container's init becomes our child
        os.chdir(self.dir)  # as containerd-shim does: ps and /proc tell whose shim we are
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        path = os.path.join(self.dir, SOCK_FILE)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        wire.bind(self.listener, path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        if self.args.get("log_path"):
            from bosun.engine.logs import JsonLogWriter

            opts = self.args.get("log_opts") or {}
            self.log = JsonLogWriter(self.args["log_path"], max_size=opts.get("max_size", -1),
                                     max_file=opts.get("max_file", 1))
        from bosun.runtime.create import create

        def start(console) -> int:
            return create(self.root, self.id, self.args["bundle"], console=console).pid

        p = self.init
        p.pid = self._start_proc(p, bool(self.args.get("stdin")), start)
        self.procs[p.pid] = p

    def _start_proc(self, p: Proc, want_stdin: bool, start) -> int:
        """Run `start(console)` — which forks the process and returns its pid — with its stdio
        wired: a pty whose master comes back over a socket pair, or three pipes placed on our
        fds 0,1,2 for the fork to inherit."""
        if p.tty:
            from bosun.runtime.channel import recv_fd

            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                pid = _in_child(lambda: start(theirs))
                theirs.close()
                master = recv_fd(ours)
            finally:
                ours.close()
                theirs.close()
            os.set_inheritable(master, False)
            p.master = master
            p.outputs = {master: 1}
            p.stdin = master if want_stdin else -1
            return pid
        theirs, cleanup = p.stdio(want_stdin, self.devnull)
        try:
            for i, fd in enumerate(theirs):
                os.dup2(fd, i)
            pid = _in_child(lambda: start(None))
        except BaseException:
            for fd in list(p.outputs) + ([p.stdin] if p.stdin >= 0 else []):
                os.close(fd)
            p.outputs, p.stdin = {}, -1
            raise
        finally:
            for i in range(3):
                os.dup2(self.devnull, i)
            for fd in cleanup:
                os.close(fd)
        return pid

    # -- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        sel = self.sel
        sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self._watch(self.init)
        self._reap()
        while True:
            timeout = None
            waiting = [p for p in self.procs.values() if p.status is not None]
            if waiting:
                timeout = max(0.0, min(p.deadline for p in waiting) - time.monotonic())
            for key, events in sel.select(timeout):
                kind, obj = key.data
                if kind == "listen":
                    self._accept()
                elif kind == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    self._reap()
                elif kind == "out":
                    if events & selectors.EVENT_WRITE:  # a pty master, input waiting
                        self._flush_stdin(obj)
                    if events & selectors.EVENT_READ:
                        self._output(obj, key.fd)
                elif kind == "stdin":
                    self._flush_stdin(obj)
                elif kind == "ctl":
                    self._control(obj)
                elif kind == "in":
                    self._input(*obj)
            now = time.monotonic()
            for p in list(self.procs.values()):
                if p.status is not None and (not p.outputs or now >= p.deadline):
                    if p is self.init:
                        self._finish()
                        return
                    self._exec_done(p)

    def _watch(self, p: Proc) -> None:
        for fd in p.outputs:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("out", p))

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.sel.register(conn, selectors.EVENT_READ, ("ctl", conn))

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            p = self.procs.get(pid)
            if p is None:
                continue  # a process the container left behind, re-parented to us
            code = os.waitstatus_to_exitcode(status)
            p.status = code if code >= 0 else 128 - code
            p.deadline = time.monotonic() + DRAIN_SECONDS

    # -- output and input -----------------------------------------------------------------

    def _output(self, p: Proc, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's last holder went away
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            del p.outputs[fd]
            if fd == p.master:
                p.master = -1
                if p.stdin == fd:
                    p.stdin = -1
            return
        stream = p.outputs[fd]
        if p.captured is not None:
            room = p.capture - len(p.captured)
            p.captured += data[:max(room, 0)]
            p.truncated = p.truncated or len(data) > room
        if self.log is not None and p is self.init:
            self.log.write("stdout" if stream == 1 else "stderr", data)
        for c in list(p.clients):
            if not c.send(stream, data):
                self._drop(p, c)

    def _input(self, p: Proc, c: Client) -> None:
        try:
            data = c.sock.recv(_CHUNK)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(c.sock)
            c.stdin = False
            if p is not self.init or self.stdin_once:
                self._close_stdin(p)
            return
        if c.detach:
            data = c.pending + data
            c.pending = b""
            i = data.find(c.detach)
            if i >= 0:
                self._write_stdin(p, data[:i])
                self._drop(p, c)
                return
            # hold back a tail that could be the start of the detach sequence
            for n in range(min(len(c.detach) - 1, len(data)), 0, -1):
                if c.detach.startswith(data[-n:]):
                    c.pending, data = data[-n:], data[:-n]
                    break
        self._write_stdin(p, data)

    def _write_stdin(self, p: Proc, data: bytes) -> None:
        """Never blocks: a container that is not reading its stdin while its output pipe is
        full would otherwise wait on us as we wait on it. What does not fit is kept, and the
        clients' input is not read until the process has taken it (backpressure)."""
        if p.stdin < 0 or not data:
            return
        if p.inbuf:
            p.inbuf += data
            return
        try:
            n = os.write(p.stdin, data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._close_stdin(p)
            return
        if n < len(data):
            p.inbuf += data[n:]
            self._stdin_full(p, True)

    def _flush_stdin(self, p: Proc) -> None:
        if p.stdin < 0 or not p.inbuf:
            return
        try:
            n = os.write(p.stdin, p.inbuf)
        except BlockingIOError:
            return
        except OSError:
            p.inbuf.clear()
            self._stdin_full(p, False)
            self._close_stdin(p)
            return
        del p.inbuf[:n]
        if not p.inbuf:
            self._stdin_full(p, False)
            if p.eof_pending:
                self._close_stdin(p)

    def _stdin_full(self, p: Proc, full: bool) -> None:
        """Wait for the process's stdin to take more (or stop waiting), pausing (or resuming)
        the reading of its clients' input meanwhile."""
        if p.stdin == p.master:  # one fd for both directions, registered for its output
            if p.master in p.outputs:
                mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if full else 0)
                self.sel.modify(p.master, mask, ("out", p))
        elif full:
            self.sel.register(p.stdin, selectors.EVENT_WRITE, ("stdin", p))
        else:
            try:
                self.sel.unregister(p.stdin)
            except (KeyError, ValueError):
                pass
        for c in p.clients:
            if c.stdin and c.paused != full:
                c.paused = full
                if full:
                    self.sel.unregister(c.sock)
                else:
                    self.sel.register(c.sock, selectors.EVENT_READ, ("in", (p, c)))

    def _close_stdin(self, p: Proc) -> None:
        if p.inbuf and p.stdin >= 0:
            p.eof_pending = True  # after what the clients sent is written
            return
        if p.stdin >= 0 and p.stdin != p.master:
            os.close(p.stdin)
        elif p.stdin >= 0 and p.tty:
            try:
                os.write(p.master, b"\x04")  # EOF for the pty's line discipline
            except OSError:
                pass
        p.stdin = -1 if p.stdin != p.master else p.stdin

    def _drop(self, p: Proc, c: Client) -> None:
        if c in p.clients:
            p.clients.remove(c)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.close()

    # -- control --------------------------------------------------------------------------

    def _control(self, conn: socket.socket) -> None:
        try:
            msg, fds = _recv(conn)
        except (OSError, ValueError):
            msg, fds = None, []
        if msg is None:
            self._hangup(conn)
            return
        op = msg.get("op")
        try:
            if op == "subscribe":
                self.subscribers.append(conn)
                reply = {"ok": True, "pid": self.init.pid}
            elif op == "attach":
                reply = self._attach(self.init, msg, fds)
            elif op == "exec":
                reply = self._exec(msg, fds)
            elif op == "kill_exec":
                reply = self._kill_exec(msg)
            elif op == "resize":
                reply = self._resize(msg)
            elif op == "close_stdin":
                self._close_stdin(self.init)
                reply = {"ok": True}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as e:  # noqa: BLE001  (report, keep serving)
            reply = {"error": str(e) or type(e).__name__}
        finally:
            for fd in fds[1:]:
                os.close(fd)
        try:
            _send(conn, reply)
        except OSError:
            self._hangup(conn)

    def _hangup(self, conn: socket.socket) -> None:
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        if conn in self.subscribers:
            self.subscribers.remove(conn)
        conn.close()

    def _attach(self, p: Proc, msg: dict, fds: list[int]) -> dict:
        if not fds:
            return {"error": "attach: no connection passed"}
        c = Client(socket.socket(fileno=fds[0]), msg, mux=not p.tty)
        if p.status is not None and not p.outputs:
            c.close()  # nothing more will come
            return {"ok": True}
        p.clients.append(c)
        if c.stdin and p.stdin >= 0:
            c.paused = bool(p.inbuf)
            if not c.paused:
                self.sel.register(c.sock, selectors.EVENT_READ, ("in", (p, c)))
        return {"ok": True}

    def _resize(self, msg: dict) -> dict:
        import fcntl
        import struct
        import termios

        p = self.init
        if msg.get("exec_id"):
            p = next((q for q in self.procs.values() if q.exec_id == msg["exec_id"]), None)
            if p is None:
                return {"error": "no such exec"}
        if p.master < 0:
            return {"error": "the process has no terminal"}
        fcntl.ioctl(p.master, termios.TIOCSWINSZ,
                    struct.pack("HHHH", int(msg["h"]), int(msg["w"]), 0, 0))
        return {"ok": True}

    def _exec(self, msg: dict, fds: list[int]) -> dict:
        from bosun.runtime.exec import spawn

        process = msg["process"]
        p = Proc(msg["exec_id"], bool(process.get("terminal")))
        if msg.get("capture"):
            p.capture, p.captured = int(msg["capture"]), bytearray()
        sock = socket.socket(fileno=fds[0]) if fds else None
        fds[:1] = []

        def start(console) -> int:
            return spawn(self.root, self.id, process, console=console)[0]

        try:
            p.pid = self._start_proc(p, bool(msg.get("stdin")), start)
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        self.procs[p.pid] = p
        self._watch(p)
        if sock is not None:
            fds_passed = [sock.detach()]
            self._attach(p, msg, fds_passed)
        return {"ok": True, "pid": p.pid}

    def _kill_exec(self, msg: dict) -> dict:
        p = next((q for q in self.procs.values()
                  if q.exec_id is not None and q.exec_id == msg.get("exec_id")), None)
        if p is None:
            return {"error": "no such exec"}
        if p.status is None:  # not reaped yet: the pid is still this process's
            os.kill(p.pid, int(msg.get("signal") or signal.SIGKILL))
        return {"ok": True}

    def _exec_done(self, p: Proc) -> None:
        del self.procs[p.pid]
        event = {"event": "exec-exit", "exec_id": p.exec_id, "exit_code": p.status}
        if p.captured is not None:
            import binascii

            event["output"] = binascii.b2a_base64(p.captured, newline=False).decode()
            event["truncated"] = p.truncated
        self._notify(event)  # before the client sees EOF: it asks for the exit code next
        self._close_proc(p)

    def _end_execs(self) -> None:
        """The container's init is gone: so are its execs, killed with its PID namespace (or,
        when it shares the host's, by us, as containerd's shim kills all). Reap them and send
        their exits before the container's, so that `docker exec` clients end and exec
        inspect has the exit code (137, as Docker reports them)."""
        import select

        execs = [q for q in self.procs.values() if q is not self.init]
        for q in execs:
            if q.status is None:  # not reaped: the pid is still this process's
                try:
                    os.kill(q.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + DRAIN_SECONDS
        while any(q.status is None for q in execs) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.005)
        for q in execs:
            for fd in list(q.outputs):  # what they wrote before dying, up to EOF
                while (fd in q.outputs and time.monotonic() < deadline
                       and select.select([fd], [], [], 0)[0]):
                    self._output(q, fd)
            self._exec_done(q)  # an exit code of None if it could not be reaped in time

    def _close_proc(self, p: Proc) -> None:
        if p.inbuf:
            p.inbuf.clear()
            if p.stdin != p.master:
                self._stdin_full(p, False)  # unregisters the pipe before it is closed
        for fd in list(p.outputs):
            self.sel.unregister(fd)
            os.close(fd)
        p.outputs.clear()
        if p.stdin >= 0 and p.stdin != p.master:
            os.close(p.stdin)
        p.stdin = -1
        if p.master >= 0:
            os.close(p.master)
            p.master = -1
        for c in list(p.clients):
            self._drop(p, c)

    def _notify(self, event: dict) -> None:
        for conn in list(self.subscribers):
            try:
                _send(conn, event)
            except OSError:
                self._hangup(conn)

    # -- the end --------------------------------------------------------------------------

    def _finish(self) -> None:
        p = self.init
        self._end_execs()  # before the runtime's delete: their cgroup must be empty
        if self.log is not None:
            self.log.close()
        oom = _oom_killed(self.root, self.id)
        try:
            from bosun.runtime.delete import delete

            delete(self.root, self.id, force=True)
        except Exception:  # noqa: BLE001  (the daemon's reconcile cleans what is left)
            pass
        result = {"exit_code": p.status, "finished_at": now_rfc3339(), "oom_killed": oom,
                  "pid": p.pid}
        from bosun.runtime.state import atomic_write

        atomic_write(os.path.join(self.dir, EXIT_FILE), json.dumps(result).encode(), 0o600)
        self._close_proc(p)
        self._notify(dict(result, event="exit"))
        try:
            os.unlink(os.path.join(self.dir, SOCK_FILE))
        except FileNotFoundError:
            pass


def _in_child(fn) -> int:
    """Run fn() — a runtime create or exec, which returns the pid of the process it started —
    in a short-lived child, and return that pid. Its allocations (the parsed config with its
    seccomp profile, the runtime's modules' state) then never dirty this long-lived process's
    pages, most of which stay shared with the fork-server. The started process, orphaned when
    the runtime's intermediate exits, is re-parented to us, the subreaper."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            out = {"pid": fn()}
        except BaseException as e:  # noqa: BLE001
            out = {"error": str(e) or type(e).__name__}
        try:
            os.write(w, json.dumps(out).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(w)
    # Up to the newline, not EOF: the started process holds the pipe until it execs.
    chunks = []
    while not chunks or not chunks[-1].endswith(b"\n"):
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # the SIGCHLD handler's reap got there first
    try:
        out = json.loads(b"".join(chunks))
    except ValueError:
        out = {"error": "the runtime's helper process died"}
    if "error" in out:
        raise RuntimeError(out["error"])
    return out["pid"]


def _oom_killed(root: str, cid: str) -> bool:
    """Whether the kernel's OOM killer struck in the container's memory cgroup."""
    try:
        from bosun.runtime.state import Container

        cg = Container.load(root, cid).record.get("cgroups") or {}
    except Exception:  # noqa: BLE001
        return False
    for d in cg.values():
        for name, key in (("memory.oom_control", "oom_kill"), ("memory.events", "oom_kill")):
            try:
                with open(os.path.join(d, name)) as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == key and int(v) > 0:
                            return True
            except (OSError, ValueError):
                pass
    return False


def main(args: dict, result_fd: int) -> None:
    """The shim's life: create the container, report to the daemon, serve until it exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.umask(0o022)
    result = socket.socket(fileno=result_fd) if result_fd >= 0 else None
    shim = Shim(args)
    try:
        shim.setup()
    except BaseException as e:  # noqa: BLE001
        msg = str(e) or type(e).__name__
        try:
            from bosun.runtime.delete import delete

            delete(shim.root, shim.id, force=True)
        except Exception:  # noqa: BLE001
            pass
        try:
            os.unlink(os.path.join(shim.dir, SOCK_FILE))
        except OSError:
            pass
        if result is not None:
            _send(result, {"error": msg})
        return
    if result is not None:
        try:
            _send(result, {"ok": True, "pid": shim.init.pid, "shim_pid": os.getpid()})
        except OSError:
            pass
        result.close()
    shim.serve()
