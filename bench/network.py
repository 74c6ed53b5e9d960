"""Networking: `bosun daemon` vs dockerd (Debian's docker.io, runc), the same docker CLI, one run.

  throughput  requests per second through a port published on 127.0.0.1 to busybox httpd
              (ApacheBench: -n 20000 -c 16), median of 3 runs each, the daemons taking turns
  bridge      what a bridge endpoint adds to `docker run --rm busybox true`: its median minus
              the median of the same with `--network none` (N rounds, interleaved)

Targets (issue #7): throughput ≥ 1.0× dockerd's; bridge ≤ 20 ms. dockerd runs as the tests run
it: its own bridge, iptables off, so a published port reaches the container through
docker-proxy (its userland proxy), which is what dockerd does for 127.0.0.1 by default;
bosun's goes through nftables DNAT. Writes bench/network.json.

    make bench        # or: .venv/bin/python bench/network.py [-n ROUNDS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
from daemons import Contender, Pair  # noqa: E402

TARGETS = {"throughput": 1.0, "bridge_ms": 20.0}
PORTS = {"bosun": 18901, "dockerd": 18902}
SERVE = "mkdir -p /www && head -c 1024 /dev/zero > /www/k && exec httpd -f -p 80 -h /www"


def log(msg: str) -> None:
    print(f"bench/network: {msg}", file=sys.stderr, flush=True)


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"GET /k HTTP/1.0\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def ab(port: int, n: int) -> float:
    p = subprocess.run(["ab", "-q", "-n", str(n), "-c", "16", f"http://127.0.0.1:{port}/k"],
                       capture_output=True, text=True, timeout=300)
    m = re.search(r"Requests per second:\s+([\d.]+)", p.stdout)
    failed = re.search(r"Failed requests:\s+(\d+)", p.stdout)
    if p.returncode or not m or (failed and int(failed.group(1))):
        raise RuntimeError(f"ab on port {port}: {p.stdout[-500:]}{p.stderr[-500:]}")
    return float(m.group(1))


def bench_throughput(cs: list[Contender], requests: int, runs: int) -> dict[str, float]:
    for c in cs:
        c.docker("run", "-d", "--name", "web", "-p", f"127.0.0.1:{PORTS[c.name]}:80",
                 "busybox", "sh", "-c", SERVE)
        wait_port(PORTS[c.name])
        ab(PORTS[c.name], 1000)  # warm-up
    out: dict[str, list[float]] = {c.name: [] for c in cs}
    for i in range(runs):
        for c in (cs if i % 2 == 0 else cs[::-1]):
            out[c.name].append(ab(PORTS[c.name], requests))
    for c in cs:
        c.remove_all()
    return {k: statistics.median(v) for k, v in out.items()}


def bench_bridge(cs: list[Contender], rounds: int) -> dict[str, dict[str, float]]:
    variants = {"bridge": ["run", "--rm", "busybox", "true"],
                "none": ["run", "--rm", "--network", "none", "busybox", "true"]}
    times = {c.name: {v: [] for v in variants} for c in cs}
    for c in cs:
        for args in variants.values():
            c.timed(*args)  # warm-up
    for i in range(rounds):
        order = [(c, v) for c in cs for v in variants]
        for c, v in (order if i % 2 == 0 else order[::-1]):
            times[c.name][v].append(c.timed(*variants[v]))
    return {name: {v: statistics.median(t) * 1000 for v, t in by.items()}
            for name, by in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--rounds", type=int, default=20)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        log("needs root")
        return 1
    pair = Pair(Path(tempfile.mkdtemp(prefix="bosun-bench-network-")))
    with pair as cs:
        log(f"throughput: ab -n {args.requests} -c 16, {args.runs} runs each")
        rps = bench_throughput(cs, args.requests, args.runs)
        log(f"bridge cost: {args.rounds} rounds of run --rm with and without a network")
        runs = bench_bridge(cs, args.rounds)
        results = {
            "throughput_rps": dict(rps, ratio=rps["bosun"] / rps["dockerd"],
                                   target=TARGETS["throughput"]),
            "run_ms": runs,
            "bridge_ms": {name: r["bridge"] - r["none"] for name, r in runs.items()},
            "dockerd_version": pair.dockerd.version,
        }
        results["bridge_ms"]["target"] = TARGETS["bridge_ms"]
        (HERE / "network.json").write_text(json.dumps(results, indent=2) + "\n")
        t, b = results["throughput_rps"], results["bridge_ms"]
        print(f"throughput  bosun {t['bosun']:8.0f} req/s  dockerd {t['dockerd']:8.0f} req/s  "
              f"ratio {t['ratio']:.2f} (target ≥ {TARGETS['throughput']})")
        for name, r in runs.items():
            print(f"run --rm    {name:8} bridge {r['bridge']:6.1f} ms  none {r['none']:6.1f} ms  "
                  f"bridge adds {b[name]:5.1f} ms")
        print(f"target: a bridge adds ≤ {TARGETS['bridge_ms']:.0f} ms (bosun: {b['bosun']:.1f})")
        return 0


if __name__ == "__main__":
    sys.exit(main())
