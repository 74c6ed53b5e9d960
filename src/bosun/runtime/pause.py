"""pause / resume: freeze and thaw every process of a container (the freezer cgroup)."""

from __future__ import annotations

from bosun.runtime import cgroups
from bosun.runtime.errors import StateError
from bosun.runtime.state import PAUSED, RUNNING, Container


def pause(root: str, cid: str) -> None:
    c = Container.load(root, cid)
    status = c.status()
    if status != RUNNING:
        raise StateError(f"cannot pause a container that is {status}")
    cgroups.freeze(c.record.get("cgroups") or {}, True)


def resume(root: str, cid: str) -> None:
    c = Container.load(root, cid)
    status = c.status()
    if status != PAUSED:
        raise StateError(f"cannot resume a container that is {status}")
    cgroups.freeze(c.record.get("cgroups") or {}, False)
