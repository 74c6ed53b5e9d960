"""exec: start another process inside a running container (runc exec)."""

from __future__ import annotations

import os

from bosun import kernel as K
from bosun.runtime import cgroups, nsenter, spec
from bosun.runtime.errors import RuntimeErr, StateError
from bosun.runtime.state import CREATED, RUNNING, Container, atomic_write


def exec_process(root: str, cid: str, process: dict, *, detach: bool = False,
                 console_socket: str | None = None, pid_file: str | None = None,
                 preserve_fds: int = 0, log=None) -> int:
    """Start `process` in container `cid`. Returns its exit status, or 0 when detached."""
    fwd = ours = console = None
    if not detach:
        from bosun.runtime.foreground import Forwarder, console_size

        K.LINUX.prctl(K.PR_SET_CHILD_SUBREAPER, 1)
        fwd = Forwarder()
    if process.get("terminal") and not console_socket:
        if detach:
            raise RuntimeErr("--tty with --detach needs a --console-socket")
        from bosun.runtime.channel import Channel

        a, b = Channel.pair()
        ours, console = a.sock, b.sock
        size = console_size(0)  # our terminal's size, set before the process starts
        if size:
            process = dict(process, consoleSize=size)
    try:
        exec_pid, master = spawn(root, cid, process, console_socket=console_socket,
                                 console=console, receive_console=ours,
                                 preserve_fds=preserve_fds)
    finally:
        if ours is not None:
            ours.close()
    if pid_file:
        atomic_write(os.path.abspath(pid_file), str(exec_pid).encode(), 0o644)
    if detach:
        return 0
    fwd.attach(exec_pid, master)
    return fwd.wait()


def spawn(root: str, cid: str, process: dict, *, console_socket: str | None = None,
          console=None, receive_console=None, preserve_fds: int = 0) -> tuple[int, int]:
    """Start `process` in container `cid` and return (its pid, pty master or -1) once it has
    exec'd. The process is re-parented to the nearest subreaper (the caller should be one to
    wait for it). With process.terminal the pty master goes to `console_socket` (a path) or
    `console` (a connected socket); pass the other end as `receive_console` to get it back."""
    c = Container.load(root, cid)
    status = c.status()
    if status not in (RUNNING, CREATED):
        raise StateError(f"cannot exec in a container that is {status}")
    spec.validate_process(process)
    linux = c.config.get("linux") or {}
    types = [ns["type"] for ns in linux.get("namespaces") or ()]
    if "mount" not in types:
        types.append("mount")
    ns_paths = nsenter.container_namespaces(c.pid, types)

    from bosun.runtime.channel import Channel, connect_console, recv_fd
    from bosun.runtime.init import InitContext, _fail, exec_process as do_exec, prepare_process
    from bosun.runtime.create import _seccomp
    from bosun.runtime.init import preload, setup_console
    from bosun.runtime.process import cloexec_from

    terminal = bool(process.get("terminal"))
    if terminal and console is None and not console_socket:
        raise RuntimeErr("process.terminal is set: a console socket is required")
    if console_socket:
        console = connect_console(console_socket)
    cg_dirs = c.record.get("cgroups") or {}
    config = dict(c.config, process=process)
    preload(config)  # nothing can be imported once inside the container's mount namespace
    parent, child = Channel.pair()
    ctx = InitContext(config, child, console=console, preserve_fds=preserve_fds,
                      seccomp=_seccomp(linux, root))
    pid = os.fork()
    if pid == 0:  # stage 1: join the container, fork into its pid namespace
        try:
            parent.close()
            K.LINUX.prctl(K.PR_SET_DUMPABLE, 0)  # CVE-2019-5736: hide our /proc/<pid>/exe
            cgroups.enter(cg_dirs)  # first: entering the cgroup namespace fixes its root
            nsenter.join(nsenter.open_paths(ns_paths))
            pid2 = os.fork()
            if pid2 == 0:  # stage 2: inside; becomes the process
                try:
                    cloexec_from(3 + preserve_fds)
                    if terminal:
                        setup_console(ctx)
                    exe, env, filt = prepare_process(ctx, process)
                    do_exec(exe, process, env, filt)
                except BaseException as e:  # noqa: BLE001
                    _fail(child, e)
            child.send("pid", pid=pid2)
            os._exit(0)
        except BaseException as e:  # noqa: BLE001
            _fail(child, e)
    child.close()
    exec_pid = 0
    try:
        exec_pid = parent.recv("pid")["pid"]
        os.waitpid(pid, 0)
        pid = 0
        try:
            parent.recv()  # an error, or EOF once execve closed the channel
        except EOFError:
            pass
        master = -1
        if receive_console is not None:
            console.close()
            console = None
            master = recv_fd(receive_console)
    except BaseException:
        for p in (exec_pid, pid):
            if p:
                try:
                    os.kill(p, 9)
                    os.waitpid(p, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        raise
    finally:
        parent.close()
        if console is not None and console_socket:
            console.close()
    return exec_pid, master
