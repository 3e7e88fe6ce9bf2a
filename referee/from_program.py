"""Lower a compiled RepOps program (`node/runtime/program.py`, the ONNX compiler's output) into
the trace program the nodes run and the contract checks (docs/trace-layout.md §L8).

Why: the ONNX → RepOps compiler is the general path of the runtime (any graph of supported
ops), while the trace program is what a dispute is about. Walking the compiled program op by op
through the `referee.lowering.Lowering` methods makes the registered program the ONNX graph's
computation, not a hand-written twin of it; for a Llama graph the result is op for op the
program `llama_program` builds (the tests compare the program roots).

How the two formats meet:
- Data movement (reshape, transpose, expand, slice, gather with a constant index) costs no
  trace op: a program value is a *view* (offset + per-axis strides over a row-major trace
  tensor, RepOps spec §6.13). A view is copied into a tensor (a MOVE, §L5.8) only when an op
  needs its values in another layout (the last row before the final norm).
- The `batch` symbol is 1: a trace is one sequence (§L1), and the batch axes are dropped.
- Elementwise ops (RepOps spec §6.1–§6.4) are emitted when their value is first read, so a
  single-use activation sits right before its consumer (SwiGLU: gate, up, silu, mul) and the
  elementwise tree of RoPE (spec §6.9: a' = sub(mul(a, c), mul(b, s)), b' = add(mul(a, s),
  mul(b, c)) on adjacent or half pairs) is recognized whole at its concat and becomes one ROPE
  op that computes exactly those roundings.
- A KV cache is a job input `past_X` concatenated with new rows into the output `present_X`
  (the export's naming, `node.runtime.onnx_export.io_names`): it becomes the CONCAT of the same
  op's previous-step output (§L4 `back = 1`) with the new rows (§L5.9).
- After the program's logits row comes the token choice (§L8: the argmax levels, then the
  RepOps spec §7.3 SAMPLE tail); the TOKENS op reads the previous step's token.

An op or a layout the trace lowering does not support raises `LoweringError` naming the op and
the ONNX node it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from node.runtime import program as P
from node.runtime.program import F32, Program, Ref
from referee.layout import (
    CTX,
    JOB_INPUT,
    NO_EOS,
    SEQ,
    Code,
    Dim,
    Fn,
    Src,
    TraceOp,
    TraceProgram,
    op_input,
)
from referee.lowering import DEFAULT_SEGMENT, DEFAULT_SORT_BLOCK, Lowering, T
from repops.commit import tensor_root_np

ONE = Dim(1)
ZERO = Dim(0)
PAST = Dim(0, 0, 1)

Factor = tuple[Dim, Dim]  # (size, stride) of one piece of a view axis, outer to inner
Axis = tuple[Factor, ...]  # a view axis: the row-major product of its factors

_BINARY = {"add": Fn.ADD, "sub": Fn.SUB, "mul": Fn.MUL, "div": Fn.DIV, "maximum": Fn.MAX,
           "minimum": Fn.MIN}
_UNARY = {"neg": Fn.NEG, "sqrt": Fn.SQRT, "exp": Fn.EXP, "log": Fn.LOG, "sigmoid": Fn.SIGMOID,
          "silu": Fn.SILU}
_COMMUTATIVE = {Fn.ADD, Fn.MUL, Fn.MAX, Fn.MIN}
_VIEWS = {"reshape", "transpose", "expand", "slice", "gather"}


class LoweringError(ValueError):
    """The compiled program holds an op or layout the trace lowering cannot map; names it."""


# ---------------------------------------------------------------- affine dims (§L3)


def _add(a: Dim, b: Dim) -> Dim:
    return Dim(a.c0 + b.c0, a.seq + b.seq, a.past + b.past)


def _sub(a: Dim, b: Dim) -> Dim:
    return Dim(a.c0 - b.c0, a.seq - b.seq, a.past - b.past)


def _const(a: Dim) -> int | None:
    return a.c0 if a.seq == 0 and a.past == 0 else None


def _mul(a: Dim, b: Dim) -> Dim | None:
    """a·b when it stays affine (one side constant), else None."""
    ca, cb = _const(a), _const(b)
    if ca is not None:
        return Dim(ca * b.c0, ca * b.seq, ca * b.past)
    if cb is not None:
        return Dim(cb * a.c0, cb * a.seq, cb * a.past)
    return None


def _div(a: Dim, b: Dim) -> Dim | None:
    """The Dim q with a = q·b exactly (q constant or b constant), else None."""
    cb = _const(b)
    if cb is not None:
        if cb <= 0 or any(v % cb for v in (a.c0, a.seq, a.past)):
            return None
        return Dim(a.c0 // cb, a.seq // cb, a.past // cb)
    pairs = [(x, y) for x, y in zip((a.c0, a.seq, a.past), (b.c0, b.seq, b.past), strict=True)]
    lead = next(((x, y) for x, y in pairs if y != 0), None)
    if lead is None or lead[0] % lead[1]:
        return None
    q = lead[0] // lead[1]
    return Dim(q) if q >= 1 and all(x == q * y for x, y in pairs) else None


def _prod(dims: Sequence[Dim]) -> Dim | None:
    out: Dim | None = ONE
    for d in dims:
        out = _mul(out, d) if out is not None else None
    return out


def expr_dim(e: Any, where: str = "") -> Dim:
    """A program shape expression (`node.runtime.program`) as a §L3 dim; `batch` is 1."""
    if P.is_const(e):
        return Dim(int(e))
    if isinstance(e, P.Sym):
        return {"batch": ONE, "seq": SEQ, "past": PAST}[e.name]
    if isinstance(e, P.BinExpr):
        a, b = expr_dim(e.a, where), expr_dim(e.b, where)
        out = {"+": lambda: _add(a, b), "-": lambda: _sub(a, b), "*": lambda: _mul(a, b),
               "//": lambda: _div(a, b)}[e.op]()
        if out is not None:
            return out
    raise LoweringError(f"{where}: shape expression {e!r} is not affine in seq and past (§L3)")


def _is_batch(e: Any) -> bool:
    return isinstance(e, P.Sym) and e.name == "batch"


# ---------------------------------------------------------------- views (RepOps spec §6.13)


def _row_major(dims: Sequence[Dim], where: str) -> list[Dim]:
    strides: list[Dim] = []
    acc: Dim | None = ONE
    for d in reversed(dims):
        if acc is None:
            raise LoweringError(f"{where}: strides of {dims} are not affine")
        strides.append(acc)
        acc = _mul(acc, d)
    return strides[::-1]


def canon(factors: Sequence[Factor]) -> tuple[Factor, ...]:
    """Factors without size-1 pieces, contiguous neighbours merged: equal canons address the
    same elements in the same order."""
    out: list[Factor] = []
    for n, s in factors:
        if n == ONE:
            continue
        if out:
            pn, ps = out[-1]
            merged = _mul(pn, n)
            if merged is not None and ps == _mul(n, s):
                out[-1] = (merged, s)
                continue
        out.append((n, s))
    return tuple(out)


def by_stride(factors: Sequence[Factor]) -> tuple[Factor, ...]:
    """The canon of the factors sorted by decreasing stride: equal to a tensor's row-major
    canon iff the factors visit each of its elements once (a permutation of its axes)."""
    return canon(sorted(factors, key=lambda f: (f[1].past, f[1].seq, f[1].c0), reverse=True))


@dataclass(frozen=True)
class View:
    """A program value as a strided view of a row-major trace tensor.

    `base` is the trace tensor, or the index of a program op not emitted yet (elementwise ops
    are emitted when first read) whose trace dims are `base_dims`. `axes` has one entry per
    program axis; `batch` marks the axes the trace drops."""

    base: T | int
    base_dims: tuple[Dim, ...]
    dtype: str
    axes: tuple[Axis, ...]
    offset: Dim
    batch: tuple[bool, ...]

    @classmethod
    def identity(cls, base: T | int, dims: tuple[Dim, ...], dtype: str,
                 batch: tuple[bool, ...], where: str) -> View:
        if sum(not b for b in batch) != len(dims):
            raise LoweringError(f"{where}: {len(dims)} trace dims for program axes {batch}")
        strides = iter(zip(dims, _row_major(dims, where), strict=True))
        axes = tuple(() if b else (next(strides),) for b in batch)
        return cls(base, dims, dtype, axes, ZERO, batch)

    def sizes(self) -> tuple[Dim, ...]:
        return tuple(_prod([n for n, _ in ax]) or ONE for ax in self.axes)

    def trace_dims(self) -> tuple[Dim, ...]:
        return tuple(n for n, b in zip(self.sizes(), self.batch, strict=True) if not b)

    def is_identity(self) -> bool:
        if self.offset != ZERO or self.trace_dims() != self.base_dims:
            return False
        rm = list(zip(self.base_dims, _row_major(self.base_dims, "view"), strict=True))
        return canon([f for ax in self.axes for f in ax]) == canon(rm)

    def with_base(self, base: T) -> View:
        return replace(self, base=base)


def _split_axis(ax: Axis, where: str) -> Factor:
    """The single (size, stride) of an axis addressed with one stride (MOVE, §L5.8)."""
    c = canon(ax)
    if len(c) == 1:
        return c[0]
    if not c:
        return (ONE, ax[0][1] if ax else ZERO)
    raise LoweringError(f"{where}: a view axis {ax} needs more than one stride")


def reshape(v: View, shape: Sequence[Any], where: str) -> View:
    """Regroup the view's factors into the target axes, splitting a factor where needed."""
    src = [f for ax in v.axes for f in ax if f[0] != ONE]
    axes: list[Axis] = []
    k = 0
    for e in shape:
        need, fs = expr_dim(e, where), []
        while need != ONE:
            if k >= len(src):
                raise LoweringError(f"{where}: cannot reshape {v.sizes()} to {list(shape)}")
            n, s = src[k]
            if n == need:
                fs.append((n, s))
                k += 1
                need = ONE
                continue
            q = _div(need, n)
            if q is not None:
                fs.append((n, s))
                k += 1
                need = q
                continue
            r = _div(n, need)
            inner = _mul(s, r) if r is not None else None
            if r is None or inner is None:
                raise LoweringError(f"{where}: cannot reshape {v.sizes()} to {list(shape)}")
            fs.append((need, inner))
            src[k] = (r, s)
            need = ONE
        axes.append(tuple(fs))
    if k != len(src):
        raise LoweringError(f"{where}: reshape {v.sizes()} to {list(shape)} drops elements")
    return replace(v, axes=tuple(axes), batch=tuple(_is_batch(e) for e in shape))


def transpose(v: View, perm: Sequence[int]) -> View:
    return replace(v, axes=tuple(v.axes[p] for p in perm),
                   batch=tuple(v.batch[p] for p in perm))


def expand(v: View, shape: Sequence[Any], where: str) -> View:
    pad = len(shape) - len(v.axes)
    if pad < 0:
        raise LoweringError(f"{where}: expand to fewer axes")
    axes, sizes = [()] * pad + list(v.axes), [ONE] * pad + list(v.sizes())
    out: list[Axis] = []
    for ax, n, e in zip(axes, sizes, shape, strict=True):
        want = expr_dim(e, where)
        if want == n:
            out.append(ax)
        elif n == ONE:
            out.append(((want, ZERO),))
        else:
            raise LoweringError(f"{where}: cannot expand {n} to {want}")
    return replace(v, axes=tuple(out), batch=tuple(_is_batch(e) for e in shape))


def slice_view(v: View, starts: Sequence[Any], ends: Sequence[Any], where: str) -> View:
    axes, off = list(v.axes), v.offset
    for a, (s, e) in enumerate(zip(starts, ends, strict=True)):
        b, en, n = expr_dim(s, where), expr_dim(e, where), v.sizes()[a]
        if b == ZERO and en == n:
            continue
        _, st = _split_axis(axes[a], where)
        step = _mul(b, st)
        if step is None:
            raise LoweringError(f"{where}: slice offset {b}·{st} is not affine")
        axes[a] = ((_sub(en, b), st),)
        off = _add(off, step)
    return replace(v, axes=tuple(axes), offset=off)


def select(v: View, axis: int, index: int, where: str) -> View:
    """Gather with a constant scalar index: the axis is fixed and dropped."""
    n, st = _split_axis(v.axes[axis], where)
    size = _const(n)
    if size is None or not -size <= index < size:
        raise LoweringError(f"{where}: gather index {index} outside axis of size {n}")
    off = _add(v.offset, _mul(Dim(index % size), st))  # type: ignore[arg-type]
    return replace(v, axes=v.axes[:axis] + v.axes[axis + 1:], offset=off,
                   batch=v.batch[:axis] + v.batch[axis + 1:])


# ---------------------------------------------------------------- the walk


@dataclass(frozen=True)
class PastInput:
    """A KV-cache job input `past_X`: only the concat that makes `present_X` may read it."""

    name: str
    index: int


class ProgramLowering:
    """Walks a compiled program once, emitting trace ops through `Lowering` (§L8)."""

    def __init__(self, program: Program, weights: Mapping[str, np.ndarray], max_ctx: int,
                 eos: int, segment: int, sort_block: int,
                 roots: Mapping[str, bytes] | None) -> None:
        self.prog = program
        self.weights = weights
        self.roots = dict(roots or {})
        self.eos = eos
        self.sort_block = sort_block
        self.lw = Lowering(segment=segment, max_ctx=max_ctx)
        self.vals: dict[int, View] = {}
        self.inputs: list[View | PastInput] = []
        self.kv_out: dict[int, str] = {}  # program op -> the present_X output it makes
        self.kv_done: set[str] = set()
        self.emitted: dict[int, T] = {}  # elementwise program ops emitted so far
        self.copies: dict[Ref, T] = {}  # views copied into tensors (one MOVE per value)

    # ---- diagnostics

    def where(self, i: int) -> str:
        op = self.prog.ops[i]
        return f"op {i} ({op.code}, ONNX node {op.name!r})"

    # ---- values

    def weight(self, idx: int) -> T:
        name = self.prog.weights[idx]
        arr = np.ascontiguousarray(self.weights[name])
        if name not in self.roots:
            self.roots[name] = tensor_root_np(arr)
        return self.lw.weight(self.roots[name], arr.shape, arr.dtype.name)

    def value(self, r: Ref) -> View | PastInput:
        if r.kind == "op":
            return self.vals[r.index]
        if r.kind == "input":
            return self.inputs[r.index]
        w = self.weight(r.index)
        return View.identity(w, w.dims, w.dtype, (False,) * len(w.dims), "weight")

    def view(self, r: Ref, i: int) -> View:
        v = self.value(r)
        if isinstance(v, PastInput):
            raise LoweringError(f"{self.where(i)}: KV input {v.name!r} is read other than by "
                                "the concat that makes its present output")
        return v

    def based(self, v: View) -> View:
        """The view with its base emitted (a pending elementwise op is emitted now)."""
        if isinstance(v.base, int):
            return v.with_base(self.emit_pending(v.base))
        return v

    def tensor(self, r: Ref, i: int) -> T:
        """The value as a trace tensor of its own dims: the base itself, or a MOVE copy."""
        v = self.based(self.view(r, i))
        assert isinstance(v.base, T)
        if v.is_identity():
            return v.base
        if r in self.copies:
            return self.copies[r]
        where = self.where(i)
        dims, strides = [], []
        for ax, b in zip(v.axes, v.batch, strict=True):
            if not b:
                n, s = _split_axis(ax, where)
                dims.append(n)
                strides.append(s)
        name = self.prog.ops[r.index].name if r.kind == "op" else self.prog.ops[i].name
        self.copies[r] = self.lw.move(v.base, tuple(dims), v.offset, strides, f"{name}/copy")
        return self.copies[r]

    def out_view(self, i: int, t: T) -> View:
        op = self.prog.ops[i]
        where = self.where(i)
        batch = tuple(_is_batch(e) for e in op.shape)
        want = tuple(expr_dim(e, where) for e, b in zip(op.shape, batch, strict=True) if not b)
        if t.dims != want:
            raise LoweringError(f"{where}: trace dims {t.dims} differ from the program's {want}")
        return View.identity(t, t.dims, t.dtype, batch, where)

    # ---- elementwise ops, emitted when first read (§L5.6)

    def emit_pending(self, i: int) -> T:
        if i in self.emitted:
            return self.emitted[i]
        op, where = self.prog.ops[i], self.where(i)
        if op.dtype != "float32":
            raise LoweringError(f"{where}: elementwise {op.dtype} is not in the trace layout")
        dims = self.vals[i].base_dims
        ins = [self.tensor(r, i) for r in op.inputs]
        for t in ins:
            _check_broadcast(t.dims, dims, where)
        if op.code in _UNARY:
            t = self.lw.ew(_UNARY[op.code], ins[0], dims=dims, name=op.name)
        else:
            fn = _BINARY[op.code]
            if "scalar" in op.attrs:
                s = op.attrs["scalar"]
                if not isinstance(s, F32):
                    raise LoweringError(f"{where}: a symbolic scalar is not a trace attribute")
                if op.attrs.get("scalar_side") == "a" and fn not in _COMMUTATIVE:
                    raise LoweringError(f"{where}: scalar {op.code} tensor is not an EW op")
                t = self.lw.ew(fn, ins[0], scalar=s.value, dims=dims, name=op.name)
            else:
                t = self.lw.ew(fn, ins[0], ins[1], dims=dims, name=op.name)
        self.vals[i] = self.vals[i].with_base(t)
        self.emitted[i] = t
        return t

    # ---- the walk

    def run(self) -> TraceProgram:
        tokens = self.lw.tokens(0)  # the token op is known at the end (fixed below)
        self.bind_inputs(tokens)
        for i, op in enumerate(self.prog.ops):
            self.vals[i] = self.lower(i, op)
        logits = self.logits()
        vocab = _const(logits.dims[-1])
        assert vocab is not None
        greedy = self.lw.argmax(logits, vocab, "argmax")
        token = self.lw.sample(logits, greedy, vocab, self.sort_block)
        self.lw.ops[0] = TraceOp(Code.TOKENS, "int32", (SEQ,),
                                 (JOB_INPUT, op_input(token.ref.op, 1)), (), "tokens")
        return self.lw.program(token, self.eos)

    def bind_inputs(self, tokens: T) -> None:
        outs = {n: r for n, r in self.prog.outputs.items()}
        uses: dict[int, int] = {}
        for op in self.prog.ops:
            for r in op.inputs:
                if r.kind == "input":
                    uses[r.index] = uses.get(r.index, 0) + 1
        n_tok = 0
        for k, (name, dtype, shape) in enumerate(self.prog.inputs):
            where = f"job input {name!r}"
            if dtype in ("int32", "int64"):
                batch = tuple(_is_batch(e) for e in shape)
                dims = tuple(expr_dim(e, where) for e, b in zip(shape, batch, strict=True)
                             if not b)
                if dims != (SEQ,) or n_tok:
                    raise LoweringError(f"{where}: the token input must be one [batch, seq] "
                                        "integer tensor (§L5.1 TOKENS)")
                n_tok += 1
                self.inputs.append(View.identity(tokens, (SEQ,), "int32", batch, where))
                continue
            present = "present_" + name[len("past_"):] if name.startswith("past_") else None
            ref = outs.get(present) if present else None
            if ref is None or ref.kind != "op" or uses.get(k, 0) != 1:
                raise LoweringError(f"{where}: a float input must be a KV cache `past_X` read "
                                    "once, with an output `present_X` (§L5.9)")
            self.kv_out[ref.index] = name
            self.inputs.append(PastInput(name, k))
        if n_tok != 1:
            raise LoweringError("the program has no token input (§L5.1 TOKENS)")

    def logits(self) -> T:
        rest = [(n, r) for n, r in self.prog.outputs.items()
                if not (n.startswith("present_") and r.kind == "op" and r.index in self.kv_out)]
        missing = set(self.kv_out.values()) - self.kv_done
        if missing:
            raise LoweringError(f"KV inputs {sorted(missing)} never appended")
        if len(rest) != 1:
            raise LoweringError(f"one logits output expected besides the KV caches, got "
                                f"{[n for n, _ in rest]}")
        name, ref = rest[0]
        if ref.kind != "op":
            raise LoweringError(f"output {name!r} is not computed by an op")
        t = self.tensor(ref, ref.index)
        if len(t.dims) != 2 or t.dims[0] != ONE or _const(t.dims[1]) is None:
            raise LoweringError(f"output {name!r} has trace dims {t.dims}; the token choice "
                                "reads one logits row [1, V] (§L5.10)")
        return t

    def lower(self, i: int, op: P.Op) -> View:
        where = self.where(i)
        c, at = op.code, op.attrs
        if c in _UNARY or c in _BINARY:
            batch = tuple(_is_batch(e) for e in op.shape)
            dims = tuple(expr_dim(e, where) for e, b in zip(op.shape, batch, strict=True)
                         if not b)
            return View.identity(i, dims, op.dtype, batch, where)
        if c in _VIEWS:
            return self.lower_view(i, op)
        if c == "embedding":
            ids, table = self.tensor(op.inputs[0], i), self.tensor(op.inputs[1], i)
            return self.out_view(i, self.lw.embedding(ids, table, op.name))
        if c == "linear":
            x, w = self.tensor(op.inputs[0], i), self.tensor(op.inputs[1], i)
            return self.out_view(i, self.lw.linear(x, w, op.name))
        if c == "rms_norm":
            x = self.tensor(op.inputs[0], i)
            w = self.tensor(op.inputs[1], i) if len(op.inputs) > 1 else None
            n = _const(x.dims[-1])
            if n is None:
                raise LoweringError(f"{where}: RMSNorm over a symbolic width")
            return self.out_view(i, self.lw.rms_norm(x, w, n, at["eps"].value, op.name))
        if c in ("sum", "max", "mean", "softmax"):
            return self.lower_row_op(i, op)
        if c == "concat":
            return self.lower_concat(i, op)
        if c == "attention":
            return self.lower_attention(i, op)
        raise LoweringError(f"{where}: op {c!r} is not supported by the trace lowering "
                            "(docs/trace-layout.md §L8)")

    def lower_view(self, i: int, op: P.Op) -> View:
        where, c, at = self.where(i), op.code, op.attrs
        if c == "gather":
            idx = op.inputs[1]
            if idx.kind != "weight":
                raise LoweringError(f"{where}: gather with computed indices")
            vals = np.asarray(self.weights[self.prog.weights[idx.index]]).reshape(-1)
            v = self.view(op.inputs[0], i)
            if vals.size != 1 or not np.issubdtype(vals.dtype, np.integer):
                raise LoweringError(f"{where}: gather needs one constant integer index")
            v = select(v, int(at["axis"]), int(vals[0]), where)
            return v if len(v.axes) == len(op.shape) else reshape(v, op.shape, where)
        v = self.view(op.inputs[0], i)
        if c == "reshape":
            return reshape(v, op.shape, where)
        if c == "transpose":
            return transpose(v, at["perm"])
        if c == "expand":
            return expand(v, op.shape, where)
        return slice_view(v, at["starts"], at["ends"], where)

    def lower_row_op(self, i: int, op: P.Op) -> View:
        """Reductions and softmax over the last axis: fold levels (RepOps spec §4, §6.5)."""
        where = self.where(i)
        x = self.tensor(op.inputs[0], i)
        w = _const(x.dims[-1]) if x.dims else None
        last = len(self.vals_shape(op.inputs[0])) - 1
        if w is None or op.attrs.get("axis", last) != last:
            raise LoweringError(f"{where}: {op.code} only over a constant last axis")
        if op.code == "softmax":
            return self.out_view(i, self.lw.softmax_rows(x, w, Dim(w), False, op.name))
        t = self.lw.fold(x, w, Dim(w), combine=1 if op.code == "max" else 0, name=op.name)
        if op.code == "mean":
            t = self.lw.ew(Fn.DIV, t, scalar=float(w), name=f"{op.name}/mean")
        if op.attrs.get("keepdims", 1):
            return self.out_view(i, t)
        batch = tuple(_is_batch(e) for e in self.vals_shape(op.inputs[0]))
        v = View.identity(t, t.dims, t.dtype, batch, where)
        return select(v, last, 0, where)

    def vals_shape(self, r: Ref) -> tuple[Any, ...]:
        if r.kind == "op":
            return self.prog.ops[r.index].shape
        if r.kind == "input":
            return self.prog.inputs[r.index][2]
        return tuple(np.shape(self.weights[self.prog.weights[r.index]]))

    # ---- concat: KV append (§L5.9) or the RoPE tree (§L5.7)

    def lower_concat(self, i: int, op: P.Op) -> View:
        where = self.where(i)
        first = self.value(op.inputs[0])
        if isinstance(first, PastInput):
            return self.lower_kv_append(i, op, first)
        rope = self.match_rope(i, op)
        if rope is not None:
            return rope
        raise LoweringError(f"{where}: concat other than a KV append or the RoPE pair "
                            "interleave is not supported by the trace lowering")

    def lower_kv_append(self, i: int, op: P.Op, past: PastInput) -> View:
        where = self.where(i)
        if self.kv_out.get(i) != past.name or len(op.inputs) != 2:
            raise LoweringError(f"{where}: KV input {past.name!r} must be concatenated with "
                                "the new rows into its present output")
        axis = int(op.attrs["axis"])
        v = self.based(self.view(op.inputs[1], i))
        assert isinstance(v.base, T)
        dims = v.base_dims
        rows = _prod(dims[1:])
        ok = (v.offset == ZERO and dims and dims[0] == SEQ and rows is not None
              and canon(v.axes[axis]) == ((SEQ, rows),)
              and by_stride([f for ax in v.axes for f in ax])
              == canon(zip(dims, _row_major(dims, where), strict=True)))
        if not ok:
            raise LoweringError(f"{where}: the new KV rows must be a re-indexing of a trace "
                                "tensor [seq, ...] along the concat axis (§L5.9)")
        past_shape = self.prog.inputs[past.index][2]
        want = [expr_dim(e, where) for e in op.shape]
        got = [expr_dim(e, where) for e in past_shape]
        want[axis] = PAST
        if got != want:
            raise LoweringError(f"{where}: KV input shape {past_shape} is not the output "
                                f"{op.shape} one step earlier")
        slot = len(self.lw.ops)
        cache = self.lw.append(T(op_input(slot, back=1), (CTX,) + dims[1:], v.dtype), v.base,
                               op.name)
        self.kv_done.add(past.name)
        axes = v.axes[:axis] + (((CTX, rows),),) + v.axes[axis + 1:]
        return View(cache, cache.dims, cache.dtype, axes, ZERO, v.batch)

    def _pending(self, v: View, code: str) -> P.Op | None:
        if not isinstance(v.base, int):
            return None
        op = self.prog.ops[v.base]
        return op if op.code == code and "scalar" not in op.attrs else None

    def _mul_parts(self, r: Ref) -> tuple[View, View] | None:
        """mul(x, table) → (x view, table view), the table being a weight view."""
        v = self.value(r)
        if not isinstance(v, View) or not v.is_identity():
            return None
        op = self._pending(v, "mul")
        if op is None or len(op.inputs) != 2:
            return None
        a, b = (self.value(x) for x in op.inputs)
        if not isinstance(a, View) or not isinstance(b, View):
            return None
        ta, tb = (isinstance(x.base, T) and x.base.ref.src == Src.WEIGHT for x in (a, b))
        if ta == tb:
            return None
        return (b, a) if ta else (a, b)

    def match_rope(self, i: int, op: P.Op) -> View | None:
        """concat(unsqueeze(a'), unsqueeze(b')) on a new last axis, where a' and b' are the
        RepOps spec §6.9 trees over pairs (a, b) of one tensor and cos/sin table rows at the
        step's positions → one ROPE op (§L5.7) computing exactly those roundings."""
        if len(op.inputs) != 2 or int(op.attrs["axis"]) != len(op.shape) - 1:
            return None
        va, vb = (self.value(r) for r in op.inputs)
        if not isinstance(va, View) or not isinstance(vb, View):
            return None
        la, lb = self._pending(va, "sub"), self._pending(vb, "add")
        if la is None or lb is None or not all(_unsqueezed(v, self.vals[v.base])  # type: ignore
                                               for v in (va, vb)):
            return None
        m1, m2 = (self._mul_parts(r) for r in la.inputs)
        m3, m4 = (self._mul_parts(r) for r in lb.inputs)
        if None in (m1, m2, m3, m4):
            return None
        (e, c), (o, s) = m1, m2  # type: ignore[misc]
        if {m3, m4} != {(e, s), (o, c)}:
            return None
        return self.emit_rope(i, op, e, o, c, s)

    def emit_rope(self, i: int, op: P.Op, e: View, o: View, c: View, s: View) -> View | None:
        if e.base != o.base or e.axes != o.axes or e.batch != o.batch or e.offset != ZERO:
            return None
        e = self.based(e)
        x = e.base
        assert isinstance(x, T)
        if len(x.dims) != 2 or x.dims[0] != SEQ or _const(x.dims[1]) is None:
            return None
        width = x.dims[1].c0
        pair = canon(e.axes[-1])
        if len(pair) != 1 or pair[0][1] not in (Dim(2), ONE) or e.batch[-1]:
            return None
        half_n = _const(pair[0][0])
        assert half_n is not None
        half = pair[0][1] == ONE
        if o.offset != Dim(half_n if half else 1):
            return None
        d = 2 * half_n
        if width % d:
            return None
        rows = by_stride([f for ax in e.axes[:-1] for f in ax])
        if rows != canon([(SEQ, Dim(width)), (Dim(width // d), Dim(d))]):
            return None
        seq_axis = next((k for k, ax in enumerate(e.axes) if canon(ax) == ((SEQ, Dim(width)),)),
                        None)
        tables = [_rope_table(t, e, seq_axis, half_n) for t in (c, s)]
        if seq_axis is None or None in tables:
            return None
        y = self.lw.rope(x, tables[0], tables[1], d, d, half, op.name)  # type: ignore[arg-type]
        pair_ax = ((Dim(half_n), Dim(1 if half else 2)),)
        elem_ax = ((Dim(2), Dim(half_n if half else 1)),)
        out = View(y, y.dims, y.dtype, e.axes[:-1] + (pair_ax, elem_ax), ZERO,
                   e.batch + (False,))
        if out.sizes() != tuple(expr_dim(x, self.where(i)) for x in op.shape):
            return None
        return out

    # ---- attention (RepOps spec §6.10)

    def lower_attention(self, i: int, op: P.Op) -> View:
        where = self.where(i)
        if op.attrs.get("causal") != 1 or not isinstance(op.attrs.get("scale"), F32):
            raise LoweringError(f"{where}: only causal attention with a binary32 scale")
        q, k, v = (self.based(self.view(r, i)) for r in op.inputs)
        hq, d = _heads(q, SEQ)
        if hq is None:
            raise LoweringError(f"{where}: q must be the heads of a trace tensor [seq, H·D]")
        kv = [_heads(t, CTX, group_of=hq) for t in (k, v)]
        if any(h is None or dd != d for h, dd in kv) or kv[0][0] != kv[1][0]:
            raise LoweringError(f"{where}: k and v must be the (repeated) heads of KV caches "
                                "[ctx, Hkv·D]")
        hkv = kv[0][0]
        assert hkv is not None and d is not None
        t = self.lw.attention(q.base, k.base, v.base, hq, hkv, d,  # type: ignore[arg-type]
                              op.attrs["scale"].value, op.name)
        width = Dim(hq * d)
        axes = ((), ((Dim(hq), Dim(d)),), ((SEQ, width),), ((Dim(d), ONE),))
        if len(op.shape) != 4 or not _is_batch(op.shape[0]):
            raise LoweringError(f"{where}: attention output must be [batch, H, seq, D]")
        return View(t, t.dims, t.dtype, axes, ZERO, (True, False, False, False))


def _heads(v: View, rows: Dim, group_of: int | None = None) -> tuple[int | None, int | None]:
    """(heads, head dim) when the view is [batch, H, rows, D] over a trace tensor [rows, Hb·D]
    (H = Hb for q; H = Hb·group with each base head repeated `group` times for k/v)."""
    if not isinstance(v.base, T) or len(v.base_dims) != 2 or v.base_dims[0] != rows:
        return None, None
    if len(v.axes) != 4 or v.batch != (True, False, False, False) or v.offset != ZERO:
        return None, None
    width, d = _const(v.base_dims[1]), _const(v.sizes()[3])
    h = _const(v.sizes()[1])
    if width is None or d is None or h is None or d == 0 or width % d:
        return None, None
    hb = width // d
    if canon(v.axes[2]) != ((rows, Dim(width)),) or canon(v.axes[3]) != ((Dim(d), ONE),):
        return None, None
    if group_of is None:
        return (hb, d) if h == hb and canon(v.axes[1]) == canon([(Dim(hb), Dim(d))]) else \
            (None, None)
    if h != group_of or h % hb:
        return None, None
    want = canon([(Dim(hb), Dim(d)), (Dim(h // hb), ZERO)])
    return (hb, d) if canon(v.axes[1]) == want else (None, None)


def _unsqueezed(v: View, base: View) -> bool:
    """v is the pending op's value with one trailing size-1 axis."""
    return (v.offset == ZERO and len(v.axes) == len(base.axes) + 1 and v.sizes()[-1] == ONE
            and not v.batch[-1] and v.batch[:-1] == base.batch
            and canon([f for ax in v.axes for f in ax]) == canon(
                [f for ax in base.axes for f in ax]) and v.sizes()[:-1] == base.sizes())


def _rope_table(t: View, e: View, seq_axis: int | None, half_n: int) -> T | None:
    """The table behind a cos/sin view read at row past + t for the seq axis and column i for
    the pair axis, broadcast over every other axis of e (RepOps spec §6.9)."""
    if seq_axis is None or not isinstance(t.base, T) or len(t.base_dims) != 2:
        return None
    if t.base_dims[1] != Dim(half_n) or t.offset != Dim(0, 0, half_n):
        return None
    pad = len(e.axes) - len(t.axes)
    if pad < 0:
        return None
    for k, ax in enumerate(((),) * pad + t.axes):
        c = canon(ax)
        if k == seq_axis:
            ok = c == ((SEQ, Dim(half_n)),)
        elif k == len(e.axes) - 1:
            ok = c == ((Dim(half_n), ONE),)
        else:
            ok = all(s == ZERO for _, s in c)
        if not ok:
            return None
    return t.base


def _check_broadcast(a: tuple[Dim, ...], out: tuple[Dim, ...], where: str) -> None:
    """NumPy broadcasting of an EW operand onto the output (§L5.6), right-aligned."""
    if len(a) > len(out) or any(x not in (y, ONE) for x, y in zip(a[::-1], out[::-1],
                                                                 strict=False)):
        raise LoweringError(f"{where}: operand dims {a} do not broadcast to {out}")


def lower_program(program: Program, weights: Mapping[str, np.ndarray], max_ctx: int,
                  eos: int = NO_EOS, segment: int = DEFAULT_SEGMENT,
                  sort_block: int = DEFAULT_SORT_BLOCK,
                  roots: Mapping[str, bytes] | None = None) -> TraceProgram:
    """The trace program (§L8) of a compiled program: its ops through `Lowering`, then the
    greedy argmax and the RepOps spec §7.3 token choice on its logits row.

    `weights` (by program weight name) gives shapes and the values of constant gather
    indices; `roots` (C4 tensor roots by name) saves hashing weights already committed."""
    return ProgramLowering(program, weights, max_ctx, eos, segment, sort_block, roots).run()
