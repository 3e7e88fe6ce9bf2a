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

import numpy as np

from referee.layout import Code, Src, Stage, TraceProgram

TRACE_KINDS = ("full", "compact")  # what a run commits: §L1 every op, §L10 the compact trace

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
