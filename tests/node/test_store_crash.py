"""A node process SIGKILLed mid-work resumes from its store without double-sending or losing
anything (persistence, DESIGN.md §7; issue 7 "killed with SIGKILL at any phase").

The worker below is a miniature executor: for each job it signs a commit transaction, records
it (`prepare_tx`) *before* sending it, sends it, then records the result. The "chain" is a
separate sqlite file standing in for the RPC node: like Ethereum it de-duplicates by tx hash
and refuses a second transaction with a nonce already used. The test kills the worker at
deterministic points (right after recording, right after sending) and at random moments,
restarts it each time, and checks that every job ended with exactly one on-chain commit.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SENDER = "0x00000000000000000000000000000000000000e1"


# ---------------------------------------------------------------------------------------------
# The worker (runs in a subprocess: `python test_store_crash.py worker DB CHAIN N`).


def _chain(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS chain (hash BLOB PRIMARY KEY, nonce INTEGER UNIQUE,
           raw BLOB NOT NULL, block INTEGER NOT NULL)"""
    )
    return conn


def _send(chain: sqlite3.Connection, tx_hash: bytes, nonce: int, raw: bytes) -> None:
    """eth_sendRawTransaction: known hash -> fine; nonce reused by another tx -> error."""
    row = chain.execute("SELECT hash FROM chain WHERE nonce = ?", (nonce,)).fetchone()
    if row is not None:
        if row[0] != tx_hash:
            raise RuntimeError(f"nonce too low: {nonce} already used by another tx")
        return
    n = chain.execute("SELECT COUNT(*) FROM chain").fetchone()[0]
    chain.execute("INSERT INTO chain VALUES (?, ?, ?, ?)", (tx_hash, nonce, raw, n + 1))


def _receipt(chain: sqlite3.Connection, tx_hash: bytes) -> int | None:
    row = chain.execute("SELECT block FROM chain WHERE hash = ?", (tx_hash,)).fetchone()
    return None if row is None else row[0]


def _crash_point(tag: str) -> None:
    if os.environ.get("CRASH_AT") == tag:
        os.kill(os.getpid(), signal.SIGKILL)


def worker(db_path: str, chain_path: str, n_jobs: int) -> None:
    from Crypto.Hash import keccak  # not repops.commit: its package import costs seconds

    from node.store import (
        Commitment,
        CommitmentStatus,
        Job,
        JobStatus,
        Store,
        TxStatus,
    )

    def keccak256(data: bytes) -> bytes:
        return keccak.new(digest_bits=256, data=data).digest()

    store = Store(db_path)
    chain = _chain(chain_path)
    print("ready", flush=True)  # the parent kills only after this: mid-work, not mid-import

    def finish(tx, job: int) -> None:  # noqa: ANN001
        block = _receipt(chain, tx.tx_hash)
        assert block is not None
        with store.transaction():  # one transition: tx mined, commitment and job committed
            store.mark_tx(tx.id, TxStatus.MINED, block=block)
            store.set_commitment_status(job, SENDER, CommitmentStatus.COMMITTED, block=block)
            store.set_job_status(job, JobStatus.COMMITTED)
            store.add_claim("reward", job=job, amount=10**18 + job, available_at=block + 10)

    # 1. reconcile: every recorded-but-unconfirmed tx is looked up, or re-sent *as recorded*
    for tx in store.pending_txs(SENDER):
        job = int(tx.key.split(":")[1])
        if _receipt(chain, tx.tx_hash) is None:
            _send(chain, tx.tx_hash, tx.nonce, tx.raw)
        store.mark_tx(tx.id, TxStatus.SENT, expect=[TxStatus.PREPARED])
        finish(tx, job)

    # 2. carry on with the work
    for job in range(n_jobs):
        store.upsert_job(Job(job, keccak256(b"model"), b"input%d" % job, b"cfg", block=job))
        if store.get_job(job).status == JobStatus.COMMITTED:
            continue
        output = b"YES" if job % 2 else b"NO"
        with store.transaction():  # sign + record before anything leaves the process
            nonce = int.from_bytes(store.get("nonce") or b"\0", "big")
            raw = b"commit|%d|%s|nonce=%d" % (job, output, nonce)
            tx = store.prepare_tx(f"commit:{job}", "commit", sender=SENDER, nonce=nonce,
                                  tx_hash=keccak256(raw), raw=raw)
            if tx.nonce == nonce:  # newly prepared (a replay returns the first row)
                store.put("nonce", (nonce + 1).to_bytes(8, "big"))
            store.upsert_commitment(Commitment(job, SENDER, output, keccak256(output),
                                               keccak256(b"trace%d" % job), 100, tx_id=tx.id))
            store.set_job_status(job, JobStatus.RUNNING)
        _crash_point(f"prepared:{job}")
        _send(chain, tx.tx_hash, tx.nonce, tx.raw)
        _crash_point(f"sent:{job}")
        store.mark_tx(tx.id, TxStatus.SENT, expect=[TxStatus.PREPARED])
        _crash_point(f"marked:{job}")
        finish(tx, job)
    store.close()


# ---------------------------------------------------------------------------------------------
# The tests.


def _spawn(db: Path, chain: Path, n: int, crash_at: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CRASH_AT", None)
    if crash_at:
        env["CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, __file__, "worker", str(db), str(chain), str(n)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _check(db: Path, chain_path: Path, n: int) -> None:
    from node.store import ClaimStatus, CommitmentStatus, JobStatus, Store

    chain = _chain(str(chain_path))
    rows = chain.execute("SELECT nonce, raw FROM chain ORDER BY nonce").fetchall()
    jobs_on_chain = [int(raw.split(b"|")[1]) for _, raw in rows]
    assert sorted(jobs_on_chain) == list(range(n)), "a job was committed twice or never"
    assert [nonce for nonce, _ in rows] == list(range(n)), "nonce gap or reuse"
    chain.close()
    with Store(db) as store:
        assert store.pending_txs() == []
        assert {j.status for j in store.jobs()} == {JobStatus.COMMITTED}
        assert len(store.jobs()) == n
        assert all(c.status == CommitmentStatus.COMMITTED for c in store.commitments())
        assert len(store.claims(ClaimStatus.PENDING)) == n


@pytest.mark.parametrize("point", ["prepared:3", "sent:3", "marked:3"])
def test_sigkill_at_each_step_then_resume(tmp_path: Path, point: str) -> None:
    db, chain, n = tmp_path / "node.sqlite", tmp_path / "chain.sqlite", 6
    first = _spawn(db, chain, n, crash_at=point)
    assert first.wait(60) == -signal.SIGKILL
    second = _spawn(db, chain, n)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()[-2000:]
    _check(db, chain, n)


def test_random_sigkills_then_resume(tmp_path: Path) -> None:
    db, chain, n = tmp_path / "node.sqlite", tmp_path / "chain.sqlite", 400
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 90
    progress = []
    while time.monotonic() < deadline and kills < 4:
        proc = _spawn(db, chain, n)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.4))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
        kills += 1
        conn = sqlite3.connect(chain)
        progress.append(conn.execute("SELECT COUNT(*) FROM chain").fetchone()[0])
        conn.close()
    final = _spawn(db, chain, n)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-2000:]
    assert kills >= 2, "the worker finished before it could be killed: make it longer"
    assert 0 < progress[0] < n, f"kills did not land mid-work: {progress}"
    _check(db, chain, n)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
