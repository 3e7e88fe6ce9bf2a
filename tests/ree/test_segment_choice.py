"""The DOT segment length (docs/trace-layout.md §L8, ADR 0012) is trace granularity, not
arithmetic: a segment chain is the spec's one §3.1 chain cut at other k, so the SmolLM2
programs at 64 and 192 must give the same logits, bit for bit, and the same tokens, while
committing different trace programs."""

from __future__ import annotations

import pytest
import torch

from node.ree.fastexec import FastExecutor
from node.ree.generate import logits_op
from node.ree.model import build_program

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28]


def _run(model, segment: int, steps: int) -> tuple[list[bytes], list[int], int]:
    prog = build_program(model.config, model.roots, model.eos, model.max_ctx, segment=segment)
    fx = FastExecutor(prog, model.weights_by_root(), "cpu", quant=model.quant_blocks())
    lo, logits, toks = logits_op(prog), [], []
    with torch.no_grad():
        for s in range(steps):
            outs = fx.run_step(s, PROMPT)
            logits.append(outs[lo].numpy().tobytes())
            toks.append(int(outs[prog.token_op].reshape(-1)[0]))
    assert fx.fallbacks == 0
    return logits, toks, prog.n_ops


@pytest.fixture(scope="module")
def at_64(ree_model):
    return _run(ree_model, 64, 3)


@pytest.mark.parametrize("segment", [192, 576])
def test_longer_segments_compute_the_same_logits(ree_model, at_64, segment):
    """576 = K of six linears a layer and of the lm_head: each is one DOT op, a chain of one
    segment on the executor's quantized path."""
    base, toks64, _ = at_64
    got, toks, _ = _run(ree_model, segment, 3)
    assert toks == toks64
    assert got == base  # prefill and two decode steps (the step plan), every bit


def test_segment_192_program_size(ree_model, at_64):
    p64 = at_64[2]
    p192 = build_program(ree_model.config, ree_model.roots, ree_model.eos, ree_model.max_ctx,
                         segment=192).n_ops
    # per layer six K = 576 linears (9 segments at 64, 3 at 192), one K = 1536 (24, 8) and
    # p·v over the keys (⌈max_ctx / segment⌉); the lm_head is K = 576
    keys = -(-ree_model.max_ctx // 64) + (ree_model.max_ctx // -192)
    assert p64 - p192 == ree_model.config.n_layers * (6 * 6 + 16 + keys) + 6
