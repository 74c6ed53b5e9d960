"""kill: send a signal to the container's init, or with all=True to every process in it."""

from __future__ import annotations

import os

from bosun.runtime import cgroups
from bosun.runtime.errors import RuntimeErr, StateError
from bosun.runtime.state import STOPPED, Container


def parse_signal(sig: str | int) -> int:
    if isinstance(sig, int):
        if not 0 < sig < 65:
            raise RuntimeErr(f"invalid signal number {sig}")
        return sig
    import signal  # only here: the signal module's enums cost start-up time elsewhere

    s = sig.strip().upper()
    if s.isdigit():
        num = int(s)
    else:
        name = s if s.startswith("SIG") else "SIG" + s
        num = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
        if num is None:
            raise RuntimeErr(f"unknown signal {sig!r}")
        num = int(num)
    if not 0 < num < 65:
        raise RuntimeErr(f"invalid signal number {num}")
    return num


def container_pids(c: Container) -> list[int]:
    """Every process of the container: its cgroup, or failing that its pid namespace."""
    pids = cgroups.pids(c.record.get("cgroups") or {})
    if pids or not c.init_alive():
        return pids
    try:
        ns = os.readlink(f"/proc/{c.pid}/ns/pid")
    except OSError:
        return []
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == ns:
                    out.append(int(name))
            except OSError:
                pass
    return out


def kill(root: str, cid: str, sig: str | int = "SIGTERM", all: bool = False) -> None:  # noqa: A002
    c = Container.load(root, cid)
    num = parse_signal(sig)
    if c.status() == STOPPED:
        if all:
            # The init is gone but stragglers may remain (a shared pid namespace): kill them.
            for pid in cgroups.pids(c.record.get("cgroups") or {}):
                _signal(pid, num)
            return
        raise StateError(f"container {cid!r} is not running")
    targets = container_pids(c) if all else [c.pid]
    for pid in targets:
        _signal(pid, num)


def _signal(pid: int, num: int) -> None:
    try:
        os.kill(pid, num)
    except ProcessLookupError:
        pass
