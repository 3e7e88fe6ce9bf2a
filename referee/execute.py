"""Runs a trace program step by step and records the trace (docs/trace-layout.md §L1–§L5).

This is the reference for what the runtime must commit: for every step s and op j, the output
tensor of leaf s·P + j. It evaluates ops through `referee.ops` (one definition per op), so a
runtime that computes the same ops faster must produce the same bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from referee.layout import JobConfig, Src, Symbols, TraceOp, TraceProgram
from referee.ops import EvalContext, elements, numel
from repops.commit import tensor_root_np, trace_leaves

NP_DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


@dataclass
class ArrayView:
    """An input read from a whole array (float32 as uint32 bits, ints as values)."""

    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> str:
        return self.array.dtype.name

    def get(self, idx: np.ndarray) -> np.ndarray:
        flat = self.array.reshape(-1)
        if self.array.dtype == np.float32:
            return flat.view(np.uint32)[idx]
        return flat[idx].astype(np.int64)


def to_array(values: np.ndarray, dtype: str, shape: Sequence[int]) -> np.ndarray:
    """Output values (§L5 representation) → the committed array (C1 dtype)."""
    if dtype == "float32":
        return np.asarray(values, dtype=np.uint32).view(np.float32).reshape(shape).copy()
    return np.asarray(values).astype(NP_DTYPES[dtype]).reshape(shape)


@dataclass
class Trace:
    """Every output of a run, in leaf order, with the C5 commitments."""

    program: TraceProgram
    job_tokens: list[int]
    outputs: list[np.ndarray] = field(default_factory=list)
    config: JobConfig = field(default_factory=JobConfig)  # what SAMPLE ops read (§L5.10)
    roots: list[bytes] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.outputs)

    @property
    def n_steps(self) -> int:
        return self.length // self.program.n_ops

    def leaves(self) -> list[bytes]:
        hashes = self.program.op_hashes()
        p = self.program.n_ops
        return trace_leaves([hashes[i % p] for i in range(len(self.roots))], self.roots)

    def output_tokens(self) -> list[int]:
        """§L1: the token op's output at every step."""
        p, t = self.program.n_ops, self.program.token_op
        return [int(self.outputs[s * p + t].reshape(-1)[0]) for s in range(self.n_steps)]


def resolve_inputs(op: TraceOp, step: int, n_ops: int, weights: Mapping[bytes, np.ndarray],
                   leaf_output: Callable[[int], np.ndarray]) -> list[ArrayView | None]:
    """§L4: OP inputs from the trace (None before step 0), WEIGHT inputs by tensor root."""
    views: list[ArrayView | None] = []
    for inp in op.inputs:
        if inp.src == Src.OP:
            leaf = inp.leaf(step, n_ops)
            views.append(None if leaf is None else ArrayView(leaf_output(leaf)))
        elif inp.src == Src.WEIGHT:
            views.append(ArrayView(weights[inp.root]))
        else:
            views.append(None)
    return views


def run_op(op: TraceOp, ins: list[ArrayView | None], cx: EvalContext) -> np.ndarray:
    shape = op.shape(cx.sym)
    vals = elements(op, ins, np.arange(numel(shape), dtype=np.int64), cx)
    return to_array(vals, op.dtype, shape)


def run(program: TraceProgram, weights: Mapping[bytes, np.ndarray], job_tokens: Sequence[int],
        max_steps: int, override: Callable[[int, np.ndarray], np.ndarray] | None = None,
        config: JobConfig | None = None) -> Trace:
    """Run for up to `max_steps` steps, stopping after an EOS token (§L1), under the job's
    `config` (temperature, top_k, top_p, seed: SAMPLE ops, §L5.10; default greedy).

    `override(leaf, output)` lets tests play a cheating executor: whatever it returns is what
    gets committed and what later ops read.
    """
    if max_steps < 1:
        raise ValueError("a trace has at least one step")
    cfg = config if config is not None else JobConfig(max_tokens=max_steps)
    tr = Trace(program, list(job_tokens), config=cfg)
    p = program.n_ops
    for s in range(max_steps):
        cx = EvalContext(Symbols.for_step(len(job_tokens), s), s, tr.job_tokens, cfg)
        for j, op in enumerate(program.ops):
            ins = resolve_inputs(op, s, p, weights, lambda i: tr.outputs[i])
            out = run_op(op, ins, cx)
            if override is not None:
                out = override(s * p + j, out)
            tr.outputs.append(out)
            tr.roots.append(tensor_root_np(out))
        if tr.output_tokens()[-1] == program.eos:
            break
    return tr
