"""Batch invariance (issue 4): a job's tokens, trace root and every leaf root are the same
whether it runs alone or in a batch of 1–8 (node/ree/batch.py), and a prefill of n tokens
leaves the same KV-cache and logits bits as feeding them one at a time.

The trace layout has no batch axis (docs/trace-layout.md §L1): each job of a batch keeps its
own trace, so "equal" here means equal to `generate` on the job alone, leaf by leaf.
Batches are rolling (a finished job's slot takes the next prompt), so prefill and decode rows
of different jobs meet in the same weight matmul.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from node.ree.batch import BatchExecutor, Lane, generate_batch
from node.ree.fastexec import FastExecutor
from node.ree.generate import generate, logits_op
from node.ree.sampling import SamplingConfig
from referee.layout import Code

_spec = importlib.util.spec_from_file_location(
    "toy_llama", Path(__file__).parents[1] / "referee" / "toy_llama.py")
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)

SAMPLED = SamplingConfig(temperature=0.8, top_k=10, top_p=0.9, seed=7)


def _same(single, batched):
    assert len(single) == len(batched)
    for i, (a, b) in enumerate(zip(single, batched, strict=True)):
        assert a.tokens == b.tokens, f"job {i}"
        assert a.finish_reason == b.finish_reason, f"job {i}"
        assert a.trace_length == b.trace_length, f"job {i}"
        first = next((k for k, (x, y) in enumerate(zip(a.roots, b.roots, strict=True))
                      if x != y), None)
        assert first is None, f"job {i}: first differing leaf {first}"
        assert a.trace_root == b.trace_root, f"job {i}"


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().numpy().tobytes()


# ------------------------------------------------------------------------------ toy program


@pytest.fixture(scope="module")
def toy_exec():
    w, store, _, _ = toy.toy_weights(0)
    # EOS = a token greedy decoding reaches, so some jobs stop early and leave the batch
    prog = toy.llama_program(toy.TOY, w, toy.MAX_CTX, segment=toy.SEGMENT, eos=26)
    return FastExecutor(prog, store)


def _toy_jobs():
    rng = np.random.default_rng(1)
    prompts = [[int(t) for t in rng.integers(0, toy.TOY.vocab, size=n)]
               for n in (1, 4, 2, 6, 3, 1, 5, 2)]
    budgets = [5, 3, 6, 4, 5, 6, 2, 5]
    configs = [SAMPLED if i % 3 == 1 else SamplingConfig() for i in range(8)]
    return prompts, budgets, configs


def test_toy_batch_sizes_1_to_8(toy_exec):
    prompts, budgets, configs = _toy_jobs()
    single = [generate(toy_exec, p, m, c) for p, m, c in zip(prompts, budgets, configs,
                                                             strict=True)]
    assert any(r.finish_reason == "stop" for r in single)  # EOS drops a job mid-batch
    assert any(r.sampled for r in single)
    bx = BatchExecutor(toy_exec, batch_prefill=True)  # the accelerators' default
    for b in range(1, 9):
        _same(single, generate_batch(bx, prompts, budgets, configs, batch=b))
    # all jobs start together (prefills side by side, then decodes in lockstep)
    _same(single[:5], generate_batch(bx, prompts[:5], budgets[:5], configs[:5]))
    assert bx.batched_calls > 0
    masked = BatchExecutor(toy_exec, masked=True, batch_prefill=True)  # the accelerator path
    for b in (2, 5, 8):
        _same(single, generate_batch(masked, prompts, budgets, configs, batch=b))


def test_toy_prefill_equals_incremental_decode_in_a_batch(toy_exec):
    """Job A prefills n tokens; job B gets the first token as its prompt and is fed the rest
    one per step (§L5.1 TOKENS reads the fed token), sharing its steps with A and with a
    third job: A's step-0 KV caches and logits row equal B's after its last feed."""
    _check_prefill_vs_incremental(toy_exec, [3, 17, 9, 30, 11], [5, 6])


def _check_prefill_vs_incremental(fx, toks, other):
    prog = fx.program
    li = logits_op(prog)
    keep = [j for j, op in enumerate(prog.ops) if op.code == Code.CONCAT] + [li, prog.token_op]
    bx = BatchExecutor(fx)
    full, inc, side = Lane(list(toks)), Lane(list(toks[:1])), Lane(list(other))
    outs_full = bx.run_step([full, inc, side])[0]
    outs_inc = None
    for t in toks[1:]:
        inc.feed = t
        side.feed = None
        outs_inc = bx.run_step([side, inc])[1]
    assert inc.step == len(toks)
    for j in keep:
        assert outs_full[j].shape == outs_inc[j].shape, prog.ops[j].name
        assert _bits(outs_full[j]) == _bits(outs_inc[j]), prog.ops[j].name


def test_signed_zero_accumulators_batched():
    """Accumulators of -0.0 and inf between segments: the batched rewrites may lose the sign
    or make NaN there, so those jobs re-run the op alone (the exactness net)."""
    from referee.layout import JOB_INPUT, SEQ, TraceOp, op_input
    from referee.lowering import Lowering
    from repops.commit import tensor_root_np

    table = np.zeros((3, 8), np.float32)
    table[0, 0] = -1e-30
    table[1, :] = [1.0, -2.0, 0.5, 3.0, 0.0, 0.0, 0.0, 0.0]
    table[2, 4:] = np.inf
    w = np.array([[1e-30, 0, 0, 0, -1.0, -2.0, -3.0, -4.0],
                  [1.0] * 8, [0.0] * 8], np.float32)
    lw = Lowering(segment=4, max_ctx=8)
    rt, rw = tensor_root_np(table), tensor_root_np(w)
    x = lw.embedding(lw.tokens(0), lw.weight(rt, table.shape))
    tok = lw.argmax(lw.linear(x, lw.weight(rw, w.shape)), w.shape[0])
    lw.ops[0] = TraceOp(Code.TOKENS, "int32", (SEQ,), (JOB_INPUT, op_input(tok.ref.op, 1)))
    fx = FastExecutor(lw.program(tok), {rt: table, rw: w})
    prompts = [[0], [0, 1, 0], [2, 0], [1], [2], [0, 2]]
    single = [generate(fx, p, 3) for p in prompts]
    for masked in (False, True):
        bx = BatchExecutor(fx, masked=masked, batch_prefill=True)
        for b in (2, 3, 6):
            _same(single, generate_batch(bx, prompts, 3, batch=b))
        assert bx.reruns > 0


# ------------------------------------------------------------------------------ SmolLM2


@pytest.fixture(scope="module")
def small_exec(ree_model):
    """The real SmolLM2 weights in a 2-layer trace program (48 positions), as in
    test_fastexec: every op kind of the real program, fast enough for 8 batch sizes."""
    from node.ree.model import build_program
    from repops.commit import tensor_root_np

    weights = dict(ree_model.weights_by_root())
    cos = np.ascontiguousarray(ree_model.weights["rope_cos"][:48])
    sin = np.ascontiguousarray(ree_model.weights["rope_sin"][:48])
    roots = dict(ree_model.roots)
    roots["rope_cos"], roots["rope_sin"] = tensor_root_np(cos), tensor_root_np(sin)
    weights[roots["rope_cos"]], weights[roots["rope_sin"]] = cos, sin
    prog = build_program(ree_model.config, roots, ree_model.eos, 48, n_layers=2)
    return FastExecutor(prog, weights)


SMOL_TOKENS = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28]


def _smol_jobs():
    prompts = [SMOL_TOKENS[i:i + 1 + (3 * i) % 7] for i in range(8)]
    budgets = [2, 1, 1, 2, 2, 1, 1, 2]
    configs = [SAMPLED if i == 4 else SamplingConfig() for i in range(8)]
    return prompts, budgets, configs


def test_smollm2_weights_batch_sizes_1_to_8(small_exec):
    prompts, budgets, configs = _smol_jobs()
    single = [generate(small_exec, p, m, c) for p, m, c in zip(prompts, budgets, configs,
                                                               strict=True)]
    bx = BatchExecutor(small_exec, batch_prefill=True)
    for b in range(1, 9):
        _same(single, generate_batch(bx, prompts, budgets, configs, batch=b))


def test_smollm2_full_program_batch(ree_session):
    """The registered 30-layer program: three short raw jobs (one sampled) two at a time,
    so the third job's prefill meets the first one's decode row."""
    fx = ree_session.executor
    prompts, budgets = [[1, 9690, 198], [2683, 359], [28]], [2, 2, 1]
    cfgs = [SamplingConfig(), SAMPLED, SamplingConfig()]
    single = [generate(fx, p, m, c) for p, m, c in zip(prompts, budgets, cfgs, strict=True)]
    bx = BatchExecutor(fx, batch_prefill=True)  # the accelerators' prefills, here on the CPU
    cfg = ree_session.model.config
    assert bx.n_linears == 7 * cfg.n_layers + 1  # q k v o gate up down per layer, lm_head
    _same(single, generate_batch(bx, prompts, budgets, cfgs, batch=2,
                                 max_ctx=ree_session.model.max_ctx))
    assert bx.batched_calls > 0


def test_smollm2_compact_traces_in_a_batch(ree_session):
    """Compact traces (docs/trace-layout.md §L10) committed by batch lanes (the plan's arena
    path, a joining job's prefill) equal the one-job compact traces, which are the full
    traces' roots of the committed ops."""
    from referee.compact import compact_ops

    fx = ree_session.executor
    prompts, budgets = [[1, 9690, 198], [2683, 359], [28, 11]], [3, 2, 3]
    cfgs = [SamplingConfig(), SAMPLED, SamplingConfig()]
    full = [generate(fx, p, m, c) for p, m, c in zip(prompts, budgets, cfgs, strict=True)]
    single = [generate(fx, p, m, c, compact=True)
              for p, m, c in zip(prompts, budgets, cfgs, strict=True)]
    cmap = compact_ops(fx.program)
    for f, c in zip(full, single, strict=True):
        assert c.tokens == f.tokens and c.trace_length == len(f.tokens) * len(cmap)
        assert c.roots == [f.roots[(i // len(cmap)) * fx.program.n_ops + int(cmap[i % len(cmap)])]
                           for i in range(c.trace_length)]
    _same(single, generate_batch(BatchExecutor(fx), prompts, budgets, cfgs, batch=2,
                                 compact=True))


def test_smollm2_joining_job_keeps_the_others_on_the_plan(ree_session):
    """A job joining a running batch prefills apart while the others' decode steps stay on
    the step plan (BatchExecutor.run_step): job 3 takes job 1's place beside the decode
    steps of jobs 0 and 2; every job equals its one-job run."""
    fx = ree_session.executor
    prompts, budgets = [[1, 9690, 198], [2683, 359], [28, 9690], [1, 28]], [3, 1, 3, 2]
    cfgs = [SamplingConfig(), SamplingConfig(), SAMPLED, SamplingConfig()]
    single = [generate(fx, p, m, c) for p, m, c in zip(prompts, budgets, cfgs, strict=True)]
    bx = BatchExecutor(fx)
    _same(single, generate_batch(bx, prompts, budgets, cfgs, batch=3,
                                 max_ctx=ree_session.model.max_ctx))
    assert bx.plan_steps >= 2  # the step job 3 joined, and the next one


def test_smollm2_prefill_equals_incremental_decode_in_a_batch(ree_session):
    """RepOps spec §6.10 through the registered program, batched with another job."""
    toks = ree_session.tokenizer.encode("The quick brown")
    _check_prefill_vs_incremental(ree_session.executor, toks, [1, 9690])


def test_cli_batch_receipts_equal_unbatched(tmp_path, monkeypatch, capsys, ree_session):
    """`ree run --batch 2` over three prompts (rolling) writes the receipts, leaf roots and
    kept traces of the unbatched run byte for byte (the CLI's session is the shared one)."""
    from node.cli import ree as cli

    # the CLI closes the session it opens: hand it the shared one without letting it close it
    monkeypatch.setattr(cli, "_session", lambda *a, **k: contextlib.nullcontext(ree_session))
    monkeypatch.setenv("JUDGE_PRIVATE_KEY",
                       "0xac0974bec39a17e36ba4a4b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    pf = tmp_path / "prompts.jsonl"
    pf.write_text("\n".join(json.dumps(p) for p in ["Hi", {"prompt": "The sky is"}, "Water"]))
    dirs = {}
    for b in (1, 2):
        dirs[b] = tmp_path / f"b{b}"
        assert cli.main(["run", "--prompt-file", str(pf), "--raw", "--max-new-tokens", "1",
                         "--batch", str(b), "--receipt", str(dirs[b]), "--quiet", "--json",
                         "--keep-trace", str(dirs[b] / "trace")]) == 0
        capsys.readouterr()
    for i in range(3):
        for name in (f"{i}.json", f"{i}.json.roots", f"trace/job-{i}.json",
                     f"trace/job-{i}.bin"):
            assert (dirs[1] / name).read_bytes() == (dirs[2] / name).read_bytes(), name
    assert cli.main(["run", "--prompt", "x", "--batch", "0"]) == 2


# ------------------------------------------------------------------------------ CUDA


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_equals_cpu(fx_cpu, prompts, budgets, configs):
    single = [generate(fx_cpu, p, m, c) for p, m, c in zip(prompts, budgets, configs,
                                                           strict=True)]
    fx_gpu = FastExecutor(fx_cpu.program, fx_cpu.np_weights, "cuda")
    for masked in (True, False):
        bx = BatchExecutor(fx_gpu, masked=masked)
        for b in (1, 3, 8):
            _same(single, generate_batch(bx, prompts, budgets, configs, batch=b))


@pytest.mark.gpu
@needs_cuda
def test_cuda_batch_equals_cpu_single_toy(toy_exec):
    """On the GPU a batch's linears run with M = the rows of all jobs (other kernels than
    M = 1 decode), masked (one launch per linear) or per segment: every job's leaves still
    equal its CPU run alone."""
    _cuda_equals_cpu(toy_exec, *_toy_jobs())


@pytest.mark.gpu
@needs_cuda
def test_cuda_batch_equals_cpu_single_smollm2(small_exec):
    _cuda_equals_cpu(small_exec, *_smol_jobs())
