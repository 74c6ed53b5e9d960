"""ps: the container's processes, as `ps` shows them (table) or as a JSON list of pids."""

from __future__ import annotations

import subprocess

from bosun.runtime.errors import RuntimeErr
from bosun.runtime.kill import container_pids
from bosun.runtime.state import Container


def pids(root: str, cid: str) -> list[int]:
    return sorted(container_pids(Container.load(root, cid)))


def table(root: str, cid: str, ps_args: list[str]) -> str:
    wanted = set(pids(root, cid))
    try:
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeErr(f"ps failed: {e}") from None
    lines = out.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise RuntimeErr("ps output has no PID column")
    col = header.index("PID")
    rows = [ln for ln in lines[1:] if len(ln.split()) > col and ln.split()[col].isdigit()
            and int(ln.split()[col]) in wanted]
    return "\n".join([lines[0], *rows]) + "\n"
