"""The compact trace commitment (docs/trace-layout.md §L10, ADR 0013): which ops it commits on
the real SmolLM2 program, and that every recorder path commits exactly the full trace's roots
of those ops, in order, under the compact leaves' op hashes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from node.ree.fastexec import FastExecutor
from node.ree.trace import TraceRecorder
from referee.compact import compact_ops, full_index, interior_ops
from referee.layout import Code, Src, Stage
from repops.commit import trace_root

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28]
STEPS = 3


def test_the_rule_on_smollm2(ree_model):
    prog = ree_model.program
    inner = interior_ops(prog)
    cmap = compact_ops(prog)
    assert len(cmap) + int(inner.sum()) == prog.n_ops
    assert not inner[prog.token_op]
    readers: dict[int, list[int]] = {}
    for k, op in enumerate(prog.ops):
        for inp in op.inputs:
            if inp.src == Src.OP and inp.back:
                assert not inner[inp.op], f"op {inp.op} is read by a later step"
            elif inp.src == Src.OP:
                readers.setdefault(inp.op, []).append(k)
    for j, op in enumerate(prog.ops):
        if op.code == Code.CONCAT:  # the KV caches: read by the next step
            assert not inner[j]
        if op.code in (Code.EW, Code.ROPE, Code.GATHER, Code.TOKENS):
            assert not inner[j], op.name
        if op.code == Code.DOT and inner[j]:  # a segment read only by its next segment
            assert all(prog.ops[k].code == Code.DOT for k in readers[j])
        if op.code == Code.SAMPLE and inner[j]:
            assert op.attrs[0] in (Stage.SORT, Stage.MERGE)
    # every linear's last segment is committed: its output leaves the chain
    for j, op in enumerate(prog.ops):
        if op.code == Code.DOT and any(prog.ops[k].code != Code.DOT for k in readers.get(j, [])):
            assert not inner[j], op.name
    assert full_index(cmap, prog.n_ops, len(cmap) + 2) == prog.n_ops + int(cmap[2])


@pytest.fixture(scope="module")
def recorded(ree_model, tmp_path_factory):
    """One run recorded at once by a full recorder and the compact ones of every path."""
    prog = ree_model.program
    fx = FastExecutor(prog, ree_model.weights_by_root(), "cpu", quant=ree_model.quant_blocks())
    keep = tmp_path_factory.mktemp("kept") / "job"
    recs = {"full": TraceRecorder(prog, PROMPT),
            "plan": TraceRecorder(prog, PROMPT, compact=True),
            "inline": TraceRecorder(prog, PROMPT, background=False, compact=True),
            "kept": TraceRecorder(prog, PROMPT, keep=keep, compact=True)}
    feed = None
    with torch.no_grad():
        for s in range(STEPS):
            outs = fx.run_step(s, PROMPT, feed)
            for rec in recs.values():
                rec.add_step(outs)
            feed = int(outs[prog.token_op].reshape(-1)[0])
        # the per-op path (a list of tensors, no plan arena) of the same outputs
        listed = TraceRecorder(prog, PROMPT, compact=True)
        fx.reset()
        feed = None
        for s in range(STEPS):
            outs = fx.run_step(s, PROMPT, feed)
            listed.add_step([outs[i] for i in range(prog.n_ops)])
            feed = int(outs[prog.token_op].reshape(-1)[0])
    recs["listed"] = listed
    for rec in recs.values():
        rec.close()
    return recs, keep


@pytest.mark.parametrize("path", ["plan", "inline", "kept", "listed"])
def test_compact_roots_are_the_full_traces_roots_of_the_committed_ops(ree_model, recorded,
                                                                      path):
    recs, _ = recorded
    full, rec = recs["full"], recs[path]
    prog = ree_model.program
    cmap = rec.cmap
    want = [full.roots[full_index(cmap, prog.n_ops, i)] for i in range(STEPS * len(cmap))]
    assert rec.length == len(want)
    assert rec.roots == want
    hashes = [rec.leaf_op_hashes[i % len(cmap)] for i in range(len(want))]
    assert rec.root() == trace_root(hashes, want)
    assert rec.root() != full.root()
    step, op = divmod(full_index(cmap, prog.n_ops, len(cmap) + 5), prog.n_ops)
    assert (step, op) == (1, int(cmap[5]))


def test_a_kept_compact_trace_keeps_the_full_trace(recorded):
    recs, keep = recorded
    meta = json.loads(keep.with_name(keep.name + ".json").read_text())
    full = recs["full"]
    assert meta["trace_root"] == full.root().hex()
    assert meta["roots"] == [r.hex() for r in full.roots]
    assert meta["compact"]["trace_root"] == recs["kept"].root().hex()
    assert np.array_equal(meta["compact"]["ops"], recs["kept"].cmap)
