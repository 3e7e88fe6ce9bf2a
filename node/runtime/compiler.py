"""Compile an ONNX graph into a RepOps program (DESIGN §2; RepOps spec §3–§6).

Every ONNX node is either folded at compile time (shape arithmetic, constants, data movement
of constants — RepOps spec §6.15: exact or correctly rounded) or mapped to a spec'd RepOps op.
Shapes stay symbolic (`program.Sym`: batch, seq, past) so one program serves every step.
After the translation, subgraphs the spec defines as fused ops are recognized (RMSNorm §6.7,
SiLU §6.4, causal attention §6.10); the fused op computes exactly the same bits as the
primitive sequence (the spec writes each fused op as that sequence), it only makes the trace
shorter. An unsupported op or attribute raises `CompileError` naming the node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from node.runtime import program as P
from node.runtime.program import F32, Op, Program, Ref, Sym

INT64_MAX = 2**63 - 1


class CompileError(ValueError):
    """The graph uses something the compiler cannot map onto RepOps; names the node."""


@dataclass
class Const:
    """A compile-time value. Integer arrays may hold symbolic entries (dtype object)."""

    value: np.ndarray
    origin: tuple[str, str] | None = None  # ("weight", name) or ("transposed", name)


@dataclass
class Tensor:
    ref: Ref
    shape: tuple[Any, ...]
    dtype: str


Value = Const | Tensor

_ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "uint8", 2: "uint8"}
_NP = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


# ---------------------------------------------------------------- symbolic helpers


def _mono(e: Any) -> tuple[int, Counter]:
    if P.is_const(e):
        return int(e), Counter()
    if isinstance(e, P.BinExpr) and e.op == "*":
        ca, aa = _mono(e.a)
        cb, ab = _mono(e.b)
        return ca * cb, aa + ab
    return 1, Counter({e: 1})


def _from_mono(c: int, atoms: Counter) -> Any:
    out: Any = c
    for a in sorted(atoms, key=repr):
        for _ in range(atoms[a]):
            out = P.mul(out, a) if out != 1 else a
    return out


def prod(dims: tuple[Any, ...] | list[Any]) -> Any:
    out: Any = 1
    for d in dims:
        out = P.mul(out, d)
    c, atoms = _mono(out)
    return _from_mono(c, atoms)


def exact_div(a: Any, b: Any) -> Any:
    """a / b for monomials when exact (shape inference of reshape's -1), else floor-div."""
    ca, aa = _mono(a)
    cb, ab = _mono(b)
    if cb and ca % cb == 0 and all(aa[k] >= v for k, v in ab.items()):
        return _from_mono(ca // cb, aa - ab)
    return P.floordiv(a, b)


def _expr_eq(a: Any, b: Any) -> bool | None:
    """True/False when decidable at compile time (dims are ≥ 0), None otherwise."""
    if P.is_const(a) and P.is_const(b):
        return int(a) == int(b)
    if a == b:
        return True
    if P.is_const(b) and int(b) < 0 or P.is_const(a) and int(a) < 0:
        return False
    return None


def broadcast_shapes(node: str, *shapes: tuple[Any, ...]) -> tuple[Any, ...]:
    nd = max(len(s) for s in shapes)
    out = []
    for i in range(nd):
        dims = [s[len(s) - nd + i] for s in shapes if len(s) - nd + i >= 0]
        cur: Any = 1
        for d in dims:
            if _expr_eq(d, 1):
                continue
            if _expr_eq(cur, 1):
                cur = d
            elif _expr_eq(cur, d) is not True:
                if P.is_const(cur) and P.is_const(d):
                    raise CompileError(f"node {node!r}: shapes {shapes} do not broadcast")
                raise CompileError(f"node {node!r}: cannot prove {cur} == {d} for broadcasting")
        out.append(cur)
    return tuple(out)


def _sym_array(v: np.ndarray) -> bool:
    return v.dtype == object


def _elementwise_int(fn: Callable[[Any, Any], Any], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.broadcast_arrays(a, b)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        out[idx] = fn(a[idx], b[idx])
    return _tidy(out)


def _tidy(v: np.ndarray) -> np.ndarray:
    """Object arrays whose entries are all plain ints become int64 again."""
    if v.dtype == object and all(P.is_const(x) for x in v.flat):
        return v.astype(np.int64)
    return v


def _ints(node: str, v: Value, what: str) -> list[Any]:
    if not isinstance(v, Const):
        raise CompileError(f"node {node!r}: {what} must be a compile-time constant")
    return [x if not isinstance(x, np.integer) else int(x) for x in np.asarray(v.value).flat]


# ---------------------------------------------------------------- the compiler


@dataclass
class Compiler:
    ops: list[Op] = field(default_factory=list)
    weight_names: list[str] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)

    # ---- emission helpers

    def weight(self, name: str, value: np.ndarray) -> Tensor:
        if value.dtype == object:
            raise CompileError(f"symbolic constant {name!r} cannot be used as tensor data")
        if value.dtype == np.bool_:
            value = value.astype(np.uint8)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        if name in self.weights:
            if not np.array_equal(self.weights[name], value):
                name = f"{name}#{len(self.weight_names)}"
            else:
                idx = self.weight_names.index(name)
                return Tensor(Ref("weight", idx), tuple(value.shape), value.dtype.name)
        self.weights[name] = np.ascontiguousarray(value)
        self.weight_names.append(name)
        return Tensor(Ref("weight", len(self.weight_names) - 1), tuple(value.shape),
                      value.dtype.name)

    def tensor(self, node: str, v: Value, const_name: str) -> Tensor:
        if isinstance(v, Tensor):
            return v
        name = v.origin[1] if v.origin and v.origin[0] == "weight" else const_name
        return self.weight(name, v.value)

    def emit(self, code: str, ins: list[Tensor], attrs: dict[str, Any], shape: tuple[Any, ...],
             dtype: str, node: str) -> Tensor:
        self.ops.append(Op(code, [t.ref for t in ins], attrs, tuple(shape), dtype, node))
        return Tensor(Ref("op", len(self.ops) - 1), tuple(shape), dtype)

    # ---- driver

    def compile(self, model: Any) -> Program:
        import onnx

        g = model.graph
        for init in g.initializer:
            arr = onnx.numpy_helper.to_array(init)
            self.values[init.name] = Const(arr, ("weight", init.name))
        for vi in g.input:
            if vi.name in self.values:
                continue
            t = vi.type.tensor_type
            dtype = _ONNX_DTYPES.get(t.elem_type)
            if dtype is None:
                raise CompileError(f"graph input {vi.name!r}: element type {t.elem_type} "
                                   "is not supported")
            shape = []
            for d in t.shape.dim:
                if d.HasField("dim_value"):
                    shape.append(int(d.dim_value))
                else:
                    shape.append(_symbol_for(vi.name, d.dim_param))
            self.inputs.append((vi.name, dtype, tuple(shape)))
            self.values[vi.name] = Tensor(Ref("input", len(self.inputs) - 1), tuple(shape), dtype)
        for node in g.node:
            name = node.name or f"{node.op_type}:{node.output[0]}"
            handler = HANDLERS.get(node.op_type)
            if handler is None or node.domain not in ("", "ai.onnx"):
                raise CompileError(f"node {name!r}: op {node.domain or 'ai.onnx'}::"
                                   f"{node.op_type} is not supported by the RepOps compiler")
            ins = [self.values[i] if i else None for i in node.input]
            outs = handler(self, node, name, ins)
            for o, v in zip(node.output, outs, strict=False):
                if o:
                    self.values[o] = v
        outputs: dict[str, Ref] = {}
        for vo in g.output:
            v = self.values[vo.name]
            t = self.tensor(vo.name, v, vo.name)
            if t.ref.kind != "op":  # an output that is a weight/input: copy so it is traced
                t = self.emit("reshape", [t], {"shape": list(t.shape)}, t.shape, t.dtype, vo.name)
            outputs[vo.name] = t.ref
        prog = Program(self.ops, self.weight_names, self.inputs, outputs)
        from node.runtime.fusion import fuse

        return fuse(prog, self.weights)


_SYMBOL_NAMES = {"batch": "batch", "seq": "seq", "past": "past", "total": None}


def _symbol_for(input_name: str, dim_param: str) -> Any:
    """Map ONNX dim_params onto the program symbols (batch, seq, past)."""
    if dim_param in ("batch", "seq", "past"):
        return Sym(dim_param)
    raise CompileError(f"graph input {input_name!r}: dynamic dimension {dim_param!r} is not one "
                       "of the program symbols batch/seq/past")


def compile_onnx(model_or_path: Any) -> tuple[Program, dict[str, np.ndarray]]:
    """Compile an ONNX ModelProto (or a path to one) -> (program, weights by name)."""
    import onnx

    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model = onnx.load(str(model_or_path))
    c = Compiler()
    prog = c.compile(model)
    return prog, {n: c.weights[n] for n in prog.weights}


# ---------------------------------------------------------------- attribute access


def _attrs(node: Any, name: str, allowed: dict[str, Any]) -> dict[str, Any]:
    """Attributes with defaults; an attribute the handler does not know is rejected."""
    import onnx

    out = dict(allowed)
    for a in node.attribute:
        if a.name not in allowed:
            raise CompileError(f"node {name!r}: attribute {a.name!r} of {node.op_type} is not "
                               "supported")
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


# ---------------------------------------------------------------- handlers

Handler = Callable[[Compiler, Any, str, list[Value | None]], list[Value]]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


def _need(node: str, ins: list[Value | None], n: int) -> None:
    if len(ins) < n or any(i is None for i in ins[:n]):
        raise CompileError(f"node {node!r}: expected {n} inputs")


@handles("Constant")
def _constant(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    import onnx

    a = node.attribute[0]
    if a.name == "value":
        return [Const(onnx.numpy_helper.to_array(a.t))]
    if a.name in ("value_float", "value_int"):
        v = onnx.helper.get_attribute_value(a)
        return [Const(np.array(v, dtype=np.float32 if a.name == "value_float" else np.int64))]
    if a.name in ("value_floats", "value_ints"):
        v = onnx.helper.get_attribute_value(a)
        return [Const(np.array(v, dtype=np.float32 if a.name == "value_floats" else np.int64))]
    raise CompileError(f"node {name!r}: Constant attribute {a.name!r} is not supported")


@handles("Identity")
def _identity(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    return [ins[0]]


@handles("Shape")
def _shape(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    a = _attrs(node, name, {"start": 0, "end": None})
    x = ins[0]
    shape = tuple(x.value.shape) if isinstance(x, Const) else x.shape
    dims = list(shape)[a["start"]: a["end"]]
    arr = np.empty(len(dims), dtype=object)
    arr[:] = dims
    return [Const(_tidy(arr))]


def _unary_fold(code: str, v: np.ndarray) -> np.ndarray:
    from node.runtime.crmath import cr_unary

    if code == "neg":
        return np.negative(v)
    if code == "sqrt":
        return np.sqrt(v.astype(np.float32))
    if code == "reciprocal":
        return (np.float32(1) / v.astype(np.float32)).astype(np.float32)
    if code == "abs":
        return np.abs(v)
    if code == "relu":
        return np.maximum(v, np.zeros((), v.dtype))
    if code == "sigmoid":
        return cr_unary("sigmoid", v)
    return cr_unary(code, v)


_UNARY = {"Neg": "neg", "Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Sigmoid": "sigmoid",
          "Reciprocal": "reciprocal", "Abs": "abs", "Relu": "relu", "Cos": "cos", "Sin": "sin",
          "Not": "not"}
_FOLD_ONLY = {"cos", "sin"}


@handles(*_UNARY)
def _unary(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    code = _UNARY[node.op_type]
    x = ins[0]
    if isinstance(x, Const):
        if code == "not":
            return [Const(np.logical_not(x.value))]
        return [Const(_unary_fold(code, x.value))]
    if code in _FOLD_ONLY:
        raise CompileError(f"node {name!r}: {node.op_type} of a runtime tensor is not in RepOps "
                           "v1 (only compile-time constants)")
    if code == "reciprocal":
        return [c.emit("div", [x], {"scalar": F32(1.0), "scalar_side": "a"}, x.shape, x.dtype,
                       name)]
    if code == "relu":
        return [c.emit("maximum", [x], {"scalar": F32(0.0), "scalar_side": "b"}, x.shape,
                       x.dtype, name)]
    if x.dtype != "float32" and code not in ("neg", "abs", "not"):
        raise CompileError(f"node {name!r}: {node.op_type} needs float32, got {x.dtype}")
    return [c.emit(code, [x], {}, x.shape, x.dtype, name)]


_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "maximum",
           "Min": "minimum", "Equal": "eq", "Less": "lt", "LessOrEqual": "le",
           "Greater": "gt", "GreaterOrEqual": "ge", "And": "and", "Or": "or"}
_CMP = {"eq", "lt", "le", "gt", "ge"}


def _fold_binary(code: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if _sym_array(a) or _sym_array(b):
        fns: dict[str, Callable[[Any, Any], Any]] = {
            "add": P.add, "sub": P.sub, "mul": P.mul, "div": P.floordiv,
            "eq": lambda x, y: bool(_expr_eq(x, y)),
        }
        if code not in fns:
            raise CompileError(f"{code} on symbolic shape values is not supported")
        if code == "eq":
            return _elementwise_int(fns[code], a, b).astype(bool)
        return _elementwise_int(fns[code], a, b)
    if code == "div" and np.issubdtype(a.dtype, np.integer):
        return np.trunc(a / b).astype(a.dtype)  # ONNX integer Div truncates
    np_fns = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
              "maximum": np.maximum, "minimum": np.minimum, "eq": np.equal, "lt": np.less,
              "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
              "and": np.logical_and, "or": np.logical_or}
    out = np_fns[code](a, b)  # float32 IEEE RNE in numpy (spec §2)
    return out.astype(a.dtype) if code not in _CMP and code not in ("and", "or") else out


@handles(*_BINARY)
def _binary(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    code = _BINARY[node.op_type]
    if node.op_type in ("Max", "Min") and len(ins) != 2:  # variadic: order-free fold (§4.2)
        if len(ins) == 1:
            return [ins[0]]
        acc = ins[0]
        for k, nxt in enumerate(ins[1:]):
            sub = type("N", (), {"op_type": node.op_type, "attribute": [], "domain": ""})()
            acc = _binary(c, sub, f"{name}#{k}", [acc, nxt])[0]
        return [acc]
    _need(name, ins, 2)
    a, b = ins[0], ins[1]
    if isinstance(a, Const) and isinstance(b, Const):
        return [Const(_fold_binary(code, a.value, b.value))]
    ta = a if isinstance(a, Tensor) else None
    tb = b if isinstance(b, Tensor) else None
    dtype = (ta or tb).dtype
    out_dtype = "uint8" if code in _CMP else dtype
    opcode, extra = ("compare", {"cmp": code}) if code in _CMP else (code, {})
    if code in ("and", "or"):
        out_dtype = "uint8"
    for side, const, t in (("b", b, ta), ("a", a, tb)):
        if isinstance(const, Const) and const.value.size == 1 and t is not None:
            v = np.asarray(const.value).reshape(())
            shape = broadcast_shapes(name, t.shape, tuple(const.value.shape))
            scalar = v.item() if v.dtype == object else v
            if isinstance(scalar, (P.Sym, P.BinExpr)):
                attr: Any = scalar
            elif dtype == "float32":
                attr = F32(float(scalar))
            else:
                attr = int(scalar)
            return [c.emit(opcode, [t], {"scalar": attr, "scalar_side": side, **extra}, shape,
                           out_dtype, name)]
    ta = c.tensor(name, a, f"{name}:a")
    tb = c.tensor(name, b, f"{name}:b")
    shape = broadcast_shapes(name, ta.shape, tb.shape)
    return [c.emit(opcode, [ta, tb], extra, shape, out_dtype, name)]


@handles("Pow")
def _pow(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    x, e = ins[0], ins[1]
    if not isinstance(e, Const) or e.value.size != 1:
        raise CompileError(f"node {name!r}: Pow needs a constant scalar exponent")
    k = float(np.asarray(e.value).reshape(()))
    if isinstance(x, Const):
        if k == 2.0:
            return [Const((x.value * x.value).astype(x.value.dtype))]
        raise CompileError(f"node {name!r}: Pow with exponent {k} is not supported")
    if k == 2.0:
        return [c.emit("mul", [x, x], {}, x.shape, x.dtype, name)]
    if k == 0.5:
        return [c.emit("sqrt", [x], {}, x.shape, x.dtype, name)]
    if k == 1.0:
        return [x]
    raise CompileError(f"node {name!r}: Pow with exponent {k} is not in RepOps v1 "
                       "(supported: 2, 0.5, 1)")


def _linear_or_matmul(c: Compiler, name: str, a: Tensor, b: Value) -> Tensor:
    if isinstance(b, Const) and b.origin and b.origin[0] == "transposed" \
            and b.value.ndim == 2:
        w = c.weight(b.origin[1], np.ascontiguousarray(b.value.T))  # the [N, K] original
        n, k = w.shape
        if a.shape[-1] != k and _expr_eq(a.shape[-1], k) is not True:
            raise CompileError(f"node {name!r}: linear K mismatch {a.shape} vs {w.shape}")
        return c.emit("linear", [a, w], {}, (*a.shape[:-1], n), "float32", name)
    tb = c.tensor(name, b, f"{name}:B")
    if len(a.shape) < 1 or len(tb.shape) < 1:
        raise CompileError(f"node {name!r}: MatMul of a scalar")
    sa, sb = a.shape, tb.shape
    if len(sa) == 1 or len(sb) == 1:
        raise CompileError(f"node {name!r}: MatMul with a 1-D operand is not supported")
    batch = broadcast_shapes(name, sa[:-2], sb[:-2])
    return c.emit("matmul", [a, tb], {}, (*batch, sa[-2], sb[-1]), "float32", name)


@handles("MatMul")
def _matmul(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    a, b = ins
    if isinstance(a, Const) and isinstance(b, Const):
        raise CompileError(f"node {name!r}: MatMul of two constants is not folded (no spec'd "
                           "compile-time matmul)")
    return [_linear_or_matmul(c, name, c.tensor(name, a, f"{name}:A"), b)]


@handles("Gemm")
def _gemm(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
    a = c.tensor(name, ins[0], f"{name}:A")
    if at["transA"]:
        a = c.emit("transpose", [a], {"perm": [1, 0]}, (a.shape[1], a.shape[0]), a.dtype, name)
    b = ins[1]
    if at["transB"]:
        if isinstance(b, Const):
            b = Const(b.value.T, ("transposed", b.origin[1] if b.origin else f"{name}:B"))
        else:
            b = c.emit("transpose", [b], {"perm": [1, 0]}, (b.shape[1], b.shape[0]), b.dtype,
                       name)
    y = _linear_or_matmul(c, name, a, b)
    if at["alpha"] != 1.0:
        y = c.emit("mul", [y], {"scalar": F32(at["alpha"]), "scalar_side": "b"}, y.shape,
                   "float32", name)
    if len(ins) > 2 and ins[2] is not None:
        cc = ins[2]
        if at["beta"] != 1.0:
            if isinstance(cc, Const):
                cc = Const((cc.value * np.float32(at["beta"])).astype(np.float32))
            else:
                cc = c.emit("mul", [cc], {"scalar": F32(at["beta"]), "scalar_side": "b"},
                            cc.shape, "float32", name)
        tc = c.tensor(name, cc, f"{name}:C")
        y = c.emit("add", [y, tc], {}, broadcast_shapes(name, y.shape, tc.shape), "float32",
                   name)
    return [y]


@handles("Transpose")
def _transpose(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    x = ins[0]
    nd = x.value.ndim if isinstance(x, Const) else len(x.shape)
    at = _attrs(node, name, {"perm": list(reversed(range(nd)))})
    perm = [int(p) for p in at["perm"]]
    if isinstance(x, Const):
        # a transposed 2-D initializer stays recognizable, so MatMul(x, Wᵀ) becomes linear(x, W)
        transposed = x.origin and x.origin[0] == "weight" and nd == 2 and perm == [1, 0]
        return [Const(np.transpose(x.value, perm),
                      ("transposed", x.origin[1]) if transposed else None)]
    return [c.emit("transpose", [x], {"perm": perm}, tuple(x.shape[p] for p in perm), x.dtype,
                   name)]


def _reshape_to(c: Compiler, name: str, x: Value, shape: tuple[Any, ...]) -> Value:
    if isinstance(x, Const):
        if any(not P.is_const(d) for d in shape):
            raise CompileError(f"node {name!r}: reshaping a constant to a symbolic shape")
        return Const(x.value.reshape([int(d) for d in shape]), None)
    return c.emit("reshape", [x], {"shape": list(shape)}, shape, x.dtype, name)


@handles("Reshape")
def _reshape(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"allowzero": 0})
    x = ins[0]
    in_shape = tuple(x.value.shape) if isinstance(x, Const) else x.shape
    target = _ints(name, ins[1], "Reshape shape")
    out = []
    for i, d in enumerate(target):
        if P.is_const(d) and int(d) == 0 and not at["allowzero"]:
            out.append(in_shape[i])
        else:
            out.append(d)
    if sum(1 for d in out if P.is_const(d) and int(d) == -1) > 1:
        raise CompileError(f"node {name!r}: Reshape with more than one -1")
    if any(P.is_const(d) and int(d) == -1 for d in out):
        known = prod([d for d in out if not (P.is_const(d) and int(d) == -1)])
        fill = exact_div(prod(in_shape), known)
        out = [fill if P.is_const(d) and int(d) == -1 else d for d in out]
    return [_reshape_to(c, name, x, tuple(out))]


@handles("Flatten")
def _flatten(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"axis": 1})
    x = ins[0]
    shape = tuple(x.value.shape) if isinstance(x, Const) else x.shape
    ax = at["axis"] if at["axis"] >= 0 else at["axis"] + len(shape)
    return [_reshape_to(c, name, x, (prod(shape[:ax]), prod(shape[ax:])))]


def _axes(node: Any, name: str, ins: list, nd: int, opset_attr: bool = True) -> list[int] | None:
    at = _attrs(node, name, {"axes": None})
    axes = at["axes"]
    if len(ins) > 1 and ins[1] is not None:
        axes = _ints(name, ins[1], "axes")
    if axes is None:
        return None
    return [int(a) % nd for a in axes]


@handles("Unsqueeze")
def _unsqueeze(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    x = ins[0]
    shape = list(x.value.shape) if isinstance(x, Const) else list(x.shape)
    nd = len(shape)
    at = _attrs(node, name, {"axes": None})
    axes = at["axes"] if at["axes"] is not None else _ints(name, ins[1], "axes")
    axes = sorted(int(a) % (nd + len(axes)) for a in axes)
    for a in axes:
        shape.insert(a, 1)
    if isinstance(x, Const):
        return [Const(x.value.reshape(shape) if x.value.dtype != object
                      else np.array(x.value).reshape(shape))]
    return [_reshape_to(c, name, x, tuple(shape))]


@handles("Squeeze")
def _squeeze(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    x = ins[0]
    shape = list(x.value.shape) if isinstance(x, Const) else list(x.shape)
    axes = _axes(node, name, ins, len(shape))
    if axes is None:
        axes = [i for i, d in enumerate(shape) if P.is_const(d) and int(d) == 1]
    for a in axes:
        if not _expr_eq(shape[a], 1):
            raise CompileError(f"node {name!r}: Squeeze of axis {a} with size {shape[a]}")
    new = [d for i, d in enumerate(shape) if i not in axes]
    if isinstance(x, Const):
        return [Const(x.value.reshape(new))]
    return [_reshape_to(c, name, x, tuple(new))]


@handles("Concat")
def _concat(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"axis": None})
    if all(isinstance(v, Const) for v in ins):
        vals = [v.value for v in ins]
        if any(_sym_array(v) for v in vals):
            vals = [v.astype(object) for v in vals]
        return [Const(_tidy(np.concatenate(vals, axis=at["axis"])))]
    ts = [c.tensor(name, v, f"{name}:{i}") for i, v in enumerate(ins)]
    nd = len(ts[0].shape)
    ax = at["axis"] % nd
    ts = [t for t in ts if not _expr_eq(t.shape[ax], 0)] or ts[:1]
    if len(ts) == 1:
        return [ts[0]]
    total: Any = 0
    for t in ts:
        total = P.add(total, t.shape[ax])
    shape = list(ts[0].shape)
    shape[ax] = total
    return [c.emit("concat", ts, {"axis": ax}, tuple(shape), ts[0].dtype, name)]


def _clamp_index(i: Any, dim: Any, is_end: bool) -> Any:
    """ONNX Slice index normalization with symbolic dims (negative = from the end)."""
    if P.is_const(i):
        i = int(i)
        if i >= INT64_MAX // 2:
            return dim
        if i < 0:
            i = P.add(dim, i)
            if P.is_const(i):
                return max(int(i), 0 if not is_end else 0)
            return i
        if P.is_const(dim):
            return min(i, int(dim))
        return i
    return i


@handles("Slice")
def _slice(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    x = ins[0]
    shape = tuple(x.value.shape) if isinstance(x, Const) else x.shape
    nd = len(shape)
    starts = _ints(name, ins[1], "starts")
    ends = _ints(name, ins[2], "ends")
    axes = _ints(name, ins[3], "axes") if len(ins) > 3 and ins[3] is not None else \
        list(range(len(starts)))
    steps = _ints(name, ins[4], "steps") if len(ins) > 4 and ins[4] is not None else \
        [1] * len(starts)
    if isinstance(x, Const) and not _sym_array(x.value) or isinstance(x, Const) and all(
            P.is_const(s) for s in starts + ends):
        if all(P.is_const(s) for s in starts + ends):
            sl = [slice(None)] * nd
            for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
                sl[int(a) % nd] = slice(int(s), int(e), int(st))
            origin = None
            return [Const(_tidy(np.asarray(x.value)[tuple(sl)]), origin)]
    t = c.tensor(name, x, f"{name}:data")
    begin: list[Any] = [0] * nd
    stop: list[Any] = list(shape)
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = int(a) % nd
        if int(st) != 1:
            if not all(P.is_const(v) for v in (s, e, shape[a])):
                raise CompileError(f"node {name!r}: Slice step {st} on a symbolic axis")
            idx = range(*slice(int(s), int(e), int(st)).indices(int(shape[a])))
            gi = c.weight(f"{name}:idx{a}", np.array(list(idx), dtype=np.int64))
            new_shape = list(t.shape)
            new_shape[a] = len(idx)
            t = c.emit("gather", [t, gi], {"axis": a}, tuple(new_shape), t.dtype, name)
            begin[a], stop[a] = 0, len(idx)
            continue
        begin[a] = _clamp_index(s, shape[a], False)
        stop[a] = _clamp_index(e, shape[a], True)
    if any(b != 0 for b in begin) or any(_expr_eq(e, d) is not True
                                          for e, d in zip(stop, t.shape, strict=True)):
        out_shape = tuple(P.sub(e, b) for b, e in zip(begin, stop, strict=True))
        t = c.emit("slice", [t], {"starts": begin, "ends": stop}, out_shape, t.dtype, name)
    return [t]


@handles("Gather")
def _gather(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"axis": 0})
    data, idx = ins
    dshape = tuple(data.value.shape) if isinstance(data, Const) else data.shape
    ax = at["axis"] % len(dshape)
    if isinstance(data, Const) and isinstance(idx, Const):
        v = np.take(data.value, np.asarray(idx.value).astype(np.int64), axis=ax)
        return [Const(_tidy(np.asarray(v)) if data.value.dtype == object else np.asarray(v))]
    if isinstance(idx, Const) and idx.value.dtype == object:
        raise CompileError(f"node {name!r}: Gather with symbolic indices")
    ishape = tuple(idx.value.shape) if isinstance(idx, Const) else idx.shape
    out_shape = (*dshape[:ax], *ishape, *dshape[ax + 1:])
    td = c.tensor(name, data, f"{name}:data")
    ti = c.tensor(name, idx, f"{name}:indices")
    if ax == 0 and len(dshape) == 2 and td.ref.kind == "weight":
        return [c.emit("embedding", [ti, td], {}, out_shape, td.dtype, name)]
    return [c.emit("gather", [td, ti], {"axis": ax}, out_shape, td.dtype, name)]


@handles("Expand")
def _expand(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    x = ins[0]
    target = tuple(_ints(name, ins[1], "Expand shape"))
    if isinstance(x, Const) and all(P.is_const(d) for d in target):
        shape = np.broadcast_shapes(x.value.shape, tuple(int(d) for d in target))
        return [Const(np.broadcast_to(x.value, shape).copy())]
    t = c.tensor(name, x, f"{name}:data")
    shape = broadcast_shapes(name, t.shape, target)
    if all(_expr_eq(a, b) is True for a, b in zip(shape, t.shape, strict=False)) \
            and len(shape) == len(t.shape):
        return [t]
    return [c.emit("expand", [t], {"shape": list(shape)}, shape, t.dtype, name)]


@handles("Where")
def _where(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    cond, a, b = ins
    if all(isinstance(v, Const) for v in ins):
        if any(_sym_array(v.value) for v in ins):
            out = np.where(cond.value.astype(bool), a.value.astype(object), b.value.astype(object))
            return [Const(_tidy(out))]
        return [Const(np.where(cond.value.astype(bool), a.value, b.value))]
    tc = c.tensor(name, cond, f"{name}:cond")
    ta = c.tensor(name, a, f"{name}:x")
    tb = c.tensor(name, b, f"{name}:y")
    shape = broadcast_shapes(name, tc.shape, ta.shape, tb.shape)
    return [c.emit("where", [tc, ta, tb], {}, shape, ta.dtype, name)]


@handles("Cast")
def _cast(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"to": None, "saturate": 1})
    to = _ONNX_DTYPES.get(at["to"])
    if to is None:
        raise CompileError(f"node {name!r}: Cast to ONNX type {at['to']} is not supported")
    x = ins[0]
    if isinstance(x, Const):
        if _sym_array(x.value):
            if to in ("int64", "int32"):
                return [x]
            raise CompileError(f"node {name!r}: Cast of a symbolic shape value to {to}")
        v = x.value
        if to == "uint8" and at["to"] == 9:
            return [Const(v.astype(bool))]
        return [Const(v.astype(_NP[to]))]
    if to == x.dtype:
        return [x]
    if at["to"] == 9:  # bool: nonzero test, a compare against zero
        return [c.emit("compare", [x], {"cmp": "ne", "scalar": 0 if x.dtype != "float32"
                                        else F32(0.0), "scalar_side": "b"}, x.shape, "uint8",
                       name)]
    return [c.emit("cast", [x], {"to": to}, x.shape, to, name)]


def _reduce_axis(node: Any, name: str, ins: list, nd: int) -> tuple[int, int]:
    at = _attrs(node, name, {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0})
    axes = at["axes"]
    if len(ins) > 1 and ins[1] is not None:
        axes = _ints(name, ins[1], "axes")
    if axes is None or len(axes) == 0:
        if nd == 1:
            axes = [0]
        else:
            raise CompileError(f"node {name!r}: {node.op_type} over all axes is not supported "
                               "(reduce one axis)")
    if len(axes) != 1:
        raise CompileError(f"node {name!r}: {node.op_type} over several axes {axes} is not "
                           "supported (reduce one axis)")
    return int(axes[0]) % nd, int(at["keepdims"])


_REDUCE = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min"}


@handles(*_REDUCE)
def _reduce(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    x = ins[0]
    if isinstance(x, Const):
        raise CompileError(f"node {name!r}: {node.op_type} of a constant is not folded")
    if x.dtype != "float32":
        raise CompileError(f"node {name!r}: {node.op_type} of {x.dtype} is not in RepOps v1 "
                           "(float32 reductions only)")
    ax, keep = _reduce_axis(node, name, ins, len(x.shape))
    shape = list(x.shape)
    if keep:
        shape[ax] = 1
    else:
        del shape[ax]
    return [c.emit(_REDUCE[node.op_type], [x], {"axis": ax, "keepdims": keep}, tuple(shape),
                   x.dtype, name)]


@handles("Softmax", "LogSoftmax")
def _softmax(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"axis": -1})
    x = c.tensor(name, ins[0], f"{name}:x")
    code = "softmax" if node.op_type == "Softmax" else "log_softmax"
    return [c.emit(code, [x], {"axis": at["axis"] % len(x.shape)}, x.shape, x.dtype, name)]


@handles("ArgMax")
def _argmax(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    at = _attrs(node, name, {"axis": 0, "keepdims": 1, "select_last_index": 0})
    if at["select_last_index"]:
        raise CompileError(f"node {name!r}: ArgMax select_last_index=1 is not supported "
                           "(spec §6.11: the lowest index wins)")
    x = c.tensor(name, ins[0], f"{name}:x")
    ax = at["axis"] % len(x.shape)
    shape = list(x.shape)
    if at["keepdims"]:
        shape[ax] = 1
    else:
        del shape[ax]
    return [c.emit("argmax", [x], {"axis": ax, "keepdims": at["keepdims"]}, tuple(shape),
                   "int64", name)]


@handles("ConstantOfShape")
def _constant_of_shape(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    import onnx

    at = _attrs(node, name, {"value": None})
    fill = onnx.numpy_helper.to_array(at["value"]) if at["value"] is not None else \
        np.zeros(1, np.float32)
    shape = _ints(name, ins[0], "shape")
    if all(P.is_const(d) for d in shape):
        return [Const(np.full([int(d) for d in shape], fill.reshape(-1)[0], dtype=fill.dtype))]
    dtype = "uint8" if fill.dtype == np.bool_ else fill.dtype.name
    v = fill.reshape(-1)[0]
    attr = F32(float(v)) if dtype == "float32" else int(v)
    return [c.emit("fill", [], {"value": attr}, tuple(shape), dtype, name)]


@handles("Range")
def _range(c: Compiler, node: Any, name: str, ins: list) -> list[Value]:
    _attrs(node, name, {})
    start, limit, delta = (_ints(name, v, "Range argument")[0] for v in ins)
    if all(P.is_const(v) for v in (start, limit, delta)) and all(
            isinstance(v.value, np.ndarray) and v.value.dtype != object for v in ins):
        return [Const(np.arange(ins[0].value, ins[1].value, ins[2].value,
                                dtype=ins[0].value.dtype))]
    if not (P.is_const(delta) and int(delta) == 1):
        raise CompileError(f"node {name!r}: symbolic Range needs delta 1")
    return [c.emit("range", [], {"start": start}, (P.sub(limit, start),), "int64", name)]
