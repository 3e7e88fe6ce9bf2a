"""Every level of one FOLD (§L5.4) or ARGFOLD (§L5.5) tree in one C call on the CPU
(docs/trace-layout.md).

The lowering writes a row reduction as one FOLD op per tree level (RMSNorm's sum of squares:
10 levels; softmax's max and sum over a 2,048-key context: 11 each), and every level is a
leaf. Run level by level, SmolLM2's ~1,300 levels per decode step cost ~40 µs of Python
dispatch each, a fifth of the step. `repops_fold_levels` (repops/cpu/csrc/repops_fold_levels.c)
computes all levels of a tree from the first level's input in one pass and the executor hands
out views of its buffer as the level outputs: the same bits, one call.

ARGFOLD trees (the argmax over the 49,152-token vocabulary, and the sampler's J0 and j0
searches: 16 levels each) go the same way through `repops_argfold_levels`, from a tree whose
first level reads the whole row (no index input), so every index the C code reads is one it
wrote.

Only the uniform FOLD case goes here: every row folds the same number n of live elements (no
causal limit, or one row per block as in decode). Prefill's causal rows, and a row wider than
two caps (an error the op-by-op path names), stay with the executor's per-level `_fold`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

from referee.layout import Code, Src, TraceProgram

_P, _I64 = ctypes.c_void_p, ctypes.c_int64


def _c_function(name: str, argtypes: list) -> ctypes._CFuncPtr:
    from repops.cpu.build import load  # compiles the CPU kernels on first use

    fn = getattr(load(), name)
    fn.argtypes, fn.restype = argtypes, None
    return fn


def _int64s(values: tuple[int, ...]) -> ctypes.Array:
    return (ctypes.c_int64 * len(values))(*values)


def _level_widths(w: int, caps: tuple[int, ...], pad: bool) -> list[int] | None:
    """Each level's output width from a first input of width w: its cap (FOLD pads a
    narrower row with -0.0) or at most its cap (ARGFOLD); None if an input is wider than two
    caps, a malformed tree the per-level path reports."""
    win, out = w, []
    for cap in caps:
        if cap < 1 or win > 2 * cap:
            return None
        win = cap if pad else min(win, cap)
        out.append(win)
    return out


def _level_views(buf: torch.Tensor, lead: tuple[int, ...], rows: int, widths: list[int] |
                 tuple[int, ...]) -> list[torch.Tensor]:
    """The levels as views of the C call's buffer, each shaped lead + (width,)."""
    outs, off = [], 0
    for wd in widths:
        outs.append(buf[off:off + rows * wd].view(*lead, wd))
        off += rows * wd
    return outs


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
        self.tree = tree
        self._caps = _int64s(tree.caps)
        self._fn = _c_function("repops_fold_levels", [_P, _I64, _I64, _I64, _P, _I64,
                                                      ctypes.c_int, _P])

    def run(self, x: torch.Tensor, nlive: int, canonical: bool) -> list[torch.Tensor] | None:
        """The level outputs for input x whose rows each hold `nlive` live elements, or None
        when a level's input is wider than two caps (the per-level path raises for it).

        `canonical`: x holds no non-canonical NaN, so a first level that only copies a full
        row may return x itself (the executor's rule; the recorder then hashes it once)."""
        caps = self.tree.caps
        w = x.shape[-1] if x.dim() else 1
        if _level_widths(w, caps, pad=True) is None:
            return None
        x2 = x.contiguous()
        rows = x2.numel() // w if w else 0
        buf = torch.empty(rows * sum(caps), dtype=torch.float32)
        self._fn(x2.data_ptr(), rows, w, len(caps), self._caps, nlive, self.tree.combine,
                 buf.data_ptr())
        outs = _level_views(buf, tuple(x.shape[:-1]), rows, caps)
        if canonical and w == caps[0] and x.dim():
            outs[0] = x  # a copy level over a full row: the same bits, the same object
        return outs


@dataclass(frozen=True)
class ArgTree:
    """Ops `levels` are one argmax tree over the row of op `x_op` (§L5.5): the first level
    reads the row alone, each later one the row and the previous level's indices."""

    levels: tuple[int, ...]
    caps: tuple[int, ...]
    x_op: int


def find_argtrees(program: TraceProgram) -> dict[int, ArgTree]:
    """Runs of ≥ 2 ARGFOLD levels starting from the whole row, keyed by the first level."""
    ops, out, j = program.ops, {}, 0
    while j < len(ops):
        op = ops[j]
        if (op.code != Code.ARGFOLD or len(op.inputs) != 1 or op.inputs[0].src != Src.OP
                or op.inputs[0].back != 0 or ops[op.inputs[0].op].dtype != "float32"):
            j += 1
            continue
        i = j + 1
        while i < len(ops):
            nx = ops[i]
            if (nx.code != Code.ARGFOLD or len(nx.inputs) != 2 or nx.inputs[0] != op.inputs[0]
                    or nx.inputs[1].src != Src.OP or nx.inputs[1].op != i - 1
                    or nx.inputs[1].back != 0):
                break
            i += 1
        if i - j > 1:
            levels = tuple(range(j, i))
            out[j] = ArgTree(levels, tuple(ops[k].attrs[0] for k in levels), op.inputs[0].op)
        j = i
    return out


class ArgTreeRunner:
    """One argmax tree's levels through `repops_argfold_levels` (module docstring)."""

    def __init__(self, tree: ArgTree) -> None:
        self.tree = tree
        self._caps = _int64s(tree.caps)
        self._fn = _c_function("repops_argfold_levels", [_P, _I64, _I64, _P, _I64, _I64, _P,
                                                         _P])

    def run(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """The level outputs (int32 indices) over the rows of x, or None when a level's
        input is wider than two caps (the per-level path raises for it)."""
        v = x.shape[-1] if x.dim() else 1
        widths = _level_widths(v, self.tree.caps, pad=False)
        if widths is None:
            return None
        x2 = x.contiguous()
        rows = x2.numel() // v if v else 0
        buf = torch.empty(rows * sum(widths), dtype=torch.int32)
        self._fn(x2.data_ptr(), rows, v, None, v, len(widths), self._caps, buf.data_ptr())
        return _level_views(buf, tuple(x.shape[:-1]), rows, widths)
