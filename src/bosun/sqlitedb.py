"""SQLite as bosun's stores use it: WAL, synchronous=FULL (a committed change survives power
loss, not only a crash of the process), foreign keys on, and one transaction per change."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


def connect(path: str, timeout: float, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in WAL mode; RuntimeError if the file cannot be in it."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                           check_same_thread=check_same_thread)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")  # per connection, off by default
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"{path}: cannot use WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction. Writers take the write lock at BEGIN: a deferred transaction that
    reads first and then writes fails with SQLITE_BUSY, without waiting, when another writer
    committed in between."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
