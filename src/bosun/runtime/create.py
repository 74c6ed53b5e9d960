"""create: build the container and leave its init blocked before exec (OCI `create`).

On any failure everything is undone: the init is killed, the cgroup and state dir removed.
"""

from __future__ import annotations

import os
import time

from bosun.runtime import cgroups, hooks, spec
from bosun.runtime.errors import RuntimeErr
from bosun.runtime.state import (FIFO, Container, atomic_write, now_rfc3339, proc_start_time,
                                 valid_id)


def create(root: str, cid: str, bundle: str, *, console_socket: str | None = None,
           console=None, pid_file: str | None = None, no_pivot: bool = False,
           preserve_fds: int = 0, no_new_keyring: bool = False, log=None,
           config: dict | None = None) -> Container:
    """Create container `cid` from `bundle`. `console` may be a connected socket (used by
    `run` to receive the pty master itself) instead of a `console_socket` path."""
    valid_id(cid)
    bundle = os.path.abspath(bundle)
    if config is None:
        config = spec.load(bundle)
    process = config.get("process")
    if process is None:
        raise RuntimeErr("config.json has no process: nothing to create")
    linux = config.get("linux") or {}
    if "mount" not in spec.namespace_types(linux):
        raise RuntimeErr("a mount namespace is required to set up the root filesystem")
    if process.get("terminal") and console is None and console_socket is None:
        raise RuntimeErr("process.terminal is set: a --console-socket is required")
    if not process.get("terminal") and console_socket:
        raise RuntimeErr("--console-socket given but process.terminal is false")

    os.makedirs(root, 0o711, exist_ok=True)
    seccomp = _seccomp(linux, root)
    cdir = Container.dir_for(root, cid)
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        raise RuntimeErr(f"container {cid!r} already exists") from None

    from bosun.runtime.channel import Channel, connect_console
    from bosun.runtime.init import InitContext, stage1

    cg_dirs: dict = {}
    stage1_pid = init_pid = 0
    parent = child = dirfd = None
    try:
        os.mkfifo(os.path.join(cdir, FIFO), 0o622)
        os.chmod(os.path.join(cdir, FIFO), 0o622)  # umask: a non-root init must open it
        dirfd = os.open(cdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        cg_dirs = _make_cgroups(linux, cid, log)
        # A record from the start: if this process dies mid-create (kill -9), `delete
        # --force` still finds the cgroups and the init to clean up.
        c = Container(root, cid, {"creating": True, "pid": 0, "bundle": bundle,
                                  "created": now_rfc3339(), "config": config,
                                  "cgroups": cg_dirs})
        c.save(durable=False)
        if cg_dirs and linux.get("resources"):
            from bosun.runtime import resources

            resources.apply(cg_dirs, linux["resources"])  # limits hold before any process
        if console_socket:
            console = connect_console(console_socket)
        extra_env = _listen_fds_env()
        if extra_env:
            preserve_fds = max(preserve_fds, int(extra_env["LISTEN_FDS"]))
        parent, child = Channel.pair()
        ctx = InitContext(config, child, state_dir_fd=dirfd, console=console,
                          no_pivot=no_pivot, preserve_fds=preserve_fds,
                          cgroup_dirs=cg_dirs, extra_env=extra_env,
                          keyring=None if no_new_keyring else cid, seccomp=seccomp)
        stage1_pid = os.fork()
        if stage1_pid == 0:
            parent.close()
            stage1(ctx)  # never returns
        child.close()
        if console is not None and console_socket:
            console.close()
        state = {"ociVersion": config["ociVersion"], "id": cid, "status": "creating",
                 "pid": 0, "bundle": bundle}
        if config.get("annotations"):
            state["annotations"] = config["annotations"]

        def on_userns() -> None:
            from bosun.runtime.nsenter import write_id_maps

            write_id_maps(stage1_pid, linux)
            parent.send("mapped")

        def on_pid(pid: int) -> None:
            nonlocal init_pid, stage1_pid
            init_pid = pid
            state["pid"] = init_pid
            c.record.update(pid=init_pid, pid_start=proc_start_time(init_pid))
            c.save(durable=False)
            if cgroups.UNIFIED in cg_dirs:
                # pid 1 waits for this before it unshares its cgroup namespace
                cgroups.move(init_pid, cg_dirs[cgroups.UNIFIED])
                parent.send("placed")
            _reap(stage1_pid)
            stage1_pid = 0

        def on_hooks() -> None:
            hooks.run(config, "", state, kinds=("prestart", "createRuntime"))
            parent.send("hooks-done", state=state)  # the init runs createContainer

        handshake(parent.recv, on_userns, on_pid, on_hooks)
        del c.record["creating"]
        c.save()
        if pid_file:
            atomic_write(os.path.abspath(pid_file), str(init_pid).encode(), 0o644)
        return c
    except BaseException as e:
        for pid in (init_pid, stage1_pid):
            if pid:
                _kill(pid)
        try:
            destroy(cg_dirs, cdir)
        except RuntimeErr:
            pass
        if isinstance(e, EOFError):
            raise RuntimeErr("container init exited during setup") from None
        raise
    finally:
        for obj in (parent, console if console_socket else None):
            if obj is not None:
                obj.close()
        if dirfd is not None:
            os.close(dirfd)


def handshake(recv, on_userns, on_pid, on_hooks) -> None:
    """Serve the init's setup messages until it is ready: "userns" (stage 1 needs its id
    maps), "pid" (stage 1 forked pid 1), "hooks" (pid 1 built the rootfs). pid 1 may outrun
    stage 1, which reports pid 1's pid only after forking it: under load stage 1 can lose
    the CPU for longer than pid 1 takes to build the rootfs. Hooks need the pid, and a
    "ready" taken without it would leave the record with none (`start` then sees a stopped
    container), so "hooks" waits for "pid" (pid 1 waits for "hooks-done": nothing else can
    come early)."""
    init_pid = 0
    deferred = None
    while True:
        if deferred is not None and init_pid:
            msg, deferred = deferred, None
        else:
            msg = recv("userns", "pid", "hooks", "ready")
        kind = msg["t"]
        if kind in ("hooks", "ready") and not init_pid:
            deferred = msg
        elif kind == "userns":
            on_userns()
        elif kind == "pid":
            init_pid = msg["pid"]
            on_pid(init_pid)
        elif kind == "hooks":
            on_hooks()
        else:
            return


def _seccomp(linux: dict, root: str):
    """linux.seccomp compiled (cached under the state root), or None."""
    if linux.get("seccomp") is None:
        return None
    from bosun.runtime import seccomp_filter
    from bosun.runtime.state import SECCOMP_CACHE

    return seccomp_filter.compile(linux["seccomp"], os.path.join(root, SECCOMP_CACHE))


def _make_cgroups(linux: dict, cid: str, log) -> dict:
    """Create the container's cgroup in each hierarchy; {} when this user may not (rootless)."""
    cg_dirs = cgroups.resolve(linux.get("cgroupsPath") or "", cid)
    if cgroups.UNIFIED in cg_dirs and len(cg_dirs) > 1:
        # Hybrid host: its v2 hierarchy holds few controllers (here only hugetlb), and moving
        # a process into it costs a ~20 ms RCU grace period: join it only when a limit needs it.
        from bosun.runtime import resources

        if not resources.needs_unified(cg_dirs, linux.get("resources")):
            del cg_dirs[cgroups.UNIFIED]
    try:
        cgroups.create(cg_dirs)
    except PermissionError:
        # Rootless, or a user namespace without write access to the hierarchy: run without a
        # cgroup, as runc does, unless limits were asked for.
        cgroups.remove_created(cg_dirs)
        wanted = [k for k, v in (linux.get("resources") or {}).items() if v and k != "devices"]
        if wanted:
            raise RuntimeErr(f"resource limits ({', '.join(sorted(wanted))}) need write "
                             "access to the cgroup hierarchy, which this user lacks") from None
        if log is not None:
            log.warning("no write access to the cgroup hierarchy: running without a cgroup")
        return {}
    return cg_dirs


def _listen_fds_env() -> dict:
    """systemd socket activation: pass LISTEN_FDS on, with the container's init as LISTEN_PID."""
    n = os.environ.get("LISTEN_FDS")
    if not n or not n.isdigit() or int(n) == 0:
        return {}
    return {"LISTEN_FDS": n, "LISTEN_PID": "1"}


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # not our child (reparented elsewhere): the kill is enough


def destroy(cg_dirs: dict, cdir: str) -> None:
    """Remove the cgroup (killing stragglers) and the state dir."""
    for attempt in range(200):
        left = cgroups.pids(cg_dirs)
        for pid in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        try:
            cgroups.remove(cg_dirs)
            break
        except RuntimeErr:
            if attempt == 199:
                raise
            time.sleep(0.005)
    remove_state_dir(cdir)


def remove_state_dir(cdir: str) -> None:
    """The state dir holds only flat files (state.json, exec.fifo, temp files)."""
    try:
        names = os.listdir(cdir)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(cdir, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(cdir)
    except FileNotFoundError:
        pass
