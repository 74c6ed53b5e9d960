"""Docker's json-file log driver: the writer a container's monitor runs, the reader behind
`GET /containers/{id}/logs`, and the stream framing and time parsing that API needs.

A log file holds one JSON object a line, byte for byte as Docker writes them:

    {"log":"hello\\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}

`log` is the output with its newline; a line longer than 16 KiB is cut into 16 KiB pieces
without one (Docker's partial messages). Bytes that are not UTF-8 become U+FFFD, one per
byte, as Go's encoder does. Rotation (max-size, max-file) renames `path` to `path.1`,
`path.1` to `path.2`, … like Docker's log-opts.

The writer runs in a small per-container process: this module imports only `os` and `time`
at load (`json` and `typing` pull in `re` and `enum`; the reader imports `json` when used).
"""

from __future__ import annotations

import os
import time

from bosun.engine.errors import InvalidParameter

TYPE_CHECKING = False  # typing itself imports re: only type checkers read the block below
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator

STDOUT = 1
STDERR = 2
_STREAM_IDS = {"stdout": STDOUT, "stderr": STDERR}

PARTIAL_SIZE = 16 * 1024  # Docker's copier cuts lines at its 16 KiB buffer
_NS = 1_000_000_000
_CHUNK = 64 * 1024


# -- timestamps ------------------------------------------------------------------------------

def _utc_seconds(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // _NS))


def format_time(ns: int) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped): what json-file
    writes in "time"."""
    frac = ns % _NS
    text = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{_utc_seconds(ns)}{text}Z"


def format_time_fixed(ns: int) -> str:
    """Docker's RFC3339NanoFixed (always nine digits): the prefix `docker logs -t` shows."""
    return f"{_utc_seconds(ns)}.{ns % _NS:09d}Z"


def parse_time(value: str, now: float | None = None) -> float:
    """gosyntax.parse_timestamp (moby's GetTimestamp), InvalidParameter for bad input."""
    from bosun.gosyntax import parse_timestamp

    try:
        return parse_timestamp(value, now)
    except ValueError as e:
        raise InvalidParameter(str(e)) from None


# -- writing ---------------------------------------------------------------------------------

def _escape_table() -> dict[int, str]:
    """What Go's json-file encoder escapes: control characters (\\n and \\r by name, the rest
    as \\u00XX), quote, backslash, <, >, &, U+2028/2029. Lone surrogates stand for the bytes
    that were not UTF-8 (surrogateescape) and become \\ufffd, one per byte, as in Go."""
    table = {c: f"\\u{c:04x}" for c in range(0x20)}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord('"'): '\\"', ord("\\"): "\\\\"})
    table.update({ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})
    table.update({c: "\\ufffd" for c in range(0xDC80, 0xDD00)})
    return table


_ESCAPES = _escape_table()


def encode_entry(stream: str, data: bytes, ns: int) -> bytes:
    """One json-file line (with its trailing newline) for `data` written to `stream`."""
    text = data.decode("utf-8", "surrogateescape").translate(_ESCAPES)
    return f'{{"log":"{text}","stream":"{stream}","time":"{format_time(ns)}"}}\n'.encode()


class JsonLogWriter:
    """Appends a container's output to `path` as Docker's json-file driver does.

    `write(stream, data)` takes raw output of "stdout" or "stderr"; complete lines are
    written at once, a trailing partial line waits (per stream) for more data, a flush(),
    close(), or 16 KiB. max_size (bytes, -1 = unlimited) and max_file (≥ 1) are Docker's
    max-size/max-file: the file is rotated before a write once it has reached max_size.
    Safe to call from several threads."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1):
        if max_file < 1:
            raise InvalidParameter("max-file cannot be less than 1")
        self.path = path
        self.max_size = max_size
        self.max_file = max_file
        self._pending: dict[str, bytes] = {}
        import _thread  # built in: a lock without importing threading

        self._lock = _thread.allocate_lock()
        self._fd = self._open(os.O_APPEND)
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    def _open(self, extra: int) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | extra, 0o640)

    def write(self, stream: str, data: bytes) -> None:
        if stream not in _STREAM_IDS:
            raise ValueError(f"unknown stream {stream!r}")
        if not data:
            return
        with self._lock:
            pieces = self._split(stream, self._pending.pop(stream, b"") + data)
            self._emit(stream, pieces)

    def _split(self, stream: str, buf: bytes) -> list[bytes]:
        """Complete lines (each keeping its "\\n") and 16 KiB partials; keeps the rest."""
        pieces = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            stop = len(buf) if end < 0 else end
            while stop - start >= PARTIAL_SIZE:
                pieces.append(buf[start:start + PARTIAL_SIZE])
                start += PARTIAL_SIZE
            if end < 0:
                break
            pieces.append(buf[start:end + 1])
            start = end + 1
        if start < len(buf):
            self._pending[stream] = buf[start:]
        return pieces

    def _emit(self, stream: str, pieces: list[bytes]) -> None:
        batch: list[bytes] = []
        size = 0
        for piece in pieces:
            line = encode_entry(stream, piece, time.time_ns())
            if 0 < self.max_size <= self._size + size:
                self._write(b"".join(batch))
                batch, size = [], 0
                self._rotate()
            batch.append(line)
            size += len(line)
        self._write(b"".join(batch))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]

    def _rotate(self) -> None:
        """path.(N-2) → path.(N-1) … path → path.1, then a new empty path (Docker's order)."""
        os.close(self._fd)
        self._fd = -1
        if self.max_file < 2:
            _unlink(self.path)
        else:
            _unlink(f"{self.path}.{self.max_file - 1}")
            for i in range(self.max_file - 1, 1, -1):
                _rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
            _rename(self.path, f"{self.path}.1")
        self._fd = self._open(os.O_TRUNC)
        self._size = 0

    def flush(self) -> None:
        """Write the partial lines waiting for their end, as they are (no newline added)."""
        with self._lock:
            for stream in list(self._pending):
                self._emit(stream, [self._pending.pop(stream)])

    def close(self) -> None:
        if self._fd < 0:
            return
        self.flush()
        with self._lock:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonLogWriter:  # noqa: PYI034 (typing.Self would import re)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rename(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        pass


# -- reading ---------------------------------------------------------------------------------

def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed-stream frame: stream id, three zero bytes, big-endian length."""
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


def _rotated_paths(path: str) -> list[str]:
    """path.1, path.2, … that exist, newest first."""
    paths = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        paths.append(f"{path}.{i}")
        i += 1
    return paths


def _tail_offset(fd: int, size: int, lines: int) -> tuple[int, int]:
    """Where the last `lines` complete lines of the first `size` bytes start, and how many
    there are (fewer when the file is shorter)."""
    found = 0
    pos = size
    while pos > 0:
        start = max(0, pos - _CHUNK)
        block = os.pread(fd, pos - start, start)
        end = len(block)
        while True:
            i = block.rfind(b"\n", 0, end)
            if i < 0:
                break
            if found == lines:
                return start + i + 1, found
            found += 1
            end = i
        pos = start
    return 0, found


def _decoder() -> Callable[[bytes], tuple[int, int, bytes] | None]:
    import json  # here, not at module load: the writer's process never reads

    from bosun.gosyntax import parse_rfc3339_ns

    def decode(line: bytes) -> tuple[int, int, bytes] | None:
        """A json-file line → (unix ns, stream id, payload); None when it is not one."""
        try:
            entry = json.loads(line)
            stream = _STREAM_IDS[entry["stream"]]
            ns = parse_rfc3339_ns(entry["time"])
            text = entry.get("log", "")
            if not isinstance(text, str):
                return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        try:
            payload = text.encode()
        except UnicodeEncodeError:  # a "\ud800" escape: Go decodes it as U+FFFD
            payload = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch
                              for ch in text).encode()
        return ns, stream, payload

    return decode


def read_logs(path: str, *, stdout: bool = True, stderr: bool = True, since: float = 0,
              until: float = 0, tail: int = -1, timestamps: bool = False, follow: bool = False,
              running: Callable[[], bool] = lambda: False,
              stop: threading.Event | None = None,
              poll: float = 0.05) -> Iterator[tuple[int, bytes]]:
    """(stream id 1|2, payload) for each entry of a json-file log and its rotated files, as
    `docker logs` shows them. `tail` (≥ 0) keeps the last N lines of all the files, counted
    before the stream and time filters, as Docker does. `since` (inclusive) and `until` are
    unix times; reading ends at the first entry after `until`. With `follow`, new entries
    are read as they come (across rotations) until `running()` is false and the file is
    drained, `stop` is set, or `until` passes. Lines that are not valid entries are skipped."""
    decode = _decoder()
    since_ns = int(since * _NS) if since > 0 else 0
    until_ns = int(until * _NS) if until > 0 else 0
    wanted = {STDOUT: stdout, STDERR: stderr}

    def emit(lines: list[bytes]) -> Iterator[tuple[int, bytes]]:
        """Yields what passes the filters; returns True once an entry is past `until`."""
        for line in lines:
            entry = decode(line)
            if entry is None:
                continue
            ns, stream, payload = entry
            if until_ns and ns > until_ns:
                return True
            if ns < since_ns or not wanted[stream]:
                continue
            if timestamps:
                payload = f"{format_time_fixed(ns)} ".encode() + payload
            yield stream, payload
        return False

    fd = _open_read(path)
    try:
        size = os.fstat(fd).st_size if fd >= 0 else 0
        plan = _read_plan(path, fd, size, tail)
        for name, offset in plan[:-1]:  # rotated files, oldest first
            for lines in _file_lines(name, offset):
                if (yield from emit(lines)):
                    return
        start = plan[-1][1] if plan else size
        rest = b""
        if fd >= 0:
            os.lseek(fd, start, os.SEEK_SET)
            lines, rest = _read_lines(fd, b"", limit=size - start)
            if (yield from emit(lines)):
                return
        if not follow or (until_ns and time.time_ns() > until_ns):
            return
        owned, fd = fd, -1  # _follow closes it from here on
        yield from _follow(path, owned, rest, emit, running, stop, poll, until_ns)
    finally:
        if fd >= 0:
            os.close(fd)


def _open_read(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1


def _read_plan(path: str, fd: int, size: int, tail: int) -> list[tuple[str, int]]:
    """[(file, offset to start reading)] oldest first; the last item is `path` itself."""
    rotated = _rotated_paths(path)
    if tail == 0:
        return [(path, size)]
    if tail < 0:
        return [(name, 0) for name in reversed(rotated)] + [(path, 0)]
    plan = []
    remaining = tail
    offset, found = _tail_offset(fd, size, remaining) if fd >= 0 else (0, 0)
    plan.append((path, offset))
    remaining -= found
    for name in rotated:
        if remaining <= 0:
            break
        rfd = _open_read(name)
        if rfd < 0:
            continue
        try:
            offset, found = _tail_offset(rfd, os.fstat(rfd).st_size, remaining)
        finally:
            os.close(rfd)
        plan.append((name, offset))
        remaining -= found
    return plan[::-1]


def _read_lines(fd: int, rest: bytes, limit: int | None = None) -> tuple[list[bytes], bytes]:
    """Complete lines readable from fd now (at most `limit` bytes), and what follows them."""
    chunks = [rest]
    total = 0
    while limit is None or total < limit:
        want = _CHUNK if limit is None else min(_CHUNK, limit - total)
        chunk = os.read(fd, want)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    data = b"".join(chunks)
    cut = data.rfind(b"\n") + 1
    return data[:cut].splitlines(), data[cut:]


def _file_lines(name: str, offset: int) -> Iterator[list[bytes]]:
    """The complete lines of a rotated file from offset, a chunk at a time."""
    fd = _open_read(name)
    if fd < 0:
        return
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        rest = b""
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                return  # a partial last line of a finished file is not an entry
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            yield data[:cut].splitlines()
    finally:
        os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True  # between unlink and re-create (max-file 1): not rotated yet
    info = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (info.st_dev, info.st_ino)


def _follow(path: str, fd: int, rest: bytes, emit, running: Callable[[], bool],
            stop: threading.Event | None, poll: float, until_ns: int):
    """Keep reading the live file; after a rotation drain the old one, then go on with the
    new `path`. A file rotated twice between two polls is missed."""
    try:
        while True:
            if stop is not None and stop.is_set():
                return
            alive = running()  # asked before reading, so what follows a False is drained
            if fd < 0:
                fd = _open_read(path)
            if fd >= 0:
                lines, rest = _read_lines(fd, rest)
                if lines:
                    if (yield from emit(lines)):
                        return
                    continue
                if not _same_file(fd, path):
                    lines, _ = _read_lines(fd, rest)  # whatever came in before the rename
                    if (yield from emit(lines)):
                        return
                    os.close(fd)
                    fd, rest = _open_read(path), b""
                    continue
            if until_ns and time.time_ns() > until_ns:
                return
            if not alive:
                return
            if stop is not None:
                stop.wait(poll)
            else:
                time.sleep(poll)
    finally:
        if fd >= 0:
            os.close(fd)
