"""A toy Llama wide enough for accumulation chains (docs/trace-layout.md §L9), shared by the
level-3 tests: the toy of toy_llama.py has d = 16, so none of its DOT elements has links.

One layer, d = 128 (q/k/v/o/gate/up/lm_head: one DOT segment of K = 128, two links each),
FFN 1536 lowered with segments of 1024 (down: [0, 1024) of 16 links, then [1024, 1536) of 8
links from its acc input), max_ctx 128 (P·V over the keys, causal 1: links follow `past`).
"""

from __future__ import annotations

import numpy as np
from toy_llama import toy_weights

from referee.execute import Trace, run
from referee.lowering import LlamaShape, llama_program

WIDE = LlamaShape(vocab=40, dim=128, layers=1, heads=4, kv_heads=2, ffn=1536)
WIDE_CTX = 128
WIDE_SEGMENT = 1024
LONG_PROMPT = [int(t) for t in np.random.default_rng(1).integers(0, WIDE.vocab, 70)]


def wide_program(seed: int = 0):
    """(program, weights by root) of the wide toy."""
    w, store, _, _ = toy_weights(seed, WIDE, WIDE_CTX)
    return llama_program(WIDE, w, WIDE_CTX, segment=WIDE_SEGMENT), store


def wide_run(prompt=tuple(LONG_PROMPT), steps: int = 2, seed: int = 0) -> tuple[Trace, dict]:
    """A greedy run; with the 70-token prompt P·V reads 71 keys at step 1 (two links) and
    rows ≥ 64 of step 0 have two links too."""
    prog, store = wide_program(seed)
    return run(prog, store, list(prompt), steps), store


def op_leaf(trace: Trace, name: str, step: int = 1) -> int:
    """The leaf of the first op whose name starts with `name`, at `step`."""
    prog = trace.program
    return step * prog.n_ops + next(i for i, op in enumerate(prog.ops)
                                    if op.name.startswith(name))
