"""Run a RepOps program: each op on the RepOps API (`repops.api`, CPU reference or Triton on
CUDA tensors), data movement by bit copies (RepOps spec §6.13), with a hook per executed op so
the caller can take output roots for the trace (commitments C5).

Shapes are evaluated from the program's symbolic shapes and the step's symbol values
(`batch`, `seq`, `past`), and every op's result is checked against them: an executor whose
tensors disagree with the program fails loudly instead of committing a wrong trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from node.runtime import program as P
from node.runtime.program import F32, Op, Program

_TORCH_DTYPES = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64,
                 "uint8": torch.uint8}
CANON_NAN = 0x7FC00000


class ExecutionError(RuntimeError):
    """An op could not run or produced a tensor that contradicts the program."""


def _api():
    from repops import api

    return api


def _scalar(attr: Any, env: dict[str, int], like: torch.Tensor) -> torch.Tensor:
    if isinstance(attr, F32):
        return torch.tensor(np.float32(attr.value), device=like.device)
    return torch.tensor(P.evaluate(attr, env), dtype=like.dtype, device=like.device)


def _binary_operands(op: Op, ins: list[torch.Tensor], env: dict[str, int]):  # noqa: ANN202
    if "scalar" in op.attrs:
        s = _scalar(op.attrs["scalar"], env, ins[0])
        return (s, ins[0]) if op.attrs["scalar_side"] == "a" else (ins[0], s)
    return ins[0], ins[1]


_INT_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul,
               "div": lambda a, b: torch.div(a, b, rounding_mode="trunc"),
               "maximum": torch.maximum, "minimum": torch.minimum}
_CMP = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt,
        "ge": torch.ge}


def _binary(op: Op, ins: list[torch.Tensor], env: dict[str, int]) -> torch.Tensor:
    a, b = _binary_operands(op, ins, env)
    if op.code in ("and", "or"):
        f = torch.logical_and if op.code == "and" else torch.logical_or
        return f(a != 0, b != 0).to(torch.uint8)
    if a.dtype != torch.float32:
        return _INT_BINARY[op.code](a, b)
    return getattr(_api(), op.code)(*_scalar_pair(a, b))


def _scalar_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The RepOps binary ops broadcast; 0-d operands become 1-element tensors."""
    return (a.reshape(1) if a.dim() == 0 else a), (b.reshape(1) if b.dim() == 0 else b)


def _compare(op: Op, ins: list[torch.Tensor], env: dict[str, int]) -> torch.Tensor:
    a, b = _binary_operands(op, ins, env)
    return _CMP[op.attrs["cmp"]](a, b).to(torch.uint8)  # IEEE comparisons (spec §1.4)


def _unary(op: Op, ins: list[torch.Tensor], env: dict[str, int]) -> torch.Tensor:
    x = ins[0]
    if op.code == "not":
        return (x == 0).to(torch.uint8)
    if x.dtype != torch.float32:
        return torch.neg(x) if op.code == "neg" else torch.abs(x)
    if op.code == "abs":
        return (x.view(torch.int32) & 0x7FFFFFFF).view(torch.float32).clone()
    return getattr(_api(), op.code)(x)


def _reduce(op: Op, ins: list[torch.Tensor], env: dict[str, int]) -> torch.Tensor:
    api = _api()
    x, ax, keep = ins[0], op.attrs["axis"], bool(op.attrs["keepdims"])
    if op.code == "mean":  # div(fold_sum, RN(n)) as in spec §6.7
        s = api.sum(x, dim=ax, keepdim=keep)
        n = torch.tensor([np.float32(x.shape[ax])], device=x.device)
        return api.div(s, n)
    return getattr(api, op.code)(x, dim=ax, keepdim=keep)


def _shape(op: Op, env: dict[str, int]) -> tuple[int, ...]:
    return tuple(P.evaluate(d, env) for d in op.shape)


def _run_op(op: Op, ins: list[torch.Tensor], env: dict[str, int]) -> torch.Tensor:
    api = _api()
    c, at = op.code, op.attrs
    if c in ("add", "sub", "mul", "div", "maximum", "minimum", "and", "or"):
        return _binary(op, ins, env)
    if c == "compare":
        return _compare(op, ins, env)
    if c in ("neg", "sqrt", "exp", "log", "sigmoid", "silu", "abs", "not"):
        return _unary(op, ins, env)
    if c in ("sum", "mean", "max", "min"):
        return _reduce(op, ins, env)
    if c == "linear":
        return api.linear(ins[0], ins[1])
    if c == "matmul":
        return api.matmul(ins[0], ins[1])
    if c in ("softmax", "log_softmax"):
        return getattr(api, c)(ins[0], dim=at["axis"])
    if c == "argmax":
        return api.argmax(ins[0], dim=at["axis"], keepdim=bool(at["keepdims"]))
    if c == "rms_norm":
        return api.rms_norm(ins[0], ins[1] if len(ins) > 1 else None, eps=at["eps"].value)
    if c == "attention":
        return api.attention(ins[0], ins[1], ins[2], scale=at["scale"].value)
    if c == "rope":
        return api.rope(ins[0], ins[1], ins[2], pairing=at["pairing"])
    if c == "embedding":
        return api.embedding(ins[0], ins[1])
    if c == "cast":
        x, to = ins[0], at["to"]
        if to == "float32":
            return api.int_to_float(x) if x.dtype != torch.uint8 else (x != 0).float()
        return api.float_to_int(x).to(_TORCH_DTYPES[to]) if x.dtype == torch.float32 \
            else x.to(_TORCH_DTYPES[to])
    # data movement: bit copies (spec §6.13)
    if c == "reshape":
        return ins[0].reshape(_shape(op, env)).clone()
    if c == "transpose":
        return ins[0].permute(*at["perm"]).contiguous()
    if c == "concat":
        return torch.cat(ins, dim=at["axis"])
    if c == "slice":
        sl = tuple(slice(P.evaluate(s, env), P.evaluate(e, env))
                   for s, e in zip(at["starts"], at["ends"], strict=True))
        return ins[0][sl].contiguous()
    if c == "gather":
        idx = ins[1].to(torch.int64)
        dim = ins[0].shape[at["axis"]]
        idx = torch.where(idx < 0, idx + dim, idx)
        return torch.index_select(ins[0], at["axis"], idx.reshape(-1)).reshape(
            _shape(op, env)).contiguous()
    if c == "expand":
        return ins[0].expand(_shape(op, env)).contiguous()
    if c == "where":
        return torch.where(ins[0] != 0, ins[1], ins[2])
    if c == "fill":
        v = at["value"]
        val = np.float32(v.value) if isinstance(v, F32) else int(v)
        return torch.full(_shape(op, env), val, dtype=_TORCH_DTYPES[op.dtype])
    if c == "range":
        start = P.evaluate(at["start"], env)
        return torch.arange(start, start + _shape(op, env)[0], dtype=torch.int64)
    raise ExecutionError(f"op {op.code} has no executor")


def run_program(
    prog: Program,
    weights: dict[str, torch.Tensor],
    inputs: dict[str, torch.Tensor],
    env: dict[str, int],
    on_op: Callable[[int, Op, torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Execute every op in order; `on_op(i, op, out)` sees each output (trace hook)."""
    w = [weights[n] for n in prog.weights]
    job = []
    for name, dtype, shape in prog.inputs:
        t = inputs[name]
        want = tuple(P.evaluate(d, env) for d in shape)
        if tuple(t.shape) != want or t.dtype != _TORCH_DTYPES[dtype]:
            raise ExecutionError(f"input {name}: got {tuple(t.shape)} {t.dtype}, program wants "
                                 f"{want} {dtype}")
        job.append(t)
    outs: list[torch.Tensor] = []
    for i, op in enumerate(prog.ops):
        ins = [w[r.index] if r.kind == "weight" else job[r.index] if r.kind == "input"
               else outs[r.index] for r in op.inputs]
        try:
            y = _run_op(op, ins, env)
        except (ValueError, TypeError, RuntimeError) as e:
            raise ExecutionError(f"op {i} ({op.code}, from {op.name!r}): {e}") from e
        want = _shape(op, env)
        if tuple(y.shape) != want and y.numel() == int(np.prod(want)) and y.dim() <= 1:
            y = y.reshape(want)  # 0-d results of elementwise ops come back as [1]
        if tuple(y.shape) != want:
            raise ExecutionError(f"op {i} ({op.code}, from {op.name!r}) produced shape "
                                 f"{tuple(y.shape)}, program says {want}")
        if y.dtype != _TORCH_DTYPES[op.dtype]:
            y = y.to(_TORCH_DTYPES[op.dtype])
        outs.append(y)
        if on_op is not None:
            on_op(i, op, y)
    return {name: outs[r.index] if r.kind == "op" else w[r.index]
            for name, r in prog.outputs.items()}


def weights_to_torch(weights: dict[str, np.ndarray], device: str = "cpu") -> dict[str, Any]:
    return {k: torch.from_numpy(np.array(v, copy=True)).to(device) for k, v in weights.items()}
