"""start: release the init blocked on exec.fifo, then run poststart hooks."""

from __future__ import annotations

import os
import time

from bosun.runtime import hooks
from bosun.runtime.errors import StateError
from bosun.runtime.state import CREATED, Container


def start(root: str, cid: str, log=None, container: Container | None = None) -> Container:
    c = container or Container.load(root, cid)
    status = c.status()
    if status != CREATED:
        raise StateError(f"cannot start a container in state {status!r}"
                         + (": it has already been started" if status == "running" else
                            f" ({_init_condition(c)})" if status == "stopped" else ""))
    import select

    # Opening the read end releases the init blocked opening the write end; it then writes
    # one byte. poll() wakes on that byte (a fifo no writer has opened yet reports nothing,
    # not a hang-up), and the timeout lets us notice an init that died instead.
    fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            poller.poll(50)
            try:
                if os.read(fd, 1):
                    break
            except BlockingIOError:
                pass
            if not c.init_alive():
                raise StateError("container init exited before it could be started")
            time.sleep(0.0005)  # EOF: the writer came and went without a byte (or not yet)
    finally:
        os.close(fd)
    try:
        os.unlink(c.fifo)
    except FileNotFoundError:
        pass  # the process ran, exited and was deleted by its monitor (a shim) meanwhile
    if (c.config.get("hooks") or {}).get("poststart"):
        # The program has been started; it may already have exited, but the hook is told
        # about the process it was started as.
        state = dict(c.oci_state(), status="running", pid=c.pid)
        if log is not None:
            hooks.run_warn(c.config, "poststart", state, log)
        else:
            hooks.run(c.config, "poststart", state)
    return c


def _init_condition(c: Container) -> str:
    """Why the init counts as not alive: gone, a zombie, or another process on its pid."""
    from bosun.runtime.state import proc_stat

    pid, start = c.pid, c.record.get("pid_start")
    if not pid:
        return "no init recorded"
    stat = proc_stat(pid)
    if stat is None:
        return f"init {pid} has exited"
    if stat[0] in (b"Z", b"X"):
        return f"init {pid} has exited, not yet reaped"
    return f"pid {pid} started at {stat[1]}, the init at {start}"
