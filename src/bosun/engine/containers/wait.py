"""wait: block until the container is not running, exits next, or is removed."""

from __future__ import annotations

import time

from bosun.engine.errors import InvalidParameter

CONDITIONS = ("", "not-running", "next-exit", "removed")


def check_condition(condition: str) -> str:
    condition = condition or "not-running"
    if condition not in CONDITIONS:
        raise InvalidParameter(f"invalid condition: \"{condition}\"")
    return condition


class Waiter:
    """The condition is fixed when the waiter is made: `next-exit` means the exit after
    this moment, however long the caller then takes to wait."""

    def __init__(self, c, condition: str = "not-running") -> None:
        self.c = c
        condition = check_condition(condition)
        with c.lock:
            seen = c.exits
        if condition == "not-running":
            self.done = lambda: not c.running or c.removed
        elif condition == "next-exit":
            self.done = lambda: c.exits > seen or c.removed
        else:
            self.done = lambda: c.removed

    def wait(self, timeout: float | None = None) -> dict | None:
        """Docker's wait result once the condition holds; None if `timeout` passed first."""
        c = self.c
        deadline = None if timeout is None else time.monotonic() + timeout
        with c.lock:
            while not self.done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                c.changed.wait(left)
            error = c.state.get("Error") or ""
            return {"StatusCode": c.state.get("ExitCode", 0),
                    "Error": {"Message": error} if error else None}


def wait(engine, c, condition: str = "not-running", timeout: float | None = None) -> dict | None:
    return Waiter(c, condition).wait(timeout)
