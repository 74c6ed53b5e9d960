"""The engine: `bosun daemon` vs dockerd (Debian's docker.io, runc), both driven by the same
docker CLI, in one run.

  run      `docker run --rm busybox true`, N rounds, the two daemons taking turns
  memory   host memory per idle container: `used` (MemTotal - MemAvailable - free pages in
           the per-CPU lists, page cache dropped first) after starting 100 `sleep`
           containers minus before, / 100
           (also reported, as memory_pss: the same delta of all processes' summed Pss, which
           leaves out kernel memory and most of this VM's noise; and as memory_kernel: the
           delta of the kernel's own allocations, Slab + KernelStack + PageTables + Percpu,
           the part no daemon design can avoid: namespaces, cgroups, veths, mounts)
  start100 wall time to start 100 containers concurrently (100 `docker run -d` at once)
  ps200    `docker ps -a` with 200 containers, median of N

Targets (issue #5): run ≤ 0.35×, memory ≤ 0.25×, start100 ≤ 0.5×, ps200 ≤ 0.5× dockerd's.
Writes bench/engine.json and the chart bench/engine.png. Everything started is removed at
exit, also on ^C.

    make bench        # or: .venv/bin/python bench/engine.py [-n ROUNDS] [--containers 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
from daemons import Contender, Pair  # noqa: E402

TARGETS = {"run": 0.35, "memory": 0.25, "start100": 0.5, "ps200": 0.5}


def log(msg: str) -> None:
    print(f"bench/engine: {msg}", file=sys.stderr, flush=True)


# What the kernel itself allocates for a container (namespaces, cgroups, the veth and its
# queues, mounts, page tables and stacks of its processes), from /proc/meminfo.
KERNEL_FIELDS = ("Slab", "KernelStack", "PageTables", "Percpu")


def used_memory() -> tuple[int, int]:
    """(memory in use: MemTotal - MemAvailable - the free pages waiting in the per-CPU lists,
    the kernel's own memory: the KERNEL_FIELDS summed), with the page cache dropped first
    (where allowed)."""
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError:
        pass
    time.sleep(1)
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            info[k] = int(v.split()[0]) * 1024
    used = info["MemTotal"] - info["MemAvailable"] - pcp_free_pages() * os.sysconf("SC_PAGE_SIZE")
    return used, sum(info.get(k, 0) for k in KERNEL_FIELDS)


def pcp_free_pages() -> int:
    """Free pages held in the per-CPU page lists (/proc/zoneinfo's pageset counts).

    MemFree leaves them out, and since Linux 6.7 the kernel sizes those lists by demand: on
    this VM they swung by 100+ MiB between two samples, ~3 MiB per container over 50, more
    than a container costs. Counting them as free is what makes the host delta mean
    anything."""
    total = 0
    try:
        with open("/proc/zoneinfo") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] == "count:":
                    total += int(parts[1])
    except OSError:
        pass
    return total


def bench_run(cs: list[Contender], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {c.name: [] for c in cs}
    for c in cs:
        c.timed("run", "--rm", "busybox", "true")  # warm-up
    for i in range(rounds):
        for c in (cs if i % 2 == 0 else cs[::-1]):
            times[c.name].append(c.timed("run", "--rm", "busybox", "true"))
    return times


def total_pss() -> int:
    """Proportional set size of every process, summed: user-space memory with each shared
    page split among its users, so shims sharing a fork-server's pages count once."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass  # gone, or a kernel thread
    return total


def bench_start_and_memory(c: Contender, n: int) -> tuple[float, float, float, float]:
    """(wall time of n concurrent starts, host memory per container, process memory (Pss)
    per container, kernel memory per container)."""
    (before, kernel_before), pss_before = used_memory(), total_pss()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda i: c.docker("run", "-d", "--name", f"idle{i}", "busybox",
                                         "sleep", "86400"), range(n)))
    wall = time.perf_counter() - t0
    time.sleep(3)
    running = len(c.docker("ps", "-q").split())
    if running != n:
        raise RuntimeError(f"{c.name}: {running} of {n} containers running")
    used, kernel = used_memory()
    per, kernel = (used - before) / n, (kernel - kernel_before) / n
    pss = (total_pss() - pss_before) / n
    c.remove_all()
    return wall, per, pss, kernel


def bench_ps(c: Contender, n: int, rounds: int) -> list[float]:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: c.docker("create", "--name", f"ps{i}", "busybox", "true"),
                      range(n)))
    c.timed("ps", "-a")
    out = [c.timed("ps", "-a") for _ in range(rounds)]
    c.remove_all()
    return out


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"run": "docker run --rm\n(ms)", "memory": "host memory per idle\ncontainer (MiB)",
              "memory_pss": "process memory (Pss)\nper container (MiB)",
              "start100": "100 concurrent\nstarts (s)", "ps200": "ps -a, 200\ncontainers (ms)"}
    fig, axes = plt.subplots(1, len(labels), figsize=(15, 3.4))
    for ax, key in zip(axes, labels):
        r = results[key]
        vals = [r["bosun"], r["dockerd"]]
        bars = ax.bar(["bosun", "dockerd"], vals, color=["#2a9d8f", "#8d99ae"])
        ax.set_title(labels[key], fontsize=10)
        ax.bar_label(bars, fmt="%.3g", fontsize=9)
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        target = f"target ≤ {TARGETS[key]}×" if key in TARGETS else "no target"
        ax.set_xlabel(f"{r['ratio']:.2f}× ({target})", fontsize=9)
    fig.suptitle("bosun daemon vs dockerd, same docker CLI, same machine", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--rounds", type=int, default=20)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--ps", type=int, default=200)
    args = ap.parse_args()
    if os.geteuid() != 0:
        log("needs root")
        return 1
    pair = Pair(Path(tempfile.mkdtemp(prefix="bosun-bench-engine-")))
    with pair as cs:
        results: dict = {}
        log(f"run: {args.rounds} rounds each")
        runs = bench_run(cs, args.rounds)
        results["run"] = {k: statistics.median(v) * 1000 for k, v in runs.items()}
        for key in ("start100", "memory", "memory_pss", "memory_kernel"):
            results[key] = {}
        for c in cs:
            log(f"{c.name}: {args.containers} concurrent starts, then memory")
            wall, per, pss, kernel = bench_start_and_memory(c, args.containers)
            results["start100"][c.name] = wall
            results["memory"][c.name] = per / (1 << 20)
            results["memory_pss"][c.name] = pss / (1 << 20)
            results["memory_kernel"][c.name] = kernel / (1 << 20)
        results["ps200"] = {}
        for c in cs:
            log(f"{c.name}: ps -a with {args.ps} containers")
            results["ps200"][c.name] = statistics.median(bench_ps(c, args.ps, args.rounds)) * 1000
        for r in results.values():
            r["ratio"] = r["bosun"] / r["dockerd"] if r["dockerd"] else float("inf")
        results["dockerd_version"] = pair.dockerd.version
        (HERE / "engine.json").write_text(json.dumps(results, indent=2) + "\n")
        try:
            chart(results, HERE / "engine.png")
        except ImportError:
            log("matplotlib not installed: no chart (make bench installs it)")
        units = {"run": "ms", "memory": "MiB", "memory_pss": "MiB", "memory_kernel": "MiB",
                 "start100": "s", "ps200": "ms"}
        print(f"{'':12} {'bosun':>10} {'dockerd':>10} {'ratio':>7} {'target':>7}")
        for key in units:
            r = results[key]
            target = f"≤{TARGETS[key]}" if key in TARGETS else "-"
            print(f"{key:12} {r['bosun']:>8.3g}{units[key]:>2} {r['dockerd']:>8.3g}"
                  f"{units[key]:>2} {r['ratio']:>7.2f} {target:>7}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
