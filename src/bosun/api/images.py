"""Image endpoints: thin handlers over the image store and bosun.engine.images.

Long operations (pull, push, save) run on a worker thread and stream what it reports: Docker's
JSON progress messages, one per line ("\\r\\n" ended, as Docker's stream formatter writes
them), or the tar of a save. An error before anything was sent is an ordinary error response
with its status code; after, it is the stream's last message, {"errorDetail": …, "error": …}.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bosun.api.http import MAX_API_VERSION, Response, Stream
from bosun.engine import images as ops
from bosun.engine.errors import InvalidParameter, NotImplementedErr
from bosun.gosyntax import human_size
from bosun.registry.auth import Credentials

_SAVE_CHUNK = 256 << 10  # a save's tar goes out in pieces of about this size
_IDLE = 1.0  # seconds between two looks at whether the client of a quiet stream is gone
_NEWLINE = b"\r\n"


# -- X-Registry-Auth --------------------------------------------------------------------------

def decode_registry_auth(value: str | None) -> Credentials | None:
    """The credentials in an X-Registry-Auth header: base64url JSON {username, password,
    serveraddress} or {identitytoken} (or docker config's {auth: base64(user:password)}).
    None when there is no header. Like Docker, a header that does not decode is taken as
    no credentials (anonymous), not refused."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(
            text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError):
        return Credentials()
    return credentials_from(doc)


def credentials_from(doc: Any) -> Credentials:
    """An AuthConfig object (an X-Registry-Auth header's, or POST /auth's body)."""
    if not isinstance(doc, dict):
        return Credentials()

    def text(key: str) -> str:
        v = doc.get(key)
        return v if isinstance(v, str) else ""

    username, password = text("username"), text("password")
    if not username and text("auth"):
        try:
            username, _, password = base64.b64decode(text("auth")).decode().partition(":")
        except (binascii.Error, ValueError):
            pass
    return Credentials(username, password, text("identitytoken"))


# -- progress messages ------------------------------------------------------------------------

def progress_bar(current: int, total: int) -> str:
    """jsonmessage's JSONProgress.String() as the daemon renders it (200 columns):
    "[=====>      ]  1.2MB/3.4MB", or the byte count alone without a total."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    percent = min(int(current / total * 100) // 2, 50)
    bar = "[" + "=" * percent + ">" + " " * (50 - percent) + "] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def docker_message(event: dict) -> dict:
    """An image-layer progress event as Docker's JSONMessage: fields in Docker's order,
    the rendered "progress" next to progressDetail, no progressDetail on plain statuses
    ("Pulling from …" is one, though it names the tag as its id)."""
    out: dict[str, Any] = {}
    for key in ("stream", "status"):
        if key in event:
            out[key] = event[key]
    detail = event.get("progressDetail")
    plain = detail == {} and str(event.get("status", "")).startswith("Pulling from ")
    if detail is not None and not plain:
        out["progressDetail"] = detail
        bar = progress_bar(int(detail.get("current") or 0), int(detail.get("total") or 0))
        if bar:
            out["progress"] = bar
    for key, value in event.items():
        if key not in out and key != "progressDetail":
            out[key] = value
    return out


def error_message(message: str) -> dict:
    """What Docker's stream formatter writes for an error once a stream has started."""
    return {"errorDetail": {"message": message}, "error": message}


def json_line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + _NEWLINE


# -- work on a thread, streamed ---------------------------------------------------------------

class _Cancelled(Exception):
    """The client went away: the work stops at its next report."""


_END = object()


class _Job:
    """Runs `work(emit)` on a thread; the request's thread takes what it emits with get().
    The queue is bounded, so a slow client slows the work down; cancel() makes the next
    emit() raise _Cancelled."""

    def __init__(self, work: Callable[[Callable[[Any], None]], None], size: int = 64):
        self._queue: queue.Queue = queue.Queue(size)
        self._cancelled = threading.Event()
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(work,), name="bosun-api-image",
                         daemon=True).start()

    def emit(self, item: Any) -> None:
        while True:
            if self._cancelled.is_set():
                raise _Cancelled()
            try:
                self._queue.put(item, timeout=_IDLE)
                return
            except queue.Full:
                continue

    def _run(self, work) -> None:
        try:
            work(self.emit)
        except BaseException as e:  # noqa: BLE001 - handed to the request's thread
            if not self._cancelled.is_set():
                self.error = e
        finally:
            try:
                self.emit(_END)
            except _Cancelled:
                pass

    def get(self, timeout: float | None = None) -> Any:
        """The next item, _END when the work is over, None if nothing came in `timeout`."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self) -> None:
        self._cancelled.set()
        while True:  # unblock an emit() waiting for room
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class _Output:
    """A job's response body: an iterator whose close() also stops the job (a generator
    closed before its first next() would run no clean-up)."""

    def __init__(self, job: _Job, chunks: Iterator[bytes]):
        self._job, self._chunks = job, chunks

    def __iter__(self) -> _Output:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            self._job.cancel()


def _started(job: _Job, hold: int) -> tuple[list, bool]:
    """Wait for the first `hold` + 1 items (or the end): an error before that is raised,
    to be answered as an ordinary error. Returns (items, finished)."""
    items: list = []
    while len(items) <= hold:
        item = job.get()
        if item is _END:
            if job.error is not None:
                mapped = ops.image_error(job.error)
                if mapped is job.error:
                    raise mapped
                raise mapped from job.error
            return items, True
        items.append(item)
    return items, False


def _streamed(job: _Job, items: list, finished: bool, encode: Callable[[Any], bytes],
              errors_inline: bool = True) -> Iterator[bytes]:
    """The items already taken, then the rest as they come; an error last, as a message."""
    try:
        for item in items:
            yield encode(item)
        while not finished:
            item = job.get(_IDLE)
            if item is None:
                yield b""  # nothing to say: lets the server notice a client gone
            elif item is _END:
                finished = True
            else:
                yield encode(item)
        if job.error is not None:
            if not errors_inline:
                raise job.error  # a tar cannot carry a message: cut it short
            yield json_line(error_message(str(ops.image_error(job.error))))
    finally:
        job.cancel()


def progress_stream(work: Callable[[Callable[[dict], None]], None], hold: int = 0) -> Stream:
    """A JSON progress stream of what `work(progress)` reports. The first `hold` messages
    wait for one more (a pull's "Pulling from" waits for the registry's answer), so that
    early errors keep their status code."""
    job = _Job(lambda emit: work(lambda event: emit(docker_message(event))))
    items, finished = _started(job, hold)
    return Stream(_Output(job, _streamed(job, items, finished, json_line)))


class _QueueWriter:
    """A file for archive.save: writes coalesced into pieces, handed to emit()."""

    def __init__(self, emit: Callable[[Any], None]):
        self._emit = emit
        self._buf = bytearray()

    def write(self, data) -> int:
        self._buf += data
        if len(self._buf) >= _SAVE_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._emit(bytes(self._buf))
            self._buf = bytearray()


class _BodyReader(io.RawIOBase):
    """A request body's chunks as a readable file (load, import)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def body_file(req) -> io.BufferedReader:
    return io.BufferedReader(_BodyReader(req.stream()), 1 << 20)


# -- handlers ---------------------------------------------------------------------------------

def _image_errors(handler: Callable) -> Callable:
    """Image-layer errors as engine errors; a registry's refusal as 401."""
    @functools.wraps(handler)
    def wrapped(req):
        try:
            return handler(req)
        except Exception as e:
            mapped = ops.image_error(e)
            if isinstance(mapped, ops.Unauthorized):
                return Response(401, {"message": str(mapped)})
            if mapped is e:
                raise
            raise mapped from e
    return wrapped


def _filters(req) -> dict[str, list[str]]:
    from bosun.engine.views import parse_filters

    return parse_filters(req.q("filters"))


def _messages(events: list[dict]) -> Stream:
    """Messages of a finished operation, sent as Docker streams them (chunked: docker-py
    reads a load's answer line by line only then)."""
    return Stream(iter([b"".join(json_line(docker_message(e)) for e in events)]))


def _pause(req) -> bool:
    """Docker's commit `pause`: true unless given and false (an empty value is true)."""
    return req.q_bool("pause") if req.q("pause") else True


def _auth(req) -> Credentials | None:
    return decode_registry_auth(req.headers.get("X-Registry-Auth"))


def register(router, engine) -> None:
    images = engine.images

    def create(req):
        from_image, from_src = req.q("fromImage"), req.q("fromSrc")
        platform = req.q("platform") or None
        if from_image:
            tag, credentials = req.q("tag") or None, _auth(req)

            def work(progress):
                ops.pull(engine, from_image, tag, platform=platform, credentials=credentials,
                         progress=progress)
            return progress_stream(work, hold=1)
        if not from_src:
            raise InvalidParameter("fromImage or fromSrc is required")
        events: list[dict] = []
        source = body_file(req) if from_src == "-" else from_src
        ops.import_image(engine, source, repo=req.q("repo") or "", tag=req.q("tag") or "",
                         changes=req.query.get("changes", []), message=req.q("message") or "",
                         platform=platform, progress=events.append)
        return _messages(events)

    def push(req):
        name, tag, credentials = req.path_params["name"], req.q("tag") or None, _auth(req)

        def work(progress):
            ops.push(engine, name, tag, credentials=credentials, progress=progress)
        return progress_stream(work)

    def tag(req):
        ops.tag(engine, req.path_params["name"], req.q("repo") or "", req.q("tag") or None)
        return Response(201)

    def remove(req):
        return Response(200, ops.remove_image(engine, req.path_params["name"],
                                              force=req.q_bool("force"),
                                              noprune=req.q_bool("noprune")))

    def inspect(req):
        return Response(200, images.inspect(req.path_params["name"],
                                            api_version=req.version or MAX_API_VERSION))

    def history(req):
        return Response(200, images.history(req.path_params["name"]))

    def list_(req):
        return Response(200, ops.list_images(engine, _filters(req),
                                             shared_size=req.q_bool("shared-size")))

    def save(names: list[str]) -> Stream:
        def work(emit):
            out = _QueueWriter(emit)
            ops.save_images(engine, names, out)
            out.flush()
        job = _Job(work, size=16)
        items, finished = _started(job, 0)
        return Stream(_Output(job, _streamed(job, items, finished, bytes, errors_inline=False)),
                      content_type="application/x-tar")

    def save_many(req):
        return save(req.query.get("names", []))

    def save_one(req):
        return save([req.path_params["name"]])

    def load(req):
        quiet = req.q_bool("quiet")
        events: list[dict] = []

        def progress(event: dict) -> None:
            if not quiet or "stream" in event:
                events.append(event)
        ops.load_images(engine, body_file(req), progress)
        return _messages(events)

    def prune(req):
        return Response(200, ops.prune_images(engine, _filters(req)))

    def search(req):
        raise NotImplementedErr("searching registries is not supported by bosun: the "
                                "distribution API has no search; use the registry's own UI")

    def commit(req):
        body = req.json()
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: the body must be a container config object")
        image_id = ops.commit(
            engine, req.q("container") or "", repo=req.q("repo") or "", tag=req.q("tag") or "",
            comment=req.q("comment") or "", author=req.q("author") or "",
            changes=req.query.get("changes", []), pause=_pause(req),
            config=body or None)
        return Response(201, {"Id": image_id})

    def auth(req):
        from bosun.engine import gotypes

        body = req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: the body must be an AuthConfig object")
        body = gotypes.check(body, gotypes.AUTH_CONFIG, "AuthConfig")
        server = body.get("serveraddress") or ""
        return Response(200, ops.login(engine, credentials_from(body), server))

    def build(req):
        raise NotImplementedErr("the builder is not implemented yet")

    for method, pattern, handler in (
            ("POST", "/images/create", create),
            ("GET", "/images/json", list_),
            ("GET", "/images/get", save_many),
            ("GET", "/images/search", search),
            ("POST", "/images/load", load),
            ("POST", "/images/prune", prune),
            ("POST", "/commit", commit),
            ("POST", "/auth", auth),
            ("POST", "/build", build),
            ("GET", "/images/{name:path}/json", inspect),
            ("GET", "/images/{name:path}/history", history),
            ("GET", "/images/{name:path}/get", save_one),
            ("POST", "/images/{name:path}/push", push),
            ("POST", "/images/{name:path}/tag", tag),
            ("DELETE", "/images/{name:path}", remove)):
        router.add(method, pattern, _image_errors(handler))
