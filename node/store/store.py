"""`Store`: the node's durable state (persistence, DESIGN.md §7; issue 7).

Rules the daemons rely on:
- every method is one transaction; several calls inside `with store.transaction():` are one
  state transition, committed together or not at all;
- upserts are idempotent: replaying an event (a restarted watcher re-reading blocks) converges
  to the same rows;
- a transaction is recorded *before* it is sent (`prepare_tx` with its signed raw bytes and
  hash), so a node killed at any point finds it in `pending_txs()` on restart and asks the
  chain about that hash instead of signing a second, conflicting transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .db import Database, StoreError
from .records import (
    PENDING_TX,
    Claim,
    ClaimStatus,
    Commitment,
    Cursor,
    Game,
    Job,
    Move,
    Trace,
    Tx,
    TxStatus,
)

HASH_BYTES = 32


def _id(value: int | None) -> str:
    """uint256 ids and amounts as decimal TEXT (schema.py); '' stands for 'none' in keys."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"ids and amounts are non-negative integers, got {value!r}")
    return str(value)


def _int(text: str | None) -> int | None:
    return None if text in (None, "") else int(text)


def _pack_hashes(hashes: Sequence[bytes]) -> bytes:
    if any(len(h) != HASH_BYTES for h in hashes):
        raise ValueError("every hash must be 32 bytes")
    return b"".join(hashes)


def _unpack_hashes(blob: bytes) -> list[bytes]:
    return [blob[i : i + HASH_BYTES] for i in range(0, len(blob), HASH_BYTES)]


class Store:
    """One node's state in one sqlite file (or ':memory:' for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.db = Database(path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self.db.version

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group several calls into one atomic state transition."""
        with self.db.transaction() as conn:
            yield conn

    # -- jobs ----------------------------------------------------------------------------------

    def upsert_job(self, job: Job) -> None:
        """Insert or refresh a job seen on chain; the status is only set on first insert."""
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO jobs (job, model, input, config, status, block, deadline, reward,
                                     requester, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (job) DO UPDATE SET
                     model = excluded.model, input = excluded.input, config = excluded.config,
                     block = excluded.block, deadline = excluded.deadline,
                     reward = excluded.reward, requester = excluded.requester,
                     updated_at = excluded.updated_at""",
                (
                    _id(job.job), job.model, job.input, job.config, str(job.status), job.block,
                    job.deadline, _id(job.reward) or None, job.requester, time.time(),
                ),
            )

    def get_job(self, job: int) -> Job | None:
        rows = self.db.query("SELECT * FROM jobs WHERE job = ?", (_id(job),))
        return _job(rows[0]) if rows else None

    def jobs(self, status: str | Sequence[str] | None = None) -> list[Job]:
        sql, params = _status_filter("SELECT * FROM jobs", status)
        return [_job(r) for r in self.db.query(sql + " ORDER BY block, rowid", params)]

    def set_job_status(self, job: int, status: str, *, expect: str | None = None) -> bool:
        """Compare-and-set: False (and no change) if the job is not in `expect`."""
        return self._set_status("jobs", "job", _id(job), status, expect)

    def forget_jobs_after(self, block: int) -> int:
        """Reorg: drop jobs first seen above `block` that we have not acted on yet."""
        with self.db.transaction() as c:
            return c.execute(
                "DELETE FROM jobs WHERE block > ? AND status = 'seen'", (block,)
            ).rowcount

    # -- commitments ---------------------------------------------------------------------------

    def upsert_commitment(self, cm: Commitment) -> None:
        """Insert or refresh; like jobs, the status is only set on first insert (replay-safe):
        status changes go through `set_commitment_status`."""
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO commitments (job, executor, output, output_hash, trace_root,
                     trace_length, bond, tx_id, status, block, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (job, executor) DO UPDATE SET
                     output = excluded.output, output_hash = excluded.output_hash,
                     trace_root = excluded.trace_root, trace_length = excluded.trace_length,
                     bond = excluded.bond, tx_id = COALESCE(excluded.tx_id, commitments.tx_id),
                     block = COALESCE(excluded.block, commitments.block),
                     updated_at = excluded.updated_at""",
                (
                    _id(cm.job), cm.executor.lower(), cm.output, cm.output_hash, cm.trace_root,
                    cm.trace_length, _id(cm.bond) or None, cm.tx_id, str(cm.status), cm.block,
                    time.time(),
                ),
            )

    def get_commitment(self, job: int, executor: str) -> Commitment | None:
        rows = self.db.query(
            "SELECT * FROM commitments WHERE job = ? AND executor = ?", (_id(job), executor.lower())
        )
        return _commitment(rows[0]) if rows else None

    def commitments(
        self, status: str | Sequence[str] | None = None, *, executor: str | None = None
    ) -> list[Commitment]:
        sql, params = _status_filter("SELECT * FROM commitments", status)
        if executor is not None:
            sql += (" AND" if params else " WHERE") + " executor = ?"
            params = (*params, executor.lower())
        return [_commitment(r) for r in self.db.query(sql + " ORDER BY rowid", params)]

    def set_commitment_status(
        self, job: int, executor: str, status: str, *, expect: str | None = None,
        block: int | None = None,
    ) -> bool:
        with self.db.transaction() as c:
            sql = "UPDATE commitments SET status = ?, updated_at = ?"
            params: tuple = (str(status), time.time())
            if block is not None:
                sql += ", block = ?"
                params += (block,)
            sql += " WHERE job = ? AND executor = ?"
            params += (_id(job), executor.lower())
            if expect is not None:
                sql += " AND status = ?"
                params += (str(expect),)
            return c.execute(sql, params).rowcount == 1

    # -- traces --------------------------------------------------------------------------------

    def put_trace(self, trace: Trace) -> None:
        """Keep what the executor must serve in a dispute: op hashes, output roots, dump path."""
        if len(trace.op_hashes) != len(trace.output_roots):
            raise ValueError("one op hash per output root")
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO traces (job, trace_root, op_hashes, output_roots, dump_path,
                                       created_at) VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (job) DO UPDATE SET trace_root = excluded.trace_root,
                     op_hashes = excluded.op_hashes, output_roots = excluded.output_roots,
                     dump_path = excluded.dump_path""",
                (
                    _id(trace.job), trace.trace_root, _pack_hashes(trace.op_hashes),
                    _pack_hashes(trace.output_roots), trace.dump_path, time.time(),
                ),
            )

    def get_trace(self, job: int) -> Trace | None:
        rows = self.db.query("SELECT * FROM traces WHERE job = ?", (_id(job),))
        if not rows:
            return None
        r = rows[0]
        return Trace(
            int(r["job"]), r["trace_root"], _unpack_hashes(r["op_hashes"]),
            _unpack_hashes(r["output_roots"]), r["dump_path"],
        )

    def delete_trace(self, job: int) -> bool:
        with self.db.transaction() as c:
            return c.execute("DELETE FROM traces WHERE job = ?", (_id(job),)).rowcount == 1

    # -- dispute games -------------------------------------------------------------------------

    def upsert_game(self, game: Game) -> None:
        """Save a game's whole state (the player owns it; the last write wins)."""
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO games (game, job, role, opponent, phase, level, node, our_deadline,
                                      their_deadline, status, state, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (game) DO UPDATE SET
                     job = excluded.job, role = excluded.role, opponent = excluded.opponent,
                     phase = excluded.phase, level = excluded.level, node = excluded.node,
                     our_deadline = excluded.our_deadline,
                     their_deadline = excluded.their_deadline, status = excluded.status,
                     state = excluded.state, updated_at = excluded.updated_at""",
                (
                    _id(game.game), _id(game.job), game.role, game.opponent, game.phase,
                    game.level, game.node, game.our_deadline, game.their_deadline,
                    str(game.status), game.state, time.time(),
                ),
            )

    def get_game(self, game: int) -> Game | None:
        rows = self.db.query("SELECT * FROM games WHERE game = ?", (_id(game),))
        return _game(rows[0]) if rows else None

    def games(self, status: str | Sequence[str] | None = None) -> list[Game]:
        sql, params = _status_filter("SELECT * FROM games", status)
        sql += " ORDER BY COALESCE(our_deadline, 9223372036854775807), rowid"
        return [_game(r) for r in self.db.query(sql, params)]

    def update_game(self, game: int, *, expect_phase: str | None = None, **fields: Any) -> bool:
        """Change some columns of a game; with expect_phase, only from that phase (CAS)."""
        allowed = {"phase", "level", "node", "our_deadline", "their_deadline", "status",
                   "state", "opponent"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown game fields {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        params: tuple = tuple(str(v) if k == "status" else v for k, v in fields.items())
        sql = f"UPDATE games SET {sets}{', ' if sets else ''}updated_at = ? WHERE game = ?"
        params += (time.time(), _id(game))
        if expect_phase is not None:
            sql += " AND phase = ?"
            params += (expect_phase,)
        with self.db.transaction() as c:
            return c.execute(sql, params).rowcount == 1

    def record_move(
        self, game: int, seq: int, kind: str, payload: bytes | None, tx_id: int | None = None
    ) -> Move:
        """Idempotent on (game, seq): a replayed move returns the row already recorded."""
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO moves (game, seq, kind, payload, tx_id, created_at)
                   VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (game, seq) DO NOTHING""",
                (_id(game), seq, kind, payload, tx_id, time.time()),
            )
            row = c.execute(
                "SELECT * FROM moves WHERE game = ? AND seq = ?", (_id(game), seq)
            ).fetchone()
        return _move(row)

    def moves(self, game: int) -> list[Move]:
        rows = self.db.query("SELECT * FROM moves WHERE game = ? ORDER BY seq", (_id(game),))
        return [_move(r) for r in rows]

    # -- transactions sent to the chain (outbox) -----------------------------------------------

    def prepare_tx(
        self,
        key: str,
        purpose: str,
        *,
        sender: str | None = None,
        nonce: int | None = None,
        tx_hash: bytes | None = None,
        raw: bytes | None = None,
    ) -> Tx:
        """Record a signed transaction before sending it; idempotent on `key`.

        If `key` exists the stored row is returned unchanged: the caller must then check that
        transaction on chain (and rebroadcast its stored `raw`), never sign a new one.
        """
        now = time.time()
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO txs (key, purpose, sender, nonce, tx_hash, raw, status,
                                    created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, 'prepared', ?, ?) ON CONFLICT (key) DO NOTHING""",
                (key, purpose, sender.lower() if sender else None, nonce, tx_hash, raw, now, now),
            )
            return _tx(c.execute("SELECT * FROM txs WHERE key = ?", (key,)).fetchone())

    def get_tx(self, tx_id: int) -> Tx | None:
        rows = self.db.query("SELECT * FROM txs WHERE id = ?", (tx_id,))
        return _tx(rows[0]) if rows else None

    def tx_by_key(self, key: str) -> Tx | None:
        rows = self.db.query("SELECT * FROM txs WHERE key = ?", (key,))
        return _tx(rows[0]) if rows else None

    def mined_txs_since(self, block: int) -> list[Tx]:
        """Txs recorded as mined after `block`, in nonce order: what a reorg may have undone."""
        rows = self.db.query("SELECT * FROM txs WHERE status = 'mined' AND block > ? "
                             "ORDER BY nonce, id", (block,))
        return [_tx(r) for r in rows]

    def pending_txs(self, sender: str | None = None) -> list[Tx]:
        """Prepared or sent, not yet seen mined: what a restarted node must reconcile first."""
        sql = "SELECT * FROM txs WHERE status IN (?, ?)"
        params: tuple = tuple(str(s) for s in PENDING_TX)
        if sender is not None:
            sql += " AND sender = ?"
            params += (sender.lower(),)
        return [_tx(r) for r in self.db.query(sql + " ORDER BY nonce, id", params)]

    def mark_tx(
        self,
        tx_id: int,
        status: str,
        *,
        block: int | None = None,
        error: str | None = None,
        expect: Sequence[str] | None = None,
    ) -> bool:
        """Move a tx along prepared -> sent -> mined/failed/dropped (CAS with expect)."""
        status = TxStatus(status)
        sql = "UPDATE txs SET status = ?, block = COALESCE(?, block), error = ?, updated_at = ?"
        sql += " WHERE id = ?"
        params: tuple = (str(status), block, error, time.time(), tx_id)
        if expect:
            sql += f" AND status IN ({', '.join('?' * len(expect))})"
            params += tuple(str(s) for s in expect)
        with self.db.transaction() as c:
            return c.execute(sql, params).rowcount == 1

    def replace_tx(self, tx_id: int, *, tx_hash: bytes, raw: bytes, nonce: int | None = None) -> Tx:
        """Gas bump / re-sign: the old row becomes `replaced`, a new row keeps the key's history.

        The new row's key is `<key>#<n>`; the daemon then watches both hashes.
        """
        with self.db.transaction() as c:
            old = _tx(c.execute("SELECT * FROM txs WHERE id = ?", (tx_id,)).fetchone())
            n = c.execute("SELECT COUNT(*) FROM txs WHERE key LIKE ?", (old.key + "#%",)).fetchone()
            c.execute(
                "UPDATE txs SET status = 'replaced', updated_at = ? WHERE id = ?",
                (time.time(), tx_id),
            )
            return self.prepare_tx(
                f"{old.key}#{n[0] + 1}", old.purpose, sender=old.sender,
                nonce=old.nonce if nonce is None else nonce, tx_hash=tx_hash, raw=raw,
            )

    # -- claims and withdrawals ----------------------------------------------------------------

    def add_claim(
        self,
        kind: str,
        *,
        job: int | None = None,
        game: int | None = None,
        amount: int | None = None,
        available_at: int | None = None,
    ) -> Claim:
        """Idempotent on (kind, job, game): a reward or bond is claimed once."""
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO claims (kind, job, game, amount, available_at, status, updated_at)
                   VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (kind, job, game) DO NOTHING""",
                (kind, _id(job), _id(game), _id(amount) or None, available_at, time.time()),
            )
            row = c.execute(
                "SELECT * FROM claims WHERE kind = ? AND job = ? AND game = ?",
                (kind, _id(job), _id(game)),
            ).fetchone()
        return _claim(row)

    def claims(self, status: str | Sequence[str] | None = ClaimStatus.PENDING) -> list[Claim]:
        sql, params = _status_filter("SELECT * FROM claims", status)
        sql += " ORDER BY COALESCE(available_at, 0), id"
        return [_claim(r) for r in self.db.query(sql, params)]

    def set_claim_status(
        self, claim_id: int, status: str, *, tx_id: int | None = None, expect: str | None = None
    ) -> bool:
        sql = "UPDATE claims SET status = ?, tx_id = COALESCE(?, tx_id), updated_at = ?"
        sql += " WHERE id = ?"
        params: tuple = (str(ClaimStatus(status)), tx_id, time.time(), claim_id)
        if expect is not None:
            sql += " AND status = ?"
            params += (str(expect),)
        with self.db.transaction() as c:
            return c.execute(sql, params).rowcount == 1

    # -- watcher cursors (reorg-aware) ---------------------------------------------------------

    def get_cursor(self, name: str) -> Cursor | None:
        rows = self.db.query("SELECT * FROM cursors WHERE name = ?", (name,))
        return Cursor(name, rows[0]["block"], rows[0]["block_hash"]) if rows else None

    def set_cursor(
        self, name: str, block: int, block_hash: bytes | None = None, *, keep_blocks: int = 256
    ) -> None:
        """Advance a watcher: last processed block (+hash), remembered for fork detection."""
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO cursors (name, block, block_hash, updated_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET block = excluded.block,
                     block_hash = excluded.block_hash, updated_at = excluded.updated_at""",
                (name, block, block_hash, time.time()),
            )
            if block_hash is not None:
                c.execute(
                    "INSERT OR REPLACE INTO blocks (watcher, number, hash) VALUES (?, ?, ?)",
                    (name, block, block_hash),
                )
                c.execute(
                    "DELETE FROM blocks WHERE watcher = ? AND (number <= ? OR number > ?)",
                    (name, block - keep_blocks, block),
                )

    def block_hashes(self, name: str) -> dict[int, bytes]:
        rows = self.db.query("SELECT number, hash FROM blocks WHERE watcher = ?", (name,))
        return {r["number"]: r["hash"] for r in rows}

    def fork_point(self, name: str, chain_hash: Any) -> int | None:
        """Highest remembered block whose hash the chain still has (`chain_hash(n)` -> bytes).

        None means no remembered block survives: rescan from the watcher's configured start.
        """
        for number, known in sorted(self.block_hashes(name).items(), reverse=True):
            if chain_hash(number) == known:
                return number
        return None

    def rewind_cursor(self, name: str, block: int) -> None:
        """After a reorg: forget blocks above `block` and restart the watcher from there."""
        with self.db.transaction() as c:
            row = c.execute(
                "SELECT hash FROM blocks WHERE watcher = ? AND number = ?", (name, block)
            ).fetchone()
            c.execute("DELETE FROM blocks WHERE watcher = ? AND number > ?", (name, block))
            c.execute(
                """INSERT INTO cursors (name, block, block_hash, updated_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET block = excluded.block,
                     block_hash = excluded.block_hash, updated_at = excluded.updated_at""",
                (name, block, row["hash"] if row else None, time.time()),
            )

    # -- small key/value state -----------------------------------------------------------------

    def put(self, key: str, value: bytes) -> None:
        with self.db.transaction() as c:
            c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def get(self, key: str) -> bytes | None:
        rows = self.db.query("SELECT value FROM kv WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    # -- helpers -------------------------------------------------------------------------------

    def _set_status(
        self, table: str, key_col: str, key: str, status: str, expect: str | None
    ) -> bool:
        sql = f"UPDATE {table} SET status = ?, updated_at = ? WHERE {key_col} = ?"
        params: tuple = (str(status), time.time(), key)
        if expect is not None:
            sql += " AND status = ?"
            params += (str(expect),)
        with self.db.transaction() as c:
            return c.execute(sql, params).rowcount == 1


def _status_filter(sql: str, status: str | Sequence[str] | None) -> tuple[str, tuple]:
    if status is None:
        return sql, ()
    statuses = (status,) if isinstance(status, str) else tuple(status)
    return sql + f" WHERE status IN ({', '.join('?' * len(statuses))})", tuple(
        str(s) for s in statuses
    )


def _job(r: sqlite3.Row) -> Job:
    return Job(
        int(r["job"]), r["model"], r["input"], r["config"], r["status"], r["block"],
        r["deadline"], _int(r["reward"]), r["requester"],
    )


def _commitment(r: sqlite3.Row) -> Commitment:
    return Commitment(
        int(r["job"]), r["executor"], r["output"], r["output_hash"], r["trace_root"],
        r["trace_length"], r["status"], _int(r["bond"]), r["tx_id"], r["block"],
    )


def _game(r: sqlite3.Row) -> Game:
    return Game(
        int(r["game"]), int(r["job"]), r["role"], r["phase"], r["status"], r["opponent"],
        r["level"], r["node"], r["our_deadline"], r["their_deadline"], r["state"],
    )


def _move(r: sqlite3.Row) -> Move:
    return Move(int(r["game"]), r["seq"], r["kind"], r["payload"], r["tx_id"])


def _tx(r: sqlite3.Row) -> Tx:
    return Tx(
        r["id"], r["key"], r["purpose"], r["status"], r["sender"], r["nonce"], r["tx_hash"],
        r["raw"], r["block"], r["error"],
    )


def _claim(r: sqlite3.Row) -> Claim:
    return Claim(
        r["id"], r["kind"], _int(r["job"]), _int(r["game"]), _int(r["amount"]),
        r["available_at"], r["status"], r["tx_id"],
    )


__all__ = ["Store", "StoreError"]
