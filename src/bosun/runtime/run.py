"""run: create + start, then (unless detached) wait and return the container's exit status."""

from __future__ import annotations

from bosun import kernel as K
from bosun.runtime.create import create
from bosun.runtime.delete import delete
from bosun.runtime.start import start


def run(root: str, cid: str, bundle: str, *, detach: bool = False, keep: bool = False,
        console_socket: str | None = None, pid_file: str | None = None,
        no_pivot: bool = False, preserve_fds: int = 0, no_new_keyring: bool = False,
        log=None) -> int:
    from bosun.runtime import spec

    config = spec.load(bundle)
    terminal = bool((config.get("process") or {}).get("terminal"))
    fwd = console = ours = None
    if not detach:
        from bosun.runtime.foreground import Forwarder

        # The init is our grandchild: as a subreaper we inherit it and can wait for it.
        K.LINUX.prctl(K.PR_SET_CHILD_SUBREAPER, 1)
        fwd = Forwarder()
        if terminal and not console_socket:
            from bosun.runtime.channel import Channel

            a, b = Channel.pair()
            ours, console = a.sock, b.sock
    c = create(root, cid, bundle, console_socket=console_socket, console=console,
               pid_file=pid_file, no_pivot=no_pivot, preserve_fds=preserve_fds,
               no_new_keyring=no_new_keyring, log=log,
               config=config)
    try:
        master = -1
        if ours is not None:
            from bosun.runtime.channel import recv_fd

            console.close()
            master = recv_fd(ours)
            ours.close()
            from bosun.runtime.foreground import copy_winsize

            copy_winsize(0, master)  # before start: the program may ask for it right away
        start(root, cid, log=log, container=c)
        if detach:
            return 0
        fwd.attach(c.pid, master)
        code = fwd.wait()
    except BaseException:
        delete(root, cid, force=True, log=log)
        raise
    if not keep:
        delete(root, cid, force=True, log=log)
    return code
