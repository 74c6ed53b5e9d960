"""start: mount the rootfs, write the bundle, fork a shim that creates the container, hand it
the clients that attached before start, then release the container's process.

A failed start leaves the container as it was (created, or exited) with the error recorded,
and nothing behind: no runtime state, shim, cgroup or bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import socket

from bosun.engine.container import PAUSED, RESTARTING, RUNNING
from bosun.engine.errors import (
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    NotModified,
    SystemErr,
)

INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/catatonit", "/usr/libexec/catatonit/catatonit",
                   "/usr/bin/docker-init", "/usr/bin/tini")


def find_init() -> str | None:
    """A static init on the host for --init (Debian's tini-static, else catatonit)."""
    for path in INIT_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def start(engine, c, *, restarting: bool = False) -> None:
    with c.lock:
        if c.removed:
            raise Conflict(f"No such container: {c.id}")
        status = c.status
        if status == PAUSED:
            raise Conflict("cannot start a paused container, try unpause instead")
        if status == RUNNING or (status == RESTARTING and not restarting):
            raise NotModified("container already started")
        if status == "removing":
            raise Conflict("container is marked for removal and cannot be started")
        if c.restart_timer is not None and not restarting:
            c.restart_timer.cancel()
            c.restart_timer = None
        try:
            shim_pid, pid = _launch(engine, c)
        except Exception as e:
            from bosun.engine import netattach, volumes

            netattach.teardown(engine, c)  # whatever step failed, no endpoint is left
            volumes.release(engine, c)  # nor a volume mount held
            msg = str(e) or type(e).__name__
            code = 127 if ("executable file not found" in msg or "no such file" in msg.lower()) \
                else 126 if "permission denied" in msg.lower() else 128
            c.set_start_error(msg, code)
            engine.save(c)
            for sock, _ in c.pending_attach:
                sock.close()  # the attached client sees the end of its stream
            c.pending_attach = []
            if c.doc["HostConfig"].get("AutoRemove"):
                from bosun.engine.containers.remove import remove

                # as Docker: a --rm container that cannot start goes, its anonymous volumes too
                remove(engine, c, force=True, volumes=True)
            if isinstance(e, (InvalidParameter, Conflict, NotFound, Forbidden,
                              netattach.NetworkSetupFailed)):
                raise
            if code in (126, 127):
                raise InvalidParameter(_oci_error(msg)) from None
            raise SystemErr(_oci_error(msg)) from None
        c.meta["manual_stop"] = False
        c.meta["shim_pid"] = shim_pid
        if not restarting:  # a start by the user (or at daemon start): a fresh restart policy
            c.doc["RestartCount"] = 0
            c.meta.pop("backoff", None)
        c.set_running(pid)
        engine.monitor.health.start(c, fresh=True)
        engine.save(c)
    engine.emit(c, "start")


def _oci_error(msg: str) -> str:
    return ("failed to create task for container: failed to create shim task: OCI runtime "
            f"create failed: {msg}: unknown")


def _launch(engine, c) -> tuple[int, int]:
    rootfs = engine.images.snapshots.mount_container(c.id, c.meta["chain"])
    c.meta["rootfs"] = rootfs
    from bosun.engine import etcfiles, netattach, netdns

    netns = netattach.setup(engine, c)
    c.meta["dns"] = netdns.wants_resolver(c)
    if netns:
        netdns.register(engine, c)  # listening before the process can ask
    gateway = None
    if _wants_host_gateway(c):
        gateway = netattach.host_gateway(engine)
        if not gateway:
            raise InvalidParameter("unable to derive the IP value for host-gateway")
    etcfiles.write_all(engine.container_dir(c.id), c.doc["Config"].get("Hostname") or "",
                       c.doc["HostConfig"], netdns.etc_hosts_lines(engine, c),
                       c.meta["dns"] or netdns.shares_resolver(engine, c), gateway)
    from bosun.engine import volumes

    held = volumes.acquire(engine, c, rootfs)
    try:
        return _create_and_start(engine, c, _spec(engine, c, rootfs, netns, held.mounts))
    finally:
        held.close()  # the runtime has bind-mounted the subpaths (or failed)


def _wants_host_gateway(c) -> bool:
    from bosun.engine.etcfiles import HOST_GATEWAY

    return any(e.endswith((":" + HOST_GATEWAY, "=" + HOST_GATEWAY))
               for e in c.doc["HostConfig"].get("ExtraHosts") or ())


def _create_and_start(engine, c, spec: dict) -> tuple[int, int]:
    from bosun.runtime.state import atomic_write

    bdir = engine.bundle_dir(c.id)
    shutil.rmtree(bdir, ignore_errors=True)
    os.makedirs(bdir, 0o700)
    atomic_write(os.path.join(bdir, "config.json"), json.dumps(spec).encode(), 0o600,
                 durable=False)  # /run is rebuilt at boot: nothing to survive
    hc = c.doc["HostConfig"]
    lc = hc.get("LogConfig") or {}
    cfg = c.doc["Config"]
    args = {"id": c.id, "root": engine.runtime_root, "dir": bdir, "bundle": bdir,
            "tty": bool(cfg.get("Tty")), "stdin": bool(cfg.get("OpenStdin")),
            "stdin_once": bool(cfg.get("StdinOnce")),
            "log_path": c.doc.get("LogPath") or None,
            "log_opts": _log_opts(lc.get("Config") or {})}
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        try:
            shim_pid = engine.forkserver.spawn_shim(args, theirs.fileno())
        finally:
            theirs.close()
        ours.settimeout(120)
        from bosun.engine.wire import recv as _recv

        try:
            reply, _ = _recv(ours)
        except (OSError, ValueError) as e:
            reply = {"error": f"shim: {e}"}
    finally:
        ours.close()
    if not reply or "error" in reply or "pid" not in reply:
        _cleanup(engine, c)
        raise SystemErr((reply or {}).get("error") or "shim exited during create")
    try:
        engine.monitor.watch(c)  # subscribe before the process runs: no exit is missed
        pending, c.pending_attach = c.pending_attach, []
        for sock, opts in pending:
            engine.monitor.attach(c, sock, opts)
        from bosun.runtime.start import start as runtime_start

        runtime_start(engine.runtime_root, c.id)
    except Exception:
        from bosun.runtime.delete import delete

        try:
            delete(engine.runtime_root, c.id, force=True)
        except Exception:  # noqa: BLE001
            pass
        raise
    return shim_pid, reply["pid"]


def _cleanup(engine, c) -> None:
    from bosun.runtime.delete import delete

    try:
        delete(engine.runtime_root, c.id, force=True)
    except Exception:  # noqa: BLE001
        pass
    shutil.rmtree(engine.bundle_dir(c.id), ignore_errors=True)


def _log_opts(cfg: dict) -> dict:
    from bosun.engine.units import parse_size

    out = {}
    if cfg.get("max-size"):
        out["max_size"] = parse_size(cfg["max-size"])
    if cfg.get("max-file"):
        out["max_file"] = int(cfg["max-file"])
    return out


def _spec(engine, c, rootfs: str, netns_path: str | None, volume_mounts: list[dict]) -> dict:
    from bosun.engine.createconfig import held_capabilities, resolve_user
    from bosun.engine.ocispec import build_spec

    hc = c.doc["HostConfig"]
    cfg = c.doc["Config"]
    user = resolve_user(rootfs, cfg.get("User") or "", hc.get("GroupAdd") or [])
    init_path = None
    if hc.get("Init"):
        init_path = find_init()
        if init_path is None:
            raise SystemErr("--init: no init binary (tini-static or catatonit) on the host")
    ns_paths = {}
    for key, kind in (("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts"),
                      ("NetworkMode", "network")):
        mode = hc.get(key) or ""
        if mode.startswith("container:"):
            other = engine.get(mode.split(":", 1)[1])
            if not other.running or not other.state.get("Pid"):
                raise Conflict(f"cannot join the {kind} namespace of a non running container: "
                               f"container {other.id} is not running")
            ns_paths[kind] = f"/proc/{other.state['Pid']}/ns/{'net' if kind == 'network' else kind}"
    return build_spec(c.doc, rootfs=rootfs, user=user,
                      hostname_path=c.doc.get("HostnamePath") or None,
                      hosts_path=c.doc.get("HostsPath") or None,
                      resolv_path=c.doc.get("ResolvConfPath") or None,
                      init_path=init_path, cgroup_parent=engine.config.cgroup_parent,
                      cgroups_v2=os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
                      netns_path=netns_path, ns_paths=ns_paths,
                      volume_mounts=volume_mounts, host_caps=held_capabilities())
