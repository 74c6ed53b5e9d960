"""The docker CLI's own share of `docker ps -a` with 200 containers: the same command against a
server that answers at once with replies recorded from a real bosun daemon, next to the real
daemon. Whatever a daemon does, `ps200` cannot be faster than that floor.

    .venv/bin/python bench/ps_floor.py        # prints both medians (N=20, interleaved)
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
from daemons import private_bosun  # noqa: E402

LIST = "/v1.47/containers/json?all=1"


def record(sock_path: str, path: str) -> bytes:
    """One whole HTTP response from the daemon, to be replayed as it is."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.replace(b"Connection: close\r\n", b"")


def replay_server(path: str, replies: dict[str, bytes]) -> socket.socket:
    """Answer each request at once with the recorded reply for its path."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(64)

    def connection(c: socket.socket) -> None:
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                target = head.split(b" ")[1].decode()
                key = next((k for k in replies if target.startswith(k.split("?")[0])), LIST)
                c.sendall(replies[key])

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=connection, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv


def main() -> int:
    with private_bosun("bosun-bench-floor-") as d:
        fake = os.path.join(d.workdir, "replay.sock")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: d.docker("create", "--name", f"ps{i}", "busybox", "true"),
                          range(200)))
        sock = d.host.removeprefix("unix://")
        srv = replay_server(fake, {p: record(sock, p) for p in ("/_ping", "/v1.47/version", LIST)})

        def timed(host: str) -> float:
            t0 = time.perf_counter()
            r = subprocess.run(["docker", "ps", "-a"], env=dict(d.env, DOCKER_HOST=host),
                               capture_output=True)
            elapsed = time.perf_counter() - t0
            if r.returncode or r.stdout.count(b"\n") != 201:
                raise RuntimeError(f"docker ps -a against {host}: {r.stderr[-300:]!r}")
            return elapsed

        hosts = {"instant replay": f"unix://{fake}", "bosun daemon": d.host}
        for host in hosts.values():
            timed(host)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in hosts}
        for _ in range(20):
            for name, host in hosts.items():
                times[name].append(timed(host))
        srv.close()
        for name, t in times.items():
            print(f"docker ps -a, 200 containers, {name:15} {statistics.median(t) * 1000:6.1f} ms")
        return 0


if __name__ == "__main__":
    sys.exit(main())
