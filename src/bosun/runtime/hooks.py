"""OCI hooks: each gets the container's state JSON on stdin; args, env and timeout honoured."""

from __future__ import annotations

import os
import time

from bosun import quickjson
from bosun.runtime.errors import RuntimeErr


def run(config: dict, kind: str, state: dict, kinds: tuple[str, ...] | None = None) -> None:
    """Run every hook of `kind` (and of `kinds`, in order). The first failure raises."""
    hooks = config.get("hooks") or {}
    payload = quickjson.dumps(state).encode()
    for k in kinds or (kind,):
        for i, h in enumerate(hooks.get(k) or ()):
            run_one(h, payload, f"{k} hook #{i} ({h['path']})")


def run_warn(config: dict, kind: str, state: dict, log) -> None:
    """poststart/poststop: a failing hook is logged and the rest still run (OCI spec)."""
    hooks = config.get("hooks") or {}
    payload = quickjson.dumps(state).encode()
    for i, h in enumerate(hooks.get(kind) or ()):
        try:
            run_one(h, payload, f"{kind} hook #{i} ({h['path']})")
        except RuntimeErr as e:
            log.warning(str(e))


def run_one(hook: dict, payload: bytes, what: str) -> None:
    args = hook.get("args") or [hook["path"]]
    env = dict(e.partition("=")[::2] for e in hook.get("env") or ())
    rfd, wfd = os.pipe()
    try:
        pid = os.fork()
    except OSError as e:
        os.close(rfd)
        os.close(wfd)
        raise RuntimeErr(f"{what}: {e.strerror}") from None
    if pid == 0:  # child
        try:
            os.close(wfd)
            os.dup2(rfd, 0)
            os.setsid()  # its own process group, so a timeout can kill everything it started
            os.execve(hook["path"], args, env)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"{what}: {getattr(e, 'strerror', e)}\n".encode())
        os._exit(127)
    os.close(rfd)
    try:
        os.write(wfd, payload)
    except BrokenPipeError:
        pass  # a hook need not read its stdin
    finally:
        os.close(wfd)
    timeout = hook.get("timeout")
    deadline = time.monotonic() + timeout if timeout else None
    delay = 0.0005
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        if wpid:
            break
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            raise RuntimeErr(f"{what} timed out after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeErr(f"{what} failed with exit status {code}" if code > 0
                         else f"{what} was killed by signal {-code}")
