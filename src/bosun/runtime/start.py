"""start: release the init blocked on exec.fifo, then run poststart hooks."""

from __future__ import annotations

import os
import time

from bosun.runtime import hooks
from bosun.runtime.errors import StateError
from bosun.runtime.state import CREATED, Container


def start(root: str, cid: str, log=None) -> Container:
    c = Container.load(root, cid)
    status = c.status()
    if status != CREATED:
        raise StateError(f"cannot start a container in state {status!r}"
                         + (": it has already been started" if status == "running" else ""))
    fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        delay = 0.0002
        while True:
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                data = None
            if data:
                break
            # No writer yet (EOF) or nothing written (EAGAIN): wait, unless the init is gone.
            if not c.init_alive():
                raise StateError("container init exited before it could be started")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
    finally:
        os.close(fd)
    os.unlink(c.fifo)
    if (c.config.get("hooks") or {}).get("poststart"):
        # The program has been started; it may already have exited, but the hook is told
        # about the process it was started as.
        state = dict(c.oci_state(), status="running", pid=c.pid)
        if log is not None:
            hooks.run_warn(c.config, "poststart", state, log)
        else:
            hooks.run(c.config, "poststart", state)
    return c
