"""linux.resources → cgroup files, for v1 controllers and the v2 unified hierarchy.

`plan()` is pure: it turns the OCI resources object into an ordered list of writes
(controller, file, value), choosing v1 or v2 names per controller from what the host mounts
(a hybrid host may have, as this project's does, hugetlb on v2 and the rest on v1). `apply()`
performs a plan. Conversions between v1 and v2 units follow runc's, so that Docker's flags
mean the same on both.
"""

from __future__ import annotations

import os

from bosun.runtime.errors import ConfigError, RuntimeErr

UNIFIED = "unified"

# Devices every container gets even under a deny-all rule (runc's allowed defaults).
DEFAULT_ALLOWED_DEVICES = (
    ("c", None, None, "m"), ("b", None, None, "m"),            # mknod of anything
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"),  # null random full
    ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"),  # tty zero urandom
    ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"), ("c", 5, 2, "rwm"),  # console pts ptmx
)


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) → cpu.weight (1..10000), as runc converts."""
    return 0 if shares == 0 else 1 + (shares - 2) * 9999 // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) → io.weight (1..10000)."""
    return 0 if weight == 0 else 1 + (weight - 10) * 9999 // 990


class Layout:
    """Which hierarchy serves each controller: v1 (its own dir) or v2 (the unified dir)."""

    def __init__(self, dirs: dict[str, str], v2_controllers: set[str] | None = None) -> None:
        self.dirs = dirs
        if v2_controllers is None:
            v2_controllers = _available_v2(dirs.get(UNIFIED))
        self.v2 = v2_controllers

    def where(self, ctrl: str) -> str | None:
        """"v1", "v2" or None (not available on this host)."""
        if ctrl in self.dirs and ctrl != UNIFIED:
            return "v1"
        if UNIFIED in self.dirs and ctrl in self.v2:
            return "v2"
        return None

    def path(self, ctrl: str, version: str) -> str:
        return self.dirs[ctrl] if version == "v1" else self.dirs[UNIFIED]


def _available_v2(udir: str | None) -> set[str]:
    if not udir:
        return set()
    d = udir
    while d and d != "/":
        try:
            with open(os.path.join(d, "cgroup.controllers")) as f:
                return set(f.read().split())
        except FileNotFoundError:
            d = os.path.dirname(d)  # not created yet: its parent's list is what it will get
    return set()


def _req(layout: Layout, ctrl: str, what: str) -> str:
    v = layout.where(ctrl)
    if v is None:
        raise RuntimeErr(f"{what} needs the {ctrl} cgroup controller, which this host lacks")
    return v


def _dev(d: dict) -> str:
    return f"{d['major']}:{d['minor']}"


def plan(res: dict, layout: Layout) -> list[tuple[str, str, str, str]]:
    """Ordered writes: (controller, version, file, value)."""
    if not isinstance(res, dict):
        raise ConfigError("linux.resources must be an object")
    w: list[tuple[str, str, str, str]] = []

    def add(ctrl, ver, name, value):
        w.append((ctrl, ver, name, str(value)))

    mem = res.get("memory") or {}
    # As runc: a 0 byte count means "not set" (docker update sends 0 for what it keeps).
    mem = {k: v for k, v in mem.items()
           if not (k in ("limit", "reservation", "swap", "kernel", "kernelTCP") and v == 0)}
    if any(mem.get(k) is not None for k in ("limit", "reservation", "swap", "swappiness",
                                            "disableOOMKiller", "kernel", "kernelTCP",
                                            "useHierarchy")):
        v = _req(layout, "memory", "a memory limit")
        limit, swap = mem.get("limit"), mem.get("swap")
        if v == "v1":
            # limit then memsw; apply() swaps the two when growing past the current memsw
            if limit is not None:
                add("memory", v, "memory.limit_in_bytes", limit)
            if swap is not None:
                if limit is not None and swap != -1 and limit != -1 and swap < limit:
                    raise ConfigError("memory+swap limit must be >= the memory limit")
                add("memory", v, "memory.memsw.limit_in_bytes", swap)
            if mem.get("reservation") is not None:
                add("memory", v, "memory.soft_limit_in_bytes", mem["reservation"])
            if mem.get("kernelTCP") is not None:
                add("memory", v, "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"])
            if mem.get("swappiness") is not None:
                s = mem["swappiness"]
                if not 0 <= s <= 100:
                    raise ConfigError(f"memory swappiness {s} is not in 0..100")
                add("memory", v, "memory.swappiness", s)
            if mem.get("disableOOMKiller"):
                add("memory", v, "memory.oom_control", 1)
            if mem.get("useHierarchy") is not None:
                add("memory", v, "memory.use_hierarchy", int(bool(mem["useHierarchy"])))
        else:
            if limit is not None:
                add("memory", v, "memory.max", "max" if limit == -1 else limit)
            if swap is not None:
                if swap == -1:
                    add("memory", v, "memory.swap.max", "max")
                elif limit is not None and limit != -1:
                    if swap < limit:
                        raise ConfigError("memory+swap limit must be >= the memory limit")
                    add("memory", v, "memory.swap.max", swap - limit)
                else:
                    raise ConfigError("a swap limit on cgroup v2 needs a memory limit too")
            if mem.get("reservation") is not None:
                add("memory", v, "memory.low", mem["reservation"])
            if mem.get("disableOOMKiller"):
                raise ConfigError("disableOOMKiller is not supported on cgroup v2")
            if mem.get("swappiness") is not None:
                raise ConfigError("memory swappiness is not supported on cgroup v2")
    # kernel memory limits are deprecated by the kernel and ignored (as runc does)

    cpu = res.get("cpu") or {}
    if any(cpu.get(k) for k in ("shares", "quota", "period", "burst", "realtimeRuntime",
                                "realtimePeriod", "idle")):
        v = _req(layout, "cpu", "a cpu limit")
        if v == "v1":
            if cpu.get("shares"):
                add("cpu", v, "cpu.shares", cpu["shares"])
            if cpu.get("period"):
                add("cpu", v, "cpu.cfs_period_us", cpu["period"])
            if cpu.get("quota"):
                add("cpu", v, "cpu.cfs_quota_us", cpu["quota"])
            if cpu.get("burst") is not None and (cpu.get("burst") or cpu.get("quota")):
                add("cpu", v, "cpu.cfs_burst_us", cpu["burst"])
            if cpu.get("realtimePeriod"):
                add("cpu", v, "cpu.rt_period_us", cpu["realtimePeriod"])
            if cpu.get("realtimeRuntime"):
                add("cpu", v, "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        else:
            if cpu.get("shares"):
                add("cpu", v, "cpu.weight", shares_to_weight(cpu["shares"]))
            if cpu.get("quota") or cpu.get("period"):
                quota = cpu.get("quota") or 0
                # no period: leave the cgroup's as it is (runc's "QUOTA" alone)
                add("cpu", v, "cpu.max", f"{quota if quota > 0 else 'max'}" +
                    (f" {cpu['period']}" if cpu.get("period") else ""))
            if cpu.get("burst") is not None and cpu.get("quota"):
                add("cpu", v, "cpu.max.burst", cpu["burst"])
            if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
                raise ConfigError("realtime cpu limits are not supported on cgroup v2")
        if cpu.get("idle") is not None:
            add("cpu", v, "cpu.idle", cpu["idle"])
    if cpu.get("cpus") or cpu.get("mems"):
        v = _req(layout, "cpuset", "cpus/mems")
        if cpu.get("cpus"):
            add("cpuset", v, "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            add("cpuset", v, "cpuset.mems", cpu["mems"])

    pids = res.get("pids") or {}
    if pids.get("limit") is not None and pids["limit"] != 0:
        v = _req(layout, "pids", "a pids limit")
        add("pids", v, "pids.max", "max" if pids["limit"] < 0 else pids["limit"])

    bio = res.get("blockIO") or {}
    if any(bio.get(k) for k in ("weight", "leafWeight", "weightDevice",
                                "throttleReadBpsDevice", "throttleWriteBpsDevice",
                                "throttleReadIOPSDevice", "throttleWriteIOPSDevice")):
        if layout.where("blkio") == "v1":
            v = "v1"
            if bio.get("weight"):
                add("blkio", v, "blkio.weight", bio["weight"])
            if bio.get("leafWeight"):
                add("blkio", v, "blkio.leaf_weight", bio["leafWeight"])
            for d in bio.get("weightDevice") or ():
                if d.get("weight"):
                    add("blkio", v, "blkio.weight_device", f"{_dev(d)} {d['weight']}")
                if d.get("leafWeight"):
                    add("blkio", v, "blkio.leaf_weight_device", f"{_dev(d)} {d['leafWeight']}")
            for key, name in (("throttleReadBpsDevice", "read_bps_device"),
                              ("throttleWriteBpsDevice", "write_bps_device"),
                              ("throttleReadIOPSDevice", "read_iops_device"),
                              ("throttleWriteIOPSDevice", "write_iops_device")):
                for d in bio.get(key) or ():
                    add("blkio", v, f"blkio.throttle.{name}", f"{_dev(d)} {d['rate']}")
        else:
            v = _req(layout, "io", "a block I/O limit")
            if bio.get("weight"):
                add("io", v, "io.weight", f"default {blkio_to_io_weight(bio['weight'])}")
            for d in bio.get("weightDevice") or ():
                if d.get("weight"):
                    add("io", v, "io.weight", f"{_dev(d)} {blkio_to_io_weight(d['weight'])}")
            for key, name in (("throttleReadBpsDevice", "rbps"),
                              ("throttleWriteBpsDevice", "wbps"),
                              ("throttleReadIOPSDevice", "riops"),
                              ("throttleWriteIOPSDevice", "wiops")):
                for d in bio.get(key) or ():
                    add("io", v, "io.max", f"{_dev(d)} {name}={d['rate']}")

    for h in res.get("hugepageLimits") or ():
        v = _req(layout, "hugetlb", "a hugepage limit")
        size = h.get("pageSize")
        if not isinstance(size, str) or not size:
            raise ConfigError("hugepageLimits entries need a pageSize like 2MB")
        add("hugetlb", v, f"hugetlb.{size}.limit_in_bytes" if v == "v1"
            else f"hugetlb.{size}.max", h.get("limit", 0))

    net = res.get("network") or {}
    if net.get("classID") is not None:
        v = _req(layout, "net_cls", "a network classID")
        add("net_cls", v, "net_cls.classid", net["classID"])
    for p in net.get("priorities") or ():
        v = _req(layout, "net_prio", "network priorities")
        add("net_prio", v, "net_prio.ifpriomap", f"{p['name']} {p['priority']}")

    if res.get("rdma"):
        raise ConfigError("rdma cgroup limits are not supported")

    for key, value in (res.get("unified") or {}).items():
        if UNIFIED not in layout.dirs or "/" in key or key.startswith("."):
            raise ConfigError(f"linux.resources.unified {key!r} needs cgroup v2")
        ctrl = key.split(".", 1)[0]
        add(ctrl if ctrl != "cgroup" else UNIFIED, "v2", key, value)
    return w


def effective_device_rules(res: dict) -> list[dict] | None:
    """The OCI device rules, plus runc's default allows after a deny-all."""
    rules = res.get("devices")
    if rules is None:
        return None
    out = list(rules)
    if any(not r.get("allow") and (r.get("type") or "a") == "a" for r in rules):
        out += [{"allow": True, "type": t, "major": ma, "minor": mi, "access": acc}
                for t, ma, mi, acc in DEFAULT_ALLOWED_DEVICES]
    return out


def device_rules(res: dict, layout: Layout) -> list[tuple[str, str]]:
    """v1 devices cgroup writes: ("devices.allow"|"devices.deny", "c 1:3 rwm")."""
    rules = effective_device_rules(res)
    if rules is None or layout.where("devices") != "v1":
        return []
    return [("devices.allow" if r.get("allow") else "devices.deny", _rule(r)) for r in rules]


def _rule(r: dict) -> str:
    t = r.get("type") or "a"
    if t not in ("a", "c", "b"):
        raise ConfigError(f"device rule type {t!r} must be a, c or b")
    acc = r.get("access") or "rwm"
    if not acc or any(ch not in "rwm" for ch in acc):
        raise ConfigError(f"device rule access {acc!r} must be made of r, w and m")
    if t == "a":
        return "a"
    ma, mi = r.get("major"), r.get("minor")
    return f"{t} {'*' if ma is None or ma < 0 else ma}:{'*' if mi is None or mi < 0 else mi} {acc}"


def enable_v2_controllers(layout: Layout, ctrls: set[str]) -> None:
    """Turn controllers on in every ancestor's cgroup.subtree_control down to our cgroup."""
    udir = layout.dirs.get(UNIFIED)
    if not udir or not ctrls:
        return
    parts = []
    d = os.path.dirname(udir)
    while True:
        if not os.path.exists(os.path.join(d, "cgroup.subtree_control")):
            break
        parts.append(d)
        parent = os.path.dirname(d)
        if parent == d or not os.path.exists(os.path.join(parent, "cgroup.controllers")):
            break
        d = parent
    for d in reversed(parts):
        for c in sorted(ctrls):
            try:
                with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                    f.write(f"+{c}")
            except OSError as e:
                raise RuntimeErr(f"cannot enable the {c} controller in {d}: {e.strerror}") \
                    from None


def needs_unified(dirs: dict[str, str], res: dict | None) -> bool:
    """On a hybrid host, does the container need the v2 hierarchy (a limit only v2 serves)?"""
    if not res:
        return False
    layout = Layout(dirs)
    if res.get("devices") is not None and layout.where("devices") != "v1":
        return True
    return any(v == "v2" for _, v, _, _ in plan(res, layout))


def apply(dirs: dict[str, str], res: dict | None, layout: Layout | None = None) -> None:
    """Write linux.resources into the container's cgroups (created already)."""
    if not res:
        return
    layout = layout or Layout(dirs)
    writes = plan(res, layout)
    mem = res.get("memory") or {}
    if mem.get("checkBeforeUpdate") and mem.get("limit") and mem["limit"] > 0:
        _check_usage(layout, mem["limit"])
    enable_v2_controllers(layout, {c for c, v, _, _ in writes if v == "v2" and c != UNIFIED})
    for name, value in device_rules(res, layout):
        _write(os.path.join(layout.dirs["devices"], name), value)
    if res.get("devices") is not None and layout.where("devices") != "v1" \
            and UNIFIED in layout.dirs:
        from bosun.runtime import devices_bpf  # v2: no devices files, an eBPF program instead

        devices_bpf.attach(layout.dirs[UNIFIED], effective_device_rules(res))
    i = 0
    while i < len(writes):
        ctrl, ver, name, value = writes[i]
        nxt = writes[i + 1] if i + 1 < len(writes) else None
        if name == "memory.limit_in_bytes" and nxt and nxt[2] == "memory.memsw.limit_in_bytes":
            # v1 keeps limit <= memsw at every step: raise memsw first when the new limit
            # would exceed the current memsw (growing), the limit first otherwise.
            d = layout.path(ctrl, ver)
            try:
                with open(os.path.join(d, "memory.memsw.limit_in_bytes")) as f:
                    cur_memsw = int(f.read())
            except FileNotFoundError:  # no swap accounting: memsw first, _write reports it
                cur_memsw = -1
            new_limit = int(value)
            order = [nxt, writes[i]] if new_limit == -1 or new_limit > cur_memsw else [
                writes[i], nxt]
            for c, v, n, val in order:
                _write(os.path.join(layout.path(c, v), n), val)
            i += 2
            continue
        _write(os.path.join(layout.path(ctrl, ver), name), value)
        i += 1


def _check_usage(layout: Layout, limit: int) -> None:
    """memory.checkBeforeUpdate: refuse a limit below what the container already uses."""
    v = layout.where("memory")
    if v is None:
        return
    name = "memory.usage_in_bytes" if v == "v1" else "memory.current"
    try:
        with open(os.path.join(layout.path("memory", v), name)) as f:
            usage = int(f.read())
    except (OSError, ValueError):
        return  # a cgroup not created yet uses nothing
    if limit < usage:
        raise RuntimeErr(f"memory limit {limit} is below the current usage {usage} "
                         "(checkBeforeUpdate)")


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RuntimeErr(f"cgroup file {os.path.basename(path)} does not exist on this "
                         "kernel") from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise RuntimeErr(f"cannot write {value!r} to {os.path.basename(path)}: "
                         f"{e.strerror}") from None
    finally:
        os.close(fd)
