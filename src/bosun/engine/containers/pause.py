"""pause / unpause: the freezer cgroup, through the runtime."""

from __future__ import annotations

from bosun.engine.container import PAUSED, RUNNING
from bosun.engine.errors import Conflict


def pause(engine, c) -> None:
    from bosun.runtime.pause import pause as runtime_pause

    with c.lock:
        if c.status == PAUSED:
            raise Conflict(f"Container {c.id} is already paused")
        if c.status != RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        runtime_pause(engine.runtime_root, c.id)
        c.set_paused(True)
        engine.monitor.health.pause(c)  # under the lock: an unpause cannot come in between
        engine.save(c)
    engine.emit(c, "pause")


def unpause(engine, c) -> None:
    with c.lock:
        if c.status != PAUSED:
            raise Conflict(f"Container {c.id} is not paused")
        thaw(engine, c)
        c.set_paused(False)
        engine.monitor.health.start(c, fresh=False)  # probes resume, status kept (as Docker)
        engine.save(c)
    engine.emit(c, "unpause")


def thaw(engine, c) -> None:
    from bosun.runtime.errors import RuntimeErr
    from bosun.runtime.pause import resume

    try:
        resume(engine.runtime_root, c.id)
    except RuntimeErr:
        pass
