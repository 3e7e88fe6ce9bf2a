"""The fast SAMPLE path (node/ree/fastsample.py) equals the reference trace executor leaf by
leaf (docs/trace-layout.md §L5.10): the toy Llama and edge-value logits rows, greedy and
sampled configs, with and without MERGE levels; CUDA too when there is a GPU."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "referee"))

from sample_program import edge_rows, table_program  # noqa: E402
from toy_llama import MAX_CTX, SEGMENT, TOY, toy_weights  # noqa: E402

from node.ree.fastexec import FastExecutor  # noqa: E402
from referee import execute as ref  # noqa: E402
from referee.layout import JobConfig  # noqa: E402
from referee.lowering import llama_program  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _configs(v: int, n: int, seed: int) -> list[JobConfig]:
    rng = random.Random(seed)
    out = [JobConfig.of(4, 0.0)]
    for _ in range(n - 1):
        out.append(JobConfig.of(4, rng.choice([1e-30, 0.3, 0.7, 1.0, 2.5]),
                                rng.choice([0, 1, 3, v, v + 1]),
                                rng.choice([1.0, 0.9, 0.5, 1e-6]), rng.randrange(1 << 64)))
    return out


def compare(prog, weights, toks, steps, cfg, device="cpu"):
    fx = FastExecutor(prog, weights, device)
    fast = []
    for s in range(steps):
        fast += [o.cpu().numpy() for o in fx.run_step(s, toks, config=cfg)]
    tr = ref.run(prog, weights, toks, steps, config=cfg)
    assert len(fast) == len(tr.outputs)
    for i, (a, b) in enumerate(zip(fast, tr.outputs, strict=True)):
        step, j = divmod(i, prog.n_ops)
        where = f"leaf {i} (step {step}, op {j} {prog.ops[j].name}) {cfg}"
        assert a.shape == b.shape and a.dtype == b.dtype, where
        assert a.tobytes() == b.tobytes(), where
    return tr


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", [256, 4])
def test_toy_llama_fast_equals_reference(device, block):
    w, store, _, _ = toy_weights(1)
    prog = llama_program(TOY, w, MAX_CTX, segment=SEGMENT, sort_block=block)
    for cfg in _configs(TOY.vocab, 4, seed=block):
        compare(prog, store, [5, 2, 11], 3, cfg, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block,v", [(4, 40), (8, 37), (1, 9)])
def test_edge_rows_fast_equals_reference(device, block, v):
    rng = np.random.default_rng(block * 100 + v)
    prog, weights, _ = table_program(edge_rows(rng, v, v), block)
    for i, cfg in enumerate(_configs(v, 6, seed=v)):
        compare(prog, weights, [i % v, int(rng.integers(v))], 3, cfg, device)
