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
    errfd = os.memfd_create("hook-stderr")  # its last line goes into our error message
    try:
        pid = os.fork()
    except OSError as e:
        for fd in (rfd, wfd, errfd):
            os.close(fd)
        raise RuntimeErr(f"{what}: {e.strerror}") from None
    if pid == 0:  # child
        try:
            import _signal

            for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):  # Python ignores these; undo
                _signal.signal(sig, _signal.SIG_DFL)
            os.close(wfd)
            os.dup2(rfd, 0)
            os.dup2(errfd, 2)
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
    try:
        _wait(pid, hook.get("timeout"), what, errfd)
    finally:
        os.close(errfd)


def _last_line(fd: int) -> str:
    size = os.fstat(fd).st_size
    data = os.pread(fd, 4096, max(0, size - 4096)).decode(errors="replace")
    lines = [ln.strip() for ln in data.splitlines() if ln.strip()]
    return f": {lines[-1]}" if lines else ""


def _wait(pid: int, timeout, what: str, errfd: int) -> None:
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
        raise RuntimeErr((f"{what} failed with exit status {code}" if code > 0
                          else f"{what} was killed by signal {-code}") + _last_line(errfd))
