"""events: stats once (--stats) or a stream of stats and OOM events until the container stops."""

from __future__ import annotations

import sys
import time

from bosun import quickjson
from bosun.runtime.errors import StateError
from bosun.runtime.state import STOPPED, Container
from bosun.runtime.stats import stats


def parse_interval(text: str) -> float:
    """Go-style durations as runc takes them: "5s", "500ms", "1m", or plain seconds."""
    s = text.strip()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if s.endswith(suffix):
            s, m = s[: -len(suffix)], mult
            break
    else:
        m = 1.0
    try:
        value = float(s) * m
    except ValueError:
        raise StateError(f"invalid interval {text!r}") from None
    if value <= 0:
        raise StateError("interval must be positive")
    return value


def events(root: str, cid: str, *, once: bool, interval: float = 5.0, out=None) -> None:
    out = out or sys.stdout
    c = Container.load(root, cid)
    if c.status() == STOPPED:
        raise StateError(f"container {cid!r} is not running")
    dirs = c.record.get("cgroups") or {}
    last_oom = None
    while True:
        data = stats(dirs)
        oom = data.get("memory", {}).pop("oom_kill", 0)
        if last_oom is not None and oom > last_oom:
            out.write(quickjson.dumps({"type": "oom", "id": cid}) + "\n")
        last_oom = oom
        out.write(quickjson.dumps({"type": "stats", "id": cid, "data": data}) + "\n")
        out.flush()
        if once:
            return
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            time.sleep(min(0.2, interval))
            if not c.init_alive():
                return
