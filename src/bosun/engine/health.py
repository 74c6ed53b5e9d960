"""Healthchecks, as Docker runs them (moby's daemon/health.go).

A running container whose Config.Healthcheck has a CMD or CMD-SHELL test is probed every
Interval (StartInterval while it is still "starting" inside its StartPeriod) by an exec that
its shim runs, keeping the first 4096 bytes of the probe's stdout+stderr. Each result goes into
State.Health: the last five of them in Log, FailingStreak, and Status — "starting" until the
first success, "healthy" after any success, "unhealthy" after Retries failures in a row
(failures inside the StartPeriod do not count while still starting). A probe that outlives its
Timeout is killed and counts as a failure (ExitCode -1). A change of Status emits Docker's
`health_status: <status>` event and saves the record.

One thread (started with the first healthcheck) serves every container: probes are execs, so
nothing blocks while they run; their exits come back through the monitor's subscription to
the shim (`Prober.exec_exited`). The pure parts — `Settings.of`, `record`, `next_delay`,
`timeout_output`, `go_duration` — hold the rules and are unit-tested on their own.
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("bosun.engine")

_S = 1_000_000_000  # Healthcheck durations are nanoseconds
DEFAULT_INTERVAL = 30 * _S
DEFAULT_TIMEOUT = 30 * _S
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * _S
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096  # bytes of a probe's output kept, as Docker
MAX_LOG = 5  # results kept in State.Health.Log
START_TIMEOUT = 30.0  # seconds an exec may take to start before the probe fails
KILL_GRACE = 10.0  # seconds a killed probe's exit may take to arrive before we stop waiting

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


# -- the rules (pure) -------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """A container's probe: the command and its timings (nanoseconds, defaults applied)."""

    command: tuple[str, ...]
    interval: int = DEFAULT_INTERVAL
    timeout: int = DEFAULT_TIMEOUT
    start_period: int = DEFAULT_START_PERIOD
    start_interval: int = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES

    @classmethod
    def of(cls, config: dict) -> Settings | None:
        """From a container's Config; None when it has no probe (no Test, NONE, unknown)."""
        hc = config.get("Healthcheck") or {}
        test = hc.get("Test") or []
        if not isinstance(test, list) or not test:
            return None
        if test[0] == "CMD":
            command = list(test[1:])
        elif test[0] == "CMD-SHELL":
            command = list(config.get("Shell") or ["/bin/sh", "-c"]) + list(test[1:])
        else:  # "NONE" disables; anything else Docker ignores (with a warning)
            return None
        if not command or not all(isinstance(a, str) for a in command):
            return None
        retries = hc.get("Retries") or 0
        return cls(tuple(command),
                   interval=hc.get("Interval") or DEFAULT_INTERVAL,
                   timeout=hc.get("Timeout") or DEFAULT_TIMEOUT,
                   start_period=hc.get("StartPeriod") or DEFAULT_START_PERIOD,
                   start_interval=hc.get("StartInterval") or DEFAULT_START_INTERVAL,
                   retries=retries if retries > 0 else DEFAULT_RETRIES)


def new_health() -> dict:
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def record(health: dict, result: dict, s: Settings, since_start: float) -> str | None:
    """Apply one probe result ({Start, End, ExitCode, Output}) to State.Health;
    `since_start` is how long (seconds) after the container started the probe began.
    Returns the new Status when it changed, else None."""
    old = health.get("Status") or UNHEALTHY  # an unset status reads as unhealthy (moby)
    entries = health.get("Log") or []
    entries.append(result)
    health["Log"] = entries[-MAX_LOG:]
    if result["ExitCode"] == 0:
        health["FailingStreak"] = 0
        health["Status"] = HEALTHY
    elif not (old == STARTING and since_start * _S < s.start_period):
        streak = health.get("FailingStreak", 0) + 1
        health["FailingStreak"] = streak
        if streak >= s.retries:
            health["Status"] = UNHEALTHY
    else:
        health["Status"] = old  # a failure while starting, inside the start period
    return health["Status"] if health["Status"] != old else None


def next_delay(s: Settings, since_start: float, status: str) -> float:
    """Seconds until the next probe: StartInterval while starting inside the StartPeriod."""
    if since_start * _S < s.start_period and status == STARTING:
        return s.start_interval / _S
    return s.interval / _S


def timeout_output(s: Settings, output: str) -> str:
    msg = f"Health check exceeded timeout ({go_duration(s.timeout)})"
    return f"{msg}: {output}" if output else msg


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(): 300ms, 1.5s, 1m30s, 1h0m0s."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < _S:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * _S)
    minutes, rest = divmod(rest, 60 * _S)
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return sign + out + _decimal(rest, _S) + "s"


def _decimal(n: int, unit: int) -> str:
    whole, frac = divmod(n, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def decode_output(msg: dict) -> str:
    """A probe's captured output from the shim's exec-exit event ("..." if cut, as Docker)."""
    try:
        data = binascii.a2b_base64(msg.get("output") or "")
    except (binascii.Error, TypeError):
        data = b""
    text = data.decode("utf-8", "replace")
    return text + "..." if msg.get("truncated") else text


# -- the prober ---------------------------------------------------------------------------------

@dataclass(eq=False)
class _Check:
    """One running container's healthcheck; replaced (never reused) at each start."""

    c: object
    s: Settings
    due: float  # monotonic time of the next probe
    process: dict | None = None  # the exec's OCI process, built once per start
    exec_id: str | None = None  # the probe in flight
    began: float = 0.0  # its wall-clock start
    deadline: float = 0.0  # monotonic: past it the probe is killed (or, once killed, dropped)
    killed: bool = False
    command: str = field(default="", repr=False)


class Prober:
    def __init__(self, engine) -> None:
        self.engine = engine
        self._cv = threading.Condition()
        self._checks: dict[str, _Check] = {}  # container id → its check
        self._probes: dict[str, _Check] = {}  # exec id → the check it runs for
        self._done: list[tuple[_Check, dict]] = []  # exec-exit events to apply
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the front door (start.py, restore.py, monitor.py) ----------------------------------

    def start(self, c, *, fresh: bool) -> None:
        """Probe `c` from now on (it has just started, or was re-adopted). `fresh` resets
        State.Health to starting with a zero streak (the Log is kept), as a (re)start does;
        a re-adopted container keeps its status. Takes c.lock (callers may hold it).
        A paused container is not probed (Docker stops its monitor): unpause starts it."""
        from bosun.engine.container import PAUSED

        s = Settings.of(c.doc["Config"])
        if s is None:
            return
        with c.lock:
            if c.status == PAUSED:
                return
            health = c.state.get("Health")
            if not health:
                c.state["Health"] = new_health()
            elif fresh:
                health.update(Status=STARTING, FailingStreak=0)
            status = c.state["Health"]["Status"]
            since = _since_start(c, time.time())
        check = _Check(c, s, time.monotonic() + next_delay(s, since, status),
                       command=" ".join(s.command))
        with self._cv:
            if self._closed:
                return
            self._drop(c.id)
            self._checks[c.id] = check
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="healthcheck",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()

    def stop(self, c) -> None:
        """No more probes for `c` (it exited or is going away)."""
        with self._cv:
            self._drop(c.id)
            for exec_id in [e for e, ch in self._probes.items() if ch.c is c]:
                del self._probes[exec_id]  # killed at a pause, exit not back: none wanted

    def pause(self, c) -> None:
        """`c` was paused: no probes until `start` again, and the one in flight (frozen with
        the container) is killed, its result dropped — as Docker's monitor, stopped while
        probing, cancels its probe."""
        from bosun.engine.monitor import ShimGone

        with self._cv:
            check = self._checks.pop(c.id, None)
            exec_id = check.exec_id if check is not None else None
            # a killed probe's exit still comes back (for its exec_die event), while the
            # check, no longer current, takes no result from it
        if exec_id is None:
            return
        try:
            self.engine.monitor.request(c, {"op": "kill_exec", "exec_id": exec_id,
                                            "signal": int(signal.SIGKILL)}, timeout=10)
        except ShimGone:
            pass

    def exec_exited(self, msg: dict) -> bool:
        """The monitor's loop hands over every exec-exit event: True if it was a probe's
        (then it is ours to handle), False for a user's exec."""
        with self._cv:
            check = self._probes.pop(msg.get("exec_id") or "", None)
            if check is None:
                return False
            self._done.append((check, msg))
            self._cv.notify()
        return True

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(5)

    def _drop(self, cid: str) -> None:
        check = self._checks.pop(cid, None)
        if check is not None and check.exec_id:
            self._probes.pop(check.exec_id, None)

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._done:
                    wait = self._next_wake() - time.monotonic()
                    if wait <= 0:
                        break
                    self._cv.wait(wait)
                if self._closed:
                    return
                done, self._done = self._done, []
                checks = list(self._checks.values())
            for check, msg in done:
                self._finished(check, msg)
            now = time.monotonic()
            for check in checks:
                try:
                    if check.exec_id is None and now >= check.due:
                        self._launch(check)
                    elif check.exec_id is not None and now >= check.deadline:
                        self._overdue(check)
                except Exception:  # one container's trouble stops no other's probes
                    log.exception("healthcheck of %s", check.c.id[:12])

    def _next_wake(self) -> float:
        times = [ch.deadline if ch.exec_id else ch.due for ch in self._checks.values()]
        return min(times, default=time.monotonic() + 3600)

    def _current(self, check: _Check) -> bool:
        return self._checks.get(check.c.id) is check

    def _launch(self, check: _Check) -> None:
        from bosun.engine.container import RUNNING
        from bosun.engine.monitor import ShimGone

        c, engine = check.c, self.engine
        with c.lock:
            # not while frozen (Docker stops its monitor) or on its way out (the exit path
            # drops the check); look again an interval later
            if c.status != RUNNING or c.removed:
                check.due = time.monotonic() + check.s.interval / _S
                return
        if check.process is None:
            check.process = _probe_process(engine, c, check.s.command)
        exec_id = secrets.token_hex(32)
        with self._cv:
            if not self._current(check):
                return
            # registered before the request: a quick probe's exit may beat the reply
            check.exec_id, check.killed = exec_id, False
            check.began = time.time()
            check.deadline = time.monotonic() + START_TIMEOUT + check.s.timeout / _S
            self._probes[exec_id] = check
        engine.emit(c, f"exec_create: {check.command}", execID=exec_id)
        msg = {"op": "exec", "exec_id": exec_id, "process": check.process, "stdin": False,
               "stdout": True, "stderr": True, "capture": MAX_OUTPUT}
        try:
            reply = engine.monitor.request(c, msg, timeout=START_TIMEOUT)
        except ShimGone:
            reply = None  # the container is going: its exit will drop the check
        if reply is None or "error" in reply:
            with self._cv:
                self._probes.pop(exec_id, None)
                if check.exec_id == exec_id:
                    check.exec_id = None
                    check.due = time.monotonic() + check.s.interval / _S
            if reply is not None:
                error = ("OCI runtime exec failed: exec failed: unable to start container "
                         f"process: {reply['error']}: unknown")
                self._apply(check, self._result(check, -1, error))
            return
        engine.emit(c, f"exec_start: {check.command}", execID=exec_id)
        with self._cv:
            if check.exec_id == exec_id:  # still running: its timeout counts from now
                check.deadline = time.monotonic() + check.s.timeout / _S

    def _overdue(self, check: _Check) -> None:
        """Past its timeout: kill the probe, then wait (a while) for its exit to come back."""
        from bosun.engine.monitor import ShimGone

        with self._cv:
            exec_id = check.exec_id
            if exec_id is None or not self._current(check):
                return
            give_up = check.killed  # killed a while ago and its exit never came
            if give_up:
                self._probes.pop(exec_id, None)
                check.exec_id = None
            else:
                check.killed = True
                check.deadline = time.monotonic() + KILL_GRACE
        if give_up:
            self._apply(check, self._result(check, -1, timeout_output(check.s, "")))
            return
        try:
            self.engine.monitor.request(check.c, {"op": "kill_exec", "exec_id": exec_id,
                                                  "signal": int(signal.SIGKILL)}, timeout=10)
        except ShimGone:
            pass

    def _finished(self, check: _Check, msg: dict) -> None:
        with self._cv:
            if check.exec_id != msg.get("exec_id"):
                return
            check.exec_id = None
        code = msg.get("exit_code")
        code = -1 if code is None else int(code)
        self.engine.emit(check.c, "exec_die", execID=msg["exec_id"], exitCode=str(code))
        output = decode_output(msg)
        if check.killed:
            self._apply(check, self._result(check, -1, timeout_output(check.s, output)))
        else:
            self._apply(check, self._result(check, code, output))

    @staticmethod
    def _result(check: _Check, code: int, output: str) -> dict:
        from bosun.engine.container import now_rfc3339

        return {"Start": _rfc3339(check.began or time.time()), "End": now_rfc3339(),
                "ExitCode": code, "Output": output}

    def _apply(self, check: _Check, result: dict) -> None:
        from bosun.engine.container import RUNNING

        c, engine = check.c, self.engine
        with c.lock:
            with self._cv:
                current = self._current(check)
            if not current or c.removed or c.status != RUNNING:
                return  # stopped (or restarted) while the probe ran: Docker drops it too
            health = c.state.setdefault("Health", new_health())
            began = check.began or time.time()
            changed = record(health, result, check.s, _since_start(c, began))
            delay = next_delay(check.s, _since_start(c, time.time()), health["Status"])
            if changed:
                engine.save(c)
        with self._cv:
            check.due = time.monotonic() + delay  # the interval runs from a probe's end
            check.began = 0.0
        if changed:
            engine.emit(c, f"health_status: {changed}")


def _since_start(c, when: float) -> float:
    from bosun.engine.container import parse_rfc3339

    started = parse_rfc3339(c.state.get("StartedAt", ""))
    return when - started if started else 0.0


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _probe_process(engine, c, command: tuple[str, ...]) -> dict:
    """The container's own process (user, cwd, env, capabilities) running the probe."""
    with open(os.path.join(engine.bundle_dir(c.id), "config.json")) as f:
        base = json.load(f)["process"]
    process = dict(base, args=list(command), terminal=False)
    process.pop("consoleSize", None)
    return process
