"""Resource usage of a container's cgroup, in the shape of runc's `events --stats`."""

from __future__ import annotations

import os

from bosun.runtime.resources import Layout

USER_HZ = 100
NS_PER_TICK = 1_000_000_000 // USER_HZ


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str, default: int = 0) -> int:
    s = _read(path)
    if s is None:
        return default
    s = s.strip()
    return -1 if s == "max" else int(s) if s.lstrip("-").isdigit() else default


def _kv(path: str) -> dict[str, int]:
    out = {}
    for line in (_read(path) or "").splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def stats(dirs: dict[str, str]) -> dict:
    layout = Layout(dirs)
    data: dict = {"cpu": {}, "memory": {}, "pids": {}, "blkio": {}, "hugetlb": {},
                  "intel_rdt": {}, "network_interfaces": None}
    # cpu
    if layout.where("cpuacct") == "v1":
        d = dirs["cpuacct"]
        st = _kv(os.path.join(d, "cpuacct.stat"))
        data["cpu"]["usage"] = {
            "total": _int(os.path.join(d, "cpuacct.usage")),
            "percpu": [int(x) for x in (_read(os.path.join(d, "cpuacct.usage_percpu")) or "")
                       .split()],
            "kernel": st.get("system", 0) * NS_PER_TICK,
            "user": st.get("user", 0) * NS_PER_TICK,
        }
    elif layout.where("cpu") == "v2" or "unified" in dirs:
        st = _kv(os.path.join(dirs["unified"], "cpu.stat"))
        data["cpu"]["usage"] = {"total": st.get("usage_usec", 0) * 1000,
                                "kernel": st.get("system_usec", 0) * 1000,
                                "user": st.get("user_usec", 0) * 1000}
    v = layout.where("cpu")
    if v:
        st = _kv(os.path.join(layout.path("cpu", v), "cpu.stat"))
        data["cpu"]["throttling"] = {
            "periods": st.get("nr_periods", 0),
            "throttledPeriods": st.get("nr_throttled", 0),
            "throttledTime": st.get("throttled_time", st.get("throttled_usec", 0) * 1000),
        }
    # memory
    v = layout.where("memory")
    if v == "v1":
        d = dirs["memory"]

        def entry(prefix: str) -> dict:
            return {"usage": _int(os.path.join(d, f"{prefix}.usage_in_bytes")),
                    "max": _int(os.path.join(d, f"{prefix}.max_usage_in_bytes")),
                    "failcnt": _int(os.path.join(d, f"{prefix}.failcnt")),
                    "limit": _int(os.path.join(d, f"{prefix}.limit_in_bytes"))}
        raw = _kv(os.path.join(d, "memory.stat"))
        data["memory"] = {"cache": raw.get("total_cache", raw.get("cache", 0)),
                          "usage": entry("memory"), "swap": entry("memory.memsw"),
                          "kernel": entry("memory.kmem"), "kernelTCP": entry("memory.kmem.tcp"),
                          "raw": raw}
        oom = _kv(os.path.join(d, "memory.oom_control"))
        data["memory"]["oom_kill"] = oom.get("oom_kill", 0)
    elif v == "v2":
        d = dirs["unified"]
        raw = _kv(os.path.join(d, "memory.stat"))
        data["memory"] = {
            "cache": raw.get("file", 0),
            "usage": {"usage": _int(os.path.join(d, "memory.current")),
                      "max": _int(os.path.join(d, "memory.peak")),
                      "limit": _int(os.path.join(d, "memory.max")), "failcnt": 0},
            "swap": {"usage": _int(os.path.join(d, "memory.swap.current")),
                     "limit": _int(os.path.join(d, "memory.swap.max"))},
            "raw": raw,
            "oom_kill": _kv(os.path.join(d, "memory.events")).get("oom_kill", 0)}
    # pids
    v = layout.where("pids")
    if v:
        d = layout.path("pids", v)
        data["pids"] = {"current": _int(os.path.join(d, "pids.current")),
                        "limit": max(_int(os.path.join(d, "pids.max")), 0)}
    # blkio / io
    if layout.where("blkio") == "v1":
        d = dirs["blkio"]
        for key, name in (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
                          ("ioServicedRecursive", "io_serviced_recursive")):
            rows = []
            for line in (_read(os.path.join(d, f"blkio.throttle.{name}")) or "").splitlines():
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    ma, mi = parts[0].split(":")
                    rows.append({"major": int(ma), "minor": int(mi), "op": parts[1],
                                 "value": int(parts[2])})
            data["blkio"][key] = rows
    elif layout.where("io") == "v2":
        rb, rs = [], []
        for line in (_read(os.path.join(dirs["unified"], "io.stat")) or "").splitlines():
            dev, *kvs = line.split()
            ma, mi = (int(x) for x in dev.split(":"))
            kv = dict(x.split("=", 1) for x in kvs if "=" in x)
            for op, b, s in (("Read", "rbytes", "rios"), ("Write", "wbytes", "wios")):
                rb.append({"major": ma, "minor": mi, "op": op, "value": int(kv.get(b, 0))})
                rs.append({"major": ma, "minor": mi, "op": op, "value": int(kv.get(s, 0))})
        data["blkio"] = {"ioServiceBytesRecursive": rb, "ioServicedRecursive": rs}
    # hugetlb
    v = layout.where("hugetlb")
    if v:
        d = layout.path("hugetlb", v)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
            if name.startswith("hugetlb.") and name.endswith(
                    ".limit_in_bytes" if v == "v1" else ".max") and ".rsvd." not in name:
                size = name.split(".")[1]
                if v == "v1":
                    data["hugetlb"][size] = {
                        "usage": _int(os.path.join(d, f"hugetlb.{size}.usage_in_bytes")),
                        "max": _int(os.path.join(d, f"hugetlb.{size}.max_usage_in_bytes")),
                        "failcnt": _int(os.path.join(d, f"hugetlb.{size}.failcnt"))}
                else:
                    data["hugetlb"][size] = {
                        "usage": _int(os.path.join(d, f"hugetlb.{size}.current")),
                        "failcnt": _kv(os.path.join(d, f"hugetlb.{size}.events")).get("max", 0)}
    return data
