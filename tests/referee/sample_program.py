"""Programs whose logits rows are chosen by the test, so the sampling tail (§L5.10) meets ties,
±0, ±inf and NaN: each step's logits row is row `token` of a table (step 0: the last prompt
token), then the greedy argmax and the SAMPLE tail as `llama_program` emits them."""

from __future__ import annotations

import numpy as np

from referee.layout import JOB_INPUT, SEQ, Code, Dim, TraceOp, op_input
from referee.lowering import Lowering
from repops.commit import tensor_root_np

EDGE = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x3F800000,
                 0xBF800000, 0x00000001, 0x7F7FFFFF, 0xFF7FFFFF, 0x41200000],
                dtype=np.uint32)


def edge_rows(rng: np.random.Generator, rows: int, v: int) -> np.ndarray:
    """Logit rows of several kinds: plain normals, heavy ties, signed zeros, ±inf, NaN."""
    out = np.empty((rows, v), dtype=np.float32)
    for r in range(rows):
        kind = r % 6
        x = (rng.standard_normal(v) * rng.choice([0.1, 1.0, 8.0])).astype(np.float32)
        if kind == 1:  # ties: few distinct values
            x = rng.choice(np.array([-1.0, 0.5, 2.0], np.float32), v)
        elif kind == 2:  # signed zeros and ties at the top
            x = rng.choice(np.array([0.0, -0.0, -3.0], np.float32), v)
        elif kind == 3:  # edge values sprinkled, no NaN
            pick = rng.random(v) < 0.3
            x = np.where(pick, rng.choice(EDGE[EDGE != 0x7FC00000], v).view(np.float32), x)
        elif kind == 4:  # one NaN somewhere: the greedy path
            x[rng.integers(v)] = np.nan
        elif kind == 5:  # all -inf but a few: exp of -inf terms
            x = np.full(v, -np.inf, np.float32)
            x[rng.integers(v, size=3)] = rng.standard_normal(3).astype(np.float32)
        out[r] = x
    return out


def table_program(table: np.ndarray, sort_block: int):
    """TOKENS → GATHER(table) → last row → argmax → SAMPLE tail; returns (program, weights)."""
    v = table.shape[1]
    root = tensor_root_np(table)
    lw = Lowering(segment=8, max_ctx=64)
    toks = lw.tokens(0)
    rows = lw.embedding(toks, lw.weight(root, table.shape))
    z = lw.move(rows, (Dim(1), Dim(v)), Dim(-v, v, 0), (Dim(v), Dim(1)), "last_row")
    greedy = lw.argmax(z, v)
    token = lw.sample(z, greedy, v, block=sort_block)
    lw.ops[0] = TraceOp(Code.TOKENS, "int32", (SEQ,), (JOB_INPUT, op_input(token.ref.op, 1)),
                        (), "tokens")
    return lw.program(token), {root: table}, z.ref.op
