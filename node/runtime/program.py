"""The RepOps program format: ops in topological order, their canonical bytes, op hashes and
the program root (commitments C5 leaves `op_hash`; DESIGN §5 model hash binds the root).

A program is shape-generic: tensor shapes are expressions over the symbols of a step
(`batch`, `seq` = new tokens, `past` = cached positions), so one program serves prefill and
every decode step and the one-step contract can derive each op's shapes from the job input
length and the step (DESIGN §6 soundness 1).

Canonical op record (all integers big-endian, like `abi.encodePacked`):

    record  = 0x10 ‖ uint16 code ‖ uint8 n_in ‖ ref × n_in ‖ uint8 out_dtype ‖ shape ‖ attrs
    ref     = uint8 kind (0 weight, 1 job input, 2 op output) ‖ uint32 index
    shape   = uint8 ndim ‖ expr × ndim
    expr    = 0x00 ‖ int64           (constant)
            | 0x01 ‖ uint8 symbol    (SYMBOLS index)
            | 0x02..0x05 ‖ expr ‖ expr   (+, −, ×, floor-div)
    attrs   = uint8 n ‖ (uint8 len ‖ name ‖ value) × n, names sorted bytewise
    value   = 0x01 ‖ int64 | 0x02 ‖ f32 bits (uint32) | 0x03 ‖ uint16 len ‖ utf-8
            | 0x04 ‖ uint16 n ‖ int64 × n | 0x05 ‖ expr | 0x06 ‖ uint16 n ‖ expr × n

    op_hash      = keccak256(record)
    program_root = MerkleRoot(op hashes)        (commitments C3)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from repops.commit import DTYPE_CODES, keccak256, merkle_root

SYMBOLS = ("batch", "seq", "past")
RECORD_TAG = 0x10

# Stable op codes: appending is fine, renumbering changes every model hash.
OP_CODES: dict[str, int] = {
    name: i + 1
    for i, name in enumerate([
        "embedding", "linear", "matmul", "add", "sub", "mul", "div", "neg", "sqrt", "exp",
        "log", "sigmoid", "silu", "softmax", "log_softmax", "rms_norm", "layer_norm", "rope",
        "attention", "argmax", "sum", "mean", "max", "min", "maximum", "minimum", "reshape",
        "transpose", "concat", "slice", "gather", "expand", "where", "cast", "compare",
        "range", "fill", "reciprocal", "abs", "relu", "not", "and", "or",
    ])
}
REF_KINDS = {"weight": 0, "input": 1, "op": 2}


# ---------------------------------------------------------------- shape expressions

Expr = Any  # int | Sym | BinExpr


@dataclass(frozen=True)
class Sym:
    name: str

    def __post_init__(self) -> None:
        if self.name not in SYMBOLS:
            raise ValueError(f"unknown shape symbol {self.name!r} (known: {SYMBOLS})")

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class BinExpr:
    op: str  # "+", "-", "*", "//"
    a: Expr
    b: Expr

    def __repr__(self) -> str:
        return f"({self.a!r}{self.op}{self.b!r})"


_EXPR_TAGS = {"+": 2, "-": 3, "*": 4, "//": 5}


def _binop(op: str, a: Expr, b: Expr) -> Expr:
    """Build a simplified expression (constants folded, x+0, x*1 dropped)."""
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        a, b = int(a), int(b)
        if op == "//" and b == 0:
            raise ZeroDivisionError("shape expression divides by zero")
        return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a // b
    if op in ("+", "-"):
        fa, fb = _affine(a), _affine(b)
        if fa is not None and fb is not None:
            sign = 1 if op == "+" else -1
            terms = dict(fa[1])
            for k, v in fb[1].items():
                terms[k] = terms.get(k, 0) + sign * v
            return _from_affine(fa[0] + sign * fb[0], terms)
    if op == "+" and b == 0 or op == "-" and b == 0 or op in ("*", "//") and b == 1:
        return a
    if op == "+" and a == 0 or op == "*" and a == 1:
        return b
    if op == "*" and (a == 0 or b == 0):
        return 0
    if op == "-" and a == b:
        return 0
    if op == "//" and isinstance(a, BinExpr) and a.op == "*" and a.b == b:
        return a.a
    if op == "-" and isinstance(a, BinExpr) and a.op == "+" and a.b == b:
        return a.a
    if op == "-" and isinstance(a, BinExpr) and a.op == "+" and a.a == b:
        return a.b
    return BinExpr(op, a if not isinstance(a, np.integer) else int(a),
                   b if not isinstance(b, np.integer) else int(b))


def _affine(e: Expr) -> tuple[int, dict[str, int]] | None:
    """e as const + Σ coef·symbol, when it is one (sums and differences of symbols)."""
    if isinstance(e, (int, np.integer)):
        return int(e), {}
    if isinstance(e, Sym):
        return 0, {e.name: 1}
    if isinstance(e, BinExpr) and e.op in ("+", "-"):
        fa, fb = _affine(e.a), _affine(e.b)
        if fa is None or fb is None:
            return None
        sign = 1 if e.op == "+" else -1
        terms = dict(fa[1])
        for k, v in fb[1].items():
            terms[k] = terms.get(k, 0) + sign * v
        return fa[0] + sign * fb[0], terms
    return None


def _from_affine(const: int, terms: dict[str, int]) -> Expr:
    """Canonical form: symbols in SYMBOLS order, positive terms first, constant last."""
    out: Expr = None
    for name in SYMBOLS:
        c = terms.get(name, 0)
        if c == 0:
            continue
        term: Expr = Sym(name) if abs(c) == 1 else BinExpr("*", abs(c), Sym(name))
        if out is None:
            out = term if c > 0 else BinExpr("-", 0, term)
        else:
            out = BinExpr("+" if c > 0 else "-", out, term)
    if out is None:
        return const
    if const > 0:
        return BinExpr("+", out, const)
    if const < 0:
        return BinExpr("-", out, -const)
    return out


def add(a: Expr, b: Expr) -> Expr:
    return _binop("+", a, b)


def sub(a: Expr, b: Expr) -> Expr:
    return _binop("-", a, b)


def mul(a: Expr, b: Expr) -> Expr:
    return _binop("*", a, b)


def floordiv(a: Expr, b: Expr) -> Expr:
    return _binop("//", a, b)


def evaluate(e: Expr, env: dict[str, int]) -> int:
    """Value of an expression for concrete symbol values."""
    if isinstance(e, (int, np.integer)):
        return int(e)
    if isinstance(e, Sym):
        return int(env[e.name])
    a, b = evaluate(e.a, env), evaluate(e.b, env)
    if e.op == "+":
        return a + b
    if e.op == "-":
        return a - b
    if e.op == "*":
        return a * b
    if b == 0:
        raise ZeroDivisionError(f"shape expression {e!r} divides by zero at {env}")
    return a // b


def is_const(e: Expr) -> bool:
    return isinstance(e, (int, np.integer))


def encode_expr(e: Expr) -> bytes:
    if isinstance(e, (int, np.integer)):
        return b"\x00" + struct.pack(">q", int(e))
    if isinstance(e, Sym):
        return b"\x01" + bytes([SYMBOLS.index(e.name)])
    return bytes([_EXPR_TAGS[e.op]]) + encode_expr(e.a) + encode_expr(e.b)


# ---------------------------------------------------------------- ops and programs


@dataclass(frozen=True)
class Ref:
    kind: str  # "weight" | "input" | "op"
    index: int

    def encode(self) -> bytes:
        return bytes([REF_KINDS[self.kind]]) + struct.pack(">I", self.index)


@dataclass
class Op:
    code: str
    inputs: list[Ref]
    attrs: dict[str, Any]
    shape: tuple[Expr, ...]
    dtype: str = "float32"
    name: str = ""  # the ONNX node it came from (diagnostics only, not hashed)

    def record(self) -> bytes:
        """The canonical bytes of this op (module docstring)."""
        if self.code not in OP_CODES:
            raise ValueError(f"op code {self.code!r} has no number in OP_CODES")
        out = bytes([RECORD_TAG]) + struct.pack(">H", OP_CODES[self.code])
        out += bytes([len(self.inputs)]) + b"".join(r.encode() for r in self.inputs)
        out += bytes([DTYPE_CODES[self.dtype], len(self.shape)])
        out += b"".join(encode_expr(d) for d in self.shape)
        return out + encode_attrs(self.attrs)

    def op_hash(self) -> bytes:
        return keccak256(self.record())


@dataclass(frozen=True)
class F32:
    """A binary32 attribute value (hashed as its bits)."""

    value: float

    def bits(self) -> int:
        return int(np.array(self.value, dtype=np.float32).view(np.uint32))


def encode_value(v: Any) -> bytes:
    if isinstance(v, bool):
        return b"\x01" + struct.pack(">q", int(v))
    if isinstance(v, (int, np.integer)):
        return b"\x01" + struct.pack(">q", int(v))
    if isinstance(v, F32):
        return b"\x02" + struct.pack(">I", v.bits())
    if isinstance(v, str):
        b = v.encode("utf-8")
        return b"\x03" + struct.pack(">H", len(b)) + b
    if isinstance(v, (Sym, BinExpr)):
        return b"\x05" + encode_expr(v)
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
            return b"\x04" + struct.pack(">H", len(v)) + b"".join(struct.pack(">q", int(x))
                                                                for x in v)
        return b"\x06" + struct.pack(">H", len(v)) + b"".join(encode_expr(x) for x in v)
    raise TypeError(f"attribute value {v!r} has no canonical encoding")


def encode_attrs(attrs: dict[str, Any]) -> bytes:
    items = sorted((k.encode("utf-8"), v) for k, v in attrs.items())
    out = bytes([len(items)])
    for k, v in items:
        out += bytes([len(k)]) + k + encode_value(v)
    return out


@dataclass
class Program:
    """Ops in execution order plus the names of the weights, job inputs and outputs."""

    ops: list[Op]
    weights: list[str]  # weight index -> name (values live in the weight store)
    inputs: list[tuple[str, str, tuple[Expr, ...]]]  # (name, dtype, shape)
    outputs: dict[str, Ref]
    meta: dict[str, Any] = field(default_factory=dict)

    def op_hashes(self) -> list[bytes]:
        return [op.op_hash() for op in self.ops]

    def root(self) -> bytes:
        """Program root: Merkle root (C3) over the op hashes in execution order."""
        return merkle_root(self.op_hashes())

    def io_record(self) -> bytes:
        """Canonical bytes of the interface (inputs and outputs), bound by the model hash."""
        out = b"\x12" + bytes([len(self.inputs)])
        for name, dtype, shape in self.inputs:
            nb = name.encode()
            out += bytes([len(nb)]) + nb + bytes([DTYPE_CODES[dtype], len(shape)])
            out += b"".join(encode_expr(d) for d in shape)
        out += bytes([len(self.outputs)])
        for name, ref in self.outputs.items():
            nb = name.encode()
            out += bytes([len(nb)]) + nb + ref.encode()
        return out

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.code] = counts.get(op.code, 0) + 1
        return counts
