"""What each trace op computes, element by element (docs/trace-layout.md §L5).

One function per op code, vectorized over an array of output element indices: the executor
calls it with every index to produce a whole tensor (`execute.py`), the one-step mirror with
the single disputed index and inputs rebuilt from witness chunks (`onestep.py`). So there is
one definition of each op, and it is the one the Solidity verifier re-implements.
Values travel as integer arrays: float32 → uint32 bit patterns, int32/int64 → signed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from referee import f32
from referee.layout import Code, Dim, Fn, Symbols, TraceOp, is_binary


class OpError(ValueError):
    """The inputs do not fit the op (the contract reverts on the same conditions)."""


class View(Protocol):
    shape: tuple[int, ...]
    dtype: str

    def get(self, idx: np.ndarray) -> np.ndarray: ...


@dataclass
class EvalContext:
    """What an op may read besides its tensors: the step's symbols and the job's tokens."""

    sym: Symbols
    step: int
    job_tokens: Sequence[int]


def numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise OpError(msg)


def _rows_cols(shape: Sequence[int]) -> tuple[int, int, int]:
    """(batch, rows, cols) of a tensor read as [..., R, C] (§L5: 1-D is one row)."""
    if len(shape) == 0:
        return 1, 1, 1
    if len(shape) == 1:
        return 1, 1, int(shape[0])
    return numel(shape[:-2]), int(shape[-2]), int(shape[-1])


def _get(v: View | None, idx: np.ndarray, what: str) -> np.ndarray:
    _need(v is not None, f"{what}: input absent")
    n = numel(v.shape)
    _need(bool(np.all((idx >= 0) & (idx < n))), f"{what}: element outside input of {n}")
    return v.get(idx)


# ------------------------------------------------------------------------------ §L5.1 TOKENS


def tokens(op: TraceOp, out: tuple[int, ...], ins: list[View | None], e: np.ndarray,
           cx: EvalContext) -> np.ndarray:
    if cx.step == 0:
        toks = np.asarray(cx.job_tokens, dtype=np.int64)
        _need(bool(np.all(e < len(toks))), "TOKENS: element past the job input")
        return toks[e]
    _need(bool(np.all(e == 0)), "TOKENS: a decode step has one token")
    return _get(ins[1], np.zeros_like(e), "TOKENS")


# ------------------------------------------------------------------------------ §L5.2 GATHER


def gather(op, out, ins, e, cx):
    ids, table = ins[0], ins[1]
    _need(table is not None and len(table.shape) == 2, "GATHER: table must be [V, D]")
    v, d = table.shape
    _need(out[-1] == d, "GATHER: output row width differs from the table's")
    row, col = e // d, e % d
    tok = _get(ids, row, "GATHER ids").astype(np.int64)
    _need(bool(np.all((tok >= 0) & (tok < v))), "GATHER: id outside the table")
    return _get(table, tok * d + col, "GATHER table")


# ------------------------------------------------------------------------------ §L5.3 DOT


def dot(op, out, ins, e, cx):
    k0, k1, group, causal = op.attrs
    a, b = ins[0], ins[1]
    acc_in = ins[2] if len(ins) > 2 else None
    _need(a is not None and b is not None, "DOT: operands absent")
    ba, r, k = _rows_cols(a.shape)
    bb, n, kb = _rows_cols(b.shape)
    ob, orows, on = _rows_cols(out)
    _need(kb == k and orows == r and on == n and ob == ba, "DOT: shapes do not chain")
    _need(group >= 1 and ba == bb * group, "DOT: batch group mismatch")
    bi, ri, ni = e // (r * n), (e // n) % r, e % n
    acc = (_get(acc_in, e, "DOT acc") if acc_in is not None
           else np.zeros(e.shape, np.uint32)).astype(np.uint32)
    kend = np.full(e.shape, min(k1, k), dtype=np.int64)
    if causal == 1:
        kend = np.minimum(kend, cx.sym.past + ri + 1)
    arow = (bi * r + ri) * k
    brow = ((bi // group) * n + ni) * k
    for kk in range(k0, min(k1, k)):
        live = kk < kend
        if not live.any():
            break
        x = np.zeros(e.shape, np.uint32)
        y = np.zeros(e.shape, np.uint32)
        x[live] = _get(a, arow[live] + kk, "DOT a")
        y[live] = _get(b, brow[live] + kk, "DOT b")
        acc = np.where(live, f32.fma(x, y, acc), acc).astype(np.uint32)
    if causal == 2:
        acc = np.where(ni > cx.sym.past + ri, np.uint32(f32.NEG_INF), acc).astype(np.uint32)
    return acc


# ------------------------------------------------------------------------------ §L5.4 FOLD


def fold(op, out, ins, e, cx):
    combine, cap, causal, nword = op.attrs
    x = ins[0]
    _need(x is not None and len(x.shape) >= 1, "FOLD: input absent")
    _, r, w = _rows_cols(x.shape)
    _need(cap >= 1 and w <= 2 * cap, "FOLD: row wider than two caps")
    _need(tuple(out) == tuple(x.shape[:-1]) + (cap,), "FOLD: output shape")
    row, i = e // cap, e % cap
    n = np.full(e.shape, min(w, Dim.from_word(nword).eval(cx.sym)), dtype=np.int64)
    if causal:
        n = np.minimum(n, cx.sym.past + row % r + 1)
    res = np.full(e.shape, f32.NEG_ZERO, dtype=np.uint32)
    inside = i < w
    if inside.any():
        res[inside] = f32.canon(_get(x, row[inside] * w + i[inside], "FOLD"))
    pair = (n > cap) & (i + cap < n)
    if pair.any():
        lo = res[pair]
        hi = _get(x, row[pair] * w + i[pair] + cap, "FOLD")
        res[pair] = f32.binary("add" if combine == 0 else "max", lo, hi)
    return res


# ------------------------------------------------------------------------------ §L5.5 ARGFOLD


def _winner(va, ia, vb, ib):
    """RepOps spec §6.11 as an order-free pairwise rule: first NaN, else greatest, lowest index."""
    na, nb = f32.isnan(va), f32.isnan(vb)
    lo = np.minimum(ia, ib)
    res = np.where(f32.gt(va, vb), ia, np.where(f32.gt(vb, va), ib, lo))
    res = np.where(na & ~nb, ia, np.where(nb & ~na, ib, np.where(na & nb, lo, res)))
    return res


def argfold(op, out, ins, e, cx):
    (cap,) = op.attrs
    x = ins[0]
    idx = ins[1] if len(ins) > 1 else None
    _need(x is not None, "ARGFOLD: values absent")
    _, r, v = _rows_cols(x.shape)
    w = v if idx is None else _rows_cols(idx.shape)[2]
    wout = min(w, cap)
    _need(cap >= 1 and w <= 2 * cap, "ARGFOLD: row wider than two caps")
    _need(numel(out) == numel(x.shape[:-1]) * wout, "ARGFOLD: output shape")
    row, i = e // wout, e % wout

    def ids(pos):
        if idx is None:
            return pos.astype(np.int64)
        got = _get(idx, row_sel * w + pos, "ARGFOLD idx").astype(np.int64)
        _need(bool(np.all((got >= 0) & (got < v))), "ARGFOLD: index outside the row")
        return got

    row_sel = row
    ia = ids(i)
    res = ia.copy()
    pair = i + cap < w
    if pair.any():
        row_sel = row[pair]
        ib = ids(i[pair] + cap)
        ra, rb = row[pair] * v + ia[pair], row[pair] * v + ib
        res[pair] = _winner(_get(x, ra, "ARGFOLD x"), ia[pair], _get(x, rb, "ARGFOLD x"), ib)
    return res


# ------------------------------------------------------------------------------ §L5.6 EW


_FN_NAMES = {Fn.ADD: "add", Fn.SUB: "sub", Fn.MUL: "mul", Fn.DIV: "div", Fn.MAX: "max",
             Fn.MIN: "min", Fn.NEG: "neg", Fn.SQRT: "sqrt", Fn.EXP: "exp", Fn.LOG: "log",
             Fn.SIGMOID: "sigmoid", Fn.SILU: "silu", Fn.COPY: "copy"}


def broadcast_index(e: np.ndarray, out: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Flat index into an input of `shape` broadcast (NumPy rules, right-aligned) to `out`."""
    _need(len(shape) <= len(out), "EW: input has more dims than the output")
    off = len(out) - len(shape)
    flat = np.zeros(e.shape, dtype=np.int64)
    rem = e.copy()
    stride_out = numel(out)
    stride_in = numel(shape)
    for ax, dout in enumerate(out):
        stride_out //= max(int(dout), 1)
        coord = rem // stride_out if dout else rem
        rem = rem - coord * stride_out
        if ax >= off:
            din = int(shape[ax - off])
            _need(din in (1, dout), "EW: shapes do not broadcast")
            stride_in //= max(din, 1)
            if din != 1:
                flat += coord * stride_in
    return flat


def ew(op, out, ins, e, cx):
    fn, scalar, mask, fill = op.attrs
    fn = Fn(fn)
    a = ins[0]
    _need(a is not None, "EW: input absent")
    va = _get(a, broadcast_index(e, out, a.shape), "EW a")
    if is_binary(fn):
        if len(ins) > 1:
            vb = _get(ins[1], broadcast_index(e, out, ins[1].shape), "EW b")
        else:
            vb = np.full(e.shape, scalar, dtype=np.uint32)
        res = f32.binary(_FN_NAMES[fn], va, vb)
    else:
        res = f32.unary(_FN_NAMES[fn], va)
    if mask:
        _, _, c = _rows_cols(out)
        _, r, _ = _rows_cols(out)
        col, row = e % c, (e // c) % r
        res = np.where(col > cx.sym.past + row, np.uint32(fill), res).astype(np.uint32)
    return res


# ------------------------------------------------------------------------------ §L5.7 ROPE


def rope(op, out, ins, e, cx):
    dh, rot, mode = op.attrs
    x, cos, sin = ins
    _need(x is not None and tuple(x.shape) == tuple(out), "ROPE: output shape")
    _, t, w = _rows_cols(out)
    _need(dh >= 2 and dh % 2 == 0 and rot % 2 == 0 and rot <= dh and w % dh == 0,
          "ROPE: bad head layout")
    half = rot // 2
    _need(len(cos.shape) == 2 and cos.shape[1] == half and tuple(sin.shape) == tuple(cos.shape),
          "ROPE: tables must be [P, R/2]")
    d = (e % w) % dh
    p = (e // w) % t + cx.sym.past
    base = e - d
    res = f32.canon(_get(x, e, "ROPE x"))
    rotd = d < rot
    if rotd.any():
        d, p, base = d[rotd], p[rotd], base[rotd]
        _need(bool(np.all(p < cos.shape[0])), "ROPE: position past the table")
        if mode == 0:
            i = d // 2
            ia, ib, first = base + 2 * i, base + 2 * i + 1, d % 2 == 0
        else:
            i = d % half
            ia, ib, first = base + i, base + i + half, d < half
        va, vb = _get(x, ia, "ROPE x"), _get(x, ib, "ROPE x")
        c, s = _get(cos, p * half + i, "ROPE cos"), _get(sin, p * half + i, "ROPE sin")
        r1 = f32.binary("sub", f32.binary("mul", va, c), f32.binary("mul", vb, s))
        r2 = f32.binary("add", f32.binary("mul", va, s), f32.binary("mul", vb, c))
        res[rotd] = np.where(first, r1, r2)
    return res


# ------------------------------------------------------------------------------ §L5.8 MOVE


def move(op, out, ins, e, cx):
    _need(len(op.attrs) == 1 + len(out), "MOVE: one stride per output dim")
    off = Dim.from_word(op.attrs[0]).eval(cx.sym)
    src = np.full(e.shape, off, dtype=np.int64)
    rem = e.copy()
    stride_out = numel(out)
    for ax, dout in enumerate(out):
        stride_out //= max(int(dout), 1)
        coord = rem // stride_out
        rem = rem - coord * stride_out
        src += coord * Dim.from_word(op.attrs[1 + ax]).eval(cx.sym)
    return _get(ins[0], src, "MOVE")


# ------------------------------------------------------------------------------ §L5.9 CONCAT


def concat(op, out, ins, e, cx):
    (axis,) = op.attrs
    a, b = ins
    _need(b is not None and axis < len(out) and len(b.shape) == len(out), "CONCAT: shapes")
    lb = int(b.shape[axis])
    la = int(out[axis]) - lb
    a_shape = tuple(out[:axis]) + (la,) + tuple(out[axis + 1:])
    _need(la >= 0 and tuple(b.shape) == tuple(out[:axis]) + (lb,) + tuple(out[axis + 1:]),
          "CONCAT: B does not fit")
    _need((a is None and la == 0) or (a is not None and tuple(a.shape) == a_shape),
          "CONCAT: A does not fit")
    inner = numel(out[axis + 1:])
    outer, pos = e // (int(out[axis]) * inner), (e // inner) % int(out[axis])
    rest = e % inner
    in_a = pos < la
    res = np.zeros(e.shape, dtype=np.int64)
    if in_a.any():
        res[in_a] = _get(a, (outer[in_a] * la + pos[in_a]) * inner + rest[in_a], "CONCAT a")
    ib = ~in_a
    if ib.any():
        res[ib] = _get(b, (outer[ib] * lb + pos[ib] - la) * inner + rest[ib], "CONCAT b")
    return res


SEMANTICS = {Code.TOKENS: tokens, Code.GATHER: gather, Code.DOT: dot, Code.FOLD: fold,
             Code.ARGFOLD: argfold, Code.EW: ew, Code.ROPE: rope, Code.MOVE: move,
             Code.CONCAT: concat}


def elements(op: TraceOp, ins: list[View | None], e: np.ndarray, cx: EvalContext) -> np.ndarray:
    """Values of output elements `e` of `op` at the step of `cx` (§L5)."""
    out = op.shape(cx.sym)
    e = np.asarray(e, dtype=np.int64)
    _need(bool(np.all((e >= 0) & (e < numel(out)))), f"{op.code.name}: element outside output")
    return SEMANTICS[op.code](op, out, ins, e, cx)
