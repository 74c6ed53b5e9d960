"""Container records in SQLite (WAL): one row per container, written in one transaction per
change, so a crash leaves each record as it was before or after a change, never torn.

The row holds the Docker-shaped document (what inspect shows) and the engine's private
bookkeeping (`meta`: snapshot, manual stop, …) as JSON; the name has its own UNIQUE column so
two creates racing for a name cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator

from bosun.engine.errors import Conflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    meta TEXT NOT NULL
)
"""


class ContainerStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def load_all(self) -> Iterator[tuple[dict, dict]]:
        with self._lock:
            rows = self._db.execute("SELECT doc, meta FROM containers").fetchall()
        for doc, meta in rows:
            yield json.loads(doc), json.loads(meta)

    def insert(self, doc: dict, meta: dict) -> None:
        """A new container; Conflict if its name is taken (by a racing create)."""
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("INSERT INTO containers (id, name, doc, meta) "
                                     "VALUES (?,?,?,?)",
                                     (doc["Id"], doc["Name"], json.dumps(doc), json.dumps(meta)))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.IntegrityError:
            raise Conflict(f'Conflict. The container name "{doc["Name"]}" is already in use. '
                           "You have to remove (or rename) that container to be able to "
                           "reuse that name.") from None

    def update(self, doc: dict, meta: dict) -> None:
        with self._lock:
            self._db.execute("UPDATE containers SET name = ?, doc = ?, meta = ? WHERE id = ?",
                             (doc["Name"], json.dumps(doc), json.dumps(meta), doc["Id"]))

    def delete(self, cid: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM containers WHERE id = ?", (cid,))
