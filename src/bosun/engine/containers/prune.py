"""prune: remove every stopped container (filters: until, label, label!)."""

from __future__ import annotations

import time

from bosun.engine.container import CREATED, EXITED, DEAD, parse_rfc3339
from bosun.engine.errors import InvalidParameter


def _labels_match(labels: dict, wanted: list[str], negate: bool) -> bool:
    for w in wanted:
        k, sep, v = w.partition("=")
        hit = k in labels and (not sep or labels[k] == v)
        if hit == negate:
            return False
    return True


def prune(engine, filters: dict[str, list[str]]) -> dict:
    from bosun.engine.containers.inspect import sizes
    from bosun.engine.containers.remove import remove
    from bosun.engine.logs import parse_time

    for key in filters:
        if key not in ("until", "label", "label!"):
            raise InvalidParameter(f"invalid filter '{key}'")
    until = None
    if filters.get("until"):
        until = parse_time(filters["until"][-1], time.time())
    deleted, reclaimed = [], 0
    for c in engine.all():
        if c.status not in (CREATED, EXITED, DEAD):
            continue
        if until is not None and parse_rfc3339(c.doc["Created"]) >= until:
            continue
        labels = c.doc["Config"].get("Labels") or {}
        if not _labels_match(labels, filters.get("label", []), False):
            continue
        if not _labels_match(labels, filters.get("label!", []), True):
            continue
        rw, _ = sizes(engine, c)
        try:
            remove(engine, c)
        except Exception:  # noqa: BLE001  (started meanwhile: not prunable)
            continue
        deleted.append(c.id)
        reclaimed += rw
    engine.events.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}
