"""Node persistence: one sqlite file per node (DESIGN.md §7). See `store.Store`."""

from .db import StoreError
from .records import (
    Claim,
    ClaimStatus,
    Commitment,
    CommitmentStatus,
    Cursor,
    Game,
    GameStatus,
    Job,
    JobStatus,
    Move,
    Trace,
    Tx,
    TxStatus,
)
from .schema import LATEST_VERSION
from .store import Store

__all__ = [
    "LATEST_VERSION",
    "Claim",
    "ClaimStatus",
    "Commitment",
    "CommitmentStatus",
    "Cursor",
    "Game",
    "GameStatus",
    "Job",
    "JobStatus",
    "Move",
    "Store",
    "StoreError",
    "Trace",
    "Tx",
    "TxStatus",
]
