"""What runs inside the container before the user's program: the forked side of create/exec.

create forks  stage 1: joins its v1 cgroups, joins/unshares namespaces (the user namespace
                       first, so that it owns the others), then forks
              stage 2: pid 1 of the new pid namespace. Builds the rootfs, pivots, unshares its
                       cgroup namespace once placed in every hierarchy, sets up the console and
                       the process, reports "ready", then blocks opening exec.fifo until
                       `start` opens the other end, and execs the user's program.
Both talk to the runtime over a Channel; any failure is sent as one error line, then _exit.
Nothing here returns: each stage ends in _exit or execve.
"""

from __future__ import annotations

import _signal  # not `signal`: its enums cost start-up time on every container start
import os

from bosun import kernel as K
from bosun.runtime import nsenter, process as P
from bosun.runtime.errors import RuntimeErr


class InitContext:
    """Everything the forked stages need, prepared by the runtime before fork."""

    def __init__(self, config: dict, channel, *, state_dir_fd: int = -1, console=None,
                 no_pivot: bool = False, preserve_fds: int = 0, cgroup_dirs=None,
                 extra_env: dict | None = None, keyring: str | None = None,
                 seccomp=None, kernel: K.Kernel = K.LINUX) -> None:
        self.config = config
        self.channel = channel
        self.state_dir_fd = state_dir_fd
        self.console = console          # a connected unix socket to hand the pty master to
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.cgroup_dirs = cgroup_dirs or {}
        self.extra_env = extra_env or {}
        self.keyring = keyring          # session keyring name to join; None: keep the caller's
        self.seccomp = seccomp          # seccomp_filter.Program compiled by the runtime, or None
        self.cgroupns_pending = False   # pid 1 still has to unshare its cgroup namespace
        self.placement_pending = False  # ...after the runtime reports it placed in cgroup v2
        self.k = kernel

    def recv(self, kind: str) -> dict:
        """The next message of `kind`; a "placed" arriving first is noted, not an error."""
        while True:
            msg = self.channel.recv(kind, "placed")
            if msg["t"] == kind:
                return msg
            self.placement_pending = False

    def enter_cgroupns(self) -> None:
        """Wait (once) until the runtime has put us in our v2 cgroup, then unshare the
        cgroup namespace, so that its root is the container's cgroup in every hierarchy.
        Called as late as possible (before anything forks), so the wait overlaps our work."""
        if self.placement_pending:
            self.channel.recv("placed")
            self.placement_pending = False
        if self.cgroupns_pending:
            self.k.unshare(K.CLONE_NEWCGROUP)
            self.cgroupns_pending = False


def _fail(ch, e: BaseException) -> None:
    if isinstance(e, RuntimeErr):
        msg = str(e)
    elif isinstance(e, OSError):
        msg = f"{e.strerror or e}" + (f": {e.filename}" if e.filename and
                                      str(e.filename) not in str(e.strerror) else "")
    else:
        msg = f"{type(e).__name__}: {e}"
    try:
        ch.send("error", msg=msg)
    except OSError:
        os.write(2, f"bosun-runtime init: {msg}\n".encode())
    os._exit(1)


def stage1(ctx: InitContext) -> None:
    """Child of the runtime: enter namespaces, fork pid 1, report its pid, exit."""
    ch = ctx.channel
    try:
        from bosun.runtime import cgroups

        # v1: join ourselves (cheap, see cgroups.enter). The v2 hierarchy's only way in takes
        # a global lock whose RCU grace period costs ~10 ms, so the runtime moves pid 1 there
        # while pid 1 builds the rootfs; pid 1 unshares its cgroup namespace once placed.
        cgroups.enter({c: d for c, d in ctx.cgroup_dirs.items() if c != cgroups.UNIFIED})
        linux = ctx.config.get("linux") or {}
        paths, new = {}, 0
        for ns in linux.get("namespaces") or ():
            if ns.get("path"):
                paths[ns["type"]] = ns["path"]
            else:
                new |= nsenter.FLAGS[ns["type"]]
        nsenter.join(nsenter.open_paths(paths), ctx.k)
        if new & K.CLONE_NEWUSER:
            ctx.k.unshare(K.CLONE_NEWUSER)
            ch.send("userns")
            ch.recv("mapped")
            _become_root()
        elif "user" in paths:
            _become_root()
        # Non-dumpable from here on (pid 1 inherits it): no container process can open our
        # /proc/<pid>/exe (CVE-2019-5736). Not earlier: an unprivileged runtime must still be
        # able to write our uid_map, which dumpable=0 makes root's.
        ctx.k.prctl(K.PR_SET_DUMPABLE, 0)
        ctx.k.unshare(new & ~(K.CLONE_NEWUSER | K.CLONE_NEWCGROUP))
        if new & K.CLONE_NEWNET:
            nsenter.loopback_up()
        if new & K.CLONE_NEWTIME and linux.get("timeOffsets"):
            nsenter.write_time_offsets(linux["timeOffsets"])
        ctx.cgroupns_pending = bool(new & K.CLONE_NEWCGROUP)
        ctx.placement_pending = cgroups.UNIFIED in ctx.cgroup_dirs
        pid = os.fork()
        if pid == 0:
            stage2(ctx, userns=bool(new & K.CLONE_NEWUSER) or "user" in paths,
                   cgroupns=bool(new & K.CLONE_NEWCGROUP))
        ch.send("pid", pid=pid)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - report, never unwind into the runtime's code
        _fail(ch, e)


def _become_root() -> None:
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        pass  # root of the namespace is not mapped: stay who we are


def stage2(ctx: InitContext, userns: bool, cgroupns: bool) -> None:
    """pid 1: build the container, wait for start, exec."""
    ch = ctx.channel
    config, k = ctx.config, ctx.k
    process = config["process"]
    try:
        os.umask(0)
        preload(config)
        P.cloexec_from(3 + ctx.preserve_fds)
        linux = config.get("linux") or {}
        from bosun.runtime.rootfs import Rootfs

        fs = Rootfs(config, k, userns=userns, cgroup_dirs=ctx.cgroup_dirs, cgroupns=cgroupns,
                    enter_cgroupns=ctx.enter_cgroupns)
        if ctx.keyring:
            try:
                k.join_session_keyring(ctx.keyring)  # don't share the host's session keyring
            except OSError as e:
                if e.errno != 38:  # ENOSYS: keyrings not built into this kernel
                    raise
        fs.prepare()
        ch.send("hooks")            # prestart / createRuntime run now in the runtime, then
        state = ctx.recv("hooks-done")["state"]  # createContainer here: container namespaces
        if (config.get("hooks") or {}).get("createContainer"):
            from bosun.runtime import hooks

            ctx.enter_cgroupns()    # hook processes must start inside the container's cgroups
            hooks.run(config, "createContainer", state)
        fs.pivot(ctx.no_pivot)
        if config.get("hostname"):
            k.sethostname(config["hostname"])
        if config.get("domainname"):
            k.setdomainname(config["domainname"])
        for key, value in (linux.get("sysctl") or {}).items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(value))
        if process.get("terminal"):
            setup_console(ctx, fs)
        # As runc: sysctls (e.g. docker's net.ipv4.ip_unprivileged_port_start) and the console
        # go in before readonlyPaths make /proc/sys (and readonly roots make /) read-only.
        fs.finalize()
        ctx.enter_cgroupns()
        exe, env, filt = prepare_process(ctx, process)
        ch.send("ready")
        fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=ctx.state_dir_fd)
    except BaseException as e:  # noqa: BLE001
        _fail(ch, e)
    # Blocked in the open above until `start`; the runtime has gone by now.
    try:
        os.close(ctx.state_dir_fd)
        ch.close()
        if (config.get("hooks") or {}).get("startContainer"):
            from bosun.runtime import hooks

            hooks.run(config, "startContainer", dict(state, status="created", pid=1))
        os.write(fifo, b"0")  # only now: `start` then runs poststart (after startContainer)
        os.close(fifo)
        exec_process(exe, process, env, filt)
    except BaseException as e:  # noqa: BLE001
        os.write(2, f"bosun-runtime: {getattr(e, 'strerror', None) or e}\n".encode())
        os._exit(127)


def preload(config: dict) -> None:
    """Import now what later steps need: after pivot_root the host's Python is out of reach."""
    import fcntl  # noqa: F401  (cloexec_from, console)

    process = config.get("process") or {}
    if process.get("rlimits"):
        import resource  # noqa: F401
    if process.get("terminal"):
        import struct  # noqa: F401

        import bosun.runtime.channel  # noqa: F401
    if (config.get("hooks") or {}).get("startContainer"):
        import bosun.runtime.hooks  # noqa: F401
    if (config.get("linux") or {}).get("seccomp") is not None:
        import bosun.runtime.seccomp_filter  # noqa: F401  (load; the program is compiled)
    import bosun.runtime.rootfs  # noqa: F401
    import bosun.runtime.cgroups  # noqa: F401


def setup_console(ctx: InitContext, fs=None) -> None:
    """Open a pty in the container's devpts, hand the master over, make the slave our tty."""
    import fcntl
    import struct

    if ctx.console is None:
        raise RuntimeErr("process.terminal is set but no console socket was given")
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, K.TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, K.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    size = ctx.config["process"].get("consoleSize")
    if size:
        fcntl.ioctl(slave, K.TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0),
                                                     size.get("width", 0), 0, 0))
    if fs is not None:
        fs.mount_console(f"/proc/self/fd/{slave}")
    from bosun.runtime.channel import send_fd

    send_fd(ctx.console, master)
    os.close(master)
    ctx.console.close()
    os.setsid()
    fcntl.ioctl(slave, K.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def prepare_process(ctx: InitContext, process: dict) -> tuple[str, dict, object]:
    """Everything up to execve that can fail, so failures reach `create`, not `start`.
    Returns the executable, the environment and a seccomp filter still to load (or None)."""
    filt = ctx.seccomp
    if filt is not None and not process.get("noNewPrivileges"):
        from bosun.runtime import seccomp_filter

        # Without no_new_privs, loading needs CAP_SYS_ADMIN: do it before dropping caps.
        seccomp_filter.load(filt, ctx.k)
        filt = None
    P.set_rlimits(process)
    P.set_oom_score_adj(process)
    P.set_scheduling(ctx.config, ctx.k)
    P.set_security_labels(process)
    env = P.container_env(process, ctx.extra_env)
    user = process.get("user") or {}
    if "HOME" not in env:
        env["HOME"] = P.home_for(user.get("uid", 0))
    P.enter_cwd(process.get("cwd") or "/")
    P.set_user_and_caps(process, ctx.k)
    if process.get("noNewPrivileges"):
        ctx.k.prctl(K.PR_SET_NO_NEW_PRIVS, 1)
    os.umask(user["umask"] if user.get("umask") is not None else 0o022)
    exe = P.lookup_executable(process["args"][0], env)
    return exe, env, filt


def exec_process(exe: str, process: dict, env: dict, filt=None) -> None:
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal would survive execve.
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    if filt is not None:
        # As close to execve as we can, so a profile need allow few syscalls of ours.
        from bosun.runtime.seccomp_filter import load

        load(filt)
    os.execve(exe, process["args"], env)
