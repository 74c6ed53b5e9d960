"""The engine's side of the shims: one thread holding a subscription to every running
container's shim, and what happens when a container exits (state, events, auto-remove,
restart policy with Docker's back-off).

Requests that hand a client over (attach, exec) or poke the process (resize) open a short
connection of their own; only exit notices come through the subscriptions.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import socket
import threading
import time

from bosun.engine.container import RESTARTING
from bosun.engine import wire
from bosun.engine.wire import recv as _recv
from bosun.engine.wire import send as _send
from bosun.engine.shim import EXIT_FILE, SOCK_FILE

log = logging.getLogger("bosun.engine")

BACKOFF_START = 0.1  # Docker's restart manager: 100 ms, doubling, at most a minute,
BACKOFF_MAX = 60.0  # back to the start once a run lasted 10 s
BACKOFF_RESET_AFTER = 10.0


class ShimGone(Exception):
    pass


class Monitor:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.sel = selectors.DefaultSelector()
        self._r, self._w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._adds: list[tuple[socket.socket, object]] = []
        self._thread: threading.Thread | None = None
        self._stop = False
        from bosun.engine.health import Prober

        self.health = Prober(engine)  # healthchecks: probes are execs run by the shims

    def start(self) -> None:
        self.sel.register(self._r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, name="shim-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake()
        self.health.close()
        if self._thread is not None:
            self._thread.join(5)

    def _wake(self) -> None:
        try:
            os.write(self._w, b"x")
        except BlockingIOError:
            pass

    # -- talking to a shim ----------------------------------------------------------------

    def connect(self, c) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            wire.connect(s, os.path.join(self.engine.bundle_dir(c.id), SOCK_FILE))
        except OSError as e:
            s.close()
            raise ShimGone(str(e)) from None
        return s

    def request(self, c, msg: dict, fds: tuple[int, ...] = (), timeout: float = 60) -> dict:
        s = self.connect(c)
        try:
            s.settimeout(timeout)
            _send(s, msg, fds)
            reply, _ = _recv(s)
        except (OSError, ValueError) as e:
            raise ShimGone(str(e)) from None
        finally:
            s.close()
        if reply is None:
            raise ShimGone("shim closed the connection")
        return reply

    def watch(self, c) -> None:
        """Subscribe to the shim's exit notices (raises ShimGone when it is not there)."""
        s = self.connect(c)
        try:
            s.settimeout(10)
            _send(s, {"op": "subscribe"})
            reply, _ = _recv(s)
        except (OSError, ValueError) as e:
            s.close()
            raise ShimGone(str(e)) from None
        if not reply or not reply.get("ok"):
            s.close()
            raise ShimGone("shim refused the subscription")
        s.setblocking(True)
        s.settimeout(None)
        c.shim = s
        with self._lock:
            self._adds.append((s, c))
        self._wake()
        return reply

    def attach(self, c, sock: socket.socket, opts: dict) -> None:
        try:
            reply = self.request(c, dict(opts, op="attach"), (sock.fileno(),))
        finally:
            sock.close()  # the shim has its own copy now
        if "error" in reply:
            raise ShimGone(reply["error"])

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop:
            for key, _ in self.sel.select(1.0):
                if key.data is None:
                    try:
                        while os.read(self._r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                s, c = key.fileobj, key.data
                try:
                    msg, _ = _recv(s)
                except (OSError, ValueError):
                    msg = None
                if msg is None:
                    self.sel.unregister(s)
                    s.close()
                    if c.shim is s:
                        c.shim = None
                        self._spawn(self._shim_gone, c)
                elif msg.get("event") == "exit":
                    self.sel.unregister(s)
                    s.close()
                    if c.shim is s:
                        c.shim = None
                    self._spawn(self.exited, c, msg)
                elif msg.get("event") == "exec-exit" and not self.health.exec_exited(msg):
                    from bosun.engine.containers.exec import exited

                    exited(self.engine, msg["exec_id"], msg.get("exit_code"))
            with self._lock:
                adds, self._adds = self._adds, []
            for s, c in adds:
                self.sel.register(s, selectors.EVENT_READ, c)

    @staticmethod
    def _spawn(fn, *args) -> None:
        threading.Thread(target=fn, args=args, daemon=True).start()

    def _shim_gone(self, c) -> None:
        """The shim died without a word: its exit file, if written, says how it ended."""
        self.exited(c, read_exit_file(self.engine, c) or {"exit_code": 255,
                                                          "error": "container monitor died"})

    # -- exit ---------------------------------------------------------------------------------

    def exited(self, c, result: dict) -> None:
        engine = self.engine
        code = result.get("exit_code")
        code = 255 if code is None else int(code)
        with c.lock:
            if not c.running and c.status != RESTARTING:
                return  # already handled (restore and the monitor both saw it)
            self.health.stop(c)
            ran = _ran_for(c)
            cleanup_after_exit(engine, c)
            c.set_exited(code, result.get("finished_at"), bool(result.get("oom_killed")),
                         result.get("error", ""))
            c.meta.pop("shim_pid", None)
            restart, delay = _restart_decision(c, code, ran)
            if restart:
                c.set_restarting()
                c.state["ExitCode"] = code
                # counted when decided (as Docker), so on-failure:N allows exactly N restarts
                c.doc["RestartCount"] = c.doc.get("RestartCount", 0) + 1
            engine.save(c)
        from bosun.engine.containers.exec import container_exited

        container_exited(engine, c)
        engine.emit(c, "die", exitCode=str(code))
        if restart:
            timer = threading.Timer(delay, self._restart, (c,))
            timer.daemon = True
            c.restart_timer = timer
            timer.start()
        elif c.doc["HostConfig"].get("AutoRemove"):
            from bosun.engine.containers.remove import remove

            try:
                remove(engine, c, force=True, volumes=True)  # --rm: anonymous volumes too
            except Exception as e:  # noqa: BLE001
                log.warning("auto-remove of %s failed: %s", c.id[:12], e)

    def _restart(self, c) -> None:
        from bosun.engine.containers.start import start

        with c.lock:  # held through start: a stop or rm -f meanwhile cannot be overtaken
            c.restart_timer = None
            if c.removed or c.status != RESTARTING or c.meta.get("manual_stop"):
                return
            try:
                start(self.engine, c, restarting=True)
            except Exception as e:  # noqa: BLE001
                log.warning("restart of %s failed: %s", c.id[:12], e)
                if c.status == RESTARTING:
                    c.set_exited(c.state.get("ExitCode") or 128, error=str(e))
                    self.engine.save(c)


def _ran_for(c) -> float:
    from bosun.engine.container import parse_rfc3339

    try:
        return time.time() - parse_rfc3339(c.state.get("StartedAt", ""))
    except Exception:  # noqa: BLE001
        return 0.0


def _restart_decision(c, code: int, ran: float) -> tuple[bool, float]:
    policy = c.doc["HostConfig"].get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if c.meta.get("manual_stop") or c.removed or name == "no":
        return False, 0.0
    if name == "on-failure":
        limit = policy.get("MaximumRetryCount") or 0
        if code == 0 or (limit and c.doc.get("RestartCount", 0) >= limit):
            return False, 0.0
    delay = c.meta.get("backoff", 0.0)
    delay = BACKOFF_START if ran >= BACKOFF_RESET_AFTER or not delay else min(delay * 2,
                                                                               BACKOFF_MAX)
    c.meta["backoff"] = delay
    return True, delay


def read_exit_file(engine, c) -> dict | None:
    try:
        with open(os.path.join(engine.bundle_dir(c.id), EXIT_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cleanup_after_exit(engine, c) -> None:
    """What a stopped container no longer needs: the runtime's state, bundle, rootfs mount,
    network namespace and endpoints."""
    from bosun.engine import netattach
    from bosun.runtime.delete import delete

    try:
        delete(engine.runtime_root, c.id, force=True)
    except Exception:  # noqa: BLE001  (already gone: the shim deleted it)
        pass
    shutil.rmtree(engine.bundle_dir(c.id), ignore_errors=True)
    netattach.teardown(engine, c)  # after the delete: no process is left in the namespace
    from bosun.engine import volumes

    volumes.release(engine, c)
    try:
        engine.images.snapshots.unmount_container(c.id)
    except Exception as e:  # noqa: BLE001
        log.warning("unmount of %s failed: %s", c.id[:12], e)
