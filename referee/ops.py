"""What each trace op computes, element by element (docs/trace-layout.md §L5).

One function per op code, vectorized over an array of output element indices: the executor
calls it with every index to produce a whole tensor (`execute.py`), the one-step mirror with
the single disputed index and inputs rebuilt from witness chunks (`onestep.py`). So there is
one definition of each op, and it is the one the Solidity verifier re-implements.
Values travel as integer arrays: float32 → uint32 bit patterns, int32/int64 → signed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from referee import f32
from referee.layout import F32_ONE, Code, Dim, Fn, JobConfig, Stage, Symbols, TraceOp, is_binary


class OpError(ValueError):
    """The inputs do not fit the op (the contract reverts on the same conditions)."""


class View(Protocol):
    shape: tuple[int, ...]
    dtype: str

    def get(self, idx: np.ndarray) -> np.ndarray: ...


@dataclass
class EvalContext:
    """What an op may read besides its tensors: the step's symbols, the job's tokens and
    (SAMPLE, §L5.10) the job's config."""

    sym: Symbols
    step: int
    job_tokens: Sequence[int]
    config: JobConfig = field(default_factory=JobConfig)


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

LINK = 64  # fma steps per link of an accumulation chain (§L9; TraceOps.LINK)


class ChainRequired(OpError):
    """§L9: a DOT element with links > 0 asked whole (OneStepVerifier reverts
    `ChainRequired(links)`): the game must descend into its chain first."""

    def __init__(self, links: int) -> None:
        super().__init__(f"ChainRequired({links})")
        self.links = links


class BadLink(OpError):
    """§L9: a link claim on an op that is not a DOT, an element without links, or a link
    index past the element's chain (OneStepVerifier reverts `BadLink()`)."""


@dataclass
class _Dot:
    """Where DOT elements `e` read (§L5.3): operand rows, the k range and each element's
    kend (causal 1 clipped by `past`). Shared by the whole element, its links (§L9) and its
    link count, so the three cannot disagree on a shape rule."""

    a: View
    b: View
    acc_in: View | None
    e: np.ndarray
    arow: np.ndarray
    brow: np.ndarray
    k0: int
    kend: np.ndarray
    causal: int
    masked: np.ndarray  # causal 2: output −inf

    def start(self) -> np.ndarray:
        """The chain's first accumulator: acc_in[e], or +0 without acc."""
        if self.acc_in is None:
            return np.zeros(self.e.shape, np.uint32)
        return _get(self.acc_in, self.e, "DOT acc").astype(np.uint32)

    def run(self, lo: int, hi: int, acc: np.ndarray) -> np.ndarray:
        """acc = fma(A[b,r,k], B[b div group,n,k], acc) for k = lo … hi−1 ascending, each
        element stopping at its own kend: the §3.1 chain, any piece of it."""
        acc = np.asarray(acc, np.uint32).copy()
        for kk in range(lo, hi):
            live = kk < self.kend
            if not live.any():
                break
            x = np.zeros(self.e.shape, np.uint32)
            y = np.zeros(self.e.shape, np.uint32)
            x[live] = _get(self.a, self.arow[live] + kk, "DOT a")
            y[live] = _get(self.b, self.brow[live] + kk, "DOT b")
            acc = np.where(live, f32.fma(x, y, acc), acc).astype(np.uint32)
        return acc

    def links(self) -> np.ndarray:
        """§L9: links(e) = (causal != 2 and len > LINK) ? ⌈len / LINK⌉ : 0,
        len = max(0, kend − k0)."""
        n = np.maximum(0, self.kend - self.k0)
        if self.causal == 2:
            return np.zeros(self.e.shape, np.int64)
        return np.where(n > LINK, -(-n // LINK), 0).astype(np.int64)


def _dot_setup(op: TraceOp, out: Sequence[int], ins: list[View | None], e: np.ndarray,
               cx: EvalContext) -> _Dot:
    """§L5.3's shape rules and element geometry (the contract reverts on the same)."""
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
    kend = np.full(e.shape, min(k1, k), dtype=np.int64)
    if causal == 1:
        kend = np.minimum(kend, cx.sym.past + ri + 1)
    return _Dot(a, b, acc_in, e, (bi * r + ri) * k, ((bi // group) * n + ni) * k, int(k0),
                kend, int(causal),
                (ni > cx.sym.past + ri) if causal == 2 else np.zeros(e.shape, bool))


def dot(op, out, ins, e, cx):
    d = _dot_setup(op, out, ins, e, cx)
    acc = d.start()
    acc = d.run(d.k0, int(d.kend.max()) if d.kend.size else d.k0, acc)
    if d.causal == 2:
        acc = np.where(d.masked, np.uint32(f32.NEG_INF), acc).astype(np.uint32)
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


# ------------------------------------------------------------------------------ §L5.10 SAMPLE

_U32 = 1 << 32
_NAN_KEY = -(1 << 31)  # below every other key (-inf is -0x7F800000)


def sort_key(bits: np.ndarray) -> np.ndarray:
    """§L5.10 SORT key: any NaN below -inf, -0 = +0, else IEEE value order, as int64."""
    u = np.asarray(bits, dtype=np.int64) & 0xFFFFFFFF
    mag = u & 0x7FFFFFFF
    key = np.where(u >> 31 == 1, -mag, mag)
    return np.where(mag > 0x7F800000, _NAN_KEY, key).astype(np.int64)


def prec(ka: np.ndarray, a: np.ndarray, kb: np.ndarray, b: np.ndarray) -> np.ndarray:
    """§L5.10 prec(a, b): token a comes before token b (keys ka, kb). RepOps spec §7.3 step 3:
    descending value, equal values (-0 = +0) by ascending index; a strict total order."""
    return (ka > kb) | ((ka == kb) & (a < b))


def keff(v: int, cfg: JobConfig) -> int:
    """RepOps spec §7.3 step 4: K = V if top_k == 0 or top_k >= V, else top_k."""
    return v if cfg.top_k == 0 or cfg.top_k >= v else cfg.top_k


def prng_u_bits(cfg: JobConfig, step: int) -> int:
    """RepOps spec §7.2: u = r24 · 2^-24 (exact binary32) for seed bytes32(uint256(seed))."""
    from repops.sample import prng_u

    return f32.f32_bits(prng_u(cfg.seed, step))


def _low(v: np.ndarray, n: int, what: str) -> np.ndarray:
    """An order entry (SORT int32 or MERGE int64 element): its low 32-bit word, in [0, n)."""
    lo = np.asarray(v, dtype=np.int64) & 0xFFFFFFFF
    _need(bool(np.all(lo < n)), f"SAMPLE {what}: index outside the row")
    return lo


def _index(view: View | None, n: int, what: str) -> int:
    """An index tensor's element 0 (J0, j0, A, j*), in [0, n)."""
    got = int(_get(view, np.zeros(1, np.int64), what)[0])
    _need(0 <= got < n, f"SAMPLE {what}: index outside the row")
    return got


_SAMPLE_INPUTS = {Stage.SCALE: 1, Stage.SORT: 1, Stage.EXP: 2, Stage.SCAN: 1, Stage.TOPP: 1,
                  Stage.DRAW: 3, Stage.JSTAR: 4, Stage.PICK: 4, Stage.MERGE: 2}


def _sample_shape(op: TraceOp, out: Sequence[int], ins: list[View | None]) -> tuple[Stage, int]:
    """§L5.10 shapes: ins[0] is a row of V, the other row inputs have V elements, index inputs
    one; stages up to DRAW and MERGE output V elements, JSTAR and PICK one. Returns (stage, V)."""
    _need(len(op.attrs) >= 1 and op.attrs[0] in Stage.__members__.values(), "SAMPLE: stage")
    st = Stage(op.attrs[0])
    _need(len(ins) >= _SAMPLE_INPUTS[st] and all(ins[k] is not None
                                                 for k in range(_SAMPLE_INPUTS[st])),
          "SAMPLE: inputs absent")
    v = numel(ins[0].shape)
    _need(v >= 1, "SAMPLE: empty row")
    single = st in (Stage.JSTAR, Stage.PICK)
    _need(numel(out) == (1 if single else v), "SAMPLE: output shape")
    rows = {Stage.EXP: (1,), Stage.DRAW: (1,), Stage.JSTAR: (2,), Stage.PICK: (2,),
            Stage.MERGE: (1,)}.get(st, ())
    _need(all(numel(ins[k].shape) == v for k in rows), "SAMPLE: row inputs differ in length")
    if st in (Stage.SORT, Stage.MERGE):
        _need(len(op.attrs) == 2 and op.attrs[1] >= 1, "SAMPLE: block size")
    return st, v


def _block_order(zp: View, s0: int, n: int) -> np.ndarray:
    """Tokens s0 … s0+n−1 in prec order (§L5.10 SORT)."""
    tok = np.arange(s0, s0 + n, dtype=np.int64)
    key = sort_key(_get(zp, tok, "SORT z'"))
    return tok[np.lexsort((tok, -key))]


def _sort(op, v, ins, e):
    """SORT (attr block B): element j is token rank (j − s0) of block [s0, s0 + B) ∩ [0, V)."""
    b = op.attrs[1]
    res = np.zeros(e.shape, dtype=np.int64)
    for s0 in np.unique((e // b) * b):
        s0 = int(s0)
        blk = _block_order(ins[0], s0, min(b, v - s0))
        sel = (e // b) * b == s0
        res[sel] = blk[e[sel] - s0]
    return res


class _Merge:
    """One block of a MERGE level (§L5.10): sorted halves A = prev[s0, s0+h) and
    B = prev[s0+h, s0+2h), clipped to the row; t = how many of A precede output offset q."""

    def __init__(self, op: TraceOp, v: int, ins: list[View | None], k: int) -> None:
        self.h = op.attrs[1]
        self.v = v
        self.prev, self.zp = ins[0], ins[1]
        self.s0 = (k // (2 * self.h)) * 2 * self.h
        self.len_a = max(0, min(self.h, v - self.s0))
        self.len_b = max(0, min(self.h, v - self.s0 - self.h))

    def _tok(self, pos: int) -> int:
        return int(_low(_get(self.prev, np.array([pos]), "MERGE prev"), self.v, "MERGE")[0])

    def a(self, i: int) -> int:
        return self._tok(self.s0 + i)

    def b(self, i: int) -> int:
        return self._tok(self.s0 + self.h + i)

    def valid(self, t: int, q: int) -> bool:
        return 0 <= t <= self.len_a and 0 <= q - t <= self.len_b and q < self.len_a + self.len_b

    def took_a(self, t: int, q: int) -> bool:
        """Output offset q (t of A before it) takes A[t]: A left, and B exhausted or A first."""
        if t >= self.len_a:
            return False
        if q - t >= self.len_b:
            return True
        x, y = self.a(t), self.b(q - t)
        kx, ky = sort_key(_get(self.zp, np.array([x, y]), "MERGE z'"))
        return bool(prec(kx, x, ky, y))

    def value(self, t: int, q: int) -> int:
        """The element at offset q given t: t · 2^32 + the token taken there."""
        tok = self.a(t) if self.took_a(t, q) else self.b(q - t)
        return t * _U32 + tok


def _merge(op, v, ins, e):
    """MERGE (attr half h), element value by the recurrence t(0) = 0, t(q+1) = t(q) + [A taken
    at q], run from the block's start (the one-step reads t(q−1) from `self` instead): the
    same rule as `_Merge.took_a`, on the whole block's tokens read at once."""
    res = np.zeros(e.shape, dtype=np.int64)
    h = op.attrs[1]
    for s0 in np.unique((e // (2 * h)) * 2 * h).tolist():
        m = _Merge(op, v, ins, s0)
        pos = np.arange(s0, s0 + m.len_a + m.len_b, dtype=np.int64)
        toks = _low(_get(m.prev, pos, "MERGE prev"), v, "MERGE")
        keys = sort_key(_get(m.zp, toks, "MERGE z'")).tolist()
        toks = toks.tolist()
        sel = (e // (2 * h)) * 2 * h == s0
        last = int(e[sel].max()) - s0
        vals = np.zeros(last + 1, dtype=np.int64)
        t = 0
        for q in range(last + 1):
            ia, ib = t, m.len_a + q - t
            take_a = t < m.len_a and (q - t >= m.len_b or keys[ia] > keys[ib] or (
                keys[ia] == keys[ib] and toks[ia] < toks[ib]))
            vals[q] = t * _U32 + (toks[ia] if take_a else toks[ib])
            t += take_a
        res[sel] = vals[e[sel] - s0]
    return res


def _scan(v, ins, e):
    """SCAN: c[0] = canon(p[0]), c[j] = add(c[j−1], p[j]) (RepOps spec §7.3 step 6)."""
    import torch

    from repops.cpu import kernels

    last = int(e.max()) + 1 if e.size else 0
    p = _get(ins[0], np.arange(last, dtype=np.int64), "SCAN p").astype(np.uint32)
    c = kernels.cumsum_seq(torch.from_numpy(p.view(np.float32))).numpy().view(np.uint32)
    return c[e].astype(np.int64)


def _f(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def _big_j(f: View, j0: View, v: int, cfg: JobConfig) -> int:
    """J of RepOps spec §7.3 step 6 from TOPP's f and its first maximum J0."""
    at = _index(j0, v, "J0")
    return at if int(_get(f, np.array([at]), "f")[0]) == F32_ONE else keff(v, cfg) - 1


def sample(op, out, ins, e, cx):
    st, v = _sample_shape(op, out, ins)
    cfg = cx.config
    k = keff(v, cfg)
    if st == Stage.SCALE:
        return f32.binary("div", _get(ins[0], e, "SCALE z"), np.uint32(cfg.temperature))
    if st == Stage.SORT:
        return _sort(op, v, ins, e)
    if st == Stage.MERGE:
        return _merge(op, v, ins, e)
    if st == Stage.EXP:
        res = np.full(e.shape, f32.NEG_ZERO, dtype=np.uint32)
        live = e < k
        if live.any():
            o = _low(_get(ins[1], e[live], "EXP order"), v, "EXP order")
            o0 = _low(_get(ins[1], np.zeros(1, np.int64), "EXP order"), v, "EXP order")
            x = _get(ins[0], o, "EXP z'")
            m = _get(ins[0], o0, "EXP z'")
            res[live] = f32.unary("exp", f32.binary("sub", x, m))
        return res
    if st == Stage.SCAN:
        return _scan(v, ins, e)
    if st == Stage.TOPP:
        res = np.zeros(e.shape, dtype=np.uint32)
        top_p = _f(cfg.top_p)
        live = e < k
        if top_p < np.float32(1.0) and live.any():
            c = _f(_get(ins[0], e[live], "TOPP c"))
            res[live] = np.where(c >= top_p, np.uint32(F32_ONE), np.uint32(0))
        return res
    if st == Stage.DRAW:
        big_j = _big_j(ins[1], ins[2], v, cfg)
        res = np.zeros(e.shape, dtype=np.uint32)
        live = e <= big_j
        if live.any():
            cj = _get(ins[0], np.array([big_j]), "DRAW c")
            r = f32.binary("mul", np.uint32(prng_u_bits(cfg, cx.step)), cj)
            c = _f(_get(ins[0], e[live], "DRAW c"))
            res[live] = np.where(c > _f(r), np.uint32(F32_ONE), np.uint32(0))
        return res
    if st == Stage.JSTAR:
        big_j = _big_j(ins[2], ins[3], v, cfg)
        j0 = _index(ins[1], v, "j0")
        hit = int(_get(ins[0], np.array([j0]), "JSTAR g")[0]) == F32_ONE
        return np.full(e.shape, j0 if hit else big_j, dtype=np.int64)
    # PICK
    a = _index(ins[1], v, "A")
    if cfg.greedy or bool(f32.isnan(_get(ins[0], np.array([a]), "PICK z"))[0]):
        return np.full(e.shape, a, dtype=np.int64)
    js = _index(ins[3], v, "j*")
    return np.full(e.shape, _low(_get(ins[2], np.array([js]), "PICK order"), v, "PICK")[0],
                   dtype=np.int64)


def _sample_holds(op: TraceOp, out, ins: list[View | None], me: View | None, e: int,
                  claimed: int, cx: EvalContext) -> bool | None:
    """§L5.10 one-step rules of SORT, MERGE and SCAN (None: the plain element rule applies).

    SORT: the claimed token x is in the block and exactly (e − s0) block tokens precede it.
    MERGE, SCAN: the element recomputed from the defender's own previous element (`me`)."""
    st, v = _sample_shape(op, out, ins)
    if st == Stage.SORT:
        b = op.attrs[1]
        s0 = (e // b) * b
        n = min(b, v - s0)
        x = claimed - _U32 if claimed >= 1 << 31 else claimed  # int32 bits → value
        if not s0 <= x < s0 + n:
            return False
        tok = np.arange(s0, s0 + n, dtype=np.int64)
        key = sort_key(_get(ins[0], tok, "SORT z'"))
        ahead = prec(key, tok, key[x - s0], np.int64(x))
        return int(ahead.sum()) == e - s0
    if st not in (Stage.MERGE, Stage.SCAN):
        return None
    _need(me is not None, "SAMPLE: the defender's own output is missing")
    if st == Stage.SCAN:
        p = _get(ins[0], np.array([e]), "SCAN p")
        want = f32.canon(p) if e == 0 else f32.binary(
            "add", _get(me, np.array([e - 1]), "SCAN self").astype(np.uint32), p)
        return int(want[0]) == claimed
    m = _Merge(op, v, ins, e)
    q = e - m.s0
    if q == 0:
        t = 0
    else:
        prev = int(_get(me, np.array([e - 1]), "MERGE self")[0]) % (1 << 64)
        tp = prev >> 32
        if not m.valid(tp, q - 1):
            return False
        t = tp + (1 if m.took_a(tp, q - 1) else 0)
    return m.value(t, q) == claimed


def _dot_one(op: TraceOp, ins: list[View | None], e: int, cx: EvalContext) -> _Dot:
    """The §L5.3 geometry of one DOT output element (bounds checked as `holds` does)."""
    _need(op.code == Code.DOT, f"{op.code.name}: not a DOT")
    out = op.shape(cx.sym)
    _need(0 <= e < numel(out), "DOT: element outside output")
    return _dot_setup(op, out, ins, np.array([e], dtype=np.int64), cx)


def dot_links(op: TraceOp, ins: list[View | None], e: int, cx: EvalContext) -> int:
    """§L9 links(e) of output element `e`: 0 for an element checked whole (any op but DOT,
    a causal-2 DOT, a DOT element of ≤ LINK fma steps). The mirror of the number
    `OneStepVerifier.chainLength` returns; read from shapes only (no input element)."""
    if op.code != Code.DOT:
        return 0
    return int(_dot_one(op, ins, e, cx).links()[0])


def dot_chain(op: TraceOp, ins: list[View | None], e: int, cx: EvalContext) -> list[int]:
    """§L9 chain(e): the C1 bits of the accumulator after each link of DOT element `e`
    ([] when links(e) = 0). The last is the element; what an honest defender reveals and
    what a challenger compares a revealed chain against."""
    if op.code != Code.DOT:
        return []
    d = _dot_one(op, ins, e, cx)
    links = int(d.links()[0])
    acc = d.start() if links else None
    chain = []
    for j in range(links):
        lo = d.k0 + j * LINK
        acc = d.run(lo, lo + LINK, acc)
        chain.append(int(acc[0]))
    return chain


def _link_holds(op: TraceOp, ins: list[View | None], e: int, link: tuple[int, int],
                claimed: int, cx: EvalContext) -> bool:
    """§L9 link claim (j, start): link j of element e, from `start` (j = 0: from acc_in[e] or
    +0, start ignored), yields `claimed`. BadLink where the contract reverts it."""
    j, start = link
    if op.code != Code.DOT:
        raise BadLink("BadLink: not a DOT")
    d = _dot_one(op, ins, e, cx)
    links = int(d.links()[0])
    if links == 0 or not 0 <= j < links:
        raise BadLink(f"BadLink: link {j} of {links}")
    acc = d.start() if j == 0 else np.array([int(start) % (1 << 32)], np.uint32)
    lo = d.k0 + j * LINK
    return int(d.run(lo, lo + LINK, acc)[0]) == claimed


def holds(op: TraceOp, ins: list[View | None], me: View | None, e: int, claimed: int,
          cx: EvalContext, link: tuple[int, int] | None = None) -> bool:
    """The one-step decision for Claim.Element (§L5, §L5.10, §L9): is `claimed` (C1 bits)
    output element `e`? For every op but SAMPLE SORT/MERGE/SCAN: element(e) == claimed. `me` is
    the defender's own output (§L7 `self`), read by MERGE and SCAN only.

    `link = (j, start)` (§L9, a non-empty `ctx.claim`): is `claimed` the accumulator after link
    j of DOT element e? Asked whole, a DOT element with links > 0 raises ChainRequired (the
    verifier refuses: the game descends into its chain first)."""
    if link is not None:
        return _link_holds(op, ins, e, link, claimed, cx)
    out = op.shape(cx.sym)
    _need(0 <= e < numel(out), f"{op.code.name}: element outside output")
    if op.code == Code.SAMPLE:
        got = _sample_holds(op, out, ins, me, e, claimed, cx)
        if got is not None:
            return got
    if op.code == Code.DOT:
        links = dot_links(op, ins, e, cx)
        if links:
            raise ChainRequired(links)
    value = elements(op, ins, np.array([e]), cx)[0]
    return element_bits(int(value), op.dtype) == claimed


def element_bits(value: int, dtype: str) -> int:
    """C1: the little-endian element as an unsigned integer (what `claimedBits` holds)."""
    width = {"float32": 32, "int32": 32, "int64": 64, "uint8": 8}[dtype]
    return int(value) % (1 << width)


SEMANTICS = {Code.TOKENS: tokens, Code.GATHER: gather, Code.DOT: dot, Code.FOLD: fold,
             Code.ARGFOLD: argfold, Code.EW: ew, Code.ROPE: rope, Code.MOVE: move,
             Code.CONCAT: concat, Code.SAMPLE: sample}


def elements(op: TraceOp, ins: list[View | None], e: np.ndarray, cx: EvalContext) -> np.ndarray:
    """Values of output elements `e` of `op` at the step of `cx` (§L5)."""
    out = op.shape(cx.sym)
    e = np.asarray(e, dtype=np.int64)
    _need(bool(np.all((e >= 0) & (e < numel(out)))), f"{op.code.name}: element outside output")
    return SEMANTICS[op.code](op, out, ins, e, cx)
