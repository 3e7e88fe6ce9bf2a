"""Every level of one FOLD tree in one C call on the CPU (docs/trace-layout.md §L5.4).

The lowering writes a row reduction as one FOLD op per tree level (RMSNorm's sum of squares:
10 levels; softmax's max and sum over a 2,048-key context: 11 each), and every level is a
leaf. Run level by level, SmolLM2's ~1,300 levels per decode step cost ~40 µs of Python
dispatch each, a fifth of the step. `repops_fold_levels` (repops/cpu/csrc/repops_fold_levels.c)
computes all levels of a tree from the first level's input in one pass and the executor hands
out views of its buffer as the level outputs: the same bits, one call.

Only the uniform case goes here: every row folds the same number n of live elements (no
causal limit, or one row per block as in decode). Prefill's causal rows, and a row wider than
two caps (an error the op-by-op path names), stay with the executor's per-level `_fold`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

from referee.layout import Code, Src, TraceProgram


@dataclass(frozen=True)
class FoldTree:
    """Ops `levels` fold one tree: each level's only input is the previous level, all with the
    same combine, causal flag and n word (§L5.4 attributes: combine, cap, causal, n)."""

    levels: tuple[int, ...]
    caps: tuple[int, ...]
    combine: int  # 0 add, 1 max
    causal: int
    nword: int


def find_trees(program: TraceProgram) -> dict[int, FoldTree]:
    """Runs of ≥ 2 FOLD levels of one tree, keyed by the first level's op index."""
    ops, out, j = program.ops, {}, 0
    while j < len(ops):
        op = ops[j]
        if op.code != Code.FOLD or len(op.inputs) != 1 or op.inputs[0].src != Src.OP:
            j += 1
            continue
        i = j + 1
        while i < len(ops):
            nx = ops[i]
            inp = nx.inputs[0] if len(nx.inputs) == 1 else None
            if (nx.code != Code.FOLD or inp is None or inp.src != Src.OP or inp.op != i - 1
                    or inp.back != 0 or nx.attrs[0] != op.attrs[0]
                    or nx.attrs[2:] != op.attrs[2:] or nx.dtype != "float32"):
                break
            i += 1
        if i - j > 1 and op.dtype == "float32":
            levels = tuple(range(j, i))
            out[j] = FoldTree(levels, tuple(ops[k].attrs[1] for k in levels), op.attrs[0],
                              op.attrs[2], op.attrs[3])
        j = i
    return out


class TreeRunner:
    """One tree's levels through `repops_fold_levels` (module docstring)."""

    def __init__(self, tree: FoldTree) -> None:
        from repops.cpu.build import load

        self.tree = tree
        self._caps = (ctypes.c_int64 * len(tree.caps))(*tree.caps)
        self._fn = load().repops_fold_levels
        P, I64 = ctypes.c_void_p, ctypes.c_int64
        self._fn.argtypes = [P, I64, I64, I64, P, I64, ctypes.c_int, P]
        self._fn.restype = None

    def run(self, x: torch.Tensor, nlive: int, canonical: bool) -> list[torch.Tensor] | None:
        """The level outputs for input x whose rows each hold `nlive` live elements, or None
        when a level's input is wider than two caps (the per-level path raises for it).

        `canonical`: x holds no non-canonical NaN, so a first level that only copies a full
        row may return x itself (the executor's rule; the recorder then hashes it once)."""
        caps = self.tree.caps
        w = x.shape[-1] if x.dim() else 1
        win = w
        for cap in caps:
            if cap < 1 or win > 2 * cap:
                return None
            win = cap
        x2 = x.contiguous()
        rows = x2.numel() // w if w else 0
        lead = tuple(x.shape[:-1])
        buf = torch.empty(rows * sum(caps), dtype=torch.float32)
        self._fn(x2.data_ptr(), rows, w, len(caps), self._caps, nlive, self.tree.combine,
                 buf.data_ptr())
        outs, off = [], 0
        for cap in caps:
            outs.append(buf[off:off + rows * cap].view(*lead, cap))
            off += rows * cap
        if canonical and w == caps[0] and x.dim():
            outs[0] = x  # a copy level over a full row: the same bits, the same object
        return outs
