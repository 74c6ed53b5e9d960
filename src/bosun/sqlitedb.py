"""SQLite as bosun's stores use it: WAL, synchronous=FULL (a committed change survives power
loss, not only a crash of the process), foreign keys on, and one transaction per change."""

from __future__ import annotations

import os
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


_INHERITED: list[sqlite3.Connection] = []  # a forked child's copies of its parent's connections


class Pool:
    """Connections to one database shared by the threads of a process, each used by one
    thread at a time. Opening a connection costs its pragmas, and closing the last one
    checkpoints the WAL (an fsync): a few milliseconds that per-transaction connections paid
    on every container start. A connection per thread would leak with an API server's
    short-lived request threads, hence a small pool."""

    def __init__(self, path: str, timeout: float, *, max_idle: int = 4,
                 error: type[Exception] = RuntimeError):
        import threading

        self.path, self.timeout, self.max_idle, self.error = path, timeout, max_idle, error
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for this thread's exclusive use (`error` if it cannot be in WAL)."""
        with self._lock:
            if self._pid != os.getpid():
                # A forked child must neither use nor close its parent's connections
                # (SQLite forbids both): keep them out of reach, open its own.
                _INHERITED.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            try:
                conn = connect(self.path, self.timeout, check_same_thread=False)
            except RuntimeError as e:
                raise self.error(str(e)) from None
        try:
            yield conn
        finally:
            with self._lock:
                keep = (self._pid == os.getpid() and not conn.in_transaction
                        and len(self._idle) < self.max_idle)
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def close(self) -> None:
        """Close the idle connections, at shutdown. (Used again, the pool reconnects.)"""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
