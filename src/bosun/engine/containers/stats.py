"""stats (`docker stats`): the container's cgroup usage in Docker's stats JSON.

The cgroup files are read by the runtime (bosun.runtime.stats, runc's `events --stats` shape);
`docker_stats()` turns such a sample into Docker's shape, as dockerd's collector does: host CPU
time from /proc/stat (in ns, Docker's sum of the first seven fields), the number of online CPUs,
a memory limit no larger than the machine's memory, and the network counters of the
container's namespace (/proc/<pid>/net/dev, `lo` left out). Samples come once a second, as
from dockerd's collector; `precpu_stats` and `preread` are the previous sample's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

from bosun.engine.container import RESTARTING
from bosun.engine.containers.archive import go_time
from bosun.engine.errors import InvalidParameter

ZERO_TIME = "0001-01-01T00:00:00Z"
INTERVAL = 1.0  # dockerd's collector samples every second
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")
_NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped")
_NET_TX_FIELDS = ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
_MAX_UINT64 = 2**64 - 1


# -- pure conversions --------------------------------------------------------------------------

def zero_cpu() -> dict:
    """Go's zero CPUStats as encoding/json writes it (omitempty fields left out)."""
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def empty_stats(name: str, cid: str) -> dict:
    """What Docker answers for a container that is not running: every counter zero."""
    return {"read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
            "blkio_stats": dict.fromkeys(_BLKIO_KEYS), "num_procs": 0, "storage_stats": {},
            "cpu_stats": zero_cpu(), "precpu_stats": zero_cpu(), "memory_stats": {},
            "name": name, "id": cid}


def system_cpu(proc_stat: str, ticks_per_second: int = 100) -> tuple[int, int]:
    """(host CPU time in ns, online CPUs) from /proc/stat, as dockerd's getSystemCPUUsage:
    the sum of the "cpu" line's first seven fields (user … softirq), and the cpuN lines."""
    usage, cpus = 0, 0
    for line in proc_stat.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "cpu" and len(fields) >= 8:
            ticks = sum(int(x) for x in fields[1:8])
            usage = ticks * 1_000_000_000 // ticks_per_second
        elif fields[0].startswith("cpu") and fields[0][3:].isdigit():
            cpus += 1
    return usage, cpus


def net_dev(text: str) -> dict[str, dict]:
    """/proc/<pid>/net/dev → Docker's networks map, without the loopback (as Docker shows)."""
    out: dict[str, dict] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        values = rest.split()
        if not sep or name == "lo" or len(values) < 12:
            continue
        nums = [int(v) for v in values]
        out[name] = {**dict(zip(_NET_FIELDS, nums[0:4])),
                     **dict(zip(_NET_TX_FIELDS, nums[8:12]))}
    return out


def _positive(value: int | None) -> int:
    return value if value and value > 0 else 0


def _blkio(raw: dict, cgroup_v2: bool) -> dict:
    """dockerd's blkio_stats: on v1 every list present (the two counters the kernel keeps
    filled, the rest empty); on v2 only the bytes, from io.stat, with lower-case ops."""
    def rows(key: str, lower: bool = False) -> list[dict]:
        return [{"major": r["major"], "minor": r["minor"],
                 "op": r["op"].lower() if lower else r["op"], "value": r["value"]}
                for r in raw.get(key) or ()]

    if cgroup_v2:
        out = dict.fromkeys(_BLKIO_KEYS)
        out["io_service_bytes_recursive"] = rows("ioServiceBytesRecursive", True) or None
        return out
    out = {k: [] for k in _BLKIO_KEYS}
    out["io_service_bytes_recursive"] = rows("ioServiceBytesRecursive")
    out["io_serviced_recursive"] = rows("ioServicedRecursive")
    return out


def _memory(mem: dict, machine_memory: int, cgroup_v2: bool) -> dict:
    usage = mem.get("usage") or {}
    if not usage:
        return {}
    out: dict = {}
    if _positive(usage.get("usage")):
        out["usage"] = usage["usage"]
    if not cgroup_v2 and _positive(usage.get("max")):
        out["max_usage"] = usage["max"]
    if mem.get("raw"):
        out["stats"] = dict(mem["raw"])
    if _positive(usage.get("failcnt")):
        out["failcnt"] = usage["failcnt"]
    limit = usage.get("limit")
    if limit is None or limit < 0 or (machine_memory and limit > machine_memory):
        limit = machine_memory  # unlimited: the machine's memory, as Docker reports it
    if limit:
        out["limit"] = limit
    return out


def docker_stats(raw: dict, *, read: str, system_cpu_usage: int, online_cpus: int,
                 machine_memory: int, networks: dict[str, dict] | None,
                 cgroup_v2: bool = False) -> dict:
    """A runtime stats sample (bosun.runtime.stats.stats) in Docker's StatsJSON shape,
    without name, id and the pre* fields (the stream adds them)."""
    cpu = raw.get("cpu") or {}
    use = cpu.get("usage") or {}
    usage = {"total_usage": use.get("total", 0)}
    if use.get("percpu"):
        usage["percpu_usage"] = list(use["percpu"])
    usage["usage_in_kernelmode"] = use.get("kernel", 0)
    usage["usage_in_usermode"] = use.get("user", 0)
    thr = cpu.get("throttling") or {}
    cpu_stats: dict = {"cpu_usage": usage}
    if system_cpu_usage:
        cpu_stats["system_cpu_usage"] = system_cpu_usage
    if online_cpus:
        cpu_stats["online_cpus"] = online_cpus
    cpu_stats["throttling_data"] = {"periods": thr.get("periods", 0),
                                    "throttled_periods": thr.get("throttledPeriods", 0),
                                    "throttled_time": thr.get("throttledTime", 0)}
    pids = raw.get("pids") or {}
    pids_stats = {k: pids[k] for k in ("current", "limit") if _positive(pids.get(k))}
    out = {"read": read, "preread": ZERO_TIME, "pids_stats": pids_stats,
           "blkio_stats": _blkio(raw.get("blkio") or {}, cgroup_v2), "num_procs": 0,
           "storage_stats": {}, "cpu_stats": cpu_stats, "precpu_stats": zero_cpu(),
           "memory_stats": _memory(raw.get("memory") or {}, machine_memory, cgroup_v2)}
    if networks:
        out["networks"] = networks
    return out


def with_identity(sample: dict, name: str, cid: str) -> dict:
    """Docker's key order: …, memory_stats, name, id, networks."""
    nets = sample.pop("networks", None)
    sample["name"], sample["id"] = name, cid
    if nets:
        sample["networks"] = nets
    return sample


# -- reading the host --------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine_memory() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(engine, c) -> dict | None:
    """One sample of a running container in Docker's shape (without name and id); None when
    it is not running (no runtime state, or its init is gone)."""
    from bosun.runtime.errors import RuntimeErr
    from bosun.runtime.resources import Layout
    from bosun.runtime.state import Container as RuntimeContainer
    from bosun.runtime.stats import stats as runtime_stats

    pid = c.state.get("Pid") or 0
    if not c.running or not pid:
        return None
    try:
        rc = RuntimeContainer.load(engine.runtime_root, c.id)
    except RuntimeErr:
        return None
    if not rc.init_alive():
        return None
    dirs = rc.record.get("cgroups") or {}
    raw = runtime_stats(dirs)
    usage, cpus = system_cpu(_read("/proc/stat"), os.sysconf("SC_CLK_TCK"))
    nets = None
    if (c.doc.get("HostConfig") or {}).get("NetworkMode") != "host":
        nets = net_dev(_read(f"/proc/{pid}/net/dev")) or None
    return docker_stats(raw, read=go_time(time.time_ns()), system_cpu_usage=usage,
                        online_cpus=cpus, machine_memory=machine_memory(), networks=nets,
                        cgroup_v2=Layout(dirs).where("memory") == "v2")


# -- the verb ----------------------------------------------------------------------------------

def stats(engine, c, *, stream: bool = True, one_shot: bool = False,
          stop: threading.Event | None = None) -> Iterator[dict]:
    """GET /containers/{id}/stats: Docker's stats objects. stream: one a second until `stop`
    is set or the container is removed; else one, with precpu from a sample a second
    earlier (or, one_shot, at once with precpu zero). A stopped container gives Docker's
    zeroed object. Argument errors are raised here, before anything is produced."""
    if stream and one_shot:
        raise InvalidParameter("cannot have stream=true and one-shot=true")
    stop = stop or threading.Event()
    name, cid = c.doc["Name"], c.id
    if not stream and (not c.running or c.status == RESTARTING):
        return iter([empty_stats(name, cid)])
    if one_shot:
        first = sample(engine, c)
        return iter([with_identity(first, name, cid) if first else empty_stats(name, cid)])
    return _series(engine, c, stream, stop)


def _series(engine, c, stream: bool, stop: threading.Event) -> Iterator[dict]:
    name, cid = c.doc["Name"], c.id
    pre_cpu, pre_read = zero_cpu(), ZERO_TIME
    primed = stream  # without stream, the first sample only primes precpu
    while not stop.is_set() and not c.removed:
        current = sample(engine, c)
        doc = with_identity(current, name, cid) if current else empty_stats(name, cid)
        doc["precpu_stats"], doc["preread"] = pre_cpu, pre_read
        pre_cpu, pre_read = doc["cpu_stats"], doc["read"]
        if primed:
            yield doc
            if not stream:
                return
        primed = True
        if stop.wait(INTERVAL):
            return
