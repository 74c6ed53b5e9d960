"""top: `ps` on the host, keeping the container's processes (as Docker does)."""

from __future__ import annotations

import subprocess

from bosun.engine.errors import Conflict, InvalidParameter, SystemErr


def top(engine, c, ps_args: str | None = None) -> dict:
    from bosun.runtime.errors import RuntimeErr
    from bosun.runtime.kill import container_pids
    from bosun.runtime.state import Container as RuntimeContainer

    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    try:
        pids = set(container_pids(RuntimeContainer.load(engine.runtime_root, c.id)))
    except RuntimeErr as e:
        raise Conflict(f"Container {c.id} is not running: {e}") from None
    args = (ps_args or "-ef").split()
    if any("\0" in a for a in args):  # exec would raise ValueError: a 500
        raise InvalidParameter("Error running ps: an argument contains a NUL byte")
    try:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise SystemErr(f"ps: {e}") from None
    if out.returncode:
        raise InvalidParameter(f"Error running ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise InvalidParameter("Couldn't find PID field in ps output") from None
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= pid_col:
            continue
        try:
            if int(fields[pid_col]) in pids:
                procs.append(fields)
        except ValueError:
            continue
    return {"Titles": titles, "Processes": procs}
