"""remove: stop (with force), then delete every trace: snapshot, records, files."""

from __future__ import annotations

import logging

from bosun.engine.container import PAUSED, REMOVING, RESTARTING
from bosun.engine.containers.kill import send
from bosun.engine.errors import Conflict

log = logging.getLogger("bosun.engine")


def remove(engine, c, *, force: bool = False, volumes: bool = False) -> None:
    with c.lock:
        if c.removed:
            return
        if c.status == REMOVING and not force:
            raise Conflict(f"removal of container {c.id[:12]} is already in progress")
        if c.running and c.status != RESTARTING:
            if not force:
                what = "paused" if c.status == PAUSED else "running"
                raise Conflict(f"cannot remove container \"{c.doc['Name']}\": container is "
                               f"{what}: stop the container before removing or force remove")
        c.meta["manual_stop"] = True
        if c.restart_timer is not None:
            c.restart_timer.cancel()
            c.restart_timer = None
        live = c.running and c.status != RESTARTING
        paused = c.status == PAUSED
    if live:
        send(engine, c, 9)
        if paused:
            from bosun.engine.containers.pause import thaw

            thaw(engine, c)
        with c.lock:
            c.changed.wait_for(lambda: not c.running or c.removed, 30)
    from bosun.engine.monitor import cleanup_after_exit

    with c.lock:
        if c.removed:
            return
        c.state["Status"] = REMOVING
        cleanup_after_exit(engine, c)
        try:
            engine.images.snapshots.remove_container(c.id)
        except Exception as e:  # noqa: BLE001
            log.warning("removing the snapshot of %s: %s", c.id[:12], e)
        engine.images.db.remove_container_ref(c.id)
        from bosun.engine import volumes as vols

        vols.forget(engine, c, volumes)
        engine.forget(c)
        for sock, _ in c.pending_attach:
            sock.close()
        c.pending_attach = []
        c.removed = True
        c.changed.notify_all()
    engine.emit(c, "destroy")
