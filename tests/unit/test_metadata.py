"""metadata: images, tags, layers and references in SQLite."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import sqlite3
import stat
import threading

import pytest

from bosun.image.content import InvalidDigest
from bosun.image.metadata import (SCHEMA_VERSION, AmbiguousPrefix, Conflict, Image,
                                  MetadataDB, MetadataError, NotFound, migrate)

FORK = multiprocessing.get_context("fork")
MT = "application/vnd.oci.image.manifest.v1+json"


def dg(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def hexid(prefix: str) -> str:
    return "sha256:" + prefix + "0" * (64 - len(prefix))


@pytest.fixture
def db(tmp_path):
    m = MetadataDB(str(tmp_path / "metadata.db"))
    yield m
    m.close()


def stack(db: MetadataDB, *names: str) -> list[str]:
    """Add layers named by diff ids, each on the one before; returns their chain ids."""
    chain, parent = [], None
    for name in names:
        chain_id = dg(f"{parent}+{name}")
        db.add_layer(chain_id, dg(name), parent, 100, f"snap-{name}")
        chain.append(chain_id)
        parent = chain_id
    return chain


def image(db: MetadataDB, image_id: str, layers: list[str], refs=(), blobs=(),
          manifest: str | None = "default", **kw) -> Image:
    return db.add_image(image_id, media_type=MT, os="linux", architecture="amd64",
                        size=100 * len(layers), layers=layers, refs=refs, blobs=blobs,
                        manifest_digest=dg("m" + image_id) if manifest == "default" else manifest,
                        **kw)


# -- the database itself -----------------------------------------------------------------

def test_pragmas_and_schema_version(tmp_path, db):
    conn = sqlite3.connect(db.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
    with db._connection() as mine:
        assert mine.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert mine.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert mine.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert stat.S_IMODE(os.stat(db.path).st_mode) == 0o600


def test_concurrent_calls_get_their_own_connections(db):
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(db._connection()) for _ in range(6)]
        assert len(set(map(id, conns))) == 6
        assert [c.execute("PRAGMA foreign_keys").fetchone()[0] for c in conns] == [1] * 6
    assert len(db._pool._idle) == 4  # the pool keeps a few, closes the rest
    with db._connection() as first:
        pass
    with db._connection() as second:
        assert second is first  # reused, not reopened


def db_fds(path: str) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(path)
        except OSError:
            pass
    return n


def test_short_lived_threads_do_not_leak_connections(db):
    image(db, dg("c"), [], refs=["r/x:1"])
    for _ in range(50):  # as an API server's request threads
        t = threading.Thread(target=db.resolve, args=("r/x:1",))
        t.start()
        t.join()
    assert 0 < db_fds(db.path) <= 3 * 4  # db, -wal, -shm per pooled connection
    db.close()
    assert db_fds(db.path) == 0
    assert db.resolve("r/x:1") == dg("c")  # reconnects after close()


def test_reopen_keeps_data_and_version(tmp_path):
    path = str(tmp_path / "m.db")
    a = MetadataDB(path)
    image(a, dg("c1"), stack(a, "l1"), refs=["docker.io/library/x:1"])
    a.close()
    b = MetadataDB(path)
    assert b.resolve("docker.io/library/x:1") == dg("c1")
    assert b._query("SELECT version FROM schema_version") == [(1,)]
    b.close()


def test_migrate_from_empty_and_refuse_newer(tmp_path):
    conn = sqlite3.connect(str(tmp_path / "m.db"), isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "images", "tags", "layers", "image_layers", "blob_refs",
            "container_refs"} <= tables
    assert migrate(conn) == SCHEMA_VERSION  # idempotent
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    conn.execute(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(MetadataError, match="newer"):
        MetadataDB(str(tmp_path / "m.db"))


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    from bosun.image import metadata
    broken = {1: metadata._MIGRATIONS[1][:3] + ["CREATE TABLE oops (x"]}
    monkeypatch.setattr(metadata, "_MIGRATIONS", broken)
    conn = sqlite3.connect(str(tmp_path / "m.db"), isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    assert not conn.in_transaction


# -- images and tags ---------------------------------------------------------------------

def test_add_get_list_image(db):
    layers = stack(db, "a", "b")
    img = image(db, dg("cfg"), layers, refs=["docker.io/library/busybox:latest"],
                blobs=[(dg("blob-a"), "layer"), (dg("blob-b"), "layer"), (dg("idx"), "index")],
                variant="v8", created="2024-01-02T03:04:05Z")
    assert img == db.get_image(dg("cfg"))
    assert (img.id, img.manifest_digest, img.media_type, img.os, img.architecture, img.variant,
            img.size, img.created) == (dg("cfg"), dg("m" + dg("cfg")), MT, "linux", "amd64",
                                       "v8", 200, "2024-01-02T03:04:05Z")
    assert img.added > 0 and img.last_tag_time is not None
    assert [l.chain_id for l in db.layers_for(img.id)] == layers
    assert db.tags_for(img.id) == ["docker.io/library/busybox:latest"]
    assert sorted(db.blobs_for(img.id)) == sorted([
        (dg("cfg"), "config"), (dg("m" + dg("cfg")), "manifest"), (dg("blob-a"), "layer"),
        (dg("blob-b"), "layer"), (dg("idx"), "index")])
    image(db, dg("cfg2"), layers[:1], manifest=None)
    assert [i.id for i in db.list_images()] == [dg("cfg2"), dg("cfg")]  # newest first
    assert db.get_image(dg("cfg2")).last_tag_time is None
    with pytest.raises(NotFound):
        db.get_image(dg("nope"))


def test_add_image_again_merges(db):
    layers = stack(db, "a")
    image(db, dg("c"), layers, refs=["r/x:1"], blobs=[(dg("gz"), "layer")])
    image(db, dg("c"), layers, refs=["r/x:2"], blobs=[(dg("zstd"), "layer")],
          manifest=dg("other manifest"))
    assert db.tags_for(dg("c")) == ["r/x:1", "r/x:2"]
    assert {d for d, _ in db.blobs_for(dg("c"))} >= {dg("gz"), dg("zstd"), dg("other manifest")}
    assert len(db.list_images()) == 1
    with pytest.raises(Conflict):
        image(db, dg("c"), stack(db, "other"))


def test_add_image_is_one_transaction(db):
    good = stack(db, "a")
    with pytest.raises(NotFound):  # the second layer does not exist
        image(db, dg("c"), good + [dg("missing")], refs=["r/x:1"])
    with pytest.raises(ValueError):
        image(db, dg("c"), good, refs=["r/x:1", "bad ref"])
    assert db.list_images() == []
    assert db._query("SELECT COUNT(*) FROM tags") == [(0,)]
    assert db._query("SELECT COUNT(*) FROM blob_refs") == [(0,)]


def test_add_image_checks_the_stack(db):
    a = stack(db, "a", "b")
    other = stack(db, "z")
    with pytest.raises(Conflict):  # b does not sit on z
        image(db, dg("c"), [other[0], a[1]])
    with pytest.raises(Conflict):  # b's parent missing from the stack
        image(db, dg("c"), [a[1]])
    image(db, dg("scratch"), [])  # no layers at all is fine
    assert db.layers_for(dg("scratch")) == []


@pytest.mark.parametrize("bad", ["sha256:../../x", "sha256:" + "A" * 64, "abc", ""])
def test_add_image_validates_digests(db, bad):
    with pytest.raises(InvalidDigest):
        image(db, bad, [])
    with pytest.raises(InvalidDigest):
        image(db, dg("c"), [], blobs=[(bad, "layer")])
    with pytest.raises(InvalidDigest):
        db.add_layer(bad, dg("d"), None, 1, "k")
    with pytest.raises(ValueError):
        image(db, dg("c"), [], blobs=[(dg("x"), "weird")])
    assert db.list_images() == []


def test_tag_move_untag(db):
    layers = stack(db, "a")
    one = image(db, dg("one"), layers, refs=["docker.io/library/app:latest"]).id
    two = image(db, dg("two"), layers).id
    assert db.tag(two, "docker.io/library/app:latest") == one  # moved
    assert db.tag(two, "docker.io/library/app:latest") is None  # already there
    assert db.tags_for(one) == [] and db.dangling_images() == [one]
    assert db.tag(two, "docker.io/library/app@" + dg("manifest")) is None  # digest reference
    assert db.tags_for(two) == ["docker.io/library/app:latest",
                                "docker.io/library/app@" + dg("manifest")]
    assert db.untag("docker.io/library/app:latest") == two
    with pytest.raises(NotFound):
        db.untag("docker.io/library/app:latest")
    with pytest.raises(NotFound):
        db.tag(dg("ghost"), "x:1")
    with pytest.raises(NotFound):
        db.tags_for(dg("ghost"))
    for bad in ("", "has space", "new\nline", "x" * 5000, None):
        with pytest.raises(ValueError):
            db.tag(two, bad)


def test_last_tag_time_moves(db):
    img = image(db, dg("c"), [])
    db.tag(img.id, "r/x:1")
    t1 = db.get_image(img.id).last_tag_time
    db.tag(img.id, "r/x:2")
    assert db.get_image(img.id).last_tag_time >= t1 > 0


# -- resolve -----------------------------------------------------------------------------

def test_resolve(db):
    a = image(db, hexid("abc1"), [], refs=["docker.io/library/busybox:latest"]).id
    b = image(db, hexid("abc2"), []).id
    c = image(db, hexid("f"), [], refs=["docker.io/library/abc:latest"]).id
    assert db.resolve(a) == a
    assert db.resolve(a[7:]) == a  # 64 hex digits without "sha256:"
    assert db.resolve("docker.io/library/busybox:latest") == a
    assert db.resolve("busybox", "docker.io/library/busybox:latest") == a
    assert db.resolve("abc1") == a and db.resolve("sha256:abc1") == a
    assert db.resolve("abc2") == b
    assert db.resolve("f") == c
    with pytest.raises(AmbiguousPrefix):
        db.resolve("ab")
    with pytest.raises(AmbiguousPrefix):
        db.resolve("sha256:abc")
    # a reference wins over an ID prefix, as in Docker
    assert db.resolve("abc", "docker.io/library/abc:latest") == c
    with pytest.raises(AmbiguousPrefix):
        db.resolve("abc")  # not normalized: only an ID prefix
    for missing in ("0", "abc3", "sha256:" + "0" * 64, "0" * 64, "busybox", "ABC1",
                    "sha256:", "sha512:abc1", "", "abc1 ", "a%", "a*", "a?"):
        with pytest.raises(NotFound):
            db.resolve(missing)


def test_resolve_full_id_is_never_a_prefix(db):
    full = hexid("ab")
    image(db, full, [])
    assert db.resolve(full[7:]) == full
    with pytest.raises(NotFound):  # 64 digits that match no ID are not a prefix search
        db.resolve("b" * 64)


def test_resolve_sha512_ids(db):
    d512 = "sha512:" + "ab" * 64
    image(db, d512, [])
    assert db.resolve(d512) == d512
    assert db.resolve("abab") == d512
    assert db.resolve("sha512:abab") == d512
    with pytest.raises(NotFound):
        db.resolve("sha256:abab")


# -- containers and deletion -------------------------------------------------------------

def test_container_refs_block_delete(db):
    layers = stack(db, "a", "b")
    img = image(db, dg("c"), layers, refs=["r/x:1", "r/x@" + dg("m")]).id
    db.add_container_ref("ctr1", img)
    db.add_container_ref("ctr1", img)  # idempotent
    db.add_container_ref("ctr2", img, layers[0])
    assert db.containers_using(img) == ["ctr1", "ctr2"]
    with pytest.raises(Conflict, match="ctr1, ctr2"):
        db.delete_image(img)
    assert db.get_image(img).id == img  # still there
    assert db.remove_container_ref("ctr1") is True
    assert db.remove_container_ref("ctr1") is False
    assert db.remove_container_ref("ctr2") is True
    assert db.delete_image(img) == ["r/x:1", "r/x@" + dg("m")]
    with pytest.raises(NotFound):
        db.get_image(img)
    with pytest.raises(NotFound):
        db.resolve("r/x:1")
    with pytest.raises(NotFound):
        db.delete_image(img)
    for table in ("tags", "image_layers", "blob_refs"):
        assert db._query(f"SELECT COUNT(*) FROM {table}") == [(0,)]


def test_container_ref_errors(db):
    layers = stack(db, "a")
    one = image(db, dg("one"), layers).id
    two = image(db, dg("two"), layers).id
    db.add_container_ref("c", one)
    with pytest.raises(Conflict):
        db.add_container_ref("c", two)
    with pytest.raises(NotFound):
        db.add_container_ref("d", dg("ghost"))
    with pytest.raises(NotFound):
        db.add_container_ref("d", one, dg("no layer"))
    for bad in ("", "a b", None):
        with pytest.raises(ValueError):
            db.add_container_ref(bad, one)


def test_force_delete_keeps_container_layers(db):
    layers = stack(db, "a", "b")
    img = image(db, dg("c"), layers, refs=["r/x:1"]).id
    db.add_container_ref("ctr", img)
    assert db.delete_image(img, force=True) == ["r/x:1"]
    assert db.containers_using(img) == []
    # the container's writable layer still sits on b (and so on a)
    assert db.unreferenced_layers() == []
    assert db.layer_refcount(layers[0]) == 1 and db.layer_refcount(layers[1]) == 1
    with pytest.raises(Conflict):
        db.delete_layer(layers[1])
    db.remove_container_ref("ctr")
    assert [l.chain_id for l in db.unreferenced_layers()] == [layers[1], layers[0]]


# -- layers ------------------------------------------------------------------------------

def test_add_layer(db):
    base = db.add_layer(dg("c1"), dg("d1"), None, 10, "k1")
    assert db.add_layer(dg("c1"), dg("d1"), None, 10, "k1") == base  # idempotent
    assert db.get_layer(dg("c1")) == base
    with pytest.raises(Conflict):
        db.add_layer(dg("c1"), dg("d1"), None, 10, "another snapshot")
    with pytest.raises(NotFound):
        db.add_layer(dg("c2"), dg("d2"), dg("no parent"), 10, "k2")
    with pytest.raises(ValueError):
        db.add_layer(dg("c2"), dg("d2"), None, -1, "k2")
    with pytest.raises(ValueError):
        db.add_layer(dg("c2"), dg("d2"), None, 1, "")
    with pytest.raises(NotFound):
        db.get_layer(dg("c2"))


def test_list_layers(db):
    assert db.list_layers() == []
    layers = stack(db, "a", "b")
    assert sorted(l.chain_id for l in db.list_layers()) == sorted(layers)


def test_layer_refcounts(db):
    shared = stack(db, "base", "mid")
    top1 = db.add_layer(dg("t1"), dg("dt1"), shared[1], 5, "kt1").chain_id
    top2 = db.add_layer(dg("t2"), dg("dt2"), shared[1], 5, "kt2").chain_id
    i1 = image(db, dg("i1"), shared + [top1]).id
    image(db, dg("i2"), shared + [top2])
    assert [db.layer_refcount(c) for c in shared + [top1, top2]] == [2, 2, 1, 1]
    db.add_container_ref("ctr", i1)  # on top1
    assert [db.layer_refcount(c) for c in shared + [top1, top2]] == [3, 3, 2, 1]
    with pytest.raises(NotFound):
        db.layer_refcount(dg("ghost"))


def test_unreferenced_layers_children_first(db):
    kept = stack(db, "a", "b")
    image(db, dg("keep"), kept)
    # an image that goes away, sharing a and b, with two layers of its own
    c = db.add_layer(dg("c"), dg("dc"), kept[1], 1, "kc").chain_id
    d = db.add_layer(dg("d"), dg("dd"), c, 1, "kd").chain_id
    gone = image(db, dg("gone"), kept + [c, d]).id
    # and a pull that crashed after its first layer
    orphan = stack(db, "orphan")[0]
    assert [l.chain_id for l in db.unreferenced_layers()] == [orphan]
    db.delete_image(gone)
    assert [l.chain_id for l in db.unreferenced_layers()] == [d, c, orphan]
    assert [db.layer_refcount(x) for x in (c, d, orphan)] == [0, 0, 0]
    with pytest.raises(Conflict):  # d sits on c
        db.delete_layer(c)
    with pytest.raises(Conflict):  # an image uses it
        db.delete_layer(kept[1])
    for layer in db.unreferenced_layers():
        db.delete_layer(layer.chain_id)
    assert db.unreferenced_layers() == []
    with pytest.raises(NotFound):
        db.delete_layer(d)
    assert [l.chain_id for l in db.layers_for(dg("keep"))] == kept


# -- GC queries --------------------------------------------------------------------------

def test_unreferenced_blobs(db):
    layers = stack(db, "a")
    image(db, dg("c1"), layers, blobs=[(dg("gz-a"), "layer")], manifest=dg("m1"))
    image(db, dg("c2"), layers, blobs=[(dg("gz-a"), "layer"), (dg("index"), "index")],
          manifest=dg("m2"))
    everything = [dg(n) for n in ("c1", "c2", "m1", "m2", "gz-a", "index", "stray1", "stray2")]
    assert db.unreferenced_blobs(iter(everything + [dg("stray1")])) == [dg("stray1"),
                                                                         dg("stray2")]
    db.delete_image(dg("c1"))
    assert db.unreferenced_blobs(everything) == [dg("c1"), dg("m1"), dg("stray1"),
                                                 dg("stray2")]  # gz-a: still c2's
    db.delete_image(dg("c2"))
    assert db.unreferenced_blobs(everything) == everything


def test_dangling_images(db):
    tagged = image(db, dg("tagged"), [], refs=["r/x:1"]).id
    by_digest = image(db, dg("by digest"), [], refs=["r/x@" + dg("m")]).id
    none = image(db, dg("none"), []).id
    used = image(db, dg("used"), []).id
    db.add_container_ref("ctr", used)
    assert db.dangling_images() == [none, used]
    db.untag("r/x:1")
    assert db.dangling_images() == [tagged, none, used]
    assert by_digest not in db.dangling_images()


# -- concurrency -------------------------------------------------------------------------

def _hammer(path: str, worker: int, n: int) -> None:
    db = MetadataDB(path)
    base = db.add_layer(dg("shared base"), dg("base"), None, 1, "base").chain_id
    for i in range(n):
        img = dg(f"{worker}-{i}")
        db.add_image(img, media_type=MT, os="linux", architecture="amd64", size=1,
                     layers=[base], refs=[f"r/w{worker}:{i}", "r/shared:latest"])
        db.resolve(f"r/w{worker}:{i}")
        db.tag(img, f"r/w{worker}:moved")
        if i % 3 == 0:
            db.add_container_ref(f"ctr-{worker}-{i}", img)
        if i % 5 == 0:
            db.delete_image(img, force=True)
        db.unreferenced_layers()
    db.close()


def test_two_processes(db):
    procs = [FORK.Process(target=_hammer, args=(db.path, w, 60)) for w in range(2)]
    for p in procs:
        p.start()
    _hammer(db.path, 2, 30)  # and this process too, at the same time
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    ids = {i.id for i in db.list_images()}
    expected = {dg(f"{w}-{i}") for w, n in ((0, 60), (1, 60), (2, 30)) for i in range(n)
                if i % 5}
    assert ids == expected
    assert db._query("PRAGMA integrity_check") == [("ok",)]
    assert db._query("PRAGMA foreign_key_check") == []
    assert db._query("SELECT COUNT(*) FROM container_refs") == [(20 + 20 + 10,)]


def test_threads(db):
    errors = []

    def work(w):
        try:
            _hammer(db.path, w, 20)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    shared = MetadataDB(db.path)  # one object used from several threads

    def work_shared(w):
        try:
            for i in range(20):
                img = shared.add_image(dg(f"t{w}-{i}"), media_type=MT, os="linux",
                                       architecture="arm64", size=0, layers=[])
                shared.tag(img.id, f"r/t{w}:{i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(3)]
    threads += [threading.Thread(target=work_shared, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.list_images()) == 3 * 16 + 3 * 20
    assert all(shared.resolve(f"r/t{w}:{i}") == dg(f"t{w}-{i}") for w in range(3)
               for i in range(20))
    shared.close()


def test_forked_child_uses_its_own_connection(db):
    image(db, dg("before fork"), [])
    parents = list(db._pool._idle)
    assert parents
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            with db._connection() as conn:  # not one of the parent's
                ok = conn not in parents
            ok = ok and db.resolve(dg("before fork")) == dg("before fork")
            image(db, dg("from child"), [])
            os.write(w, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 2) == b"ok"
    os.close(r)
    os.waitpid(pid, 0)
    assert db.resolve(dg("from child")) == dg("from child")
