"""Recognize spec-defined fused ops in a compiled program, then drop dead ops.

Each fused op is defined in the RepOps spec as exactly the primitive sequence matched here, so
fusing never changes a bit of the model's outputs; it shortens the trace and lets the kernels
(and the one-step) work on a row at a time:

- RMSNorm (spec §6.7): mul(x,x) → mean(last, keepdims) → add eps → sqrt → div(x, ·) → mul(·, w)
- SiLU (spec §6.4): sigmoid(x) → mul(x, ·)
- causal attention (spec §6.10): matmul(q, transpose(k)) → mul scale → add causal mask →
  softmax(last) → matmul(·, v). The mask is accepted only if its ops depend on shapes alone
  and evaluate to the causal mask with KV prefix for several (seq, past) values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from node.runtime import program as P
from node.runtime.program import F32, Op, Program, Ref


def _consumers(prog: Program) -> dict[int, list[int]]:
    users: dict[int, list[int]] = {i: [] for i in range(len(prog.ops))}
    for j, op in enumerate(prog.ops):
        for r in op.inputs:
            if r.kind == "op":
                users[r.index].append(j)
    for r in prog.outputs.values():
        if r.kind == "op":
            users[r.index].append(-1)
    return users


def _src(prog: Program, r: Ref, code: str) -> Op | None:
    if r.kind != "op":
        return None
    op = prog.ops[r.index]
    return op if op.code == code else None


def _single(users: dict[int, list[int]], r: Ref) -> bool:
    return r.kind == "op" and len(users[r.index]) == 1


def _fuse_rms_norm(prog: Program, i: int, users: dict[int, list[int]],
                   weights: dict[str, np.ndarray]) -> bool:
    w_op = prog.ops[i]
    if w_op.code != "mul" or len(w_op.inputs) != 2 or "scalar" in w_op.attrs:
        return False
    d_ref, w_ref = w_op.inputs
    d = _src(prog, d_ref, "div")
    if d is None or not _single(users, d_ref) or w_ref.kind != "weight" or "scalar" in d.attrs:
        return False
    if weights[prog.weights[w_ref.index]].ndim != 1:
        return False
    x_ref, s_ref = d.inputs
    s = _src(prog, s_ref, "sqrt")
    if s is None or not _single(users, s_ref):
        return False
    a = _src(prog, s.inputs[0], "add")
    if a is None or not _single(users, s.inputs[0]) or a.attrs.get("scalar_side") != "b" \
            or not isinstance(a.attrs.get("scalar"), F32):
        return False
    m = _src(prog, a.inputs[0], "mean")
    if m is None or not _single(users, a.inputs[0]) or not m.attrs["keepdims"] \
            or m.attrs["axis"] != len(m.shape) - 1:
        return False
    sq = _src(prog, m.inputs[0], "mul")
    if sq is None or not _single(users, m.inputs[0]) or sq.inputs != [x_ref, x_ref]:
        return False
    prog.ops[i] = Op("rms_norm", [x_ref, w_ref], {"eps": a.attrs["scalar"]}, w_op.shape,
                     "float32", w_op.name)
    return True


def _fuse_silu(prog: Program, i: int, users: dict[int, list[int]]) -> bool:
    op = prog.ops[i]
    if op.code != "mul" or len(op.inputs) != 2 or "scalar" in op.attrs:
        return False
    for k in (0, 1):
        s_ref, x_ref = op.inputs[k], op.inputs[1 - k]
        s = _src(prog, s_ref, "sigmoid")
        if s is not None and _single(users, s_ref) and s.inputs[0] == x_ref:
            prog.ops[i] = Op("silu", [x_ref], {}, op.shape, "float32", op.name)
            return True
    return False


def _cone(prog: Program, r: Ref) -> list[int] | None:
    """Ops the value `r` depends on, or None if it reads a job input (not shape-only)."""
    seen: set[int] = set()
    stack = [r]
    while stack:
        x = stack.pop()
        if x.kind == "input":
            return None
        if x.kind == "op" and x.index not in seen:
            seen.add(x.index)
            stack.extend(prog.ops[x.index].inputs)
    return sorted(seen)


def _is_causal_mask(prog: Program, mask_ref: Ref, weights: dict[str, np.ndarray]) -> bool:
    """Evaluate the mask subgraph for several steps; it must be 0 on j ≤ past+t, −inf after."""
    import torch

    from node.runtime.execute import run_program

    cone = _cone(prog, mask_ref)
    if cone is None or mask_ref.kind != "op":
        return False
    remap = {old: new for new, old in enumerate(cone)}
    sub_ops = []
    for old in cone:
        op = prog.ops[old]
        ins = [Ref("op", remap[r.index]) if r.kind == "op" else r for r in op.inputs]
        sub_ops.append(Op(op.code, ins, op.attrs, op.shape, op.dtype, op.name))
    sub = Program(sub_ops, prog.weights, [], {"mask": Ref("op", remap[mask_ref.index])})
    tw = {n: torch.from_numpy(np.array(weights[n], copy=True)) for n in prog.weights}
    for seq, past in ((1, 0), (1, 3), (4, 0), (3, 5), (2, 1)):
        env = {"batch": 1, "seq": seq, "past": past}
        try:
            m = run_program(sub, tw, {}, env)["mask"]
        except Exception:  # noqa: BLE001 - a mask that cannot run is simply not fused
            return False
        m = m.reshape(m.shape[-2:]) if m.dim() >= 2 and m[..., 0, 0].numel() == 1 else None
        if m is None or tuple(m.shape) != (seq, past + seq):
            return False
        t = torch.arange(seq)[:, None] + past
        j = torch.arange(past + seq)[None, :]
        want = torch.where(j <= t, torch.tensor(0.0), torch.tensor(float("-inf")))
        if not torch.equal(m.float(), want):
            return False
    return True


def _fuse_attention(prog: Program, i: int, users: dict[int, list[int]],
                    weights: dict[str, np.ndarray]) -> bool:
    pv = prog.ops[i]
    if pv.code != "matmul":
        return False
    sm_ref, v_ref = pv.inputs
    sm = _src(prog, sm_ref, "softmax")
    if sm is None or not _single(users, sm_ref) or sm.attrs["axis"] != len(sm.shape) - 1:
        return False
    add = _src(prog, sm.inputs[0], "add")
    if add is None or not _single(users, sm.inputs[0]) or len(add.inputs) != 2:
        return False
    for k in (0, 1):
        sc_ref, mask_ref = add.inputs[k], add.inputs[1 - k]
        sc = _src(prog, sc_ref, "mul")
        if sc is None or not _single(users, sc_ref) or sc.attrs.get("scalar_side") != "b":
            continue
        qk = _src(prog, sc.inputs[0], "matmul")
        if qk is None or not _single(users, sc.inputs[0]):
            continue
        q_ref, kt_ref = qk.inputs
        kt = _src(prog, kt_ref, "transpose")
        nd = len(qk.shape)
        if kt is None or nd < 3:
            continue
        if kt.attrs["perm"] != [*range(nd - 2), nd - 1, nd - 2]:
            continue
        if not _is_causal_mask(prog, mask_ref, weights):
            continue
        prog.ops[i] = Op("attention", [q_ref, kt.inputs[0], v_ref],
                         {"scale": sc.attrs["scalar"], "causal": 1}, pv.shape, "float32",
                         pv.name)
        return True
    return False


def _eliminate_dead(prog: Program) -> Program:
    live: set[int] = set()
    stack = [r.index for r in prog.outputs.values() if r.kind == "op"]
    while stack:
        i = stack.pop()
        if i in live:
            continue
        live.add(i)
        stack.extend(r.index for r in prog.ops[i].inputs if r.kind == "op")
    order = sorted(live)
    remap = {old: new for new, old in enumerate(order)}
    used_w = sorted({r.index for i in order for r in prog.ops[i].inputs if r.kind == "weight"})
    wmap = {old: new for new, old in enumerate(used_w)}

    def fix(r: Ref) -> Ref:
        if r.kind == "op":
            return Ref("op", remap[r.index])
        if r.kind == "weight":
            return Ref("weight", wmap[r.index])
        return r

    ops = [Op(prog.ops[i].code, [fix(r) for r in prog.ops[i].inputs], prog.ops[i].attrs,
              prog.ops[i].shape, prog.ops[i].dtype, prog.ops[i].name) for i in order]
    return Program(ops, [prog.weights[i] for i in used_w], prog.inputs,
                   {k: fix(r) for k, r in prog.outputs.items()}, prog.meta)


def fuse(prog: Program, weights: dict[str, np.ndarray]) -> Program:
    """Apply every fusion until none matches, then remove ops no output depends on."""
    changed = True
    while changed:
        changed = False
        users = _consumers(prog)
        for i in range(len(prog.ops)):
            if (_fuse_rms_norm(prog, i, users, weights) or _fuse_silu(prog, i, users)
                    or _fuse_attention(prog, i, users, weights)):
                changed = True
                users = _consumers(prog)
    return _eliminate_dead(prog)


def shape_env(batch: int, seq: int, past: int) -> dict[str, Any]:
    return {"batch": batch, "seq": seq, "past": past}


__all__ = ["fuse", "shape_env", "P"]
