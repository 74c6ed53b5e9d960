"""Volume metadata in SQLite (WAL, one transaction per change; bosun.sqlitedb).

Schema (version 1):
    volumes(name PRIMARY KEY, driver, labels JSON, options JSON, created, anonymous)
    refs(volume -> volumes, container)     which containers use a volume: remove and prune
                                           refuse a volume with any
    holders(volume -> volumes, container)  which running containers hold its mount: the
                                           driver mounts at the first, unmounts at the last

Both reference tables survive a daemon crash, so a restarted daemon knows what is in use and
what is mounted without asking the containers (local.Volumes.reconcile).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bosun import sqlitedb
from bosun.volume.errors import Conflict, NotFound, op_error

SCHEMA_VERSION = 1
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS volumes (
        name      TEXT PRIMARY KEY,
        driver    TEXT NOT NULL,
        labels    TEXT NOT NULL,
        options   TEXT NOT NULL,
        created   REAL NOT NULL,
        anonymous INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS refs (
        volume    TEXT NOT NULL REFERENCES volumes(name),
        container TEXT NOT NULL,
        PRIMARY KEY (volume, container)
    )""",
    """CREATE TABLE IF NOT EXISTS holders (
        volume    TEXT NOT NULL REFERENCES volumes(name),
        container TEXT NOT NULL,
        PRIMARY KEY (volume, container)
    )""",
]


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    driver: str
    labels: dict | None = None  # None and {} differ in Docker's JSON (null, {})
    options: dict | None = None
    created: float = 0.0
    anonymous: bool = False


def _record(row) -> VolumeRecord:
    return VolumeRecord(row[0], row[1], json.loads(row[2]), json.loads(row[3]), row[4],
                        bool(row[5]))


class VolumeStore:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        # One connection behind a lock: volume changes are few and short.
        self._conn = sqlitedb.connect(path, timeout, check_same_thread=False)
        self._lock = threading.RLock()
        with self._tx() as c:
            for stmt in _SCHEMA:
                c.execute(stmt)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock, sqlitedb.transaction(self._conn, write) as c:
            yield c

    # -- volumes ---------------------------------------------------------------------------

    def create(self, rec: VolumeRecord, ref: str | None = None) -> tuple[VolumeRecord, bool]:
        """Insert unless the name exists (create is idempotent), and reference it from the
        container `ref` in the same transaction, so no prune can slip in between.
        Returns (the stored record, whether this call made it)."""
        with self._tx() as c:
            row = c.execute("SELECT * FROM volumes WHERE name = ?", (rec.name,)).fetchone()
            if row is None:
                c.execute("INSERT INTO volumes VALUES (?, ?, ?, ?, ?, ?)",
                          (rec.name, rec.driver, json.dumps(rec.labels),
                           json.dumps(rec.options), rec.created, int(rec.anonymous)))
            if ref is not None:
                c.execute("INSERT OR IGNORE INTO refs VALUES (?, ?)", (rec.name, ref))
        return (rec, True) if row is None else (_record(row), False)

    def get(self, name: str) -> VolumeRecord:
        with self._tx(write=False) as c:
            row = c.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise op_error(NotFound, "get", name, "no such volume")
        return _record(row)

    def list(self) -> list[VolumeRecord]:
        with self._tx(write=False) as c:
            return [_record(r) for r in c.execute("SELECT * FROM volumes ORDER BY name")]

    def delete(self, name: str) -> VolumeRecord:
        """Drop the record; Conflict (with the users' ids) while any container uses it."""
        with self._tx() as c:
            row = c.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
            if row is None:  # Docker's remove looks the volume up first: "get"
                raise op_error(NotFound, "get", name, "no such volume")
            refs = [r[0] for r in c.execute(
                "SELECT container FROM refs WHERE volume = ? ORDER BY container", (name,))]
            if refs:
                raise op_error(Conflict, "remove", name, "volume is in use", refs)
            c.execute("DELETE FROM holders WHERE volume = ?", (name,))
            c.execute("DELETE FROM volumes WHERE name = ?", (name,))
        return _record(row)

    # -- references ------------------------------------------------------------------------

    def add_ref(self, name: str, container: str) -> None:
        with self._tx() as c:
            if c.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone() is None:
                raise op_error(NotFound, "get", name, "no such volume")
            c.execute("INSERT OR IGNORE INTO refs VALUES (?, ?)", (name, container))

    def drop_refs(self, container: str) -> list[str]:
        """Forget every use by `container`; returns the volumes it used."""
        with self._tx() as c:
            names = [r[0] for r in c.execute(
                "SELECT volume FROM refs WHERE container = ?", (container,))]
            c.execute("DELETE FROM refs WHERE container = ?", (container,))
        return names

    def refs(self) -> dict[str, list[str]]:
        """volume name → the containers using it (only volumes with users)."""
        out: dict[str, list[str]] = {}
        with self._tx(write=False) as c:
            for vol, cid in c.execute("SELECT volume, container FROM refs ORDER BY container"):
                out.setdefault(vol, []).append(cid)
        return out

    # -- mount holders ---------------------------------------------------------------------

    def hold(self, name: str, container: str) -> int:
        """Record that `container` holds the mount; returns how many held it before."""
        with self._tx() as c:
            before = c.execute("SELECT COUNT(*) FROM holders WHERE volume = ? AND "
                               "container != ?", (name, container)).fetchone()[0]
            c.execute("INSERT OR IGNORE INTO holders VALUES (?, ?)", (name, container))
        return before

    def unhold(self, name: str, container: str) -> int | None:
        """Drop the hold; returns how many holders remain, None if it held nothing."""
        with self._tx() as c:
            gone = c.execute("DELETE FROM holders WHERE volume = ? AND container = ?",
                             (name, container)).rowcount
            left = c.execute("SELECT COUNT(*) FROM holders WHERE volume = ?",
                             (name,)).fetchone()[0]
        return left if gone else None

    def holders(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        with self._tx(write=False) as c:
            for vol, cid in c.execute("SELECT volume, container FROM holders"):
                out.setdefault(vol, []).append(cid)
        return out
