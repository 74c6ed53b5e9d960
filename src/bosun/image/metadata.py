"""Image metadata in SQLite (the engine keeps it at <data-root>/metadata.db): images, tags,
layers and who references what, so that `rmi` can refuse and garbage collection can find
leftovers.

The database knows digests and names only; blobs live in the content store and layer
contents in the snapshotter. Every change is one transaction, so a crash leaves the state
before or after it. Callers order their work so that what a crash could orphan is found by
the GC queries: a pull stores blobs, then layers (add_layer), then the image (add_image,
with its tags) last; and GC must not run during a pull, whose blobs and layers are
unreferenced until add_image.

Threads and processes: each call takes a connection from a small pool for its own use
while it runs, so one MetadataDB serves any number of threads (a connection is never used
by two threads at once, nor across fork(): a forked child opens its own). Writes take the
database's write lock up front (BEGIN IMMEDIATE) and wait for it up to `timeout` seconds;
WAL mode lets readers go on meanwhile. Other processes may open the same file.

Schema (version 1; `migrate()` brings an older file up to date, refuses a newer one):

    images(id = config digest, manifest_digest, media_type, os, architecture, variant,
           size, created, added, last_tag_time)
    tags(ref -> image_id)               "docker.io/library/busybox:latest" or "name@sha256:…"
    layers(chain_id, diff_id, parent chain_id, size, snapshot_key, created)
    image_layers(image_id, idx, chain_id)     an image's stack, base layer first (idx 0)
    blob_refs(image_id, digest, kind)         index/manifest/config/layer blobs it uses
    container_refs(container_id -> image_id, chain_id)
        chain_id is the layer the container's writable snapshot sits on: it (and its
        ancestors) stay in use even after `rmi --force` removed the image.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bosun.image.content import parse_digest

SCHEMA_VERSION = 1

# Statements per version; migrate() runs those above the file's version, in one transaction.
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE images (
            id              TEXT PRIMARY KEY,       -- the config digest
            manifest_digest TEXT,                   -- NULL when built or loaded locally
            media_type      TEXT NOT NULL,
            os              TEXT NOT NULL,
            architecture    TEXT NOT NULL,
            variant         TEXT NOT NULL DEFAULT '',
            size            INTEGER NOT NULL CHECK (size >= 0),
            created         TEXT,                   -- the config's "created" (RFC 3339)
            added           REAL NOT NULL,          -- when stored here (epoch seconds)
            last_tag_time   REAL
        )""",
        """CREATE TABLE tags (
            ref      TEXT PRIMARY KEY,
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            created  REAL NOT NULL
        )""",
        "CREATE INDEX tags_image ON tags(image_id)",
        # parent has no ON DELETE action: a layer cannot go while a child needs it.
        """CREATE TABLE layers (
            chain_id     TEXT PRIMARY KEY,
            diff_id      TEXT NOT NULL,
            parent       TEXT REFERENCES layers(chain_id),
            size         INTEGER NOT NULL CHECK (size >= 0),
            snapshot_key TEXT NOT NULL,
            created      REAL NOT NULL
        )""",
        "CREATE INDEX layers_parent ON layers(parent)",
        """CREATE TABLE image_layers (
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            idx      INTEGER NOT NULL CHECK (idx >= 0),
            chain_id TEXT NOT NULL REFERENCES layers(chain_id),
            PRIMARY KEY (image_id, idx)
        )""",
        "CREATE INDEX image_layers_chain ON image_layers(chain_id)",
        """CREATE TABLE blob_refs (
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            digest   TEXT NOT NULL,
            kind     TEXT NOT NULL CHECK (kind IN ('index', 'manifest', 'config', 'layer')),
            PRIMARY KEY (image_id, digest)
        )""",
        "CREATE INDEX blob_refs_digest ON blob_refs(digest)",
        """CREATE TABLE container_refs (
            container_id TEXT PRIMARY KEY,
            image_id     TEXT REFERENCES images(id) ON DELETE SET NULL,
            chain_id     TEXT REFERENCES layers(chain_id)
        )""",
        "CREATE INDEX container_refs_image ON container_refs(image_id)",
        "CREATE INDEX container_refs_chain ON container_refs(chain_id)",
    ],
}

BLOB_KINDS = ("index", "manifest", "config", "layer")
_PREFIX_RE = re.compile(r"(?:(sha256|sha512):)?([0-9a-f]{1,128})")
_NAME_RE = re.compile(r"[\x21-\x7e]{1,4096}")  # printable ASCII, no spaces


class MetadataError(Exception):
    """Base of the metadata errors. `str()` is a one-line message."""


class NotFound(MetadataError):
    pass


class Conflict(MetadataError):
    pass


class AmbiguousPrefix(MetadataError):
    pass


@dataclass(frozen=True)
class Image:
    id: str
    manifest_digest: str | None
    media_type: str
    os: str
    architecture: str
    variant: str
    size: int
    created: str | None
    added: float
    last_tag_time: float | None


@dataclass(frozen=True)
class Layer:
    chain_id: str
    diff_id: str
    parent: str | None
    size: int
    snapshot_key: str
    created: float


_IMAGE_COLS = ("id, manifest_digest, media_type, os, architecture, variant, size, created, "
               "added, last_tag_time")
_LAYER_COLS = "chain_id, diff_id, parent, size, snapshot_key, created"


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION in one transaction; returns the version.
    `conn` must be in autocommit mode (isolation_level=None)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = row[0] if row else 0
        if current > SCHEMA_VERSION:
            raise MetadataError(f"metadata database has schema version {current}, newer than "
                                f"this bosun's {SCHEMA_VERSION}")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif current != SCHEMA_VERSION:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


class MetadataDB:
    """The metadata database at `path`. One instance serves every thread of a process."""

    def __init__(self, path: str, timeout: float = 30.0):
        self.path = os.path.abspath(path)
        self.timeout = timeout
        from bosun import sqlitedb

        self._pool = sqlitedb.Pool(self.path, timeout, error=MetadataError)
        # Create it 0600 ourselves: SQLite would use the umask, and its -wal/-shm files
        # copy the database file's mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        with self._connection() as conn:
            migrate(conn)

    # -- connections and transactions -----------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for this thread's exclusive use, from the pool."""
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction (see sqlitedb.transaction)."""
        from bosun import sqlitedb

        with self._connection() as conn, sqlitedb.transaction(conn, write):
            yield conn

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """All rows of one read-only statement (a statement is its own snapshot)."""
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Close the idle connections, at shutdown. (Used again, the object reconnects.)"""
        self._pool.close()

    # -- images ---------------------------------------------------------------------------

    def add_image(self, image_id: str, *, media_type: str, os: str, architecture: str,
                  size: int, layers: Sequence[str], manifest_digest: str | None = None,
                  variant: str = "", created: str | None = None,
                  blobs: Iterable[tuple[str, str]] = (), refs: Iterable[str] = ()) -> Image:
        """Record an image (id = its config digest) with its layer stack (chain ids, base
        first, each already added with add_layer), the blobs it uses as (digest, kind) and
        the references to point at it, all at once. The config and manifest digests are
        recorded as blobs without being listed. Adding an image again adds blobs and refs;
        its layers must be the same."""
        parse_digest(image_id)
        if manifest_digest is not None:
            parse_digest(manifest_digest)
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"invalid image size {size!r}")
        layers = list(layers)
        blob_rows = [(image_id, "config")] + ([(manifest_digest, "manifest")]
                                              if manifest_digest else [])
        for digest, kind in blobs:
            parse_digest(digest)
            if kind not in BLOB_KINDS:
                raise ValueError(f"invalid blob kind {kind!r}")
            blob_rows.append((digest, kind))
        refs = [_check_ref(r) for r in refs]
        now = time.time()
        with self._tx() as conn:
            self._check_stack(conn, layers)
            row = conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone()
            if row is None:
                conn.execute(
                    f"INSERT INTO images ({_IMAGE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (image_id, manifest_digest, media_type, os, architecture, variant, size,
                     created, now, None))
                conn.executemany(
                    "INSERT INTO image_layers (image_id, idx, chain_id) VALUES (?,?,?)",
                    [(image_id, i, c) for i, c in enumerate(layers)])
            else:
                have = [r[0] for r in conn.execute(
                    "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY idx",
                    (image_id,))]
                if have != layers:
                    raise Conflict(f"image {image_id} is already stored with other layers")
            conn.executemany(
                "INSERT OR IGNORE INTO blob_refs (image_id, digest, kind) VALUES (?,?,?)",
                [(image_id, d, k) for d, k in blob_rows])
            for ref in refs:
                self._tag(conn, image_id, ref, now)
            return self._image(conn, image_id)

    @staticmethod
    def _check_stack(conn: sqlite3.Connection, layers: list[str]) -> None:
        # Each layer must sit on the one before it: the GC queries rely on an image's stack
        # listing every ancestor of its top layer.
        parent = None
        for chain_id in layers:
            row = conn.execute("SELECT parent FROM layers WHERE chain_id = ?",
                               (chain_id,)).fetchone()
            if row is None:
                raise NotFound(f"layer {chain_id} not found")
            if row[0] != parent:
                raise Conflict(f"layer {chain_id} does not sit on {parent or 'nothing'}")
            parent = chain_id

    def get_image(self, image_id: str) -> Image:
        with self._tx(write=False) as conn:
            return self._image(conn, image_id)

    @staticmethod
    def _image(conn: sqlite3.Connection, image_id: str) -> Image:
        row = conn.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE id = ?",
                           (image_id,)).fetchone()
        if row is None:
            raise NotFound(f"no such image: {image_id}")
        return Image(*row)

    def list_images(self) -> list[Image]:
        """Newest first."""
        rows = self._query(f"SELECT {_IMAGE_COLS} FROM images ORDER BY added DESC, id")
        return [Image(*r) for r in rows]

    def resolve(self, ref_or_id: str, normalized_ref: str | None = None) -> str:
        """The image ID meant by a full ID (with or without "sha256:"), a reference, or a
        unique ID prefix of at least one hex digit (optionally "sha256:"-prefixed), tried
        in that order, as Docker does. The caller passes the normalized form of a short
        reference ("busybox" -> "docker.io/library/busybox:latest") as `normalized_ref`;
        `ref_or_id` itself is then still tried as an ID prefix."""
        m = _PREFIX_RE.fullmatch(ref_or_id) if isinstance(ref_or_id, str) else None
        with self._tx(write=False) as conn:
            if m:
                algorithm = m[1] or ("sha256" if len(m[2]) == 64 else None)
                if algorithm and len(m[2]) == (64 if algorithm == "sha256" else 128):
                    # a full ID: 64 hex digits are never a repository name
                    full = f"{algorithm}:{m[2]}"
                    if conn.execute("SELECT 1 FROM images WHERE id = ?", (full,)).fetchone():
                        return full
                    raise NotFound(f"no such image: {ref_or_id}")
            for ref in (normalized_ref, ref_or_id):
                if ref:
                    row = conn.execute("SELECT image_id FROM tags WHERE ref = ?",
                                       (ref,)).fetchone()
                    if row:
                        return row[0]
            if m:
                algorithms = [m[1]] if m[1] else ["sha256", "sha512"]
                # GLOB is case-sensitive and can use the primary key index; the pattern
                # is hex only, so it has no wildcards of its own.
                rows = conn.execute(
                    "SELECT id FROM images WHERE " + " OR ".join(["id GLOB ?"] * len(algorithms))
                    + " LIMIT 2", [f"{a}:{m[2]}*" for a in algorithms]).fetchall()
                if len(rows) == 1:
                    return rows[0][0]
                if rows:
                    raise AmbiguousPrefix(f"image ID prefix {ref_or_id!r} is ambiguous")
        raise NotFound(f"no such image: {ref_or_id}")

    def delete_image(self, image_id: str, force: bool = False) -> list[str]:
        """Remove an image with its tags; returns the refs removed. Refuses (Conflict)
        while containers use it, unless `force` (the engine forbids that for running
        containers): those containers keep their layers, not the image."""
        with self._tx() as conn:
            self._image(conn, image_id)
            users = [r[0] for r in conn.execute(
                "SELECT container_id FROM container_refs WHERE image_id = ? "
                "ORDER BY container_id", (image_id,))]
            if users and not force:
                raise Conflict(f"image {image_id} is used by container(s) {', '.join(users)}")
            refs = [r[0] for r in conn.execute(
                "SELECT ref FROM tags WHERE image_id = ? ORDER BY ref", (image_id,))]
            # cascades to tags, image_layers, blob_refs; container_refs.image_id -> NULL
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            return refs

    def dangling_images(self) -> list[str]:
        """IDs of images no reference points at (Docker's <none>:<none>), including any
        that containers use: prune must skip those (see containers_using)."""
        return [r[0] for r in self._query(
            "SELECT id FROM images WHERE NOT EXISTS "
            "(SELECT 1 FROM tags WHERE tags.image_id = images.id) ORDER BY added, id")]

    # -- tags -----------------------------------------------------------------------------

    def tag(self, image_id: str, ref: str) -> str | None:
        """Point `ref` (a normalized reference, tag or digest) at an image. Returns the
        image it pointed at before if the tag moved (that one may now be dangling)."""
        ref = _check_ref(ref)
        with self._tx() as conn:
            self._image(conn, image_id)
            return self._tag(conn, image_id, ref, time.time())

    @staticmethod
    def _tag(conn: sqlite3.Connection, image_id: str, ref: str, now: float) -> str | None:
        row = conn.execute("SELECT image_id FROM tags WHERE ref = ?", (ref,)).fetchone()
        conn.execute("INSERT INTO tags (ref, image_id, created) VALUES (?,?,?) "
                     "ON CONFLICT (ref) DO UPDATE SET image_id = excluded.image_id, "
                     "created = excluded.created", (ref, image_id, now))
        conn.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (now, image_id))
        return row[0] if row and row[0] != image_id else None

    def untag(self, ref: str) -> str:
        """Remove a reference; returns the image it pointed at. The image stays (the
        engine deletes it if that was its last reference, as `rmi` does)."""
        with self._tx() as conn:
            row = conn.execute("SELECT image_id FROM tags WHERE ref = ?", (ref,)).fetchone()
            if row is None:
                raise NotFound(f"no such reference: {ref}")
            conn.execute("DELETE FROM tags WHERE ref = ?", (ref,))
            return row[0]

    def tags_for(self, image_id: str) -> list[str]:
        """Every reference to the image, sorted: tags and name@digest ones alike."""
        with self._tx(write=False) as conn:
            self._image(conn, image_id)
            return [r[0] for r in conn.execute(
                "SELECT ref FROM tags WHERE image_id = ? ORDER BY ref", (image_id,))]

    # -- layers ---------------------------------------------------------------------------

    def add_layer(self, chain_id: str, diff_id: str, parent: str | None, size: int,
                  snapshot_key: str) -> Layer:
        """Record an unpacked layer. Adding the same layer again is a no-op; adding it
        with other attributes is a Conflict (remove the old record first)."""
        parse_digest(chain_id)
        parse_digest(diff_id)
        if parent is not None:
            parse_digest(parent)
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"invalid layer size {size!r}")
        if not isinstance(snapshot_key, str) or not snapshot_key:
            raise ValueError(f"invalid snapshot key {snapshot_key!r}")
        with self._tx() as conn:
            if parent is not None and conn.execute(
                    "SELECT 1 FROM layers WHERE chain_id = ?", (parent,)).fetchone() is None:
                raise NotFound(f"parent layer {parent} not found")
            row = conn.execute(f"SELECT {_LAYER_COLS} FROM layers WHERE chain_id = ?",
                               (chain_id,)).fetchone()
            if row is not None:
                layer = Layer(*row)
                if (layer.diff_id, layer.parent, layer.size, layer.snapshot_key) != (
                        diff_id, parent, size, snapshot_key):
                    raise Conflict(f"layer {chain_id} is already stored differently")
                return layer
            layer = Layer(chain_id, diff_id, parent, size, snapshot_key, time.time())
            conn.execute(f"INSERT INTO layers ({_LAYER_COLS}) VALUES (?,?,?,?,?,?)",
                         (layer.chain_id, layer.diff_id, layer.parent, layer.size,
                          layer.snapshot_key, layer.created))
            return layer

    def get_layer(self, chain_id: str) -> Layer:
        rows = self._query(f"SELECT {_LAYER_COLS} FROM layers WHERE chain_id = ?",
                           (chain_id,))
        if not rows:
            raise NotFound(f"layer {chain_id} not found")
        return Layer(*rows[0])

    def list_layers(self) -> list[Layer]:
        """Every recorded layer, by chain ID (for consistency checks)."""
        return [Layer(*r) for r in self._query(
            f"SELECT {_LAYER_COLS} FROM layers ORDER BY chain_id")]

    def layers_for(self, image_id: str) -> list[Layer]:
        """The image's layer stack, base first."""
        with self._tx(write=False) as conn:
            self._image(conn, image_id)
            rows = conn.execute(
                "SELECT " + ", ".join(f"l.{c.strip()}" for c in _LAYER_COLS.split(","))
                + " FROM image_layers il JOIN layers l USING (chain_id) "
                "WHERE il.image_id = ? ORDER BY il.idx", (image_id,)).fetchall()
            return [Layer(*r) for r in rows]

    def layer_refcount(self, chain_id: str) -> int:
        """How many images have this layer in their stack, plus how many containers sit on
        it or on a layer above it. Zero means unreferenced_layers() lists it."""
        with self._tx(write=False) as conn:
            if conn.execute("SELECT 1 FROM layers WHERE chain_id = ?",
                            (chain_id,)).fetchone() is None:
                raise NotFound(f"layer {chain_id} not found")
            return conn.execute(
                """WITH RECURSIVE above(chain_id) AS (
                       SELECT ?
                       UNION SELECT l.chain_id FROM layers l JOIN above a ON l.parent = a.chain_id)
                   SELECT (SELECT COUNT(DISTINCT image_id) FROM image_layers WHERE chain_id = ?)
                        + (SELECT COUNT(*) FROM container_refs
                           WHERE chain_id IN (SELECT chain_id FROM above))""",
                (chain_id, chain_id)).fetchone()[0]

    def delete_layer(self, chain_id: str) -> None:
        """Forget a layer (after its snapshot was removed). Conflict while anything uses
        it or a child layer sits on it."""
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM layers WHERE chain_id = ?",
                            (chain_id,)).fetchone() is None:
                raise NotFound(f"layer {chain_id} not found")
            if conn.execute("SELECT 1 FROM image_layers WHERE chain_id = ? UNION ALL "
                            "SELECT 1 FROM container_refs WHERE chain_id = ? UNION ALL "
                            "SELECT 1 FROM layers WHERE parent = ? LIMIT 1",
                            (chain_id, chain_id, chain_id)).fetchone():
                raise Conflict(f"layer {chain_id} is in use")
            conn.execute("DELETE FROM layers WHERE chain_id = ?", (chain_id,))

    def unreferenced_layers(self) -> list[Layer]:
        """Layers no image and no container needs, children before their parents (the
        order to remove their snapshots and records in)."""
        rows = self._query(
            f"""WITH RECURSIVE
                used(chain_id) AS (
                    SELECT chain_id FROM image_layers
                    UNION SELECT chain_id FROM container_refs WHERE chain_id IS NOT NULL
                    UNION SELECT l.parent FROM layers l JOIN used u ON l.chain_id = u.chain_id
                          WHERE l.parent IS NOT NULL),
                depth(chain_id, d) AS (
                    SELECT chain_id, 0 FROM layers WHERE parent IS NULL
                    UNION ALL SELECT l.chain_id, depth.d + 1 FROM layers l
                              JOIN depth ON l.parent = depth.chain_id)
                SELECT {_LAYER_COLS} FROM layers JOIN depth USING (chain_id)
                WHERE chain_id NOT IN (SELECT chain_id FROM used)
                ORDER BY depth.d DESC, chain_id""")
        return [Layer(*r) for r in rows]

    # -- blobs ----------------------------------------------------------------------------

    def blobs_for(self, image_id: str) -> list[tuple[str, str]]:
        """(digest, kind) of the blobs the image uses."""
        with self._tx(write=False) as conn:
            self._image(conn, image_id)
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT digest, kind FROM blob_refs WHERE image_id = ? ORDER BY kind, digest",
                (image_id,))]

    def unreferenced_blobs(self, all_blob_digests: Iterable[str]) -> list[str]:
        """Those of the given digests (the content store's, say) no image uses, in the
        given order. The engine must keep pulls and GC apart: a pull's blobs are stored
        before its image is."""
        used = {r[0] for r in self._query("SELECT DISTINCT digest FROM blob_refs")}
        out, seen = [], set()
        for digest in all_blob_digests:
            if digest not in used and digest not in seen:
                seen.add(digest)
                out.append(digest)
        return out

    # -- containers -----------------------------------------------------------------------

    def add_container_ref(self, container_id: str, image_id: str,
                          chain_id: str | None = None) -> None:
        """Record that a container uses an image, and the layer its writable snapshot sits
        on (default: the image's top layer). Idempotent; a container's image is fixed."""
        if not isinstance(container_id, str) or not _NAME_RE.fullmatch(container_id):
            raise ValueError(f"invalid container id {container_id!r}")
        with self._tx() as conn:
            self._image(conn, image_id)
            if chain_id is None:
                row = conn.execute("SELECT chain_id FROM image_layers WHERE image_id = ? "
                                   "ORDER BY idx DESC LIMIT 1", (image_id,)).fetchone()
                chain_id = row[0] if row else None
            elif conn.execute("SELECT 1 FROM layers WHERE chain_id = ?",
                              (chain_id,)).fetchone() is None:
                raise NotFound(f"layer {chain_id} not found")
            row = conn.execute("SELECT image_id, chain_id FROM container_refs "
                               "WHERE container_id = ?", (container_id,)).fetchone()
            if row is not None:
                if tuple(row) != (image_id, chain_id):
                    raise Conflict(f"container {container_id} already uses image {row[0]}")
                return
            conn.execute("INSERT INTO container_refs (container_id, image_id, chain_id) "
                         "VALUES (?,?,?)", (container_id, image_id, chain_id))

    def remove_container_ref(self, container_id: str) -> bool:
        """Forget a container's references; False if there were none (idempotent, for
        clean-up after a crash)."""
        with self._tx() as conn:
            return conn.execute("DELETE FROM container_refs WHERE container_id = ?",
                                (container_id,)).rowcount > 0

    def containers_using(self, image_id: str) -> list[str]:
        return [r[0] for r in self._query(
            "SELECT container_id FROM container_refs WHERE image_id = ? ORDER BY container_id",
            (image_id,))]


def _check_ref(ref: str) -> str:
    # Normalizing is reference.py's job; here only what no reference can contain.
    if not isinstance(ref, str) or not _NAME_RE.fullmatch(ref):
        raise ValueError(f"invalid reference {ref!r}")
    return ref
