"""The compact trace commitment (docs/trace-layout.md §L10, ADR 0013): which trace ops'
outputs an executor commits while it runs, and how a compact leaf maps to the full trace.

Why: the full trace (§L1) commits every trace op's output, ~16.6 MB of tensors a SmolLM2
decode step at segment 192, and hashing them was a third of the CPU's decode time. Most of
those bytes are the *inside* of one computation: the partial sums of a DOT chain, the levels
of a FOLD or ARGFOLD tree, the merge levels of the sampler's sort, and the KV caches laid out
per head for the DOT that reads them. The compact commitment drops exactly those ops (the
*interior* of a chain); every other op, every op read by a later step, and the token op stay.
The full trace is what the dispute game bisects; an executor recomputes it on demand and the
game binds it to the compact one (ADR 0013)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from referee.layout import Code, Src, Stage, TraceProgram
from repops.commit import keccak256, merkle_proof, merkle_root

TRACE_KINDS = ("full", "compact")  # what a run commits: §L1 every op, §L10 the compact trace
MAP_LEAF_TAG = 0x05
COMPACT_TAG = 0x06

def _continues(producer_code: Code, producer_stage: int, consumer_code: Code,
               consumer_stage: int) -> bool:
    """§L10: does a consumer continue the producer's chain? The same reduction one level or
    segment further (DOT, FOLD, ARGFOLD; the sort's SORT/MERGE into MERGE), or a DOT reading
    a MOVE (the per-head layout of its operand)."""
    if producer_code in (Code.DOT, Code.FOLD, Code.ARGFOLD):
        return consumer_code == producer_code
    if producer_code == Code.SAMPLE:
        return (consumer_code == Code.SAMPLE and consumer_stage == Stage.MERGE
                and producer_stage in (Stage.SORT, Stage.MERGE))
    if producer_code == Code.MOVE:
        return consumer_code == Code.DOT
    return False


def interior_ops(program: TraceProgram) -> np.ndarray:
    """§L10: per op, True when its output is not committed. An op is interior iff it is not
    the token op, no later step reads it, some op of its step reads it, and every op that
    reads it continues its chain (`_continues`)."""
    ops = program.ops
    stage = [op.attrs[0] if op.code == Code.SAMPLE and op.attrs else 0 for op in ops]
    readers: list[list[int]] = [[] for _ in ops]
    later = np.zeros(len(ops), dtype=bool)
    for k, op in enumerate(ops):
        for inp in op.inputs:
            if inp.src != Src.OP:
                continue
            if inp.back:
                later[inp.op] = True
            else:
                readers[inp.op].append(k)
    out = np.zeros(len(ops), dtype=bool)
    for j, op in enumerate(ops):
        if j == program.token_op or later[j] or not readers[j]:
            continue
        out[j] = all(_continues(op.code, stage[j], ops[k].code, stage[k]) for k in readers[j])
    return out


def compact_ops(program: TraceProgram) -> np.ndarray:
    """§L10: the committed ops of a step, ascending (int64): compact leaf `j` of a trace is op
    `compact_ops[j mod Pc]` of step `j div Pc`."""
    return np.flatnonzero(~interior_ops(program)).astype(np.int64)


def full_index(cmap: Sequence[int] | np.ndarray, n_ops: int, leaf: int) -> int:
    """§L10: the full-trace leaf (§L1) of compact leaf `leaf`."""
    step, c = divmod(leaf, len(cmap))
    return step * n_ops + int(cmap[c])


@dataclass(frozen=True)
class Compact:
    """§L10 compact commitment of a program: what the model registry stores (`root`) and
    what a party reveals in the game's Expand phase (`DisputeGame.Compact`)."""

    n_ops: int  # P
    ops: tuple[int, ...]  # compact_ops
    token_place: int  # c_tok: compact_ops[c_tok] = token_op
    map_root: bytes

    @classmethod
    def of(cls, program: TraceProgram) -> Compact:
        ops = tuple(int(j) for j in compact_ops(program))
        return cls(program.n_ops, ops, ops.index(program.token_op),
                   merkle_root(map_leaves(ops)))

    @property
    def root(self) -> bytes:
        return keccak256(bytes([COMPACT_TAG]) + self.n_ops.to_bytes(4, "big")
                         + len(self.ops).to_bytes(4, "big")
                         + self.token_place.to_bytes(4, "big") + self.map_root)

    def abi(self) -> tuple[int, int, int, bytes]:
        """The `DisputeGame.Compact` tuple (P, Pc, cTok, mapRoot)."""
        return self.n_ops, len(self.ops), self.token_place, self.map_root

    def full_index(self, leaf: int) -> int:
        return full_index(self.ops, self.n_ops, leaf)

    def map_proof(self, k: int) -> list[bytes]:
        """Siblings of `map_leaf(ops[k])` in `map_root`."""
        return merkle_proof(map_leaves(self.ops), k)


def map_leaves(ops: Sequence[int]) -> list[bytes]:
    """§L10: map_leaf(op) = keccak256(0x05 ‖ u32 op) for each committed op."""
    return [keccak256(bytes([MAP_LEAF_TAG]) + int(op).to_bytes(4, "big")) for op in ops]
