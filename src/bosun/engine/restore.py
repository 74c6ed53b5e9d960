"""Start-up reconciliation (live-restore): the records meet the kernel.

- A container recorded as running whose shim answers is re-adopted: subscribed again, its log
  continues (the shim never stopped writing it), attached streams were never cut.
- One whose shim is gone ended while we were down: its exit file gives the true exit code
  (no file: the shim was killed; the container, if alive, is killed too — nothing may run
  unmonitored).
- Whatever no record owns is removed: runtime state, bundles, snapshots, container dirs.
- Containers whose restart policy says so are started again (Docker's rule at daemon start:
  `always`; `unless-stopped` unless the user stopped it; `on-failure` after a non-zero exit
  with retries left).
- Re-adopted containers with a healthcheck are probed again, keeping their health status.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading

from bosun.engine.container import PAUSED, RESTARTING, Container

log = logging.getLogger("bosun.engine")


def restore(engine) -> None:
    from bosun.engine.monitor import ShimGone, cleanup_after_exit, read_exit_file

    for doc, meta in engine.store.load_all():
        c = Container(doc, meta)
        engine.containers[c.id] = c
        engine.names[c.name] = c.id
    to_start = []
    for c in engine.all():
        if c.running or c.status in (PAUSED, RESTARTING):
            try:
                engine.monitor.watch(c)
                engine.monitor.health.start(c, fresh=False)
                continue  # alive: adopted
            except ShimGone:
                pass
            result = read_exit_file(engine, c)
            if result is None and c.status == RESTARTING:
                # it was waiting out its back-off: nothing ran, its last exit still holds
                result = {"exit_code": c.state.get("ExitCode", 0),
                          "finished_at": c.state.get("FinishedAt")}
            elif result is None:
                killed = _kill_orphan(engine, c)
                result = {"exit_code": 137 if killed else 255,
                          "error": "" if killed else "container monitor vanished"}
            with c.lock:
                if c.status == RESTARTING:
                    c.state["Running"] = True  # let exited() apply the policy again
            engine.monitor.exited(c, result)
        else:
            with c.lock:
                if not c.removed:
                    cleanup_after_exit(engine, c)
            if c.doc["HostConfig"].get("AutoRemove") and c.status == "exited":
                from bosun.engine.containers.remove import remove

                remove(engine, c, force=True, volumes=True)
                continue
        if not c.removed and not c.running and c.status == "exited" and restart_at_boot(c):
            to_start.append(c)
    _sweep(engine)
    from bosun.engine.netattach import reconcile

    # Before any start below: reconcile removes endpoints of containers not in this set.
    live = [c for c in engine.all() if c.running or c.status == PAUSED]
    live_ids = {c.id for c in live}
    reconcile(engine, live_ids)
    if os.path.isdir(os.path.join(engine.data_root, "volumes")):  # else nothing to reconcile
        from bosun.engine.volumes import clear_staging

        clear_staging(engine)
        for line in engine.volumes.reconcile({c.id for c in engine.all()}, live_ids):
            log.info("volumes: %s", line)
    from bosun.engine import netdns

    netdns.restore(engine, live)
    if to_start:
        threading.Thread(target=_start_all, args=(engine, to_start), daemon=True).start()


def restart_at_boot(c) -> bool:
    """Whether a stopped container starts with the daemon: Docker's ShouldRestart, asked of a
    fresh restart manager (so `always` ignores an earlier stop by the user)."""
    policy = c.doc["HostConfig"].get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name == "always":
        return True
    if name == "unless-stopped":
        return not c.meta.get("manual_stop")
    if name == "on-failure":
        limit = policy.get("MaximumRetryCount") or 0
        return c.state.get("ExitCode", 0) != 0 and (
            not limit or c.doc.get("RestartCount", 0) < limit)
    return False


def _start_all(engine, containers) -> None:
    from bosun.engine.containers.start import start

    for c in containers:
        try:
            start(engine, c)
        except Exception as e:  # noqa: BLE001
            log.warning("restarting %s at start-up: %s", c.id[:12], e)


def _kill_orphan(engine, c) -> bool:
    """A container whose shim died: kill and delete it through the runtime."""
    from bosun.runtime.delete import delete
    from bosun.runtime.errors import RuntimeErr
    from bosun.runtime.state import Container as RC

    try:
        alive = RC.load(engine.runtime_root, c.id).init_alive()
    except RuntimeErr:
        alive = False
    try:
        delete(engine.runtime_root, c.id, force=True)
    except RuntimeErr:
        pass
    return alive


def _sweep(engine) -> None:
    """Remove what no container record owns."""
    from bosun.runtime.delete import delete
    from bosun.runtime.errors import RuntimeErr

    from bosun.runtime.state import Container as RC

    known = set(engine.containers)
    for name in RC.dirs(engine.runtime_root):
        if name not in known:
            try:
                delete(engine.runtime_root, name, force=True)
            except RuntimeErr as e:
                log.warning("leftover runtime state %s: %s", name[:12], e)
    for parent in (engine.bundles_dir, engine.containers_dir):
        for name in _listdir(parent):
            if name not in known:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    snaps = engine.images.snapshots
    for name in _listdir(snaps.containers):
        if len(name) == 64 and name not in known:
            try:
                snaps.remove_container(name)
            except Exception as e:  # noqa: BLE001
                log.warning("leftover snapshot %s: %s", name[:12], e)
            engine.images.db.remove_container_ref(name)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
