"""A JSON form of a compiled RepOps program (`node.runtime.program.Program`), lossless: the
decoded program has the same op records, hence the same program root (commitments C3).

Why: compiling SmolLM2 through ONNX takes minutes, while lowering the compiled program to the
trace program (`referee.from_program`) takes about a second. Caching the compiled program lets
every `ree run` build its trace program from the ONNX path, with any segment length.

Shape expressions: an int, `{"s": symbol}`, or `[op, a, b]`. Attribute values: `{"i": int}`,
`{"f32": bits}`, `{"str": text}`, `{"e": expr}`, `{"ints": [...]}`, `{"exprs": [...]}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from node.runtime import program as P
from node.runtime.program import F32, Op, Program, Ref


def expr_to_json(e: Any) -> Any:
    if P.is_const(e):
        return int(e)
    if isinstance(e, P.Sym):
        return {"s": e.name}
    return [e.op, expr_to_json(e.a), expr_to_json(e.b)]


def expr_from_json(j: Any) -> Any:
    if isinstance(j, int):
        return j
    if isinstance(j, dict):
        return P.Sym(j["s"])
    op, a, b = j
    return P.BinExpr(op, expr_from_json(a), expr_from_json(b))


def value_to_json(v: Any) -> dict[str, Any]:
    """Mirrors `program.encode_value`, so the decoded value encodes to the same bytes."""
    if isinstance(v, (bool, int, np.integer)):
        return {"i": int(v)}
    if isinstance(v, F32):
        return {"f32": v.bits()}
    if isinstance(v, str):
        return {"str": v}
    if isinstance(v, (P.Sym, P.BinExpr)):
        return {"e": expr_to_json(v)}
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
            return {"ints": [int(x) for x in v]}
        return {"exprs": [expr_to_json(x) for x in v]}
    raise TypeError(f"attribute value {v!r} has no JSON form")


def value_from_json(j: dict[str, Any]) -> Any:
    (kind, v), = j.items()
    if kind == "i":
        return int(v)
    if kind == "f32":
        return F32(float(np.array(v, dtype=np.uint32).view(np.float32)))
    if kind == "str":
        return str(v)
    if kind == "e":
        return expr_from_json(v)
    if kind == "ints":
        return [int(x) for x in v]
    if kind == "exprs":
        return [expr_from_json(x) for x in v]
    raise ValueError(f"unknown attribute kind {kind!r}")


def program_to_json(prog: Program) -> dict[str, Any]:
    return {
        "ops": [{"code": op.code, "inputs": [[r.kind, r.index] for r in op.inputs],
                 "attrs": {k: value_to_json(v) for k, v in op.attrs.items()},
                 "shape": [expr_to_json(d) for d in op.shape], "dtype": op.dtype,
                 "name": op.name} for op in prog.ops],
        "weights": list(prog.weights),
        "inputs": [[n, dt, [expr_to_json(d) for d in shape]] for n, dt, shape in prog.inputs],
        "outputs": {n: [r.kind, r.index] for n, r in prog.outputs.items()},
    }


def program_from_json(j: dict[str, Any]) -> Program:
    ops = [Op(o["code"], [Ref(k, int(i)) for k, i in o["inputs"]],
              {k: value_from_json(v) for k, v in o["attrs"].items()},
              tuple(expr_from_json(d) for d in o["shape"]), o["dtype"], o["name"])
           for o in j["ops"]]
    inputs = [(n, dt, tuple(expr_from_json(d) for d in shape)) for n, dt, shape in j["inputs"]]
    outputs = {n: Ref(k, int(i)) for n, (k, i) in j["outputs"].items()}
    return Program(ops, list(j["weights"]), inputs, outputs)
