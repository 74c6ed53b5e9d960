"""delete: remove a stopped (or, with force, any) container, then run poststop hooks."""

from __future__ import annotations

import os
import time

from bosun.runtime import hooks
from bosun.runtime.create import destroy
from bosun.runtime.errors import NotFound, RuntimeErr, StateError
from bosun.runtime.kill import container_pids
from bosun.runtime.state import CREATED, STOPPED, Container, valid_id


def delete(root: str, cid: str, force: bool = False, log=None) -> None:
    valid_id(cid)  # before any path is built from it
    try:
        c = Container.load(root, cid)
    except (NotFound, RuntimeErr) as e:
        if not force:
            raise
        if not isinstance(e, NotFound) or os.path.isdir(Container.dir_for(root, cid)):
            # a record lost or torn by a crash mid-create: nothing of it can be running
            from bosun.runtime.create import remove_state_dir

            remove_state_dir(Container.dir_for(root, cid))
        return
    status = c.status()
    if status not in (STOPPED, CREATED) and not force:
        raise StateError(f"cannot delete container {cid!r} that is {status}: stop it first "
                         "or use --force")
    if status != STOPPED:
        _kill_all(c)
    state = c.oci_state()
    destroy(c.record.get("cgroups") or {}, c.dir)
    if (c.config.get("hooks") or {}).get("poststop"):
        state["status"] = STOPPED
        if log is not None:
            hooks.run_warn(c.config, "poststop", state, log)
        else:
            hooks.run(c.config, "poststop", state)


def _kill_all(c: Container) -> None:
    """SIGKILL every process (a frozen cgroup is thawed so the kill lands) and wait."""
    from bosun.runtime import cgroups

    pids = container_pids(c)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    cgroups.thaw(c.record.get("cgroups") or {})
    deadline = time.monotonic() + 10
    while c.init_alive() and time.monotonic() < deadline:
        try:
            os.waitpid(c.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.002)
