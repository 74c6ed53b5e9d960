"""exec: another process in a running container, run by the container's shim (which reaps it
and streams its stdio to the hijacked client)."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time

from bosun.engine.container import PAUSED
from bosun.engine.errors import Conflict, InvalidParameter, NotFound

_KEEP_FINISHED = 1000  # exec records kept after they end (Docker keeps them until the
#                        container goes; a bound keeps a busy daemon's memory flat)
EXIT_WAIT = 2.0  # how long inspect waits for the exit notice of an exec whose process is gone


def _get(engine, exec_id: str) -> dict:
    e = engine.execs.get(exec_id)
    if e is None:
        raise NotFound(f"No such exec instance: {exec_id}")
    return e


def create(engine, c, body: dict) -> str:
    from bosun.engine import gotypes

    if not isinstance(body, dict):
        raise InvalidParameter("exec config must be a JSON object")
    body = gotypes.check(body, gotypes.EXEC_CREATE, "ExecConfig")
    cmd = body.get("Cmd")
    if not cmd:
        raise InvalidParameter("No exec command specified")
    with c.lock:
        if c.status == PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if not c.running or c.status == "restarting":
            raise Conflict(f"Container {c.id} is not running")
    exec_id = secrets.token_hex(32)
    engine.execs[exec_id] = {
        "ID": exec_id, "Running": False, "ExitCode": None,
        "ProcessConfig": {"tty": bool(body.get("Tty")), "entrypoint": cmd[0],
                          "arguments": cmd[1:], "privileged": bool(body.get("Privileged")),
                          "user": body.get("User") or ""},
        "OpenStdin": bool(body.get("AttachStdin")), "OpenStderr": bool(body.get("AttachStderr")),
        "OpenStdout": bool(body.get("AttachStdout")), "CanRemove": False,
        "ContainerID": c.id, "DetachKeys": body.get("DetachKeys") or "", "Pid": 0,
        "_env": list(body.get("Env") or []), "_cwd": body.get("WorkingDir") or "",
        "_size": body.get("ConsoleSize"), "_done": threading.Event(),
    }
    _prune(engine)
    engine.emit(c, f"exec_create: {' '.join(cmd)}", execID=exec_id)
    return exec_id


def _prune(engine) -> None:
    done = [k for k, e in engine.execs.items() if e["ExitCode"] is not None]
    for k in done[:-_KEEP_FINISHED] if len(done) > _KEEP_FINISHED else ():
        engine.execs.pop(k, None)


def check_startable(engine, exec_id: str):
    """Errors a client must get before its connection is hijacked."""
    e = _get(engine, exec_id)
    if e["Running"] or e["ExitCode"] is not None or e.get("_started"):
        raise Conflict(f"Error: Exec command {exec_id} has already run")
    c = engine.get(e["ContainerID"])
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    if c.status == PAUSED:
        raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
    return e, c


def start(engine, exec_id: str, sock=None, detach: bool = False) -> None:
    from bosun.engine.monitor import ShimGone

    e, c = check_startable(engine, exec_id)
    e["_started"] = True
    try:
        process = _process(engine, c, e)
    except Exception as err:
        _failed(engine, e, sock, str(err))
        raise
    msg = {"op": "exec", "exec_id": exec_id, "process": process,
           "stdin": e["OpenStdin"] and sock is not None,
           "stdout": e["OpenStdout"], "stderr": e["OpenStderr"],
           "detach_keys": e["DetachKeys"] or None}
    fds = (sock.fileno(),) if sock is not None and not detach else ()
    try:
        reply = engine.monitor.request(c, msg, fds)
    except ShimGone as err:
        reply = {"error": f"container is not running: {err}"}
    if "error" in reply:
        _failed(engine, e, sock, reply["error"])
        if sock is None:
            raise Conflict(reply["error"])
        return
    if sock is not None:
        sock.close()  # the shim holds its own copy
    if e["ExitCode"] is None:
        e["Running"], e["Pid"] = True, reply.get("pid", 0)
    engine.emit(c, f"exec_start: {' '.join([e['ProcessConfig']['entrypoint']] + e['ProcessConfig']['arguments'])}",
                execID=exec_id)


def _failed(engine, e: dict, sock, error: str) -> None:
    low = error.lower()
    e["ExitCode"] = 127 if ("not found" in low or "no such file" in low) else 126
    e["Running"] = False
    e["_done"].set()
    if sock is not None:
        text = (f"OCI runtime exec failed: exec failed: unable to start container process: "
                f"{error}: unknown\r\n").encode()
        try:
            if e["ProcessConfig"]["tty"]:
                sock.sendall(text)
            else:
                from bosun.engine.shim import frame

                sock.sendall(frame(1, text))
        except OSError:
            pass
        sock.close()


def exited(engine, exec_id: str, code) -> None:
    e = engine.execs.get(exec_id)
    if e is None:
        return
    e["ExitCode"] = 255 if code is None else int(code)
    e["Running"] = False
    e["Pid"] = 0
    e["_done"].set()
    try:
        c = engine.get(e["ContainerID"])
        engine.emit(c, "exec_die", execID=exec_id, exitCode=str(e["ExitCode"]))
    except NotFound:
        pass


def container_exited(engine, c) -> None:
    """The container is gone, and with it its execs. The shim sends their exits before the
    container's; an exec still without one lost it with a shim that died: it ends with
    255, as the container does then."""
    for e in list(engine.execs.values()):
        if e["ContainerID"] == c.id and e.get("_started") and e["ExitCode"] is None:
            exited(engine, e["ID"], None)


def inspect(engine, exec_id: str) -> dict:
    e = _get(engine, exec_id)
    _await_exit_notice(engine, e)
    return {k: v for k, v in e.items() if not k.startswith("_")}


def _await_exit_notice(engine, e: dict) -> None:
    """The shim ends the client's stream and sends us the exit code at the same moment, on
    another connection: `docker exec` and docker-py's exec_run, which ask for the exit code as
    soon as the stream ends, may get here first. So while the process is gone (or its start
    is still being recorded) and no exit code has come, wait for it — briefly. (A container
    that ended takes its execs' notices with it: nothing to wait for then.)"""
    from bosun.runtime.state import proc_start_time

    c = engine.containers.get(e["ContainerID"])
    deadline = time.monotonic() + EXIT_WAIT
    while (e.get("_started") and e["ExitCode"] is None and c is not None and c.running
           and not (e["Pid"] and proc_start_time(e["Pid"]) is not None)
           and time.monotonic() < deadline):
        e["_done"].wait(0.02)


def resize(engine, exec_id: str, h: int, w: int) -> None:
    from bosun.engine.monitor import ShimGone

    e = _get(engine, exec_id)
    c = engine.get(e["ContainerID"])
    try:
        reply = engine.monitor.request(c, {"op": "resize", "exec_id": exec_id, "h": h, "w": w})
    except ShimGone:
        raise Conflict(f"Container {c.id} is not running") from None
    if "error" in reply:
        raise Conflict(reply["error"])


def _process(engine, c, e: dict) -> dict:
    """The container's process, with the exec's command, env, user, cwd and tty."""
    with open(os.path.join(engine.bundle_dir(c.id), "config.json")) as f:
        base = json.load(f)["process"]
    pc = e["ProcessConfig"]
    env = list(base.get("env") or [])
    for item in e["_env"]:
        key = item.split("=", 1)[0]
        env = [v for v in env if v.split("=", 1)[0] != key] + [item]
    process = dict(base, args=[pc["entrypoint"], *pc["arguments"]], env=env,
                   terminal=pc["tty"])
    if pc["tty"] and not any(v.startswith("TERM=") for v in env):
        process["env"].append("TERM=xterm")
    if e["_cwd"]:
        process["cwd"] = e["_cwd"]
    if pc["user"]:
        from bosun.engine.createconfig import resolve_user

        uid, gid, gids = resolve_user(c.meta["rootfs"], pc["user"],
                                      c.doc["HostConfig"].get("GroupAdd") or [])
        process["user"] = {"uid": uid, "gid": gid, "additionalGids": gids}
    if pc["privileged"]:
        from bosun.engine.createconfig import held_capabilities

        caps = held_capabilities()  # what the daemon holds, as for --privileged
        process["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    size = e.get("_size")
    if pc["tty"] and isinstance(size, list) and len(size) == 2:
        process["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
    else:
        process.pop("consoleSize", None)
    return process
