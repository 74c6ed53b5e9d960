"""content: the content-addressed blob store (digests, writes, resume, locking, fsck)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import inspect
import multiprocessing
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

from bosun.image.content import (MAX_MANIFEST_SIZE, BlobNotFound, BlobTooLarge, ContentError,
                                 ContentStore, DigestMismatch, IngestLocked, InvalidDigest,
                                 SizeMismatch, digest_bytes, parse_digest)

FORK = multiprocessing.get_context("fork")
BLOCK = 64 << 10


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gen(start: int, total: int, chunk: int = 1 << 20):
    """Deterministic bytes [start, total) of a stream made of 64 KiB pseudo-random blocks,
    produced on the fly (any offset can be regenerated, for resume)."""
    pos = start
    while pos < total:
        block = random.Random(pos // BLOCK).randbytes(BLOCK)
        piece = block[pos % BLOCK:][: min(chunk, total - pos)]
        yield piece
        pos += len(piece)


def gen_digest(total: int) -> str:
    h = hashlib.sha256()
    for piece in gen(0, total):
        h.update(piece)
    return "sha256:" + h.hexdigest()


@pytest.fixture
def store(tmp_path) -> ContentStore:
    return ContentStore(str(tmp_path / "content"))


def put(store: ContentStore, data: bytes, ref: str = "r") -> str:
    with store.writer(ref, sha(data), len(data)) as w:
        w.write(data)
        return w.commit()


def ingest_dirs(store: ContentStore) -> list[str]:
    return os.listdir(os.path.join(store.root, "ingest"))


# -- digests -----------------------------------------------------------------------------

def test_parse_digest():
    h = "a" * 64
    assert parse_digest(f"sha256:{h}") == ("sha256", h)
    assert parse_digest("sha512:" + "0" * 128) == ("sha512", "0" * 128)
    assert digest_bytes(b"") == sha(b"")
    assert digest_bytes(b"x", "sha512") == "sha512:" + hashlib.sha512(b"x").hexdigest()


BAD_DIGESTS = [
    "", "sha256", "sha256:", "sha256:../../etc", "sha256:../../etc/passwd",
    "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64, "SHA256:" + "a" * 64,
    "sha256:" + "g" * 64, "md5:" + "a" * 32, "sha512:" + "a" * 64, "sha384:" + "a" * 96,
    "sha256:" + "a" * 64 + "\n", "sha256:" + "a" * 64 + "/", " sha256:" + "a" * 64,
    "sha256:" + "a" * 62 + "/.", "sha256:/" + "a" * 63, "sha256:" + "٣" * 64,
    "sha256:" + "a" * 32 + "\0" + "a" * 31, "sha256/" + "a" * 64, None, b"sha256:" + b"a" * 64,
]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_invalid_digests_rejected_everywhere(store, bad, tmp_path):
    with pytest.raises(InvalidDigest):
        parse_digest(bad)
    for call in (store.path, store.has, store.size, store.open, store.read, store.delete):
        with pytest.raises(InvalidDigest):
            call(bad)
    if bad is not None:  # (None is "no expectation" for writers)
        with pytest.raises(InvalidDigest):
            store.writer("r", expected_digest=bad)
        assert ingest_dirs(store) == []  # refused before touching the disk
        with store.writer("r") as w:
            w.write(b"data")
            with pytest.raises(InvalidDigest):
                w.commit(digest=bad)
    assert list(store.list()) == []
    # nothing escaped the store's root
    assert sorted(os.listdir(tmp_path)) == ["content"]


# -- write, commit, read -----------------------------------------------------------------

def test_write_commit_read(store):
    data = b'{"schemaVersion": 2}'
    d = sha(data)
    assert not store.has(d) and store.size(d) is None
    with store.writer("manifest-1", d, len(data)) as w:
        assert w.offset == 0
        w.write(data[:5])
        w.write(memoryview(data)[5:])
        assert w.offset == len(data)
        assert w.digest() == d
        assert w.commit() == d
    assert store.has(d) and store.size(d) == len(data)
    assert store.read(d) == data
    with store.open(d) as f:
        assert f.read() == data
    path = store.path(d)
    assert path == os.path.join(store.root, "blobs", "sha256", d[7:])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert list(store.list()) == [(d, len(data))]
    assert ingest_dirs(store) == [] and store.ingests() == []
    assert os.listdir(os.path.dirname(path)) == [d[7:]]  # no temp files left


def test_commit_without_expectations_and_sha512(store):
    with store.writer("unknown") as w:
        w.write(b"abc")
        assert w.commit() == sha(b"abc")
    d512 = digest_bytes(b"xyz", "sha512")
    with store.writer("512", d512, 3) as w:
        w.write(b"xyz")
        assert w.commit() == d512
    assert store.read(d512) == b"xyz"
    assert store.path(d512).startswith(os.path.join(store.root, "blobs", "sha512") + "/")
    # a digest of another algorithm than the writer's given only at commit
    d512b = digest_bytes(b"late", "sha512")
    with store.writer("late") as w:
        w.write(b"late")
        assert w.commit(digest=d512b) == d512b
    assert sorted(d for d, _ in store.list()) == sorted([sha(b"abc"), d512, d512b])


def test_empty_blob(store):
    d = put(store, b"")
    assert store.read(d) == b"" and store.size(d) == 0


def test_digest_mismatch_stores_nothing(store):
    with store.writer("r", sha(b"expected"), 8) as w:
        w.write(b"tampered")
        with pytest.raises(DigestMismatch):
            w.commit()
        with pytest.raises(ContentError):  # the writer is done
            w.write(b"more")
    assert list(store.list()) == [] and not store.has(sha(b"tampered"))
    assert ingest_dirs(store) == []


def test_size_mismatch_stores_nothing(store):
    with store.writer("short", sha(b"hello"), 6) as w:
        w.write(b"hello")
        with pytest.raises(SizeMismatch):
            w.commit()
    with store.writer("long", expected_size=3) as w, pytest.raises(SizeMismatch):
        w.write(b"hello")  # refused before it is written
    with store.writer("given-at-commit") as w:
        w.write(b"hello")
        with pytest.raises(SizeMismatch):
            w.commit(size=4)
    assert list(store.list()) == [] and ingest_dirs(store) == []


def test_commit_arguments_must_agree_with_expectations(store):
    with store.writer("r", sha(b"a"), 1) as w:
        w.write(b"a")
        with pytest.raises(ValueError):
            w.commit(size=2)
        with pytest.raises(ValueError):
            w.commit(digest=sha(b"b"))
        assert w.commit(size=1, digest=sha(b"a")) == sha(b"a")


def test_commit_is_idempotent(store):
    data = b"layer bytes"
    d = put(store, data, "first")
    ino = os.stat(store.path(d)).st_ino
    for ref in ("second", "first"):
        assert put(store, data, ref) == d
        assert os.stat(store.path(d)).st_ino == ino  # the stored blob was left alone
    assert list(store.list()) == [(d, len(data))]
    assert ingest_dirs(store) == []


def test_commit_replaces_a_damaged_blob_of_the_wrong_size(store):
    d = put(store, b"good content")
    os.chmod(store.path(d), 0o644)
    with open(store.path(d), "wb") as f:
        f.write(b"trunc")
    assert put(store, b"good content", "again") == d
    assert store.read(d) == b"good content"


def test_abort_and_truncate(store):
    w = store.writer("r")
    w.write(b"junk")
    w.abort()
    assert ingest_dirs(store) == []
    with store.writer("r") as w:
        assert w.offset == 0
        w.write(b"sent again from the start")
        w.truncate(0)  # e.g. the registry ignored our Range header
        assert w.offset == 0
        w.write(b"0123456789")
        w.truncate(4)
        assert w.offset == 4 and w.digest() == sha(b"0123")
        w.write(b"xy")
        assert w.commit() == sha(b"0123xy")
        with pytest.raises(ContentError):
            w.truncate(0)


def test_commit_refuses_data_changed_under_the_writer(store):
    with store.writer("r") as w:
        w.write(b"mine")
        with open(os.path.join(w._dir, "data"), "ab") as f:
            f.write(b" and someone else's")
        with pytest.raises(ContentError, match="changed under the writer"):
            w.commit()
    assert list(store.list()) == [] and ingest_dirs(store) == []


def test_lock_taken_on_a_removed_ingest_is_retaken(store, monkeypatch):
    """The owner of an ingest may remove it (commit, abort) between our open() of its
    lock file and our flock(): that lock guards nothing and must not be kept."""
    real = fcntl.flock
    calls = []

    def owner_finishes_first(fd, op):
        if not calls:  # (removes the lock file we just opened, as _remove_ingest does)
            lock = os.path.join(store.root, "ingest", hashlib.sha256(b"r").hexdigest(), "lock")
            os.unlink(lock)
        calls.append(fd)
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", owner_finishes_first)
    w = store.writer("r")
    monkeypatch.setattr(fcntl, "flock", real)
    assert len(calls) == 2
    with pytest.raises(IngestLocked):  # we hold the lock others see
        store.writer("r")
    w.close()


def test_failed_write_keeps_data_equal_to_hash(store, monkeypatch):
    real = os.pwrite

    def half_then_enospc(fd, data, offset):
        real(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    with store.writer("r") as w:
        w.write(b"before")
        monkeypatch.setattr(os, "pwrite", half_then_enospc)
        with pytest.raises(OSError):
            w.write(b"0123456789")
        monkeypatch.setattr(os, "pwrite", real)
        assert w.offset == 6
        assert w.commit() == sha(b"before")
    assert store.read(sha(b"before")) == b"before"


# -- read limits, open, delete, list -----------------------------------------------------

def test_read_size_limit(store):
    big = b"x" * (MAX_MANIFEST_SIZE + 1)
    d = put(store, big)
    with pytest.raises(BlobTooLarge):
        store.read(d)
    assert store.read(d, max_size=len(big)) == big
    small = put(store, b"0123456789", "s")
    with pytest.raises(BlobTooLarge):
        store.read(small, max_size=9)
    assert store.read(small, max_size=10) == b"0123456789"
    exact = put(store, b"y" * MAX_MANIFEST_SIZE, "e")
    assert len(store.read(exact)) == MAX_MANIFEST_SIZE


def test_read_refuses_before_reading(store):
    d = put(store, b"z" * (64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(BlobTooLarge):
            store.read(d)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_read_detects_corruption(store):
    d = put(store, b"config")
    os.chmod(store.path(d), 0o644)
    with open(store.path(d), "r+b") as f:
        f.write(b"C")
    with pytest.raises(DigestMismatch):
        store.read(d)


def test_missing_blobs_and_delete(store):
    d = sha(b"nothing")
    with pytest.raises(BlobNotFound):
        store.open(d)
    with pytest.raises(BlobNotFound):
        store.read(d)
    with pytest.raises(BlobNotFound):
        store.delete(d)
    d = put(store, b"here")
    store.delete(d)
    assert not store.has(d) and list(store.list()) == []
    with pytest.raises(BlobNotFound):
        store.delete(d)


def test_symlink_in_blobs_is_not_followed(store, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"host file")
    d = sha(b"host file")
    os.symlink(secret, store.path(d))
    assert not store.has(d) and store.size(d) is None
    with pytest.raises(ContentError):
        store.open(d)
    assert list(store.list()) == []
    problems = store.verify()
    assert [(p.kind, p.removed) for p in problems] == [("stray", True)]
    assert secret.read_bytes() == b"host file" and not os.path.lexists(store.path(d))


def test_list_skips_foreign_names(store):
    d = put(store, b"a")
    open(os.path.join(store.root, "blobs", "sha256", "not-a-digest"), "wb").close()
    assert list(store.list()) == [(d, 1)]


# -- resume ------------------------------------------------------------------------------

def test_resume_after_interrupted_write(store):
    data = bytes(range(256)) * 1000
    d = sha(data)
    with pytest.raises(ConnectionError), store.writer("layer-1", d, len(data)) as w:
        w.write(data[:100_000])
        raise ConnectionError("registry went away")  # leaves without commit
    [status] = store.ingests()
    assert (status.ref, status.offset, status.expected_digest, status.expected_size) == (
        "layer-1", 100_000, d, len(data))
    assert not store.has(d)
    w = store.writer("layer-1", d, len(data))
    assert w.offset == 100_000  # what a client sends as Range: bytes=100000-
    w.write(data[w.offset:120_000])
    del w  # dropped without close: the lock goes with it
    with store.writer("layer-1", d, len(data)) as w:
        assert w.offset == 120_000
        w.write(data[w.offset:])
        assert w.commit() == d
    assert store.read(d, max_size=len(data)) == data
    assert ingest_dirs(store) == []


def test_resume_rehashes_partial_data(store):
    data = b"A" * 5000 + b"B" * 5000
    d = sha(data)
    with store.writer("r", d, len(data)) as w:
        w.write(data[:5000])
    # damage the partial data while no writer holds it: the resumed hash must see it
    ingest = os.path.join(store.root, "ingest", hashlib.sha256(b"r").hexdigest())
    with open(os.path.join(ingest, "data"), "r+b") as f:
        f.write(b"Z")
    with store.writer("r", d, len(data)) as w:
        assert w.offset == 5000
        w.write(data[5000:])
        with pytest.raises(DigestMismatch):
            w.commit()
    assert list(store.list()) == [] and ingest_dirs(store) == []


def test_resume_only_with_same_expectations(store):
    with store.writer("r", sha(b"one"), 3) as w:
        w.write(b"on")
    with store.writer("r", sha(b"two"), 3) as w:
        assert w.offset == 0  # another blob under the same ref: its data is not a prefix
        w.write(b"two")
        assert w.commit() == sha(b"two")
    with store.writer("s", expected_size=10) as w:
        w.write(b"12345")
    with store.writer("s", expected_size=10) as w:
        assert w.offset == 5
    with store.writer("s") as w:
        assert w.offset == 0


# -- locking and concurrency -------------------------------------------------------------

def test_same_ref_locked_between_threads(store):
    w = store.writer("r")
    errors = []

    def second():
        try:
            store.writer("r")
        except IngestLocked as e:
            errors.append(e)

    t = threading.Thread(target=second)
    t.start()
    t.join()
    assert len(errors) == 1
    store.writer("other").close()  # other refs are not blocked
    w.close()
    store.writer("r").close()  # free again


def _hold_writer(root, ref, ready, release, commit):
    store = ContentStore(root)
    with store.writer(ref) as w:
        w.write(b"partial")
        ready.set()
        release.wait(30)
        if commit:
            w.commit()


def test_same_ref_locked_between_processes(store):
    ready, release = FORK.Event(), FORK.Event()
    p = FORK.Process(target=_hold_writer, args=(store.root, "r", ready, release, False))
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(IngestLocked, match="held by another writer"):
            store.writer("r")
        t0 = time.monotonic()
        with pytest.raises(IngestLocked):
            store.writer("r", wait=0.3)
        assert time.monotonic() - t0 >= 0.3
        # a waiting writer gets the ingest when the holder leaves, and resumes its data
        threading.Timer(0.3, release.set).start()
        with store.writer("r", wait=30) as w:
            assert w.offset == len(b"partial")
    finally:
        release.set()
        p.join(30)
    assert p.exitcode == 0


def test_waiting_writer_after_holder_commits(store):
    ready, release = FORK.Event(), FORK.Event()
    p = FORK.Process(target=_hold_writer, args=(store.root, "r", ready, release, True))
    p.start()
    try:
        assert ready.wait(30)
        threading.Timer(0.3, release.set).start()
        # we wait on the lock of an ingest the holder then removes: we must end up on a
        # fresh ingest of our own, not on the removed one
        with store.writer("r", wait=30) as w:
            assert w.offset == 0
            assert store.has(sha(b"partial"))
            w.write(b"partial")
            assert w.commit() == sha(b"partial")
    finally:
        release.set()
        p.join(30)
    assert p.exitcode == 0
    assert ingest_dirs(store) == []


def _write_same_ref(root, data, rounds):
    store = ContentStore(root)
    d = sha(data)
    for _ in range(rounds):
        with store.writer("shared", d, len(data), wait=60) as w:
            w.write(data[w.offset:w.offset + len(data) // 2])
            time.sleep(0.001)
            w.write(data[w.offset:])
            assert w.commit() == d


def test_many_processes_same_ref(store):
    data = os.urandom(300_000)
    procs = [FORK.Process(target=_write_same_ref, args=(store.root, data, 10))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert list(store.list()) == [(sha(data), len(data))]
    assert ingest_dirs(store) == [] and store.verify() == []


def _commit_after_barrier(root, ref, data, barrier):
    store = ContentStore(root)
    with store.writer(ref, sha(data), len(data)) as w:
        w.write(data)
        barrier.wait(30)
        assert w.commit() == sha(data)


def test_different_refs_same_digest_both_commit(store):
    data = os.urandom(1 << 20)
    barrier = FORK.Barrier(2)
    procs = [FORK.Process(target=_commit_after_barrier, args=(store.root, ref, data, barrier))
             for ref in ("pull-a", "pull-b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert list(store.list()) == [(sha(data), len(data))]
    assert store.read(sha(data)) == data
    assert ingest_dirs(store) == []


# -- big blobs ---------------------------------------------------------------------------

def test_big_blob_is_streamed(store):
    total = 64 << 20
    h = hashlib.sha256()
    tracemalloc.start()
    try:
        with store.writer("big") as w:
            for piece in gen(0, total):
                h.update(piece)
                w.write(piece)
            d = w.commit(size=total, digest="sha256:" + h.hexdigest())
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert store.verify() == []
        _, verify_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.size(d) == total
    # one generated chunk (1 MiB) and a read buffer, never the 64 MiB
    assert write_peak < 8 << 20, write_peak
    assert verify_peak < 8 << 20, verify_peak
    h2 = hashlib.sha256()
    with store.open(d) as f:
        while chunk := f.read(1 << 20):
            h2.update(chunk)
    assert "sha256:" + h2.hexdigest() == d


def test_resume_of_big_partial_is_streamed(store):
    total = 32 << 20
    d = gen_digest(total)
    with store.writer("big", d, total) as w:
        for piece in gen(0, 24 << 20):
            w.write(piece)
    tracemalloc.start()
    try:
        w = store.writer("big", d, total)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert w.offset == 24 << 20 and peak < 4 << 20, peak
    for piece in gen(w.offset, total):
        w.write(piece)
    assert w.commit() == d


# -- fsck ------------------------------------------------------------------------------------

def test_verify_finds_and_removes_corrupt_blob(store):
    good = put(store, b"good", "g")
    bad = put(store, b"will rot", "b")
    os.chmod(store.path(bad), 0o644)
    with open(store.path(bad), "r+b") as f:
        f.write(b"W")
    problems = store.verify(remove=False)
    assert [(p.kind, p.digest, p.removed) for p in problems] == [("corrupt", bad, False)]
    assert store.has(bad)
    problems = store.verify()
    assert [(p.kind, p.digest, p.removed) for p in problems] == [("corrupt", bad, True)]
    assert not store.has(bad) and store.has(good)
    assert store.verify() == []


def test_verify_reports_stray_files(store):
    put(store, b"ok")
    stray = os.path.join(store.root, "blobs", "sha256", "leftover.tmp")
    open(stray, "wb").close()
    problems = store.verify()
    assert [(p.kind, p.path, p.removed) for p in problems] == [("stray", stray, True)]
    assert not os.path.exists(stray)


def age(path: str, seconds: float) -> None:
    for root, dirs, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(root, name), (time.time() - seconds,) * 2)
    os.utime(path, (time.time() - seconds,) * 2)


def test_stale_ingests_removed(store):
    with store.writer("old") as w:
        w.write(b"abandoned")
    with store.writer("recent") as w:
        w.write(b"in progress")
    [old_dir] = [os.path.join(store.root, "ingest", n) for n in ingest_dirs(store)
                 if n == hashlib.sha256(b"old").hexdigest()]
    age(old_dir, 3 * 3600)
    problems = store.verify(ingest_max_age=3600)
    assert [(p.kind, p.detail, p.removed) for p in problems] == [("stale-ingest", "old", True)]
    assert [s.ref for s in store.ingests()] == ["recent"]
    assert store.ingest_cleanup(max_age=3600) == []


def test_ingest_cleanup_skips_held_ingests(store):
    w = store.writer("slow")
    w.write(b"x")
    d = os.path.join(store.root, "ingest", hashlib.sha256(b"slow").hexdigest())
    age(d, 7200)
    assert store.ingest_cleanup(max_age=3600) == []
    assert os.path.exists(os.path.join(d, "data"))
    w.write(b"y")  # still the owner
    w.close()
    age(d, 7200)
    assert store.ingest_cleanup(max_age=3600) == ["slow"]
    assert ingest_dirs(store) == []


# -- crash safety ------------------------------------------------------------------------

CRASH_WRITER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [sys.argv[1]]
    from bosun.image.content import ContentStore
    from test_content_gen import gen
    root, digest, total = sys.argv[2], sys.argv[3], int(sys.argv[4])
    w = ContentStore(root).writer("crash", digest, total)
    for i, piece in enumerate(gen(w.offset, total, 64 << 10)):
        w.write(piece)
        if i % 16 == 15:
            print(w.offset, flush=True)
            time.sleep(0.01)
    print("done", flush=True)
    time.sleep(600)
""")


def test_kill_9_mid_write_then_resume(store, tmp_path):
    total = 64 << 20
    d = gen_digest(total)
    # the child regenerates the same stream: give it this file's gen()
    helper = tmp_path / "helper"
    helper.mkdir()
    (helper / "test_content_gen.py").write_text(
        f"import random\nBLOCK = {BLOCK}\n" + inspect.getsource(gen))
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(helper), store.root, d, str(total)],
        stdout=subprocess.PIPE, text=True)
    try:
        reported = 0
        for line in child.stdout:
            if line.strip() == "done":
                break
            reported = int(line)
            if reported >= 8 << 20:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert reported > 0
    # clean: nothing committed, nothing corrupt, the ingest is recent (not stale)
    assert list(store.list()) == []
    assert store.verify() == []
    [status] = store.ingests()
    assert status.ref == "crash" and reported <= status.offset < total  # killed mid-way
    # the lock died with the process: a new writer takes over and resumes
    with store.writer("crash", d, total) as w:
        assert w.offset == status.offset
        for piece in gen(w.offset, total):
            w.write(piece)
        assert w.commit() == d
    assert store.verify() == [] and ingest_dirs(store) == []
    assert store.size(d) == total
