"""logs: the json-file log, framed as Docker's multiplexed stream unless the tty is on."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from bosun.engine.errors import InvalidParameter, NotImplementedErr


def logs(engine, c, *, stdout: bool = False, stderr: bool = False, follow: bool = False,
         since: float = 0, until: float = 0, timestamps: bool = False, tail: int = -1,
         stop: threading.Event | None = None) -> tuple[Iterator[bytes], bool]:
    """(chunks, tty): raw chunks with a tty, else 8-byte-header frames."""
    from bosun.engine.logs import frame, read_logs

    if not (stdout or stderr):
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    path = c.doc.get("LogPath")
    driver = (c.doc["HostConfig"].get("LogConfig") or {}).get("Type")
    if not path:
        raise NotImplementedErr('configured logging driver does not support reading')
    tty = bool(c.doc["Config"].get("Tty"))

    def chunks() -> Iterator[bytes]:
        for stream, data in read_logs(path, stdout=stdout, stderr=stderr, since=since,
                                      until=until, tail=tail, timestamps=timestamps,
                                      follow=follow, running=lambda: c.running and not c.removed,
                                      stop=stop):
            yield data if tty else frame(stream, data)

    del driver
    return chunks(), tty
