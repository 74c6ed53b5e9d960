"""Running the `bosun` client against a test daemon, as the CLI tests do."""

from __future__ import annotations

import subprocess
import sys

BOSUN = [sys.executable, "-m", "bosun.cli"]


def bosun(daemon, *args: str, input: bytes | None = None, check: bool = True,
          timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """`bosun -H <daemon> args…`; a traceback on stderr is always a failure, and so is a
    non-zero exit unless check=False (the daemon's log tail then goes into the message)."""
    r = subprocess.run([*BOSUN, "-H", daemon.host, *args], input=input, capture_output=True,
                       timeout=timeout, env=env)
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    if check and r.returncode:
        raise AssertionError(f"bosun {' '.join(args)} → {r.returncode}\n"
                             f"{r.stderr.decode(errors='replace')}\n{daemon.log_tail()}")
    return r


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode()


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode()
