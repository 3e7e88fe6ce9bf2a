"""Row types and status vocabularies of the node store (persistence, DESIGN.md §7)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    SEEN = "seen"  # observed on chain, nothing done yet
    RUNNING = "running"
    COMMITTED = "committed"
    DISPUTED = "disputed"
    FINALIZED = "finalized"
    SKIPPED = "skipped"  # not ours to run (policy, unknown model, bad input)
    FAILED = "failed"


class CommitmentStatus(StrEnum):
    PREPARED = "prepared"  # commit tx signed and recorded, maybe not sent
    SUBMITTED = "submitted"
    COMMITTED = "committed"  # commit tx mined
    CHALLENGED = "challenged"
    FINALIZED = "finalized"
    SLASHED = "slashed"
    OBSERVED = "observed"  # someone else's commitment, watched by a challenger


class GameStatus(StrEnum):
    ACTIVE = "active"
    WON = "won"
    LOST = "lost"


class TxStatus(StrEnum):
    PREPARED = "prepared"  # signed and recorded, send not confirmed
    SENT = "sent"  # the node saw the RPC accept it
    MINED = "mined"
    FAILED = "failed"  # mined but reverted
    DROPPED = "dropped"  # its nonce was used by another tx; never mined
    REPLACED = "replaced"  # superseded by a re-signed tx (gas bump)


PENDING_TX = (TxStatus.PREPARED, TxStatus.SENT)


class ClaimStatus(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    job: int
    model: bytes
    input: bytes
    config: bytes
    status: str = JobStatus.SEEN
    block: int = 0
    deadline: int | None = None
    reward: int | None = None
    requester: str | None = None


@dataclass(frozen=True)
class Commitment:
    job: int
    executor: str
    output: bytes
    output_hash: bytes
    trace_root: bytes
    trace_length: int
    status: str = CommitmentStatus.PREPARED
    bond: int | None = None
    tx_id: int | None = None
    block: int | None = None


@dataclass(frozen=True)
class Trace:
    job: int
    trace_root: bytes
    op_hashes: list[bytes]
    output_roots: list[bytes]
    dump_path: str | None = None


@dataclass(frozen=True)
class Game:
    game: int
    job: int
    role: str  # "defender" | "challenger"
    phase: str
    status: str = GameStatus.ACTIVE
    opponent: str | None = None
    level: int = 0
    node: int = 0
    our_deadline: int | None = None
    their_deadline: int | None = None
    state: bytes | None = None  # msgpack blob owned by the game player


@dataclass(frozen=True)
class Move:
    game: int
    seq: int
    kind: str
    payload: bytes | None
    tx_id: int | None


@dataclass(frozen=True)
class Tx:
    id: int
    key: str  # idempotency key: one logical action, one row (e.g. "commit:7")
    purpose: str
    status: str
    sender: str | None = None
    nonce: int | None = None
    tx_hash: bytes | None = None
    raw: bytes | None = None
    block: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Claim:
    id: int
    kind: str
    job: int | None
    game: int | None
    amount: int | None
    available_at: int | None
    status: str
    tx_id: int | None = None


@dataclass(frozen=True)
class Cursor:
    name: str
    block: int
    block_hash: bytes | None = None
