"""update (`docker update`): new resource limits and restart policy for a container.

As dockerd: the request is validated on its own (createconfig's checks, Docker's messages),
then merged into HostConfig by Docker's rules (a zero or empty value leaves a setting as it
is; Nano CPUs exclude CPU period/quota set before, and the reverse; a memory limit above the
current memory+swap limit needs a new one too; an AutoRemove container keeps "no" restart
policy). The merged HostConfig is always stored; a running container also gets the limits
live through the runtime (bosun.runtime.update), and a failure there restores the old
HostConfig.
"""

from __future__ import annotations

import copy
import os

from bosun.engine.container import DEAD, REMOVING, RESTARTING
from bosun.engine.errors import Conflict, InvalidParameter, SystemErr

# HostConfig resources `docker update` changes, with their JSON types.
INT_KEYS = ("BlkioWeight", "CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "Memory",
            "MemorySwap", "MemoryReservation", "KernelMemory", "CpuRealtimePeriod",
            "CpuRealtimeRuntime", "PidsLimit")
STR_KEYS = ("CpusetCpus", "CpusetMems")


def parse_update(body: dict) -> tuple[dict, dict | None]:
    """The request body → (resource changes, restart policy or None). Zero and empty values
    mean "unchanged" and are dropped (PidsLimit excepted: 0 or less means unlimited)."""
    from bosun.engine import gotypes

    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: the body must be an object")
    body = gotypes.check(body, gotypes.UPDATE_CONFIG, "UpdateConfig")
    changes: dict = {}
    for key in (*INT_KEYS, *STR_KEYS):
        value = body.get(key)
        if value is not None and (value or key == "PidsLimit"):
            changes[key] = value
    policy = body.get("RestartPolicy")
    if not policy or not policy.get("Name"):
        policy = None
    return changes, policy


def validate(changes: dict, policy: dict | None, current: dict) -> dict | None:
    """Docker's verifyContainerSettings for an update, through createconfig: the limits as
    given (a swap limit alone is judged against the current memory limit) and the restart
    policy. Returns the normalized restart policy."""
    from bosun.engine.createconfig import normalize_host_config

    check = {k: v for k, v in changes.items() if k != "KernelMemory"}
    if "MemorySwap" in check and "Memory" not in check and (current.get("Memory") or 0) > 0:
        check["Memory"] = current["Memory"]
    if policy is not None:
        check["RestartPolicy"] = policy
    normalized = normalize_host_config(check, cgroups_v2=_cgroup_v2())
    if "BlkioWeight" in changes and not normalized.get("BlkioWeight"):
        del changes["BlkioWeight"]  # discarded: the kernel has no block I/O weights
    return normalized["RestartPolicy"] if policy is not None else None


def _conflict(cid: str, msg: str) -> Conflict:
    return Conflict(f"Cannot update container {cid}: {msg}")


def merge(hc: dict, changes: dict, policy: dict | None, cid: str) -> dict:
    """HostConfig with the changes applied by Docker's UpdateContainer rules (a new dict)."""
    nano, period, quota = (changes.get(k, 0) for k in ("NanoCpus", "CpuPeriod", "CpuQuota"))
    if nano > 0 and (hc.get("CpuPeriod") or 0) > 0:
        raise _conflict(cid, "Conflicting options: Nano CPUs cannot be updated as CPU Period "
                             "has already been set")
    if nano > 0 and (hc.get("CpuQuota") or 0) > 0:
        raise _conflict(cid, "Conflicting options: Nano CPUs cannot be updated as CPU Quota "
                             "has already been set")
    if period > 0 and (hc.get("NanoCpus") or 0) > 0:
        raise _conflict(cid, "Conflicting options: CPU Period cannot be updated as NanoCPUs "
                             "has already been set")
    if quota > 0 and (hc.get("NanoCpus") or 0) > 0:
        raise _conflict(cid, "Conflicting options: CPU Quota cannot be updated as NanoCPUs "
                             "has already been set")
    mem = changes.get("Memory", 0)
    if mem and mem > (hc.get("MemorySwap") or 0) and not changes.get("MemorySwap"):
        raise _conflict(cid, "Memory limit should be smaller than already set memoryswap "
                             "limit, update the memoryswap at the same time")
    if policy is not None and policy["Name"] != "no" and hc.get("AutoRemove"):
        raise _conflict(cid, "Restart policy cannot be updated because AutoRemove is enabled "
                             "for the container")
    out = copy.deepcopy(hc)
    for key, value in changes.items():
        if key == "KernelMemory":
            continue  # ignored by the kernel and by Docker since API 1.42
        if key == "PidsLimit":
            value = value if value > 0 else None  # unlimited, stored as createconfig does
        out[key] = value
    if policy is not None:
        out["RestartPolicy"] = policy
    return out


def live_resources(hc: dict, changes: dict, cgroups_v2: bool) -> dict:
    """The OCI resources to hand the runtime: all of the merged HostConfig's limits (as
    dockerd hands containerd the whole Resources), plus the "unlimited" values a new cgroup
    never needs written but an update must write to lift an old limit."""
    from bosun.engine.ocispec import resources

    res = resources(hc, cgroups_v2, [])
    res.pop("devices", None)
    if "PidsLimit" in changes and hc.get("PidsLimit") is None:
        res["pids"] = {"limit": -1}
    if hc.get("MemorySwap") == -1 and "MemorySwap" in changes:
        res.setdefault("memory", {})["swap"] = -1
    return res


def update(engine, c, body: dict) -> dict:
    """POST /containers/{id}/update."""
    changes, policy = parse_update(body)
    policy = validate(changes, policy, c.doc["HostConfig"])
    with c.lock:
        if c.removed or c.status in (REMOVING, DEAD):
            raise Conflict(f"Cannot update container {c.id}: container is marked for removal "
                           'and cannot be "update"')
        old = c.doc["HostConfig"]
        new = merge(old, changes, policy, c.id)
        c.doc["HostConfig"] = new
        if c.running and c.status != RESTARTING and changes:
            try:
                _apply(engine, c, live_resources(new, changes, _cgroup_v2()))
            except Exception:
                c.doc["HostConfig"] = old
                raise
        engine.save(c)
    engine.emit(c, "update")
    return {"Warnings": []}


def _apply(engine, c, res: dict) -> None:
    from bosun.runtime.errors import NotFound, RuntimeErr, StateError
    from bosun.runtime.update import update as runtime_update

    try:
        runtime_update(engine.runtime_root, c.id, res)
    except (StateError, NotFound):
        pass  # exited meanwhile: the stored HostConfig applies at the next start
    except RuntimeErr as e:
        raise SystemErr(f"Cannot update container {c.id}: {e}") from None


def _cgroup_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")
