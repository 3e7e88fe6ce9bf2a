"""The sampling tail of the trace program (docs/trace-layout.md §L5.10) chooses exactly the
RepOps spec §7.3 token: the PICK leaf of every step equals `repops.sample.sample_token` (and
`greedy_token` for T = 0) on that step's logits leaf, for the toy Llama and for logits rows
full of ties, ±0, ±inf and NaN, with and without MERGE levels."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from sample_program import edge_rows, table_program
from toy_llama import MAX_CTX, SEGMENT, TOY, toy_weights

from referee.execute import run
from referee.layout import Code, JobConfig, Stage
from referee.lowering import llama_program
from repops.sample import SamplingConfig, greedy_token, sample_token

TEMPS = [0.0, -0.0, 1e-3, 1e-30, 0.7, 1.0, 2.0]
TOPPS = [1.0, 0.9, 0.5, 1e-6]


def _f(bits: int) -> float:
    return float(np.array(bits, np.uint32).view(np.float32))


def _oracle(row: np.ndarray, cfg: JobConfig, step: int) -> int:
    z = torch.from_numpy(np.ascontiguousarray(row.reshape(-1)))
    if cfg.greedy:
        return greedy_token(z)
    sc = SamplingConfig(_f(cfg.temperature), cfg.top_k, _f(cfg.top_p), cfg.seed)
    return sample_token(z, sc, step)


def _configs(v: int, n: int, seed: int) -> list[JobConfig]:
    rng = random.Random(seed)
    ks = [0, 1, 5, v, v + 7]
    return [JobConfig.of(4, rng.choice(TEMPS), rng.choice(ks), rng.choice(TOPPS),
                         rng.randrange(1 << 64)) for _ in range(n)]


def _check_tokens(prog, tr, logits_op: int) -> None:
    p = prog.n_ops
    toks = tr.output_tokens()
    for s, tok in enumerate(toks):
        want = _oracle(tr.outputs[s * p + logits_op], tr.config, s)
        assert tok == want, f"step {s} config {tr.config}"


def test_token_op_is_pick():
    w, _, _, _ = toy_weights(0)
    prog = llama_program(TOY, w, MAX_CTX, segment=SEGMENT)
    last = prog.ops[prog.token_op]
    assert last.code == Code.SAMPLE and last.attrs[0] == Stage.PICK
    assert prog.ops[0].inputs[1].op == prog.token_op  # TOKENS reads PICK one step back


@pytest.mark.parametrize("block", [256, 4])
def test_toy_llama_pick_equals_sample_token(block):
    w, store, _, _ = toy_weights(0)
    prog = llama_program(TOY, w, MAX_CTX, segment=SEGMENT, sort_block=block)
    li = next(j for j, op in enumerate(prog.ops) if op.code == Code.ARGFOLD) - 1
    assert prog.ops[li].name.startswith("lm_head")
    for cfg in _configs(TOY.vocab, 6, seed=block):
        tr = run(prog, store, [3, 7, 1], 3, config=cfg)
        _check_tokens(prog, tr, li)


@pytest.mark.parametrize("block,v", [(4, 40), (8, 37), (64, 33), (1, 9), (256, 40)])
def test_edge_rows_pick_equals_sample_token(block, v):
    rng = np.random.default_rng(v * 1000 + block)
    table = edge_rows(rng, v, v)  # token t's next logits are row t: every row gets visited
    prog, weights, li = table_program(table, block)
    for i, cfg in enumerate(_configs(v, 10, seed=block + v)):
        tr = run(prog, weights, [int(rng.integers(v)), i % v], 4, config=cfg)
        _check_tokens(prog, tr, li)


def test_exact_ties_and_signed_zero_top_keep_index_order():
    """A row whose maximum is a tie of −0 and +0 (and later equal values): §7.3 step 3 keeps
    ascending index order, whatever block the tokens fall in."""
    v = 24
    row = np.full(v, -5.0, np.float32)
    row[[3, 17, 9]] = [-0.0, 0.0, -0.0]
    table = np.tile(row, (v, 1))
    prog, weights, li = table_program(table, 4)
    for seed in range(8):
        cfg = JobConfig.of(3, 1.0, 0, 1.0, seed)
        tr = run(prog, weights, [1], 3, config=cfg)
        _check_tokens(prog, tr, li)
        order = tr.outputs[prog.ops[prog.token_op].inputs[2].op].reshape(-1) & 0xFFFFFFFF
        assert list(order[:3]) == [3, 9, 17]
