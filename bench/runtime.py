"""bosun-runtime vs runc: `run` of the same busybox `true` bundle, interleaved.

Prints the median wall time of each over N runs and the ratio (bosun / runc). A benchmark,
not a test: the figure goes in the README and closing notes.

    make bench            # or: .venv/bin/python bench/runtime.py [-n RUNS]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
from bosun.demo import make_bundle  # noqa: E402


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {p.stderr.decode().strip()}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=40)
    args = ap.parse_args()
    bosun = os.path.join(os.path.dirname(sys.executable), "bosun-runtime")
    runc = shutil.which("runc")
    if not runc:
        raise SystemExit("runc is not installed (apt-get install runc)")
    with tempfile.TemporaryDirectory(prefix="bosun-bench-") as tmp:
        bundle = make_bundle(os.path.join(tmp, "bundle"), ["true"])
        cmds = {
            "bosun-runtime": lambda i: [bosun, "--root", f"{tmp}/bosun", "run", "--bundle",
                                        bundle, f"bench-bosun-{os.getpid()}-{i}"],
            "runc": lambda i: [runc, "--root", f"{tmp}/runc", "run", "--bundle", bundle,
                               f"bench-runc-{os.getpid()}-{i}"],
        }
        for name, cmd in cmds.items():  # warm caches once each
            timed(cmd("warm"))
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for i in range(args.runs):
            order = list(cmds) if i % 2 == 0 else list(reversed(cmds))
            for name in order:
                times[name].append(timed(cmds[name](i)))
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    print(f"`run` of a busybox `true` bundle, {args.runs} interleaved runs each "
          f"({os.cpu_count()} cores)")
    print(f"{'runtime':<15}{'median ms':>10}{'min ms':>9}{'max ms':>9}")
    for name, t in times.items():
        print(f"{name:<15}{med[name]:>10.1f}{min(t) * 1000:>9.1f}{max(t) * 1000:>9.1f}")
    print(f"ratio bosun-runtime / runc = {med['bosun-runtime'] / med['runc']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
