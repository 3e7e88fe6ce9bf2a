"""Opening a node's sqlite file: WAL, durable commits, migrations, one transaction at a time.

Crash safety rests on three settings: WAL journaling (readers never block the writer and a
SIGKILL mid-write leaves the last committed state), `synchronous=FULL` (a committed
transaction survives power loss too: bonds ride on it), and `BEGIN IMMEDIATE` for every
transaction (the write lock is taken up front, so two writers never deadlock on upgrade).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .schema import LATEST_VERSION, MIGRATIONS


class StoreError(Exception):
    """The store file cannot be used (newer schema, corrupt, locked for too long)."""


class Database:
    """One connection, guarded by a re-entrant lock; nested `transaction()`s join the outer."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    @property
    def version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, target: int = LATEST_VERSION) -> None:
        """Apply pending migrations, each in its own transaction with its version bump."""
        current = self.version
        if current > LATEST_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}; this node knows up to "
                f"{LATEST_VERSION} (upgrade the node software)"
            )
        for version, script in MIGRATIONS:
            if current < version <= target:
                with self.transaction() as conn:
                    for statement in _statements(script):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {int(version)}")
                current = version

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all.

        A nested call is a savepoint: its failure undoes only its own writes, and nothing is
        durable before the outermost block commits.
        """
        with self._lock:
            depth = self._depth
            self._conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if depth == 0:
                    self._conn.execute("ROLLBACK")
                else:
                    self._conn.execute(f"ROLLBACK TO sp{depth}")
                    self._conn.execute(f"RELEASE sp{depth}")
                raise
            self._depth -= 1
            self._conn.execute("COMMIT" if depth == 0 else f"RELEASE sp{depth}")

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3.executescript would COMMIT)."""
    out, buf = [], ""
    for line in script.splitlines():
        stripped = line.split("--", 1)[0]
        buf += stripped + "\n"
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise StoreError(f"incomplete statement in migration: {buf.strip()[:80]}")
    return out
