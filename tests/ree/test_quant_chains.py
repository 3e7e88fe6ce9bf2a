"""Weight linears from the GGUF blocks (node/ree/linear_chain.py `QuantChain`) give the trace
of the fp32 weights: leaf by leaf against the reference executor (2-layer SmolLM2 program),
and against the executor without blocks on the whole model (prefill + decode steps, alone
and in a batch). The blocks are the storage of the same ADR 0003 values, and the kernel
stores each output's running §3.1 chain at the §L5.3 segment ends, so nothing may differ."""

from __future__ import annotations

import numpy as np
import pytest

from node.ree import linear_chain as lc
from node.ree.batch import generate_batch
from node.ree.fastexec import FastExecutor
from node.ree.generate import generate
from node.ree.model import build_program
from node.ree.trace import TraceRecorder
from referee import execute as ref
from repops.commit import tensor_root_np

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28]


def _n_quant(fx: FastExecutor) -> int:
    return sum(isinstance(p, lc.QuantChain) for p in fx._panels.values())


def _run(fx: FastExecutor, prog, toks: list[int], steps: int):
    rec, outs = TraceRecorder(prog, toks), []
    for s in range(steps):
        o = fx.run_step(s, toks)
        rec.add_step(o)
        outs += [t.numpy().tobytes() for t in o]
    return outs, rec.roots


def test_two_layers_equal_reference_leaf_by_leaf(ree_model):
    cos = np.ascontiguousarray(ree_model.weights["rope_cos"][:48])
    sin = np.ascontiguousarray(ree_model.weights["rope_sin"][:48])
    roots = dict(ree_model.roots)
    roots["rope_cos"], roots["rope_sin"] = tensor_root_np(cos), tensor_root_np(sin)
    weights = dict(ree_model.weights_by_root())
    weights[roots["rope_cos"]], weights[roots["rope_sin"]] = cos, sin
    toks, steps = PROMPT[:9], 3
    for segment in (64, 48):  # 48: segment ends inside a 32-weight block
        prog = build_program(ree_model.config, roots, ree_model.eos, 48, segment=segment,
                             n_layers=2)
        fx = FastExecutor(prog, weights, quant=ree_model.quant_blocks())
        assert _n_quant(fx) == len(fx._panels) == 2 * 7 + 1  # 7 linears a layer + lm_head
        fast, roots_fast = _run(fx, prog, toks, steps)
        tr = ref.run(prog, weights, toks, steps)
        for i, (a, b) in enumerate(zip(fast, tr.outputs, strict=True)):
            assert a == b.tobytes(), f"leaf {i} (op {prog.ops[i % prog.n_ops].name})"
        assert roots_fast == tr.roots
        assert fx.reruns == 0


def test_whole_model_same_trace_with_and_without_blocks(ree_model):
    prog = ree_model.program
    quant = FastExecutor(prog, ree_model.weights_by_root(), quant=ree_model.quant_blocks())
    assert _n_quant(quant) == 211  # every linear of the step (210 Q4_1 + the Q8_0 lm_head)
    plain = FastExecutor(prog, ree_model.weights_by_root())
    assert _n_quant(plain) == 0
    a, ra = _run(quant, prog, PROMPT, 5)  # prefill (QuantChain on 14 rows) + 4 decode steps
    b, rb = _run(plain, prog, PROMPT, 5)
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
    assert first is None, f"leaf {first} (op {prog.ops[first % prog.n_ops].name})"
    assert ra == rb
    assert quant.fallbacks <= plain.fallbacks
    # a batch (node/ree/batch.py stacks the jobs' rows into one QuantChain call) = alone
    prompts, budgets = [PROMPT, PROMPT[:5], PROMPT[3:]], [3, 2, 3]
    alone = [generate(plain, p, n) for p, n in zip(prompts, budgets, strict=True)]
    batched = generate_batch(quant, prompts, budgets, batch=3)
    for x, y in zip(alone, batched, strict=True):
        assert x.tokens == y.tokens and x.roots == y.roots and x.trace_root == y.trace_root


def test_blocks_under_the_wrong_root_are_refused(ree_model):
    """The executor checks that each root's blocks dequantize to that root's fp32 weight."""
    quant = ree_model.quant_blocks()
    q, k = ree_model.roots["blk.0.attn_q.weight"], ree_model.roots["blk.1.attn_q.weight"]
    quant[q], quant[k] = quant[k], quant[q]
    prog = build_program(ree_model.config, ree_model.roots, ree_model.eos, 2048, n_layers=2)
    with pytest.raises(ValueError, match="do not dequantize"):
        FastExecutor(prog, ree_model.weights_by_root(), quant=quant)
