"""The image store: the one object the engine calls for images. It ties together the
registry client (pull, push), the content store (blobs), the metadata database (images,
tags, layers, who uses what) and the snapshotter (unpacked layers).

Layout under the store's root (the engine uses <data-root>/image):

    content/          ContentStore: manifests, configs, compressed layers, by digest
    metadata.db       MetadataDB: images, tags, layers, blob and container references
    snapshots/        the snapshotter (overlay/ or vfs/): layers by chain ID
    store.lock        flock()ed exclusively around every metadata + snapshot mutation
    gc.lock           flock()ed shared by pulls, pushes and add_image ("leases"), and
                      exclusively by gc() and prune(): GC never runs while blobs or layers
                      that no image references yet are being put to use

Both locks are taken with flock() on a descriptor of their own, so they exclude other
processes and other threads alike; a thread may nest them (re-entrant per thread). Order:
gc.lock before store.lock. Downloads run under the shared lease only, so concurrent pulls
download in parallel and take turns at unpacking (each layer is unpacked under store.lock,
which is also what keeps two pulls off the same chain ID).

Crash safety follows from the order of work: blobs reach the content store only verified
(an interrupted download stays an ingest, resumed by the next pull of the same blob), a
layer is committed by the snapshotter atomically and recorded in the metadata after that,
and the image is recorded (with its tags) last. What an interrupted pull leaves is
therefore either resumable or unreferenced, which gc() collects; fsck() checks all this.

Progress is reported as dicts shaped like Docker's JSON progress stream
({"status": "Downloading", "progressDetail": {"current": n, "total": m}, "id": "<12 hex>"},
"Pull complete", "Already exists", "Digest: sha256:…", "Status: Downloaded newer image for
busybox:latest" …), so the API layer can pass them through as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from bosun import fstree
from bosun.image import manifest as M
from bosun.image import reference as R
from bosun.image.content import (ContentError, ContentStore, DigestMismatch, Problem,
                                 SizeMismatch)
from bosun.image.diff import write_diff
from bosun.image.metadata import AmbiguousPrefix, Conflict, Image, MetadataDB, NotFound
from bosun.image.snapshot import (OverlaySnapshotter, SnapshotError, Snapshotter,
                                   new_snapshotter)
from bosun.registry import auth

log = logging.getLogger("bosun.image.store")

__all__ = ["ImageStore", "ImageError", "NotFound", "Conflict", "AmbiguousPrefix"]

DEFAULT_ROOT = "/var/lib/bosun/image"
MAX_CONCURRENT_DOWNLOADS = 3
MAX_CONCURRENT_UPLOADS = 3
INGEST_WAIT = 600.0  # seconds to wait for another writer (another pull) of the same blob
_PROGRESS_INTERVAL = 0.1  # seconds between two byte-progress events of one layer
_ID_PREFIX = re.compile(r"(?:(?:sha256|sha512):)?[0-9a-f]{1,128}")
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
_OTHER_NAME = re.compile(r"(sha512)-([0-9a-f]{128})")

Progress = Callable[[dict], None]


class ImageError(Exception):
    """An image operation that cannot be done (the message says why)."""


# -- references -----------------------------------------------------------------------------

def _key(ref: R.Reference) -> str:
    """The metadata key of a reference: `name:tag`, or `name@digest` when it has a digest
    (a `name:tag@digest` reference means the digest, as in Docker's reference store)."""
    if ref.digest is not None:
        return f"{ref.name}@{ref.digest}"
    return f"{ref.name}:{ref.tag or R.DEFAULT_TAG}"


def _parse_key(key: str) -> R.Reference | None:
    try:
        return R.parse(key)
    except R.InvalidReference:
        return None


def _familiar(key: str) -> str:
    ref = _parse_key(key)
    return ref.familiar_string() if ref is not None else key


def _is_digest_key(key: str) -> bool:
    return "@" in key


def _short(digest: str) -> str:
    """Docker's 12-hex-digit form of a digest or ID."""
    return digest.partition(":")[2][:12] or digest[:12]


def _is_single_reference(keys: Sequence[str]) -> bool:
    """Docker's isSingleReference: all references in one repository, at most one tag."""
    if len(keys) <= 1:
        return len(keys) == 1
    single = None
    canonical: set[str] = set()
    for key in keys:
        ref = _parse_key(key)
        name = ref.name if ref is not None else key
        if _is_digest_key(key):
            canonical.add(name)
        elif single is None:
            single = name
        else:
            return False
    if single is None:
        first = _parse_key(keys[0])
        single = first.name if first is not None else keys[0]
    return len(canonical) == 1 and single in canonical


# -- locks ----------------------------------------------------------------------------------

class _FileLock:
    """flock() on `path`, shared or exclusive, re-entrant per thread. Every outermost hold
    opens its own descriptor, so threads of one process exclude each other too."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()

    @contextlib.contextmanager
    def hold(self, exclusive: bool, blocking: bool = True) -> Iterator[bool]:
        state = getattr(self._local, "state", None)
        if state is not None:
            if exclusive and not state[0]:
                if not blocking:
                    yield False
                    return
                raise RuntimeError(f"{self.path}: a shared lock cannot become exclusive")
            state[1] += 1
            try:
                yield True
            finally:
                state[1] -= 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                            | (0 if blocking else fcntl.LOCK_NB))
                acquired = True
            except BlockingIOError:
                acquired = False
            if acquired:
                self._local.state = [exclusive, 1]
            try:
                yield acquired
            finally:
                if acquired:
                    self._local.state = None
        finally:
            os.close(fd)  # releases the lock


# -- progress -------------------------------------------------------------------------------

class _Progress:
    """Emits Docker-shaped progress events to a callback, one at a time (downloads report
    from worker threads); byte counts at most every _PROGRESS_INTERVAL per layer."""

    def __init__(self, callback: Progress | None):
        self._callback = callback
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, status: str, id: str | None = None, **extra: Any) -> None:
        if self._callback is None:
            return
        event: dict[str, Any] = {"status": status}
        if id is not None:
            event["progressDetail"] = {}
            event["id"] = id
        event.update(extra)
        with self._lock:
            self._callback(event)

    def raw(self, event: dict) -> None:
        if self._callback is not None:
            with self._lock:
                self._callback(event)

    def bytes(self, status: str, id: str, current: int, total: int | None) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        key = (status, id)
        last = self._last.get(key)
        if last is not None and now - last < _PROGRESS_INTERVAL and current != total:
            return
        self._last[key] = now
        detail: dict[str, int] = {"current": current}
        if total is not None:
            detail["total"] = total
        event = {"status": status, "progressDetail": detail, "id": id}
        with self._lock:
            self._callback(event)


class _Aborted(Exception):
    """A download stopped because the pull failed elsewhere."""


class _Sink:
    """A content Writer as the registry client's sink; stops when the pull is aborted."""

    def __init__(self, writer, abort: threading.Event):
        self._writer = writer
        self._abort = abort

    def write(self, data: bytes) -> None:
        if self._abort.is_set():
            raise _Aborted("pull aborted")
        self._writer.write(data)


class _Counting:
    """A read() stream that reports how far it got (extraction progress)."""

    def __init__(self, f: BinaryIO, report: Callable[[int], None]):
        self._f = f
        self._report = report
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data:
            self.done += len(data)
            self._report(self.done)
        return data


class _WriterFile:
    """A content Writer as a file for gzip to write into."""

    def __init__(self, writer):
        self._writer = writer

    def write(self, data) -> int:
        return self._writer.write(data)

    def flush(self) -> None:
        pass


# -- the store ------------------------------------------------------------------------------

class ImageStore:
    """Images: pulled, pushed, added from blobs already in the content store, listed,
    inspected, tagged, removed, pruned and garbage-collected.

    driver: the snapshotter ("overlay", "vfs"; None picks overlay where it works).
    mirrors: registry mirrors for docker.io pulls (Docker's registry-mirrors).
    insecure_registries: hosts ("host", "host:port") or CIDRs where unverified TLS and plain
    HTTP are allowed (loopback hosts always are). credentials_lookup(host) returns the
    credentials for a registry host (default: the docker config.json).
    client_options: extra keyword arguments for every RegistryClient (timeout, retries,
    backoff, transport).
    """

    def __init__(self, root: str = DEFAULT_ROOT, *, driver: str | None = None,
                 mirrors: Sequence[str] = (), insecure_registries: Sequence[str] = (),
                 credentials_lookup: Callable[[str], auth.Credentials | None]
                 = auth.load_credentials,
                 client_options: Mapping[str, Any] | None = None):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.mirrors = tuple(mirrors)
        self.insecure_registries = tuple(insecure_registries)
        self.credentials_lookup = credentials_lookup
        self.client_options = dict(client_options or {})
        self.max_concurrent_downloads = MAX_CONCURRENT_DOWNLOADS
        self.max_concurrent_uploads = MAX_CONCURRENT_UPLOADS
        self._store_lock = _FileLock(os.path.join(self.root, "store.lock"))
        self._gc_lock = _FileLock(os.path.join(self.root, "gc.lock"))
        self._unpack_locks = os.path.join(self.root, "unpack")  # <partial name>.lock
        self.content = ContentStore(os.path.join(self.root, "content"))
        self.db = MetadataDB(os.path.join(self.root, "metadata.db"))
        self.snapshots: Snapshotter = new_snapshotter(os.path.join(self.root, "snapshots"),
                                                      driver)
        self._tokens = auth.TokenCache()
        self._configs: dict[str, M.ImageConfig] = {}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- locking --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold off GC while blobs are written that no image references yet (a pull, a
        `load` writing a tarball's blobs before add_image)."""
        with self._gc_lock.hold(exclusive=False):
            yield

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        with self._store_lock.hold(exclusive=True):
            yield

    # -- registries -----------------------------------------------------------------------

    def _insecure(self, domain: str) -> bool:
        host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
        host = host.strip("[]")
        for entry in self.insecure_registries:
            entry = entry.strip().lower()
            for prefix in ("http://", "https://"):
                entry = entry.removeprefix(prefix)
            entry = entry.rstrip("/")
            if entry in (domain.lower(), host.lower()):
                return True
            if "/" in entry:
                try:
                    if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    pass
        return False

    def _client(self, domain: str):
        from bosun.registry.client import RegistryClient

        hosts = []
        for entry in self.insecure_registries:
            entry = entry.strip()
            if "/" not in entry.removeprefix("http://").removeprefix("https://"):
                hosts.append(entry.removeprefix("http://").removeprefix("https://"))
        options = dict(self.client_options)
        options.setdefault("token_cache", self._tokens)
        return RegistryClient(domain, insecure=self._insecure(domain),
                              credentials=self.credentials_lookup(domain),
                              mirrors=self.mirrors, insecure_hosts=hosts, **options)

    # -- pull -----------------------------------------------------------------------------

    def pull(self, ref: str, *, platform: str | None = None,
             progress: Progress | None = None) -> str:
        """Pull `ref` (normalized as Docker does: busybox → docker.io/library/busybox:latest)
        for `platform` (default: this host's); returns the image ID (config digest)."""
        from bosun.registry.errors import DigestMismatchError

        r = R.parse_normalized(ref)
        want = M.parse_platform(platform) if platform else None
        emit = _Progress(progress)
        requested = r.familiar_string()
        emit(f"Pulling from {r.path}", r.digest or r.tag)
        with self.lease(), contextlib.closing(self._client(r.domain)) as client:
            data, media_type, top_digest = client.get_manifest(r.path, r.digest or r.tag)
            doc = M.parse(data, media_type)  # refuses schema 1 with a clear message
            self._store_small(top_digest, data)
            if isinstance(doc, M.Index):
                desc = M.select(doc, want)
                mdata, _, mdigest = client.get_manifest(r.path, desc.digest)
                if len(mdata) != desc.size:
                    raise DigestMismatchError(f"manifest {desc.digest}: {len(mdata)} bytes, "
                                              f"the index says {desc.size}")
                man = M.parse(mdata, desc.media_type)
                if not isinstance(man, M.Manifest):
                    raise M.ManifestError("an index inside an index is not supported")
                self._store_small(mdigest, mdata)
            else:
                man = doc
            man.check_image()
            config = self._fetch_config(client, r.path, man.config)
            config.check_layers(man)
            if want is not None and not isinstance(doc, M.Index) \
                    and not M.platform_matches(want, config.platform):
                raise M.ManifestError(
                    f"image with reference {requested} was found but does not match the "
                    f"specified platform: wanted {want}, actual: {config.platform}")
            changed = self._pull_layers(client, r.path, man, config, emit)
            key = _key(r)
            try:
                before = self.db.resolve(key, key)
            except (NotFound, AmbiguousPrefix):
                before = None
            refs = [key] if r.digest is not None else [key, f"{r.name}@{top_digest}"]
            image_id = self.add_image(top_digest, refs=refs, platform=want, _emit=emit)
        emit(f"Digest: {top_digest}")
        if changed or before != image_id:
            emit(f"Status: Downloaded newer image for {requested}")
        else:
            emit(f"Status: Image is up to date for {requested}")
        return image_id

    def _store_small(self, digest: str, data: bytes) -> None:
        """Put a manifest or index (already fetched whole, digest checked) into content."""
        if self.content.has(digest):
            return
        with self.content.writer(f"pull-{digest}", digest, len(data), wait=INGEST_WAIT) as w:
            if self.content.has(digest):
                w.abort()
                return
            if w.offset:
                w.truncate(0)
            w.write(data)
            w.commit()

    def _fetch_config(self, client, repo: str, desc: M.Descriptor) -> M.ImageConfig:
        if desc.size > M.MAX_CONFIG_SIZE:
            raise M.ManifestError(f"image config of {desc.size} bytes is more than the "
                                  f"{M.MAX_CONFIG_SIZE} allowed")
        if not self.content.has(desc.digest):
            self._download(client, repo, desc, _Progress(None), threading.Event(), quiet=True)
        return self._config_from_content(desc.digest)

    def _config_from_content(self, digest: str) -> M.ImageConfig:
        config = self._configs.get(digest)
        if config is None:
            config = M.ImageConfig.parse(self.content.read(digest, M.MAX_CONFIG_SIZE))
            if len(self._configs) > 256:
                self._configs.clear()
            self._configs[digest] = config
        return config

    def _download(self, client, repo: str, desc: M.Descriptor, emit: _Progress,
                  abort: threading.Event, quiet: bool = False) -> bool:
        """Fetch one blob into the content store, resuming what an interrupted pull of it
        left; True if anything was fetched. Content that does not verify is dropped, never
        kept for a resume."""
        from bosun.registry.errors import DigestMismatchError

        digest, sid = desc.digest, _short(desc.digest)

        def report(p) -> None:
            if not quiet:
                emit.bytes("Downloading", sid, p.done, p.total)

        for attempt in range(2):
            if self.content.has(digest):
                return False
            with self.content.writer(f"pull-{digest}", digest, desc.size,
                                     wait=INGEST_WAIT) as w:
                if self.content.has(digest):  # another pull stored it while we waited
                    w.abort()
                    return False
                resumed = w.offset
                try:
                    if w.offset < desc.size:
                        client.fetch_blob(repo, digest, _Sink(w, abort), offset=w.offset,
                                          size=desc.size, progress=report)
                    w.commit()
                except (DigestMismatchError, DigestMismatch, SizeMismatch):
                    w.abort()
                    if resumed and attempt == 0:
                        # the partial data an earlier pull left was bad: start over
                        log.info("blob %s: resumed data did not verify, fetching it again",
                                 digest)
                        continue
                    raise
            return True
        return True  # pragma: no cover - the loop returns or raises

    def _pull_layers(self, client, repo: str, man: M.Manifest, config: M.ImageConfig,
                     emit: _Progress) -> bool:
        """Download the missing layer blobs (a few at a time) and unpack the layers in
        order as their blobs arrive. True if anything was downloaded or unpacked."""
        chains = M.chain_ids(config.diff_ids)
        abort = threading.Event()
        futures: dict[str, Future] = {}
        changed = False
        with ThreadPoolExecutor(max_workers=self.max_concurrent_downloads,
                                thread_name_prefix="bosun-pull") as pool:
            try:
                for desc, chain in zip(man.layers, chains):
                    sid = _short(desc.digest)
                    if desc.digest in futures:
                        continue
                    if self.content.has(desc.digest):
                        if self._layer_ready(chain):
                            emit("Already exists", sid)
                        continue
                    emit("Pulling fs layer", sid)
                    futures[desc.digest] = pool.submit(self._download, client, repo, desc,
                                                       emit, abort)
                parent = None
                for desc, diff_id, chain in zip(man.layers, config.diff_ids, chains):
                    future = futures.pop(desc.digest, None)
                    if future is not None:
                        if future.result():
                            changed = True
                        emit("Verifying Checksum", _short(desc.digest))
                        emit("Download complete", _short(desc.digest))
                    unpacked, _ = self._ensure_layer(chain, parent, diff_id, desc, emit)
                    changed = changed or unpacked
                    parent = chain
            except BaseException:
                abort.set()
                for future in futures.values():
                    future.cancel()
                raise
        return changed

    # -- layers ---------------------------------------------------------------------------

    def _layer_record(self, chain_id: str):
        try:
            return self.db.get_layer(chain_id)
        except NotFound:
            return None

    def _layer_ready(self, chain_id: str) -> bool:
        return self._layer_record(chain_id) is not None and self.snapshots.has_layer(chain_id)

    def _ensure_layer(self, chain_id: str, parent: str | None, diff_id: str,
                      desc: M.Descriptor, emit: _Progress | None = None) -> tuple[bool, int]:
        """The layer unpacked and recorded: (whether it was unpacked now, its size).

        Unpacking runs outside store.lock (a large layer would hold up every other change,
        a container's create included), under the chain's own unpack lock: one unpack of a
        chain at a time, and _sweep() leaves its partial directory alone."""
        with self._unpack_lock(chain_id).hold(exclusive=True):
            with self._mutating():
                record = self._layer_record(chain_id)
                have = self.snapshots.has_layer(chain_id)
                if record is not None and have:
                    return False, record.size
                if have:
                    # committed by a pull that died before recording it: its size is
                    # unknown, so it is unpacked again rather than trusted
                    self.snapshots.remove_layer(chain_id)
                self._sweep()
                target = self.snapshots.prepare_layer(chain_id, parent)
            sid = _short(desc.digest)

            def report(done: int) -> None:
                if emit is not None:
                    emit.bytes("Extracting", sid, done, desc.size)

            try:
                with self.content.open(desc.digest) as f:
                    stats = self.snapshots.apply(target, _Counting(f, report),
                                                 desc.media_type, diff_id)
            except BaseException:
                with self._mutating():
                    self.snapshots.abort_layer(chain_id)
                raise
            with self._mutating():
                self.snapshots.commit_layer(chain_id)
                try:
                    self.db.add_layer(chain_id, diff_id, parent, stats.size, chain_id)
                except BaseException:
                    self.snapshots.remove_layer(chain_id)
                    raise
            if emit is not None:
                emit("Pull complete", sid)
            return True, stats.size

    def _unpack_lock(self, chain_id: str) -> _FileLock:
        os.makedirs(self._unpack_locks, mode=0o700, exist_ok=True)
        return _FileLock(os.path.join(self._unpack_locks,
                                      self.snapshots.partial_name(chain_id) + ".lock"))

    # -- add_image ------------------------------------------------------------------------

    def add_image(self, manifest_digest: str, *, refs: Sequence[str] = (),
                  platform: str | M.Platform | None = None, _emit: _Progress | None = None
                  ) -> str:
        """Record the image whose manifest (or index: the entry for `platform`, default
        this host's) and blobs are in the content store, unpacking the layers not unpacked
        yet, and point `refs` at it. Returns the image ID. Used by pull, load and import;
        their callers hold lease() while writing the blobs."""
        want = M.parse_platform(platform) if isinstance(platform, str) else platform
        keys = [_key(R.parse_normalized(ref)) for ref in refs]
        with self.lease():
            doc = M.parse(self.content.read(manifest_digest))
            blobs: list[tuple[str, str]] = []
            if isinstance(doc, M.Index):
                blobs.append((manifest_digest, "index"))
                desc = M.select(doc, want)
                man = M.parse(self.content.read(desc.digest), desc.media_type)
                if not isinstance(man, M.Manifest):
                    raise M.ManifestError("an index inside an index is not supported")
                mdigest = desc.digest
            else:
                man, mdigest = doc, manifest_digest
            man.check_image()
            image_id = man.config.digest
            config = self._config_from_content(image_id)
            config.check_layers(man)
            chains = M.chain_ids(config.diff_ids)
            size = 0
            parent = None
            for desc, diff_id, chain in zip(man.layers, config.diff_ids, chains):
                _, layer_size = self._ensure_layer(chain, parent, diff_id, desc, _emit)
                size += layer_size
                if self.content.has(desc.digest):
                    blobs.append((desc.digest, "layer"))
                parent = chain
            with self._mutating():
                self.db.add_image(
                    image_id, media_type=man.media_type, os=config.os or "linux",
                    architecture=config.architecture, variant=config.variant, size=size,
                    layers=chains, manifest_digest=mdigest,
                    created=config.created.rfc3339nano() if config.created else None,
                    blobs=blobs, refs=keys)
        return image_id

    # -- queries --------------------------------------------------------------------------

    def resolve(self, ref_or_id: str) -> str:
        """The image ID for a reference, a full ID or a unique ID prefix; NotFound with
        Docker's wording ("No such image: busybox:latest") otherwise."""
        if not isinstance(ref_or_id, str) or not ref_or_id:
            raise NotFound(f"No such image: {ref_or_id}")
        key = None
        shown = ref_or_id
        try:
            ref = R.parse_normalized(ref_or_id)
            key = _key(ref)
            shown = _familiar(key)
        except R.InvalidReference:
            if not _ID_PREFIX.fullmatch(ref_or_id):
                raise
        if _ID_PREFIX.fullmatch(ref_or_id) and (":" in ref_or_id or len(ref_or_id) == 64):
            shown = ref_or_id
        try:
            return self.db.resolve(ref_or_id, key)
        except NotFound:
            raise NotFound(f"No such image: {shown}") from None

    def _image(self, ref_or_id: str) -> tuple[Image, M.ImageConfig]:
        image_id = self.resolve(ref_or_id)
        return self.db.get_image(image_id), self._config_from_content(image_id)

    def config(self, ref_or_id: str) -> M.ImageConfig:
        return self._config_from_content(self.resolve(ref_or_id))

    def layer_chain(self, ref_or_id: str) -> list[str]:
        """The image's chain IDs, base first: what snapshots.mount_container takes."""
        return [layer.chain_id for layer in self.db.layers_for(self.resolve(ref_or_id))]

    def _refs(self, image_id: str) -> tuple[list[str], list[str]]:
        """(RepoTags, RepoDigests) in Docker's familiar form."""
        keys = self.db.tags_for(image_id)
        return ([_familiar(k) for k in keys if not _is_digest_key(k)],
                [_familiar(k) for k in keys if _is_digest_key(k)])

    def images(self) -> list[dict]:
        """GET /images/json (`docker images`), newest first."""
        out = []
        for img in self.db.list_images():
            try:
                config = self._config_from_content(img.id)
                tags, digests = self._refs(img.id)
            except (NotFound, ContentError, M.ManifestError) as e:
                log.warning("image %s: %s", img.id, e)  # removed meanwhile, or damaged
                continue
            created = 0
            if img.created:
                with contextlib.suppress(ValueError):
                    created = M.Timestamp.parse(img.created).seconds
            out.append({
                "Containers": -1,
                "Created": created,
                "Id": img.id,
                "Labels": dict(sorted(config.config.labels.items()))
                if config.config.labels is not None else None,
                "ParentId": "",
                "RepoDigests": digests,
                "RepoTags": tags,
                "SharedSize": -1,
                "Size": img.size,
            })
        out.sort(key=lambda d: (-d["Created"], d["Id"]))
        return out

    def _graph_driver(self, image_id: str) -> dict[str, Any]:
        if not isinstance(self.snapshots, OverlaySnapshotter):
            return {"Data": None, "Name": self.snapshots.driver}
        chain = [layer.chain_id for layer in self.db.layers_for(image_id)]
        data: dict[str, str] = {}
        if chain:
            try:
                dirs = [self.snapshots.layer_dir(c) for c in chain]
            except SnapshotError:  # a layer gone missing: fsck's business, not inspect's
                dirs = []
            if dirs:
                if len(dirs) > 1:
                    data["LowerDir"] = ":".join(reversed(dirs[:-1]))
                data["UpperDir"] = dirs[-1]
        return {"Data": data or None, "Name": "overlay2"}

    def inspect(self, ref_or_id: str, api_version: str = M.DEFAULT_API_VERSION) -> dict:
        """GET /images/{name}/json (`docker image inspect`), shaped for `api_version`."""
        img, config = self._image(ref_or_id)
        tags, digests = self._refs(img.id)
        return config.inspect_dict(img.id, tags, digests, img.size, api_version=api_version,
                                   graph_driver=self._graph_driver(img.id),
                                   last_tag_time=img.last_tag_time)

    def history(self, ref_or_id: str) -> list[dict]:
        """GET /images/{name}/history (`docker history`), newest first."""
        img, config = self._image(ref_or_id)
        tags, _ = self._refs(img.id)
        sizes = [layer.size for layer in self.db.layers_for(img.id)]
        return config.history_rows(img.id, tags, sizes)

    # -- tags and removal -----------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        """`docker tag source target`: target gets `:latest` if it has no tag; a digest
        is refused as Docker refuses it."""
        image_id = self.resolve(source)
        key = _key(R.for_tag(target))
        with self._mutating():
            self.db.tag(image_id, key)

    def remove(self, ref_or_id: str, *, force: bool = False,
               noprune: bool = False) -> list[dict]:
        """`docker rmi`: Docker's [{"Untagged": ...}, {"Deleted": ...}] records. A
        reference is untagged; the image goes with its last reference (or when named by
        ID). Conflict while a container uses it, unless `force`. The layers (and blobs)
        only the image used go too, unless `noprune` or a pull is running (then gc()
        collects them later)."""
        with self._gc_lock.hold(exclusive=True, blocking=False) as collect:
            with self._mutating():
                records, deleted = self._remove(ref_or_id, force)
                if deleted is None or noprune or not collect:
                    return records
                _, stack, blobs = deleted
                removed, _ = self._collect_layers(only=set(stack))
                records += [{"Deleted": chain} for chain in removed]
                self._collect_blobs(only=set(blobs))
                return records

    def _remove(self, ref_or_id: str, force: bool
                ) -> tuple[list[dict], tuple[str, list[str], list[str]] | None]:
        image_id = self.resolve(ref_or_id)
        keys = self.db.tags_for(image_id)
        users = self.db.containers_using(image_id)
        short = _short(image_id)
        by_id = image_id.startswith(ref_or_id) or image_id.partition(":")[2].startswith(
            ref_or_id)
        records: list[dict] = []
        if not by_id:
            key = _key(R.parse_normalized(ref_or_id))
            if not force and users and _is_single_reference(keys):
                raise Conflict(f'conflict: unable to remove repository reference "{ref_or_id}" '
                               f"(must force) - container {users[0][:12]} is using its "
                               f"referenced image {short}")
            self.db.untag(key)
            records.append({"Untagged": _familiar(key)})
            remaining = [k for k in keys if k != key]
            name = key.rpartition(":")[0]
            if not _is_digest_key(key) and not any(
                    k.rpartition(":")[0] == name for k in remaining if not _is_digest_key(k)):
                # the repository's last tag is gone: so are its digest references
                for k in [k for k in remaining if k.partition("@")[0] == name]:
                    self.db.untag(k)
                    records.append({"Untagged": _familiar(k)})
                    remaining.remove(k)
            if remaining:
                return records, None
            keys = []
        elif len(keys) > 1 and not force and not _is_single_reference(keys):
            raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is "
                           f"referenced in multiple repositories")
        if users and not force:
            raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is "
                           f"being used by container {users[0][:12]}")
        stack = [layer.chain_id for layer in self.db.layers_for(image_id)]
        blobs = [digest for digest, _ in self.db.blobs_for(image_id)]
        for key in keys:
            self.db.untag(key)
            records.append({"Untagged": _familiar(key)})
        self.db.delete_image(image_id, force=True)
        self._configs.pop(image_id, None)
        records.append({"Deleted": image_id})
        return records, (image_id, stack, blobs)

    def prune(self, *, all: bool = False) -> dict:
        """`docker image prune [-a]`: images without tags (with `all`, every image) that no
        container uses; their digest references go with them. Then their unreferenced
        layers and blobs. {"ImagesDeleted": [...] or None, "SpaceReclaimed": bytes}."""
        records: list[dict] = []
        with self._gc_lock.hold(exclusive=True), self._mutating():
            for img in reversed(self.db.list_images()):  # oldest first
                if self.db.containers_using(img.id):
                    continue
                keys = self.db.tags_for(img.id)
                if not all and any(not _is_digest_key(k) for k in keys):
                    continue
                for key in keys:
                    self.db.untag(key)
                    records.append({"Untagged": _familiar(key)})
                self.db.delete_image(img.id)
                self._configs.pop(img.id, None)
                records.append({"Deleted": img.id})
            removed, space = self._collect_layers()
            records += [{"Deleted": chain} for chain in removed]
            _, blob_space = self._collect_blobs()
        return {"ImagesDeleted": records or None, "SpaceReclaimed": space + blob_space}

    # -- garbage collection ---------------------------------------------------------------

    def _collect_layers(self, only: set[str] | None = None) -> tuple[list[str], int]:
        """Remove unreferenced layers (children first), records then snapshots. Caller
        holds both locks."""
        removed, space = [], 0
        for layer in self.db.unreferenced_layers():
            if only is not None and layer.chain_id not in only:
                continue
            try:
                self.db.delete_layer(layer.chain_id)
            except Conflict:  # a child outside `only` still sits on it
                continue
            self.snapshots.remove_layer(layer.chain_id)
            removed.append(layer.chain_id)
            space += layer.size
        return removed, space

    def _collect_blobs(self, only: set[str] | None = None) -> tuple[list[str], int]:
        present = dict(self.content.list())
        candidates = present if only is None else [d for d in only if d in present]
        removed, space = [], 0
        for digest in self.db.unreferenced_blobs(candidates):
            with contextlib.suppress(ContentError):
                self.content.delete(digest)
                removed.append(digest)
                space += present[digest]
        return removed, space

    def _snapshot_layers(self) -> dict[str, str]:
        """chain ID -> directory of every committed layer the snapshotter holds."""
        out = {}
        for name in sorted(os.listdir(self.snapshots.home)):
            if _SHA256_NAME.fullmatch(name):
                chain = f"sha256:{name}"
            elif m := _OTHER_NAME.fullmatch(name):
                chain = f"{m[1]}:{m[2]}"
            else:
                continue
            if self.snapshots.has_layer(chain):
                out[chain] = os.path.join(self.snapshots.home, name)
        return out

    def _leftovers(self) -> list[str]:
        """Layers being prepared or removed when a process died. Under store.lock nothing
        is being prepared or removed, and a partial layer whose unpack lock is held is
        being unpacked now (outside store.lock): not a leftover."""
        out = []
        for name in sorted(os.listdir(self.snapshots.home)):
            if not name.startswith((".tmp-", ".del-")):
                continue
            if not self._unpacking(name):
                out.append(os.path.join(self.snapshots.home, name))
        return out

    def _unpacking(self, partial_name: str) -> bool:
        """Whether some thread or process holds the unpack lock of a partial layer."""
        try:
            fd = os.open(os.path.join(self._unpack_locks, partial_name + ".lock"),
                         os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # (releases the lock if we got it)

    def _stale_links(self) -> list[str]:
        if not isinstance(self.snapshots, OverlaySnapshotter):
            return []
        out = []
        for name in sorted(os.listdir(self.snapshots.links)):
            path = os.path.join(self.snapshots.links, name)
            if os.path.islink(path) and not os.path.exists(path):
                out.append(path)
        return out

    def _sweep(self) -> None:
        """Remove what a process killed while preparing, committing or removing a layer
        left in the snapshotter. Under store.lock, where no layer is being worked on."""
        for path in self._leftovers():
            _remove_tree(path)
        for path in self._stale_links():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def gc(self) -> dict:
        """Remove what no image and no container references: layers (records and
        snapshots), snapshots without a record, what crashed operations left in the
        snapshotter, blobs, and ingests untouched for a day. Waits for running pulls."""
        with self._gc_lock.hold(exclusive=True), self._mutating():
            layers, space = self._collect_layers()
            known = {layer.chain_id for layer in self.db.list_layers()}
            for chain in self._snapshot_layers():
                if chain not in known:
                    self.snapshots.remove_layer(chain)
                    layers.append(chain)
            self._sweep()
            # No unpack runs without a lease, so no unpack lock is held or awaited now.
            for name in _listdir(self._unpack_locks):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._unpack_locks, name))
            blobs, blob_space = self._collect_blobs()
            ingests = self.content.ingest_cleanup()
        return {"LayersDeleted": layers, "BlobsDeleted": blobs, "IngestsDeleted": ingests,
                "SpaceReclaimed": space + blob_space}

    def fsck(self, *, repair: bool = False) -> list[Problem]:
        """Check the store: every blob against its digest (content.verify), every recorded
        layer against its snapshot (present, on the recorded parent, linked), every
        snapshot against a record, every image's blobs and layers against its config, and
        no leftovers of crashed operations. Returns the problems ([] when clean); with
        `repair`, removes what can safely go (corrupt blobs, orphans, leftovers) — a
        missing blob or layer is fetched again by the next pull."""
        problems = list(self.content.verify(remove=repair))
        with self._mutating():
            layers = {layer.chain_id: layer for layer in self.db.list_layers()}
            snapshots = self._snapshot_layers()
            for chain, layer in sorted(layers.items()):
                if chain not in snapshots:
                    problems.append(Problem("missing-snapshot", chain,
                                            "layer recorded but not unpacked", False))
                    continue
                parent = self.snapshots.parent(chain)
                if parent != layer.parent:
                    problems.append(Problem("bad-snapshot", snapshots[chain],
                                            f"parent is {parent}, recorded {layer.parent}",
                                            False))
                if isinstance(self.snapshots, OverlaySnapshotter):
                    try:
                        link = os.path.join(self.snapshots.links,
                                            self.snapshots.link_name(chain))
                        ok = os.path.isdir(link)
                    except SnapshotError:
                        ok = False
                    if not ok:
                        problems.append(Problem("bad-snapshot", snapshots[chain],
                                                "short link missing", False))
            for chain, path in snapshots.items():
                if chain not in layers:
                    if repair:
                        self.snapshots.remove_layer(chain)
                    problems.append(Problem("orphan-snapshot", path,
                                            f"layer {chain} unpacked but not recorded",
                                            repair))
            for path in self._leftovers():
                if repair:
                    _remove_tree(path)
                problems.append(Problem("stale-snapshot", path,
                                        "left by an interrupted operation", repair))
            for path in self._stale_links():
                if repair:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                problems.append(Problem("stale-link", path, "link to no layer", repair))
            for img in self.db.list_images():
                problems.extend(self._check_image(img))
        return problems

    def _check_image(self, img: Image) -> list[Problem]:
        problems = []
        for digest, kind in self.db.blobs_for(img.id):
            if not self.content.has(digest):
                problems.append(Problem("missing-blob", img.id, f"{kind} blob missing", False,
                                        digest))
        try:
            config = M.ImageConfig.parse(self.content.read(img.id, M.MAX_CONFIG_SIZE))
        except (ContentError, M.ManifestError) as e:
            return problems + [Problem("bad-image", img.id, f"config: {e}", False, img.id)]
        stack = [layer.chain_id for layer in self.db.layers_for(img.id)]
        if stack != M.chain_ids(config.diff_ids):
            problems.append(Problem("bad-image", img.id,
                                    "layers do not match the config's diff_ids", False))
        return problems

    # -- push -----------------------------------------------------------------------------

    def push(self, ref: str, *, progress: Progress | None = None) -> str:
        """Push the image tagged `ref` (`:latest` if no tag) to its registry; returns the
        digest of the manifest pushed: the very bytes in the content store, so the same
        digest as the image's RepoDigests. Layers whose compressed blob is not in the
        content store are compressed again from their snapshot first (and kept)."""
        r = R.parse_normalized(ref)
        if r.digest is not None:
            raise R.InvalidReference("cannot push a digest reference")
        key = _key(r)
        emit = _Progress(progress)
        with self.lease():
            try:
                image_id = self.db.resolve(key, key)
            except NotFound:
                raise NotFound(f"An image does not exist locally with the tag: "
                               f"{r.familiar()}") from None
            emit(f"The push refers to repository [{r.name}]")
            _, data, man = self._manifest_for_push(image_id)
            config = self._config_from_content(image_id)
            sources = self._mount_sources(r, [d.digest for d in man.layers])
            with contextlib.closing(self._client(r.domain)) as client:
                pairs = list(zip(man.layers, config.diff_ids))
                for _, diff_id in pairs:
                    emit("Preparing", _short(diff_id))
                with ThreadPoolExecutor(max_workers=self.max_concurrent_uploads,
                                        thread_name_prefix="bosun-push") as pool:
                    futures = [pool.submit(self._push_layer, client, r.path, desc, diff_id,
                                           sources.get(desc.digest), emit)
                               for desc, diff_id in pairs]
                    for future in futures:
                        future.result()
                with self.content.open(man.config.digest) as f:
                    client.push_blob(r.path, man.config.digest, man.config.size, f)
                digest = client.put_manifest(r.path, r.tag, data, man.media_type)
            with self._mutating():
                self.db.tag(image_id, f"{r.name}@{digest}")
        emit(f"{r.tag}: digest: {digest} size: {len(data)}")
        emit.raw({"progressDetail": {},
                  "aux": {"Tag": r.tag, "Digest": digest, "Size": len(data)}})
        return digest

    def _push_layer(self, client, repo: str, desc: M.Descriptor, diff_id: str,
                    source: str | None, emit: _Progress) -> None:
        sid = _short(diff_id)

        def report(p) -> None:
            emit.bytes("Pushing", sid, p.done, p.total)

        with self.content.open(desc.digest) as f:
            result = client.push_blob(repo, desc.digest, desc.size, f, mount_from=source,
                                      progress=report)
        if result == "exists":
            emit("Layer already exists", sid)
        elif result == "mounted":
            emit(f"Mounted from {source}", sid)
        else:
            emit("Pushed", sid)

    def _mount_sources(self, target: R.Reference, digests: Sequence[str]) -> dict[str, str]:
        """For each blob, a repository on the target's registry that has it: one an image
        using the blob was pulled from or pushed to (its name@digest references)."""
        wanted = set(digests)
        out: dict[str, str] = {}
        for img in self.db.list_images():
            blobs = {d for d, _ in self.db.blobs_for(img.id)} & wanted
            if not blobs:
                continue
            repos = []
            for key in self.db.tags_for(img.id):
                ref = _parse_key(key)
                if ref is not None and ref.digest is not None and ref.domain == target.domain \
                        and ref.path != target.path:
                    repos.append(ref.path)
            if repos:
                for d in blobs:
                    out.setdefault(d, repos[0])
        return out

    def _manifest_for_push(self, image_id: str) -> tuple[str, bytes, M.Manifest]:
        """A manifest of the image whose blobs are all in the content store; made (and
        recorded) if none is, compressing layers again from their snapshots."""
        img = self.db.get_image(image_id)
        candidates = [img.manifest_digest] + [d for d, kind in self.db.blobs_for(image_id)
                                              if kind == "manifest"]
        base: M.Manifest | None = None
        for digest in dict.fromkeys(d for d in candidates if d):
            try:
                data = self.content.read(digest)
                man = M.parse(data)
            except (ContentError, M.ManifestError):
                continue
            if not isinstance(man, M.Manifest) or man.config.digest != image_id:
                continue
            if all(self.content.has(d.digest) for d in man.layers):
                return digest, data, man
            base = base or man
        return self._rebuild_manifest(img, base)

    def _rebuild_manifest(self, img: Image, base: M.Manifest | None
                          ) -> tuple[str, bytes, M.Manifest]:
        config = self._config_from_content(img.id)
        chains = M.chain_ids(config.diff_ids)
        docker = base is None or base.media_type == M.DOCKER_MANIFEST
        layers: list[M.Descriptor] = []
        parent = None
        for i, (diff_id, chain) in enumerate(zip(config.diff_ids, chains)):
            desc = base.layers[i] if base is not None and i < len(base.layers) else None
            if desc is None or not self.content.has(desc.digest):
                desc = self._compress_layer(chain, parent, diff_id, docker)
            layers.append(desc)
            parent = chain
        if base is not None:
            config_desc = base.config
        else:
            size = self.content.size(img.id)
            if size is None:
                raise ImageError(f"image {img.id}: its config is not in the content store")
            config_desc = M.Descriptor(M.DOCKER_CONFIG, img.id, size)
        media_type = M.DOCKER_MANIFEST if docker else M.OCI_MANIFEST
        doc = {"schemaVersion": 2, "mediaType": media_type, "config": config_desc.to_dict(),
               "layers": [d.to_dict() for d in layers]}
        if base is not None and base.annotations:
            doc["annotations"] = dict(base.annotations)
        data = json.dumps(doc, indent=3).encode()
        digest = M.digest_of(data)
        self._store_small(digest, data)
        with self._mutating():
            self.db.add_image(
                img.id, media_type=img.media_type, os=img.os, architecture=img.architecture,
                variant=img.variant, size=img.size, layers=chains,
                manifest_digest=img.manifest_digest, created=img.created,
                blobs=[(digest, "manifest")] + [(d.digest, "layer") for d in layers])
        man = M.parse(data)
        assert isinstance(man, M.Manifest)
        return digest, data, man

    def _compress_layer(self, chain: str, parent: str | None, diff_id: str,
                        docker: bool) -> M.Descriptor:
        """The layer's tar (write_diff of its snapshot), gzip'd into the content store. It
        must be the tar the config names (same diff ID): write_diff is deterministic, so
        layers it made (commit, import) come out the same; others cannot be rebuilt."""
        layer_dir = self.snapshots.layer_dir(chain)
        lowers = None if self.snapshots.overlay_format else (
            [self.snapshots.layer_dir(parent)] if parent else [])
        with self.content.writer(f"push-{chain}", wait=INGEST_WAIT) as w:
            if w.offset:
                w.truncate(0)
            with gzip.GzipFile(filename="", mode="wb", fileobj=_WriterFile(w), mtime=0,
                               compresslevel=6) as gz:
                got = write_diff(layer_dir, gz, lowers)
            if got != diff_id:
                w.abort()
                raise ImageError(f"layer {diff_id} has no blob in the content store and its "
                                 f"snapshot gives another tar ({got}); pull the image again")
            size = w.offset
            digest = w.commit()
        media_type = M.DOCKER_LAYER_GZIP if docker else M.OCI_LAYER_GZIP
        return M.Descriptor(media_type, digest, size)


def _remove_tree(path: str) -> None:
    """Remove a partial layer left by an interrupted unpack or removal: as deep as the layer
    was (fstree, not shutil's recursion). What can't go now stays for the next sweep, and
    fsck reports it."""
    with contextlib.suppress(OSError):
        fstree.rmtree(path)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
