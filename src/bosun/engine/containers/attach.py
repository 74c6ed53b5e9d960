"""attach and resize. An attached client's socket is handed to the shim, which streams the
container's output to it (and its input back) directly: the daemon is not in the data path
and may restart without cutting the stream."""

from __future__ import annotations

from bosun.engine.container import PAUSED, RESTARTING
from bosun.engine.errors import Conflict


def attach(engine, c, sock, *, stdin: bool = False, stdout: bool = False,
           stderr: bool = False, logs: bool = False, stream: bool = True,
           detach_keys: str | None = None, ready=None) -> None:
    """Take over `sock` (a hijacked connection). Clients that attach before start are queued
    and handed over when the shim exists, before the process is released. ready(), if
    given, is called once the stream is registered and before anything is written to it
    (the API sends its 101 there; the client may start the container as soon as it has it)."""
    def go_ahead() -> None:
        if ready is not None:
            ready()

    from bosun.engine.monitor import ShimGone

    tty = bool(c.doc["Config"].get("Tty"))
    if detach_keys:
        from bosun.engine.shim import parse_detach_keys

        try:
            parse_detach_keys(detach_keys)
        except ValueError as e:
            sock.close()
            raise Conflict(str(e)) from None
    if logs or not stream:
        go_ahead()
    if logs:
        _replay(engine, c, sock, stdout, stderr, tty)
    if not stream:
        sock.close()
        return
    opts = {"stdin": stdin and bool(c.doc["Config"].get("OpenStdin")), "stdout": stdout,
            "stderr": stderr, "detach_keys": detach_keys}
    with c.lock:
        if c.status == RESTARTING:
            sock.close()
            raise Conflict("cannot attach to a restarting container, wait until it is running")
        if c.status == PAUSED:
            sock.close()
            raise Conflict("cannot attach to a paused container, unpause it first")
        queued = not c.running
        if queued:
            c.pending_attach.append((sock, opts))
            go_ahead()  # under the lock: a start that follows finds the stream queued
    if not queued:
        go_ahead()  # running: the shim may write as soon as it has the socket
        try:
            engine.monitor.attach(c, sock, opts)
        except ShimGone:
            pass  # it exited meanwhile: the socket is closed, the client sees the end
    engine.emit(c, "attach")  # queued or not, as Docker (`docker run` attaches before start)


def _replay(engine, c, sock, stdout: bool, stderr: bool, tty: bool) -> None:
    from bosun.engine.logs import frame, read_logs

    path = c.doc.get("LogPath")
    if not path:
        return
    try:
        for stream, data in read_logs(path, stdout=stdout, stderr=stderr):
            sock.sendall(data if tty else frame(stream, data))
    except OSError:
        pass


def resize(engine, c, h: int, w: int) -> None:
    from bosun.engine.monitor import ShimGone

    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    try:
        reply = engine.monitor.request(c, {"op": "resize", "h": h, "w": w})
    except ShimGone:
        raise Conflict(f"Container {c.id} is not running") from None
    if "error" in reply and c.doc["Config"].get("Tty"):
        raise Conflict(reply["error"])
