"""A content-addressed blob store: what containerd's content store is to Docker.

Layout under the store's root (the engine uses <data-root>/content):

    blobs/<algorithm>/<hex>      committed blobs, read-only (0444), named by their digest
    ingest/<sha256 of ref>/      one in-progress write, keyed by the caller's ref
        data                     the bytes received so far; kept when a write is interrupted
        ref                      the ref itself (the directory is named by its hash)
        expected                 JSON {"digest", "size"} the ingest was opened with
        lock                     flock()ed by the one writer that owns the ingest

A blob reaches blobs/ only by rename() of a complete, verified and fsynced data file, so a
reader never sees a partial blob and a crash leaves at most an ingest, which the next writer
of the same ref resumes (or ingest_cleanup() removes once stale).

Concurrency: a ref has one writer at a time (an exclusive flock, which works between
processes and between threads alike since each writer opens its own descriptor). A second
writer of the same ref gets IngestLocked at once, or after `wait` seconds. Writers of
different refs never block each other, even for the same digest: the blob is content, so
whichever commits second finds it present and just drops its ingest.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

# Digest algorithm -> length of its lowercase hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha512):([0-9a-f]+)")

# read() refuses larger blobs unless asked: a registry controls what it sends us, and
# manifests and configs are read whole (the distribution spec's manifest limit is 4 MiB).
MAX_MANIFEST_SIZE = 4 << 20
DEFAULT_INGEST_MAX_AGE = 24 * 3600.0
_CHUNK = 1 << 20
_LOCK_POLL = 0.05


class ContentError(Exception):
    """Base of the content store's errors. `str()` is a one-line message."""


class InvalidDigest(ContentError, ValueError):
    pass


class BlobNotFound(ContentError):
    pass


class BlobTooLarge(ContentError):
    pass


class DigestMismatch(ContentError):
    pass


class SizeMismatch(ContentError):
    pass


class IngestLocked(ContentError):
    """Another writer holds the ingest of this ref."""


def parse_digest(digest: str) -> tuple[str, str]:
    """Split "sha256:<hex>" into (algorithm, hex), strictly: sha256 or sha512, lowercase
    hex of exactly the algorithm's length. Blob paths are built from digests, so this is
    also what keeps "sha256:../../etc" out of the file system."""
    if not isinstance(digest, str):
        raise InvalidDigest(f"invalid digest {digest!r}: not a string")
    m = _DIGEST_RE.fullmatch(digest)
    if m is None or len(m[2]) != ALGORITHMS[m[1]]:
        raise InvalidDigest(f"invalid digest {digest[:160]!r}")
    return m[1], m[2]


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    """The digest string of `data` ("sha256:<hex>")."""
    if algorithm not in ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int                  # bytes in the ingest's data file
    expected_digest: str | None
    expected_size: int | None
    updated: float               # last modification, seconds since the epoch


@dataclass(frozen=True)
class Problem:
    """One finding of ContentStore.verify()."""
    kind: str                    # "corrupt" | "stray" | "stale-ingest"
    path: str
    detail: str                  # what is wrong; for a stale ingest, its ref
    removed: bool
    digest: str | None = None


class ContentStore:
    """The blob store under `root`. Holds no state besides paths: one instance can serve
    every thread, and several processes can share the directory."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._blobs = os.path.join(self.root, "blobs")
        self._ingest = os.path.join(self.root, "ingest")
        for d in (self.root, self._blobs, os.path.join(self._blobs, "sha256"), self._ingest):
            os.makedirs(d, mode=0o700, exist_ok=True)

    # -- committed blobs ------------------------------------------------------------------

    def path(self, digest: str) -> str:
        algorithm, hexpart = parse_digest(digest)
        return os.path.join(self._blobs, algorithm, hexpart)

    def has(self, digest: str) -> bool:
        return self.size(digest) is not None

    def size(self, digest: str) -> int | None:
        try:
            st = os.lstat(self.path(digest))
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def open(self, digest: str) -> BinaryIO:
        """The blob, open for reading. Not re-verified: stream it through a hasher when
        the content matters (layers are checked against their diff_id while unpacked)."""
        path = self.path(digest)
        try:
            # O_NOFOLLOW: a symlink planted in blobs/ must not lead reads elsewhere
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ContentError(f"blob {digest}: {path} is a symlink") from None
            raise
        return os.fdopen(fd, "rb")

    def read(self, digest: str, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        """A small blob (manifest, index, config) whole, checked against its digest.
        Refuses blobs above `max_size` to bound memory."""
        algorithm, hexpart = parse_digest(digest)
        with self.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_size:
                raise BlobTooLarge(f"blob {digest} is {size} bytes, more than {max_size}")
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise BlobTooLarge(f"blob {digest} is more than {max_size} bytes")
        if hashlib.new(algorithm, data).hexdigest() != hexpart:
            raise DigestMismatch(f"blob {digest} is corrupt on disk")
        return data

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None

    def list(self) -> Iterator[tuple[str, int]]:
        """(digest, size) of every committed blob, in no particular order."""
        for algorithm in ALGORITHMS:
            try:
                entries = list(os.scandir(os.path.join(self._blobs, algorithm)))
            except FileNotFoundError:
                continue
            for e in entries:
                if not _valid_hex(algorithm, e.name):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:  # deleted meanwhile
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield f"{algorithm}:{e.name}", st.st_size

    # -- writes ---------------------------------------------------------------------------

    def writer(self, ref: str, expected_digest: str | None = None,
               expected_size: int | None = None, wait: float = 0.0) -> Writer:
        """A writer for the ingest `ref`, resuming its data if an earlier writer of the same
        ref (with the same expectations) was interrupted: see Writer.offset. Raises
        IngestLocked if another writer holds the ref for longer than `wait` seconds.
        A writer does not look at blobs/ before commit(): check has() first to skip a
        download, and again after waiting for a lock (the holder may have stored it)."""
        return Writer(self, ref, expected_digest, expected_size, wait)

    def ingests(self) -> list[IngestStatus]:
        """What is being (or was, when interrupted) written. A snapshot, taken unlocked."""
        out = []
        for name in _listdir(self._ingest):
            d = os.path.join(self._ingest, name)
            try:
                with open(os.path.join(d, "ref"), encoding="utf-8") as f:
                    ref = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            exp = _read_expected(d) or {"digest": None, "size": None}
            try:
                st = os.stat(os.path.join(d, "data"))
                offset, updated = st.st_size, st.st_mtime
            except FileNotFoundError:
                offset, updated = 0, _ingest_mtime(d)
            out.append(IngestStatus(ref, offset, exp["digest"], exp["size"], updated))
        return out

    def ingest_cleanup(self, max_age: float = DEFAULT_INGEST_MAX_AGE) -> list[str]:
        """Remove ingests untouched for `max_age` seconds and not held by a writer.
        Returns their refs (or directory names, for an ingest too broken to tell)."""
        return [p.detail for p in self._stale_ingests(max_age, remove=True)]

    def verify(self, remove: bool = True,
               ingest_max_age: float = DEFAULT_INGEST_MAX_AGE) -> list[Problem]:
        """fsck: re-hash every blob; report (and with `remove`, delete) corrupt blobs,
        stray files in blobs/ and ingests older than `ingest_max_age` seconds. A missing
        blob is better than a corrupt one: the next pull fetches it again."""
        problems: list[Problem] = []
        for algorithm in sorted(_listdir(self._blobs)):
            adir = os.path.join(self._blobs, algorithm)
            if algorithm not in ALGORITHMS:
                problems.append(Problem("stray", adir, "unknown digest algorithm", False))
                continue
            for name in sorted(_listdir(adir)):
                problems.extend(self._verify_blob(algorithm, name, remove))
        problems.extend(self._stale_ingests(ingest_max_age, remove))
        return problems

    def _verify_blob(self, algorithm: str, name: str, remove: bool) -> list[Problem]:
        path = os.path.join(self._blobs, algorithm, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return []
        if not _valid_hex(algorithm, name) or not stat.S_ISREG(st.st_mode):
            is_dir = stat.S_ISDIR(st.st_mode)
            if remove and not is_dir:
                _unlink(path)
            return [Problem("stray", path, "not a blob", remove and not is_dir)]
        digest = f"{algorithm}:{name}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return []
        try:
            hasher = hashlib.new(algorithm)
            _hash_fd(fd, hasher)
        finally:
            os.close(fd)
        if hasher.hexdigest() == name:
            return []
        if remove:
            _unlink(path)
        return [Problem("corrupt", path, f"content hashes to {algorithm}:{hasher.hexdigest()}",
                        remove, digest)]

    def _stale_ingests(self, max_age: float, remove: bool) -> list[Problem]:
        problems = []
        now = time.time()
        for name in sorted(_listdir(self._ingest)):
            d = os.path.join(self._ingest, name)
            if now - _ingest_mtime(d) < max_age:
                continue
            label = _read_ref(d) or name
            if not remove:
                problems.append(Problem("stale-ingest", d, label, False))
                continue
            try:
                fd = _lock_ingest(d, label, wait=0.0)
            except IngestLocked:  # a writer is on it, however slowly
                continue
            try:
                # a writer may have come and gone between our look and our lock
                if time.time() - _ingest_mtime(d) < max_age:
                    continue
                _remove_ingest(d)
            finally:
                os.close(fd)
            problems.append(Problem("stale-ingest", d, label, True))
        return problems


class Writer:
    """Streams one blob into an ingest, hashing as it goes; commit() verifies and moves it
    into blobs/. Leaving a `with` block without commit() (an exception, a dropped
    connection) keeps the data for the next writer of the same ref; abort() drops it."""

    def __init__(self, store: ContentStore, ref: str, expected_digest: str | None,
                 expected_size: int | None, wait: float):
        if not isinstance(ref, str) or not ref or "\0" in ref:
            raise ValueError(f"invalid ingest ref {ref!r}")
        self.algorithm = (parse_digest(expected_digest)[0] if expected_digest is not None
                          else "sha256")
        if expected_size is not None and (not isinstance(expected_size, int)
                                          or isinstance(expected_size, bool)
                                          or expected_size < 0):
            raise ValueError(f"invalid expected size {expected_size!r}")
        self.store = store
        self.ref = ref
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self.offset = 0
        self._dir = os.path.join(store._ingest, hashlib.sha256(ref.encode()).hexdigest())
        self._data = os.path.join(self._dir, "data")
        self._fd = -1
        self._lock_fd = _lock_ingest(self._dir, ref, wait)
        try:
            self._open_data()
        except BaseException:
            self.close()
            raise

    def _open_data(self) -> None:
        self._fd = os.open(self._data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._hasher = hashlib.new(self.algorithm)
        mine = {"digest": self.expected_digest, "size": self.expected_size}
        resumable = _read_ref(self._dir) == self.ref and _read_expected(self._dir) == mine
        size = os.fstat(self._fd).st_size
        if resumable and (self.expected_size is None or size <= self.expected_size):
            # Re-hash what an earlier writer left: the hash state died with it.
            self.offset = _hash_fd(self._fd, self._hasher, size)
            return
        # The partial data (if any) belongs to some other blob: start over. Truncate before
        # recording the new expectations, so a crash in between cannot pair them with it.
        os.ftruncate(self._fd, 0)
        if _read_ref(self._dir) != self.ref:
            _atomic_write(os.path.join(self._dir, "ref"), self.ref.encode())
        _atomic_write(os.path.join(self._dir, "expected"), json.dumps(mine).encode())
        _fsync_dir(self._dir)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._check_open()
        view = memoryview(data).cast("B")
        n = view.nbytes
        if self.expected_size is not None and self.offset + n > self.expected_size:
            # More than announced: a hostile or broken source. Stop before storing it.
            self._discard()
            raise SizeMismatch(f"ingest {self.ref!r}: more than the expected "
                               f"{self.expected_size} bytes")
        done = 0
        try:
            while done < n:
                done += os.pwrite(self._fd, view[done:], self.offset + done)
        except BaseException:
            # Keep the file equal to what was hashed, or a commit would store bytes it
            # never checked.
            try:
                os.ftruncate(self._fd, self.offset)
            except OSError:
                self.close()
            raise
        self._hasher.update(view)
        self.offset += n
        return n

    def digest(self) -> str:
        """The digest of what was written so far."""
        self._check_open()
        return f"{self.algorithm}:{self._hasher.hexdigest()}"

    def truncate(self, size: int = 0) -> None:
        """Cut the data back to `size` bytes, e.g. to 0 when a registry ignored our Range
        request and sends the whole blob again."""
        self._check_open()
        if not 0 <= size <= self.offset:
            raise ValueError(f"cannot truncate to {size}: {self.offset} bytes written")
        os.ftruncate(self._fd, size)
        self._hasher = hashlib.new(self.algorithm)
        self.offset = _hash_fd(self._fd, self._hasher, size)

    def commit(self, size: int | None = None, digest: str | None = None) -> str:
        """Verify size and digest (given here or to writer()), make the data durable and
        move it into blobs/. Returns the digest. A mismatch raises SizeMismatch or
        DigestMismatch and discards the ingest: nothing is stored. Committing content
        that is already stored just discards the ingest."""
        self._check_open()
        size = _agree("size", self.expected_size, size)
        digest = _agree("digest", self.expected_digest, digest)
        if os.fstat(self._fd).st_size != self.offset:
            self._discard()
            raise ContentError(f"ingest {self.ref!r}: data changed under the writer")
        if size is not None and self.offset != size:
            self._discard()
            raise SizeMismatch(f"ingest {self.ref!r}: {self.offset} bytes written, "
                               f"{size} expected")
        if digest is None:
            actual = self.digest()
        else:
            algorithm, _ = parse_digest(digest)
            if algorithm == self.algorithm:
                actual = self.digest()
            else:  # the writer was opened without knowing; hash again in this algorithm
                hasher = hashlib.new(algorithm)
                _hash_fd(self._fd, hasher, self.offset)
                actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != digest:
                self._discard()
                raise DigestMismatch(f"ingest {self.ref!r}: got {actual}, expected {digest}")
        target = self.store.path(actual)
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            existing = None
        if existing is None or not stat.S_ISREG(existing.st_mode) \
                or existing.st_size != self.offset:
            # (an existing file of the wrong size is damage: replace it)
            os.fsync(self._fd)
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            os.fchmod(self._fd, 0o444)  # before the rename: a blob is never writable
            try:
                os.rename(self._data, target)
            except BaseException:
                os.fchmod(self._fd, 0o600)  # still an ingest, which a writer must reopen
                raise
            _fsync_dir(os.path.dirname(target))
        self._discard()
        return actual

    def abort(self) -> None:
        """Drop the ingest and its data."""
        if self._lock_fd >= 0:
            self._discard()

    def close(self) -> None:
        """Release the ingest, keeping its data for a later writer of the same ref."""
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def _discard(self) -> None:
        # Remove while still holding the lock; a writer waiting on it then sees the lock
        # file gone (or replaced) and starts on a fresh ingest.
        try:
            _remove_ingest(self._dir)
        finally:
            self.close()

    def _check_open(self) -> None:
        if self._lock_fd < 0:
            raise ContentError(f"writer for {self.ref!r} is closed")

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


# -- helpers ------------------------------------------------------------------------------

def _valid_hex(algorithm: str, name: str) -> bool:
    return len(name) == ALGORITHMS[algorithm] and _DIGEST_RE.fullmatch(
        f"{algorithm}:{name}") is not None


def _agree(what: str, expected, given):
    if given is None:
        return expected
    if expected is not None and given != expected:
        raise ValueError(f"commit {what} {given!r} differs from the expected {expected!r}")
    return given


def _lock_ingest(d: str, ref: str, wait: float) -> int:
    """Create the ingest directory if needed and flock its lock file; returns the fd."""
    lock = os.path.join(d, "lock")
    deadline = time.monotonic() + wait
    while True:
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
        except FileExistsError:
            # makedirs saw EEXIST, then found no directory: the owner removed it between
            # the two steps. Try again.
            continue
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the owner removed the directory just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # flock() has no timeout, hence polling; blocking would also pin a thread
            if time.monotonic() >= deadline:
                raise IngestLocked(f"ingest {ref!r} is held by another writer") from None
            time.sleep(_LOCK_POLL)
            continue
        except BaseException:
            os.close(fd)
            raise
        # The previous owner removes the ingest before releasing its lock, so the lock we
        # got may be on an unlinked file: then it guards nothing, take the current one.
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev,
                                                                         held.st_ino):
            return fd
        os.close(fd)


def _remove_ingest(d: str) -> None:
    """Remove an ingest whose lock the caller holds: the lock file goes last."""
    for name in _listdir(d):
        if name != "lock":
            _unlink(os.path.join(d, name))
    _unlink(os.path.join(d, "lock"))
    try:
        os.rmdir(d)
    except OSError as e:
        # ENOTEMPTY: a new writer of the same ref already took the directory over
        if e.errno not in (errno.ENOENT, errno.ENOTEMPTY):
            raise


def _read_ref(d: str) -> str | None:
    try:
        with open(os.path.join(d, "ref"), encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _read_expected(d: str) -> dict | None:
    try:
        with open(os.path.join(d, "expected"), "rb") as f:
            exp = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(exp, dict) or set(exp) != {"digest", "size"}:
        return None
    return exp


def _ingest_mtime(d: str) -> float:
    """When an ingest last changed: writes touch data, opening touches the directory."""
    latest = 0.0
    for path in (d, os.path.join(d, "data"), os.path.join(d, "expected")):
        try:
            latest = max(latest, os.stat(path).st_mtime)
        except FileNotFoundError:
            pass
    return latest


def _hash_fd(fd: int, hasher, limit: int | None = None) -> int:
    """Feed `hasher` from the start of `fd` up to `limit` bytes (or EOF), one reusable
    buffer at a time; returns the count hashed."""
    buf = memoryview(bytearray(_CHUNK))
    pos = 0
    while limit is None or pos < limit:
        want = _CHUNK if limit is None else min(_CHUNK, limit - pos)
        n = os.preadv(fd, [buf[:want]], pos)
        if n == 0:
            if limit is not None:
                raise ContentError(f"short read: {pos} of {limit} bytes")
            break
        hasher.update(buf[:n])
        pos += n
    return pos


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
