"""stop and restart: the stop signal, then SIGKILL once the timeout has passed."""

from __future__ import annotations

from bosun.engine.container import PAUSED, RESTARTING
from bosun.engine.containers.kill import send, signal_number
from bosun.engine.errors import NotModified

DEFAULT_TIMEOUT = 10


def _wait_stopped(c, timeout: float | None) -> bool:
    with c.lock:
        return c.changed.wait_for(lambda: not c.running or c.status == RESTARTING, timeout)


def stop(engine, c, timeout: int | None = None, sig: str | None = None,
         *, quiet_if_stopped: bool = False) -> None:
    with c.lock:
        cfg = c.doc["Config"]
        was_restarting = c.status == RESTARTING
        if was_restarting:
            if c.restart_timer is not None:
                c.restart_timer.cancel()
                c.restart_timer = None
            c.meta["manual_stop"] = True
            c.set_exited(c.state.get("ExitCode", 0))
            engine.save(c)
    if was_restarting:
        # Nothing runs to signal or to die (its die came at its last exit): Docker sends no
        # kill, only the stop.
        engine.emit(c, "stop")
        return
    with c.lock:
        if not c.running:
            if quiet_if_stopped:
                return
            raise NotModified("container already stopped")
        c.meta["manual_stop"] = True
        engine.save(c)
        num = signal_number(sig or cfg.get("StopSignal"), "SIGTERM")
        if timeout is None:
            timeout = cfg.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        paused = c.status == PAUSED
    send(engine, c, num)
    if paused:
        from bosun.engine.containers.pause import thaw

        thaw(engine, c)
    engine.emit(c, "kill", signal=str(num))
    if not _wait_stopped(c, None if timeout < 0 else timeout):
        send(engine, c, 9)
        engine.emit(c, "kill", signal="9")
        _wait_stopped(c, 30)
    engine.emit(c, "stop")


def restart(engine, c, timeout: int | None = None, sig: str | None = None) -> None:
    from bosun.engine.containers.start import start

    stop(engine, c, timeout, sig, quiet_if_stopped=True)
    with c.lock:
        c.changed.wait_for(lambda: not c.running, 30)
    start(engine, c)
    engine.emit(c, "restart")
