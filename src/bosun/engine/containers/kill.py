"""kill: send a signal to the container's process (Docker's POST /containers/{id}/kill)."""

from __future__ import annotations

from bosun.engine.container import PAUSED, RESTARTING
from bosun.engine.errors import Conflict, InvalidParameter


def signal_number(sig: str | int | None, default: str = "SIGKILL") -> int:
    from bosun.runtime.errors import RuntimeErr
    from bosun.runtime.kill import parse_signal

    try:
        return parse_signal(sig if sig not in (None, "") else default)
    except RuntimeErr:
        raise InvalidParameter(f"Invalid signal: {sig}") from None


def send(engine, c, num: int) -> bool:
    """Signal the container's init; False if it is already gone."""
    from bosun.runtime.errors import RuntimeErr
    from bosun.runtime.kill import kill as runtime_kill

    try:
        runtime_kill(engine.runtime_root, c.id, num)
        return True
    except RuntimeErr:
        return False


def kill(engine, c, sig: str | None) -> None:
    num = signal_number(sig)
    with c.lock:
        if not c.running or c.status == RESTARTING:
            raise Conflict(f"Cannot kill container: {c.id}: Container {c.id} is not running")
        c.meta["manual_stop"] = True  # killed by the user: no restart (as Docker)
        engine.save(c)
        paused = c.status == PAUSED
    send(engine, c, num)
    if paused and num == 9:
        from bosun.engine.containers.pause import thaw

        thaw(engine, c)  # a frozen process cannot die
    engine.emit(c, "kill", signal=str(num))
