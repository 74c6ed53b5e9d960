"""The client: `bosun version` / `bosun ps` vs docker's Go CLI, both against one private
`bosun daemon` (so only the clients differ), runs interleaved, with 10 containers created.

Target: bosun's median ≤ 1.5× docker's for both commands. Prints the medians and ratios and
writes bench/cli.json; the daemon and its containers are removed at exit, also on ^C.

    .venv/bin/python bench/cli.py [-n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
from daemons import private_bosun  # noqa: E402

TARGET = 1.5
BOSUN = [str(HERE.parent / ".venv" / "bin" / "bosun")]
if not os.access(BOSUN[0], os.X_OK):  # no entry-point script: the module, as the tests run it
    BOSUN = [sys.executable, "-m", "bosun.cli"]


def log(msg: str) -> None:
    print(f"bench/cli: {msg}", file=sys.stderr, flush=True)


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.decode().strip()}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="runs of each command (default 20)")
    ap.add_argument("--containers", type=int, default=10)
    ap.add_argument("--out", default=str(HERE / "cli.json"))
    a = ap.parse_args()
    docker = shutil.which("docker")
    if docker is None:
        log("no docker CLI on PATH")
        return 2
    version = subprocess.run([docker, "--version"], capture_output=True, text=True).stdout
    docker_version = version.split(",")[0].removeprefix("Docker version ")
    with private_bosun("bosun-bench-cli-") as d:
        return measure(d, a, docker, docker_version)


def measure(d, a, docker: str, docker_version: str) -> int:
    env = d.env
    # bytecode is part of an installed CLI's start-up: a PYTHONDONTWRITEBYTECODE left in
    # the environment would have every run recompile edited modules (~10 ms here)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log(f"daemon up; creating {a.containers} containers")
    for i in range(a.containers):
        d.docker("create", "--name", f"bench{i}", "busybox", "sleep", "1000")
    results = {}
    for cmd in ("version", "ps"):
        ours, theirs = [], []
        for _ in range(2):  # warm the page cache (python's modules, docker's binary)
            timed([*BOSUN, cmd], env)
            timed([docker, cmd], env)
        for i in range(a.n):  # interleaved, the order alternating, so drift hits both
            pair = [(ours, BOSUN), (theirs, [docker])]
            for acc, argv in (pair if i % 2 == 0 else pair[::-1]):
                acc.append(timed([*argv, cmd], env))
        mo, mt = statistics.median(ours), statistics.median(theirs)
        results[cmd] = {"bosun_median_ms": round(mo * 1000, 2),
                        "docker_median_ms": round(mt * 1000, 2),
                        "ratio": round(mo / mt, 3), "target": TARGET,
                        "ok": mo / mt <= TARGET,
                        "bosun_ms": [round(x * 1000, 2) for x in ours],
                        "docker_ms": [round(x * 1000, 2) for x in theirs]}
        log(f"{cmd}: bosun {mo * 1000:.1f} ms, docker {mt * 1000:.1f} ms, "
            f"ratio {mo / mt:.2f} (target ≤ {TARGET})")
    doc = {"n": a.n, "containers": a.containers, "bosun": "bosun (.venv/bin/bosun)",
           "docker": f"docker {docker_version}", "results": results}
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    for cmd, r in results.items():
        print(f"{cmd:8} bosun {r['bosun_median_ms']:7.1f} ms  docker "
              f"{r['docker_median_ms']:7.1f} ms  ratio {r['ratio']:.2f}"
              f"  {'ok' if r['ok'] else 'OVER TARGET'}")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
