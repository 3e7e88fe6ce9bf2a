"""A job's local execution as the daemons use it: the trace, its commitments, and witnesses.

The executor and the challenger both run the job themselves; what they keep is a
`referee.execute.Trace` (every leaf's output tensor, in leaf order) plus the weights by tensor
root. Determinism is the persistence strategy: a restarted node re-runs the job to rebuild the
same trace bit for bit instead of storing gigabytes of tensors.

`JobTrace` implements the game player's `TraceView`. The witness for a one-step must prove
inputs against the *defender's* trace root. A defender has its own tree; a challenger does
not, but every leaf left of the disputed one is agreed, and every node of the defender's tree
that covers the disputed leaf or lies right of it along that path was revealed on-chain during
the dissection (`ChildrenRevealed`). `with_defender_nodes` overlays those revealed nodes on
the challenger's own tree, which then yields valid proofs against the defender's root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from eth_abi import decode

from referee.compact import Compact
from referee.execute import Trace
from referee.layout import Claim
from referee.witness import WitnessBuilder
from repops.commit import (
    CHUNK_BYTES,
    canonical_bytes,
    chunk_leaves,
    header,
    keccak256,
    merkle_levels,
    merkle_proof,
    merkle_root,
    trace_leaves,
)


@dataclass
class JobOutcome:
    """What running a job produced (the trace is what gets committed). With `compact` (the
    model is registered with a compact root, docs/trace-layout.md §L10) the committed root
    and length are the compact trace's; the full trace stays here for the game's Expand
    phase and everything after it."""

    trace: Trace
    weights: Mapping[bytes, np.ndarray]
    config: bytes  # abi.encode(JobConfig): hashed on-chain as configHash
    text: str = ""
    finish_reason: str = "length"
    compact: Compact | None = None

    @property
    def tokens(self) -> list[int]:
        return self.trace.output_tokens()

    @property
    def trace_length(self) -> int:
        if self.compact is not None:
            return self.trace.n_steps * len(self.compact.ops)
        return self.trace.length

    @property
    def trace_root(self) -> bytes:
        jt = JobTrace(self)
        return jt.compact_root() if self.compact is not None else jt.root()

    def committed_leaf(self, i: int) -> int:
        """The full-trace leaf behind committed leaf `i` (itself unless compact, §L10)."""
        return i if self.compact is None else self.compact.full_index(i)

    def committed_records(self) -> tuple[list[bytes], list[bytes]]:
        """(op hash, output root) of every committed leaf, in order: what peers serve and a
        challenger compares (node/network.py)."""
        hashes, p = self.trace.program.op_hashes(), self.trace.program.n_ops
        full = [self.committed_leaf(i) for i in range(self.trace_length)]
        return [hashes[f % p] for f in full], [self.trace.roots[f] for f in full]


class JobRunner(Protocol):
    """Runs a job; `fault(leaf, output) -> output` lets a test or demo play a cheater."""

    def __call__(self, model_hash: bytes, input_tokens: Sequence[int], config: dict[str, Any],
                 fault: Callable[[int, np.ndarray], np.ndarray] | None = None) -> JobOutcome: ...


@dataclass
class JobTrace:
    """`node.game_player.TraceView` over a local job outcome."""

    outcome: JobOutcome
    _builder: WitnessBuilder | None = None
    _overlay: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def builder(self) -> WitnessBuilder:
        if self._builder is None:
            self._builder = WitnessBuilder(self.outcome.trace, self.outcome.weights,
                                           self.outcome.config)
        return self._builder

    def leaves(self) -> list[bytes]:
        return self.builder()._leaves

    def root(self) -> bytes:
        return self.builder()._levels[-1][0]

    # ---- the compact trace (docs/trace-layout.md §L10) --------------------------------------

    def compact_leaves(self) -> list[bytes]:
        """C5 leaves of the compact trace: compact leaf i is full leaf f(i) re-indexed."""
        if self.outcome.compact is None:
            raise ValueError("this job's model commits full traces")
        return trace_leaves(*self.outcome.committed_records())

    def compact_root(self) -> bytes:
        return merkle_root(self.compact_leaves())

    def expansion(self, leaf: int, token: int | None = None) -> tuple:
        """`DisputeGame.expand`'s arguments after `gameId` (§L10) for compact leaf `leaf`:
        the full root, the Compact tuple, and where our trace has that leaf, its op hash and
        output root with the three proofs. In an output game (`token`: the disputed output
        token's step) the leaf is that step's token op and is proven against our compact
        root; else the game holds it as the dissection's end."""
        cp = self.outcome.compact
        if cp is None:
            raise ValueError("this job's model commits full traces")
        output_game = token is not None
        if output_game:
            leaf = token * len(cp.ops) + cp.token_place
        full = self.outcome.trace
        if leaf >= self.outcome.trace_length:  # our trace has ended: the full root only
            return self.root(), cp.abi(), b"\x00" * 32, b"\x00" * 32, 0, [], [], []
        k, f = leaf % len(cp.ops), cp.full_index(leaf)
        op = cp.ops[k]
        op_hash, output_root = full.program.op_hashes()[op], full.roots[f]
        compact_proof = merkle_proof(self.compact_leaves(), leaf) if output_game else []
        return (self.root(), cp.abi(), op_hash, output_root, op, cp.map_proof(k),
                compact_proof, merkle_proof(self.leaves(), f))

    def opening(self, leaf: int) -> tuple[bytes, bytes, bytes]:
        trace = self.outcome.trace
        out = trace.outputs[leaf]
        op_hash = trace.program.op_hashes()[leaf % trace.program.n_ops]
        data_root = merkle_levels(chunk_leaves(canonical_bytes(out)))[-1][0]
        return op_hash, header(out.dtype.name, out.shape), data_root

    def chunk_leaves(self, leaf: int) -> list[bytes]:
        return chunk_leaves(canonical_bytes(self.outcome.trace.outputs[leaf]))

    def chunk(self, leaf: int, index: int) -> bytes:
        data = canonical_bytes(self.outcome.trace.outputs[leaf])
        return data[index * CHUNK_BYTES:(index + 1) * CHUNK_BYTES]

    def chain(self, leaf: int, element: int) -> list[int]:
        """docs/trace-layout.md §L9: the accumulation chain of DOT element `element` at
        `leaf` from this trace's own inputs ([] when the element is checked whole)."""
        return self.builder().chain(leaf, element)

    @property
    def has_defender_nodes(self) -> bool:
        return bool(self._overlay)

    def with_defender_nodes(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        """Overlay the defender's revealed trace-tree nodes {(level, index): hash}.

        Level 0 is the leaves. Parents of revealed siblings are recomputed so every level
        agrees with the defender's root.
        """
        b = self.builder()
        levels = [list(lv) for lv in b._levels]
        for (lvl, idx), h in nodes.items():
            if lvl < len(levels) and idx < len(levels[lvl]):
                levels[lvl][idx] = h
        for lvl in range(1, len(levels)):
            for idx in range(len(levels[lvl])):
                if (lvl, idx) in nodes:
                    continue
                left, right = levels[lvl - 1][2 * idx], levels[lvl - 1][2 * idx + 1]
                levels[lvl][idx] = keccak256(b"\x01" + left + right)
        b._levels = levels
        self._overlay = dict(nodes)

    def witness(self, kind: int, ctx: Any) -> bytes:
        """Witness for the pending claim (ctx is the on-chain StepContext tuple)."""
        b = self.builder()
        leaf, element = int(ctx[7]), int(ctx[10])
        if kind == Claim.ELEMENT:
            claim = bytes(ctx[12])
            if claim:  # §L9: a picked link of the element's chain, abi.encode(link, start)
                link, _start = decode(["uint256", "uint256"], claim)
                return b.element(leaf, element, link=int(link))
            return b.element(leaf, element)
        if kind in (Claim.OP_HASH, Claim.OUTPUT_HEADER):
            return b.header_only(leaf)
        prog = self.outcome.trace.program
        if kind == Claim.TRACE_END:
            step = leaf // prog.n_ops - 1
            return b.token_step(step if step >= 0 else None)
        if kind == Claim.OUTPUT_TOKEN:
            n_steps = self.outcome.trace.n_steps
            return b.token_step(element if element < n_steps else None)
        raise ValueError(f"unknown claim kind {kind}")
