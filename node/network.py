"""What the daemons do on the p2p network (DESIGN §7): the chain is the source of truth; p2p
only moves data, and everything received is checked against on-chain roots.

- An executor serves its jobs' traces over `/judge/trace/1` (op hashes, output roots, tensor
  chunks) and gossips a receipt summary on `/judge/receipts/1` after committing.
- A challenger that disagrees with a commitment fetches the executor's op roots, each batch
  proven against the committed trace root, and finds the first divergent op off-chain before
  it spends gas; the on-chain game then confirms it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from node.jobs import JobOutcome
from node.p2p import RECEIPTS_TOPIC, P2PError, P2PNode, TensorBlob, TraceRecords

log = logging.getLogger("judge.network")

BATCH = 2048  # node/p2p/messages.py MAX_OP_ROOTS


class OutcomeTraceSource:
    """`node.p2p.TraceSource` over a daemon's in-memory job outcomes."""

    def __init__(self, outcomes: dict[int, JobOutcome]) -> None:
        self.outcomes = outcomes

    def trace(self, job: int) -> TraceRecords | None:
        out = self.outcomes.get(job)
        if out is None:
            return None
        return TraceRecords(*out.committed_records())

    def tensor(self, job: int, op: int) -> TensorBlob | None:
        out = self.outcomes.get(job)
        if out is None or not 0 <= op < out.trace_length:
            return None
        return TensorBlob.from_array(out.trace.outputs[out.committed_leaf(op)])


def start_node(outcomes: dict[int, JobOutcome], port: int = 0,
               bootstrap: list[str] | None = None) -> P2PNode:
    node = P2PNode(port=port, bootstrap=bootstrap or [], source=OutcomeTraceSource(outcomes))
    node.start()
    return node


def announce_commitment(node: P2PNode, job: int, executor: str, out: JobOutcome) -> None:
    node.publish(RECEIPTS_TOPIC, {"job": job, "executor": executor,
                                  "trace_root": out.trace_root, "trace_length": out.trace_length,
                                  "tokens": list(out.tokens), "peer": node.peer_id})


def first_divergence(node: P2PNode, peer: str, job: int, theirs_root: bytes, theirs_len: int,
                     ours: JobOutcome, now: Callable[[], float] = time.monotonic
                     ) -> tuple[int | None, float]:
    """(first leaf whose committed root differs from ours, seconds taken), checked batch by
    batch against the committed root; (None, t) if the fetched prefix all agrees."""
    t0 = now()
    n = min(theirs_len, ours.trace_length)
    mine = ours.committed_records()[1]  # the committed trace's roots (compact or full)
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        resp = node.op_roots(peer, job, start, count, trace_root=theirs_root,
                             trace_length=theirs_len)
        for k, r in enumerate(resp.output_roots):
            if r != mine[start + k]:
                return start + k, now() - t0
    return (None if theirs_len == ours.trace_length else n), now() - t0


class ReceiptListener:
    """Challenger side: remembers which peer serves which executor's job traces."""

    def __init__(self, node: P2PNode) -> None:
        self.peers: dict[tuple[int, str], str] = {}
        node.subscribe(RECEIPTS_TOPIC, self._on)

    def _on(self, msg: Any) -> None:
        d = msg.data
        try:
            self.peers[(int(d["job"]), str(d["executor"]).lower())] = str(d["peer"])
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring malformed receipt gossip from %s", msg.sender)

    def peer_for(self, job: int, executor: str, wait_s: float = 5.0) -> str | None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            peer = self.peers.get((job, executor.lower()))
            if peer:
                return peer
            time.sleep(0.1)
        return None


__all__ = ["OutcomeTraceSource", "ReceiptListener", "announce_commitment", "first_divergence",
           "start_node", "P2PError"]
