"""A one-step program whose inputs are weights full of IEEE edge values (±0, ±inf, NaN,
subnormals, huge and tiny normals, exact ties), so every op kind meets them."""

from __future__ import annotations

import numpy as np

from referee.layout import CTX, JOB_INPUT, SEQ, Code, Dim, Fn, TraceOp, op_input
from referee.lowering import Lowering, T
from repops.commit import tensor_root_np

SPECIAL = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x00000001,
                    0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000,
                    0xBF800000, 0x3F800001, 0x33800000, 0x42B17218, 0xC2CFF1B5, 0x4B000001],
                   dtype=np.uint32)


def special_values(rng: np.random.Generator, shape: tuple[int, ...], p: float = 0.5) -> np.ndarray:
    """Random normals mixed with edge values (probability p each element)."""
    base = (rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 30.0, 1e30], shape))
    bits = base.astype(np.float32).view(np.uint32)
    pick = rng.random(shape) < p
    bits = np.where(pick, rng.choice(SPECIAL, shape), bits).astype(np.uint32)
    return bits.view(np.float32)


def special_program(seed: int = 0, rows: int = 3, width: int = 40, segment: int = 16):
    """Every op kind once over edge-value weights; returns (program, weights)."""
    rng = np.random.default_rng(seed)
    store: dict[bytes, np.ndarray] = {}

    def w(a: np.ndarray):
        r = tensor_root_np(a)
        store[r] = a
        return Lowering.weight(r, a.shape, a.dtype.name)

    lw = Lowering(segment=segment, max_ctx=8)
    a = w(special_values(rng, (rows, width)))
    b = w(special_values(rng, (rows, width)))
    row = w(special_values(rng, (width,)))
    mat = w(special_values(rng, (5, width)))
    cos = w(special_values(rng, (8, 4), 0.3))
    sin = w(special_values(rng, (8, 4), 0.3))
    table = w(special_values(rng, (7, 6)))
    toks = lw.tokens(0)
    lw.embedding(toks, table)
    for fn in Fn:
        if fn < 16:
            lw.ew(fn, a, b, name=f"ew_{fn.name}")
            lw.ew(fn, a, row, name=f"ew_{fn.name}_bcast")
            lw.ew(fn, a, scalar=float(rng.standard_normal()), name=f"ew_{fn.name}_scalar")
        else:
            lw.ew(fn, a, name=f"ew_{fn.name}")
    lw.linear(a, mat, "linear")
    lw.fold(a, width, Dim(width), combine=0, name="fold_sum")
    lw.fold(a, width, Dim(width), combine=1, name="fold_max")
    lw.rms_norm(a, row, width, 1e-5, "rms")
    lw.softmax_rows(a, width, Dim(width), causal=False, name="softmax")
    lw.rope(w(special_values(rng, (rows, 16))), cos, sin, 8, 8, False, "rope_adj")
    lw.rope(w(special_values(rng, (rows, 16))), cos, sin, 8, 8, True, "rope_half")
    mv = lw.move(a, (Dim(width), Dim(rows)), Dim(0), (Dim(1), Dim(width)), "transpose")
    lw.move(mv, (Dim(2), Dim(rows)), Dim(3 * rows), (Dim(rows), Dim(1)), "slice")
    # causal pieces: a KV-style cache of token embeddings and a causal softmax over it
    emb = lw.embedding(toks, w(special_values(rng, (7, 8))), "emb8")
    slot = len(lw.ops)
    cache = lw.append(T(op_input(slot, back=1), (CTX, Dim(8))), emb, "append")
    sc = lw.dot(emb, cache, 8, (SEQ, CTX), causal=2, name="scores")
    lw.softmax_rows(sc, 8, CTX, causal=True, name="causal_softmax")
    lw.dot(sc, lw.move(cache, (Dim(8), CTX), Dim(0), (Dim(1), Dim(8)), "cache_t"), 8,
           (SEQ, Dim(8)), causal=1, name="pv")
    logits = lw.linear(a, mat, "logits")
    token = lw.argmax(logits, 5, "argmax")
    lw.ops[0] = TraceOp(Code.TOKENS, "int32", (SEQ,), (JOB_INPUT, op_input(token.ref.op, 1)),
                        (), "tokens")
    prog = lw.program(token)
    return prog, store
