"""The fast executor equals the reference trace executor (referee.execute) leaf by leaf, on
the real SmolLM2 weights (programs cut to 2 layers so the NumPy reference stays fast), with
each way of running a linear's segments (node/ree/linear_chain.py); the trace recorder's
worker-thread hashing gives the reference roots."""

from __future__ import annotations

import numpy as np
import pytest

from node.ree.fastexec import FastExecutor
from node.ree.model import build_program
from node.ree.trace import KeptTrace, TraceRecorder
from referee import execute as ref
from repops.commit import merkle_root


def _compare(prog, weights, toks, steps, chains="auto", tr=None, plan=True):
    fx = FastExecutor(prog, weights, chains=chains, plan=plan)
    fast = []
    rec = TraceRecorder(prog, toks)
    for s in range(steps):
        outs = fx.run_step(s, toks)
        rec.add_step(outs)
        fast += [o.numpy() for o in outs]
    if tr is None:  # the reference trace, computed once per program
        tr = ref.run(prog, weights, toks, steps)
    assert len(fast) == len(tr.outputs)
    for i, (a, b) in enumerate(zip(fast, tr.outputs, strict=True)):
        step, j = divmod(i, prog.n_ops)
        where = f"leaf {i} (step {step}, op {j} {prog.ops[j].name})"
        assert a.shape == b.shape and a.dtype == b.dtype, where
        assert a.tobytes() == b.tobytes(), where
    assert rec.roots == tr.roots
    return fx, tr


@pytest.mark.parametrize("segment,n_prompt,steps", [(64, 9, 3), (16, 21, 4)])
def test_fast_equals_reference_leaf_by_leaf(ree_model, segment, n_prompt, steps):
    """segment 16 makes attention's key chain span several DOT segments in prefill and
    decode (the accumulator-carrying paths of the fast executor). Every chain mode is
    compared: "masked" is the CUDA path, run here on CPU tensors. Decode steps run in the
    step plan (node/ree/step_plan.py, its exact DOT record for fp32 linears) and, with
    plan=False, through the handlers."""
    toks = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28,
            7018, 411, 407, 19712, 8182, 2, 198][:n_prompt]
    w_small = dict(ree_model.weights_by_root())
    # the 48-position program needs 48-row RoPE tables: slice the model's (same values)
    glob_cos, glob_sin = ree_model.weights["rope_cos"], ree_model.weights["rope_sin"]
    from repops.commit import tensor_root_np

    cos, sin = np.ascontiguousarray(glob_cos[:48]), np.ascontiguousarray(glob_sin[:48])
    roots = dict(ree_model.roots)
    roots["rope_cos"], roots["rope_sin"] = tensor_root_np(cos), tensor_root_np(sin)
    prog = build_program(ree_model.config, roots, ree_model.eos, 48, segment=segment,
                         n_layers=2)
    w_small[roots["rope_cos"]], w_small[roots["rope_sin"]] = cos, sin
    tr = None
    for chains, plan in (("auto", True), ("auto", False), ("masked", False), ("off", False)):
        fx, tr = _compare(prog, w_small, toks, steps, chains, tr, plan)
        assert (fx.plan is not None) == plan


def _tiny_program(table, w, segment):
    from referee.layout import JOB_INPUT, SEQ, Code, TraceOp, op_input
    from referee.lowering import Lowering
    from repops.commit import tensor_root_np

    lw = Lowering(segment=segment, max_ctx=8)
    rt, rw = tensor_root_np(table), tensor_root_np(w)
    toks = lw.tokens(0)
    x = lw.embedding(toks, lw.weight(rt, table.shape))
    y = lw.linear(x, lw.weight(rw, w.shape))
    tok = lw.argmax(y, w.shape[0])
    lw.ops[0] = TraceOp(Code.TOKENS, "int32", (SEQ,), (JOB_INPUT, op_input(tok.ref.op, 1)))
    return lw.program(tok), {rt: table, rw: w}


def test_signed_zero_accumulators_are_exact():
    """Chains whose accumulator is -0.0 between segments (an underflowed product) and whose
    later products are -0.0: the fast rewrites give +0.0 there and the re-check must fix it."""
    table = np.zeros((3, 8), np.float32)
    table[0, 0] = -1e-30  # product with 1e-30 underflows to -0.0
    table[1, :] = [1.0, -2.0, 0.5, 3.0, 0.0, 0.0, 0.0, 0.0]
    table[2, 4:] = np.inf
    w = np.array([[1e-30, 0, 0, 0, -1.0, -2.0, -3.0, -4.0],
                  [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    prog, weights = _tiny_program(table, w, segment=4)
    for toks in ([0], [0, 1, 0], [2, 0]):
        for chains in ("panels", "masked", "off"):
            fx, _ = _compare(prog, weights, toks, 2, chains)
            assert fx.fallbacks > 0


def test_recorder_worker_and_kept_trace(tmp_path):
    """Worker-thread hashing == hashing in add_step == the reference roots; a tensor object
    repeated in a step is one leaf per position; kept files hold every leaf's bytes."""
    table = np.arange(24, dtype=np.float32).reshape(3, 8) - 7.5
    w = np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8)
    prog, weights = _tiny_program(table, w, segment=4)
    toks = [0, 2, 1]
    tr = ref.run(prog, weights, toks, 3)
    fx = FastExecutor(prog, weights)
    recs = [TraceRecorder(prog, toks), TraceRecorder(prog, toks, background=False),
            TraceRecorder(prog, toks, keep=tmp_path / "job-1")]
    for s in range(3):
        outs = fx.run_step(s, toks)
        for r in recs:
            r.add_step(outs)
    for r in recs:
        assert r.roots == tr.roots and r.root() == merkle_root(tr.leaves())
    assert recs[2].close() is not None
    kept = KeptTrace(tmp_path / "job-1")
    assert kept.length == len(tr.outputs)
    for i, a in enumerate(tr.outputs):
        assert kept.tensor(i).tobytes() == a.tobytes() and kept.check(i)


def test_fold_trees_on_edge_values():
    """FOLD trees run whole (node/ree/fold_tree.py) equal the reference level by level on
    edge values: a gathered row (a bit copy, so NaN payloads reach the fold uncanonicalised),
    ±0, ±inf, subnormals; widths below, at and above a cap; the causal softmax and the
    folds of the edge program over several decode steps."""
    import sys
    from pathlib import Path

    from referee.layout import JOB_INPUT, SEQ, Code, Dim, TraceOp, op_input
    from referee.lowering import Lowering
    from repops.commit import tensor_root_np

    sys.path.insert(0, str(Path(__file__).parents[1] / "referee"))
    from edge_program import special_program, special_values

    rng = np.random.default_rng(7)
    width = 40
    table = special_values(rng, (4, width), 0.6)
    bits = table.view(np.uint32)
    bits[0, :6] = [0x7FC00001, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x80000000, 0x00000000]
    bits[1, :] = 0x80000000  # a row of -0.0: the sum must stay -0.0
    table[2] = np.arange(width, dtype=np.float32)  # NaNs at 34 then 18 meet at the argmax's
    bits[2, [18, 34]] = 0x7FC00000  # second level: two NaNs, the lower index wins
    lw = Lowering(segment=8, max_ctx=8)
    rt = tensor_root_np(table)
    toks = lw.tokens(0)
    x = lw.embedding(toks, lw.weight(rt, table.shape))
    for w_ in (width, 32, 17, 2, 1):
        part = x if w_ == width else lw.move(x, (SEQ, Dim(w_)), Dim(0), (Dim(width), Dim(1)),
                                              f"first{w_}")
        lw.fold(part, w_, Dim(w_), combine=0, name=f"sum{w_}")
        lw.fold(part, w_, Dim(w_), combine=1, name=f"max{w_}")
        lw.fold(part, w_, Dim(max(1, w_ - 3)), combine=0, name=f"sum_short{w_}")
    tok = lw.argmax(x, width)
    lw.ops[0] = TraceOp(Code.TOKENS, "int32", (SEQ,), (JOB_INPUT, op_input(tok.ref.op, 1)))
    prog = lw.program(tok)
    fx, _ = _compare(prog, {rt: table}, [0, 1, 2, 3], 1)
    assert fx._trees  # the trees did run whole
    prog, store = special_program(seed=3)
    fx, _ = _compare(prog, store, [0, 1], 4)
    assert fx._trees


def test_argmax_tree_on_ties_and_nans():
    """The C argmax tree (repops_argfold_levels, branch-free) equals the reference's pairwise
    rule (referee.ops._winner, RepOps spec §6.11) level by level on rows drawn from few
    values: ties everywhere, ±0, ±inf and NaNs of several payloads (the sampler's J0/j0
    trees read rows of 0/1)."""
    import torch

    from node.ree.fold_tree import ArgTree, ArgTreeRunner
    from referee.ops import _winner

    rng = np.random.default_rng(5)
    pool = np.array([0x7FC00000, 0xFFC00001, 0xFF800000, 0xBF800000, 0x80000000, 0x00000000,
                     0x3F800000, 0x7F800000], dtype=np.uint32)
    caps = (256, 128, 64, 32, 16, 8, 4, 2, 1)
    for width in (300, 257, 256, 3):
        x = pool[rng.integers(0, len(pool), (6, width))].view(np.float32)
        got = ArgTreeRunner(ArgTree(tuple(range(len(caps))), caps, 0)).run(torch.from_numpy(x))
        ids = np.broadcast_to(np.arange(width), x.shape)
        for cap, level in zip(caps, got, strict=True):
            w = ids.shape[1]
            want = ids[:, :min(w, cap)].copy()
            n = max(0, w - cap)
            if n:
                ia, ib = ids[:, :n], ids[:, cap:cap + n]
                va = np.take_along_axis(x.view(np.uint32), ia, 1)  # referee.f32: bits
                vb = np.take_along_axis(x.view(np.uint32), ib, 1)
                want[:, :n] = _winner(va, ia, vb, ib)
            assert np.array_equal(level.numpy(), want), (width, cap)
            ids = want
