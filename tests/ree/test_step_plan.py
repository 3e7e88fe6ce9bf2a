"""The step plan (node/ree/step_plan.py, repops/cpu/csrc/repops_step_plan.c) runs a CPU decode
step's prefix in one C call: every leaf must equal the op-by-op handlers' (themselves checked
against the reference executor in test_fastexec / test_quant_chains, where the plan also runs
against `referee.execute` on 2-layer programs), on the whole SmolLM2 program, greedy and
sampled; the recorder's arena path gives the same roots as the per-tensor path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from node.ree.fastexec import FastExecError, FastExecutor, StepState, _HostTail
from node.ree.sampling import SamplingConfig
from node.ree.step_plan import StepOutputs, StepPlan, rows_of, token_of
from node.ree.step_plan import job_words as sp_job_words
from node.ree.trace import TraceRecorder
from referee.layout import Code, Symbols

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28]


@pytest.fixture(scope="module")
def executors(ree_model):
    w, q = ree_model.weights_by_root(), ree_model.quant_blocks()
    return (FastExecutor(ree_model.program, w, quant=q),
            FastExecutor(ree_model.program, w, quant=q, plan=False))


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()


def test_plan_covers_the_whole_step_with_the_sampler(executors):
    """The CPU plan lowers every op of a SmolLM2 decode step, the SAMPLE tail included; a
    plan without `sample` (the CUDA plan's records) stops at the first ARGFOLD."""
    planned, plain = executors
    prog = planned.program
    first_tail = next(j for j, op in enumerate(prog.ops)
                      if op.code in (Code.ARGFOLD, Code.SAMPLE))
    assert planned.plan is not None and planned.plan.tail == prog.n_ops
    assert planned.plan.samples
    assert plain.plan is None
    no_sample = StepPlan(prog, planned.np_weights, planned._chains, planned._panels,
                         planned._trees, sample=False)
    assert no_sample.tail == first_tail and not no_sample.samples


@pytest.mark.parametrize("sampling", [SamplingConfig(),
                                      SamplingConfig(0.8, 40, 0.9, seed=11),
                                      SamplingConfig(1.3, 0, 1.0, seed=12)])
def test_plan_equals_handlers_leaf_by_leaf(executors, sampling):
    """Prefill, then decode steps fed by the previous token (feed None: the TOKENS op reads
    the previous step's token op) on both executors; every output's dtype, shape and bits."""
    planned, plain = executors
    prog = planned.program
    config = sampling.job_config(8)
    for ex in executors:
        ex.reset()
    for step in range(5):
        a = planned.run_step(step, PROMPT, config=config)
        b = plain.run_step(step, PROMPT, config=config)
        assert isinstance(a, StepOutputs) == (step > 0)
        assert len(a) == len(b) == prog.n_ops
        for j, (x, y) in enumerate(zip(a, b, strict=True)):
            where = f"step {step} op {j} ({prog.ops[j].name})"
            assert x.dtype == y.dtype and x.shape == y.shape, where
            assert _bits(x) == _bits(y), where


def test_recorder_arena_path_gives_the_per_tensor_roots(executors):
    """The arena path (parts hashed by the worker and, when the executor would wait, by the
    executor's thread), the per-tensor worker path and inline per-leaf hashing agree; the
    prefill (> _BIG_STEP bytes) is hashed in parts too."""
    from node.ree import trace

    planned, _ = executors
    prog = planned.program
    planned.reset()
    recs = [TraceRecorder(prog, PROMPT), TraceRecorder(prog, PROMPT),
            TraceRecorder(prog, PROMPT, background=False)]
    for step in range(6):
        outs = planned.run_step(step, PROMPT)
        if step == 0:
            assert sum(t.nbytes for t in outs) > trace._BIG_STEP
        recs[0].add_step(outs)
        recs[1].add_step(list(outs))  # a plain list: the per-tensor path
        recs[2].add_step(outs)
    assert recs[0].roots == recs[1].roots == recs[2].roots
    assert recs[0].root() == recs[2].root()
    for r in recs:
        r.close()


def test_kv_cache_leaves_are_reused_only_for_the_same_bytes(executors):
    """The arena path takes an appended KV cache's full chunks' leaves from the last step
    (`TraceRecorder.known_leaves`): its roots equal inline hashing's; and a cache whose old
    rows changed in the arena (an executor that rewrote history) is hashed from its bytes."""
    planned, _ = executors
    prog, apps = planned.program, planned.plan.appends
    assert len(apps) == 60 and all(prog.ops[j].code == Code.CONCAT for j in apps)
    planned.reset()
    fast, inline = TraceRecorder(prog, PROMPT), TraceRecorder(prog, PROMPT, background=False)
    known = []
    for step in range(5):
        outs = planned.run_step(step, PROMPT)
        if step == 4:  # flip a bit of row 0 of the first K cache, in the arena
            outs.arena[int(outs.offs[apps[0]]) + 5] ^= 1
        fast.add_step(outs)
        inline.add_step(outs)
        if step:
            known.append(fast._pending[-1][1]._args[5])  # leaves known per distinct leaf
    assert fast.roots == inline.roots
    assert not known[0].any()  # after the prefill: nothing to reuse
    assert all(k[k > 0].size == 60 for k in known[1:3])  # every cache, every later step
    assert known[3][known[3] > 0].size == 59  # the rewritten cache was hashed from its bytes
    for r in (fast, inline):
        r.close()


def test_a_replaced_output_is_what_gets_committed_and_read(executors):
    """Setting an output after the step (what a cheating executor does in test_cli) must
    reach the recorder and the next step's back-references, not the arena's bits."""
    planned, _ = executors
    prog = planned.program
    planned.reset()
    planned.run_step(0, PROMPT)
    outs = planned.run_step(1, PROMPT)
    honest = TraceRecorder(prog, PROMPT, background=False)
    honest.add_step(outs)
    j = next(j for j, op in enumerate(prog.ops) if op.code == Code.CONCAT)
    t = outs[j].clone()
    t.view(-1)[0] += 1.0
    outs[j] = t
    assert j in outs.replaced
    cheat = TraceRecorder(prog, PROMPT)
    cheat.add_step(outs)
    diff = [i for i, (x, y) in enumerate(zip(honest.roots, cheat.roots, strict=True)) if x != y]
    assert diff == [j]
    nxt = planned.run_step(2, PROMPT)  # its CONCAT j starts with the replaced cache
    assert _bits(nxt[j].reshape(-1)[:1]) == _bits(t.reshape(-1)[:1])


def test_a_failing_record_names_the_op(executors):
    """A decode step without the previous step's KV caches: the CONCAT record refuses, and
    the error names the op and the step."""
    planned, _ = executors
    planned.reset()
    planned.prev = [None] * planned.program.n_ops
    with pytest.raises(FastExecError, match=r"op \d+ \(.*Concat.*\): CONCAT: lengths at step 1"):
        planned.run_step(1, PROMPT, feed_token=5)
    planned.reset()


def test_jobs_stacked_in_the_plan_equal_single_runs(executors):
    """node/ree/batch.py runs the decode steps of several jobs through one plan call (the
    weight linears stacked over the jobs' rows): prompts of different lengths (each job at
    its own position), one sampled, one stopping early; tokens, every root and the trace
    root equal the jobs run alone."""
    from node.ree.batch import BatchExecutor, generate_batch
    from node.ree.generate import generate

    planned, _ = executors
    prompts = [PROMPT, PROMPT[:5], PROMPT[3:11]]
    budgets = [4, 2, 4]
    cfgs = [SamplingConfig(), SamplingConfig(0.8, 40, 0.9, seed=3), SamplingConfig()]
    single = [generate(planned, p, m, c) for p, m, c in zip(prompts, budgets, cfgs, strict=True)]
    bx = BatchExecutor(planned)
    batched = generate_batch(bx, prompts, budgets, cfgs, batch=3)
    assert bx.plan_steps >= 2
    for a, b in zip(single, batched, strict=True):
        assert a.tokens == b.tokens and a.roots == b.roots and a.trace_root == b.trace_root


@pytest.mark.parametrize("sampling", [SamplingConfig(), SamplingConfig(0.8, 40, 0.9, seed=5)])
def test_tail_only_executor_gives_the_tail_leaves(executors, ree_model, sampling):
    """A CUDA executor runs the SAMPLE tail on the host (`_HostTail`): from the first ARGFOLD
    on (where the CUDA plan stops), as a CPU plan whose external input is the logits, and
    through the handlers of an executor of the ops from there on when it has no plan. Both,
    fed the step's prefix, give the op-by-op executor's tail bit for bit; the executor
    refuses the ops before."""
    planned, plain = executors
    prog = planned.program
    tail = next(j for j, op in enumerate(prog.ops) if op.code in (Code.ARGFOLD, Code.SAMPLE))
    host = _HostTail(FastExecutor(prog, ree_model.weights_by_root(), plan=False,
                                  ops_from=tail), tail)
    assert host.plan is not None and host.plan.start == tail
    assert host.plan.external == [tail - 1]  # the logits
    assert not host.ex.buffers and all(r not in host.ex.weights for r in planned.buffers)
    by_handlers = _HostTail(host.ex, tail)
    by_handlers.plan = None
    config = sampling.job_config(8)
    plain.reset()
    plain_prev = None
    for step in range(3):
        a = plain.run_step(step, PROMPT, config=config)
        if not step:
            plain_prev = a
            continue
        st = StepState(Symbols.for_step(len(PROMPT), step), step, PROMPT, config)
        # a prefix as a step plan's outputs, the CUDA plan's way: the tail is attached
        # (`run` of a greedy job: the argmax at once, the rest of the tail on a worker)
        head = StepPlan(prog, planned.np_weights, planned._chains, planned._panels,
                        planned._trees, sample=False)
        prefix, single, *pair = (head.run(st.sym, plain_prev,
                                          planned.plan_token(plain_prev, None), 1)
                                 for _ in range(4))
        outs = [h.run([a[i] for i in range(tail)], tail, st, None)
                for h in (host, by_handlers)]
        outs += host.run_many([[a[i] for i in range(tail)], prefix], [st, st], 2)
        outs.append(host.run(single, tail, st, None))
        # a batch of step-plan prefixes: greedy jobs get the argmax at once, the rest of
        # their tails in one call on the worker (`_HostTail._rest`)
        outs += host.run_many(pair, [st, st], 2)
        assert (single._tail_pending is not None) == (config.temperature == 0)
        assert all((o._tail_pending is not None) == (config.temperature == 0) for o in pair)
        # a greedy job's token as an int, known with the argmax (`token_of`)
        want = int(a[prog.token_op].reshape(-1)[0])
        for o in (single, *pair):
            assert (o.token is not None) == (config.temperature == 0)
            assert token_of(o, prog.token_op) == want
        assert prefix.host_tail is not None and len(prefix) == prog.n_ops
        recs = [TraceRecorder(prog, PROMPT) for _ in range(3)]
        recs[0].add_step(prefix)  # the arena path, the attached tail's tensors after it
        recs[1].add_step(list(a))
        recs[2].add_step(single)
        assert recs[0].roots == recs[1].roots == recs[2].roots
        for got in outs:
            assert len(got) == prog.n_ops
            for j in range(tail, prog.n_ops):
                assert got[j].dtype == a[j].dtype and got[j].shape == a[j].shape, j
                assert _bits(got[j]) == _bits(a[j]), j
        # an executor that replaces its token (a cheat the tests play) is read as replaced
        single[prog.token_op] = a[prog.token_op] + 1
        assert single.token is None and token_of(single, prog.token_op) == want + 1
        plain_prev = a
    with pytest.raises(FastExecError, match="ops_from"):
        host.ex.run_step(0, PROMPT)


def test_tails_laid_out_together_equal_each_alone(executors, ree_model):
    """A batch's host tails share one buffer (`StepPlan._batch`: each job's arena a row, the
    logits copied in by one copy when they are rows of one tensor, `rows_of`): every job's
    tail leaves, and its token read for all jobs at once (`PreparedJobs.column`), equal the
    same job laid out and run alone; each job keeps its own words (here its own seed)."""
    planned, _ = executors
    prog = planned.program
    tail = next(j for j, op in enumerate(prog.ops) if op.code in (Code.ARGFOLD, Code.SAMPLE))
    plan = _HostTail(FastExecutor(prog, ree_model.weights_by_root(), plan=False,
                                  ops_from=tail), tail).plan
    (ext,) = plan.external
    shape = tuple(planned.run_step(0, PROMPT)[ext][-1:].shape)
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn((3, *shape), generator=gen) * 4
    cfgs = [SamplingConfig(0.8, 40, 0.9, seed=s).job_config(8) for s in (1, 2, 3)]
    sym = Symbols.for_step(len(PROMPT), 2)
    steps = [(sym, (), 0, sp_job_words(c, 2)) for c in cfgs]
    rows = plan.prepare_jobs(steps, [{ext: logits[b]} for b in range(3)])
    assert rows.rows is not None and rows_of([logits[b] for b in range(3)]) is not None
    apart = plan.prepare_jobs(steps, [{ext: logits[b].clone()} for b in range(3)])
    assert rows_of([logits[b] for b in (0, 2)]) is None  # not consecutive: a copy a job
    alone = [plan.prepare_jobs([s], [{ext: logits[b]}]) for b, s in enumerate(steps)]
    # read where they lie (a stack's pinned rows): no copy in the jobs' arenas
    placed = plan.prepare_jobs(steps, [{ext: logits[b]} for b in range(3)], in_place=True)
    assert placed.read_in_place and not rows.read_in_place
    assert not plan.prepare_jobs(steps, [{ext: logits[b].clone()} for b in range(3)],
                                 in_place=True).read_in_place  # not rows of one tensor
    o, n = int(placed.outputs[0].offs[ext]), int(placed.outputs[0].nbytes[ext])
    placed.rows[:, o:o + n] = 0xFF  # what a copy would have overwritten: NaNs
    for jobs in (rows, apart, placed, *alone):
        plan.run_prepared(jobs, 0, plan.n_records, 2)
    for b in range(3):
        want = alone[b].outputs[0]
        for got in (rows.outputs[b], apart.outputs[b], placed.outputs[b]):
            for j in range(tail, prog.n_ops):
                assert _bits(got[j]) == _bits(want[j]), (b, j)
        assert _bits(rows.column(plan.early_op)[b]) == _bits(want[plan.early_op])
    assert alone[0].column(plan.early_op) is None
    # the jobs' tails differ, so rows or words mixed up between jobs would show above
    assert any(_bits(alone[0].outputs[0][j]) != _bits(alone[1].outputs[0][j])
               for j in range(tail, prog.n_ops))


def test_prefill_on_host_feeds_the_next_step(executors):
    """`fastexec.HOST_PREFILL`'s path (`FastExecutor._prefill_on_host`, for CUDA executors),
    driven here on a CPU executor: step 0 comes from a second, CPU executor of the same
    program, and the step after decodes from the outputs it keeps (`kept_on_device`): every
    output of both steps equals the executor's own run (tests/ree/test_step_plan_cuda.py
    runs the CUDA case)."""
    planned, _ = executors
    planned.reset()
    want = [[t.clone() for t in planned.run_step(s, PROMPT)] for s in range(2)]
    planned.reset()
    got = [[t.clone() for t in planned._prefill_on_host(PROMPT, None, None)]]
    assert planned._host_ex is not None and planned._host_ex is not planned
    kept = [i for i, t in enumerate(planned.prev) if t is not None]
    assert kept and len(kept) < len(want[0])  # the KV caches and the token op only
    got.append([t.clone() for t in planned.run_step(1, PROMPT)])
    for s in range(2):
        for j, (a, b) in enumerate(zip(want[s], got[s], strict=True)):
            assert a.dtype == b.dtype and a.shape == b.shape and _bits(a) == _bits(b), (s, j)
    planned._host_ex = None


@pytest.mark.parametrize("head_dim", [8, 12])
def test_transposing_move_tiles_equal_the_reference(head_dim):
    """The V cache's per-head transpose (a MOVE whose input's next-to-last stride is 1) runs
    in tiles of 8 output rows (repops_step_plan.c `move_transposed`): a head of 8 rows is one
    whole tile, one of 12 a whole tile and a tail of 4, over two KV heads; every leaf of the
    plan's decode steps must equal the reference executor's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "referee"))
    from toy_llama import MAX_CTX, SEGMENT, toy_weights

    from referee import execute as ref
    from referee.lowering import LlamaShape, llama_program

    shape = LlamaShape(vocab=40, dim=4 * head_dim, layers=1, heads=4, kv_heads=2, ffn=24)
    w, store, _, _ = toy_weights(3, shape)
    prog = llama_program(shape, w, MAX_CTX, segment=SEGMENT)
    vt = [op for op in prog.ops if op.code == Code.MOVE and op.name.endswith("/vt")]
    assert vt, "the toy program has the V transpose"
    fx = FastExecutor(prog, store)
    toks, steps = [5, 2, 11, 7], 6
    fast = []
    for s in range(steps):
        out = fx.run_step(s, toks)
        assert isinstance(out, StepOutputs) == (s > 0)  # decode steps run the plan
        fast += [o.cpu().numpy() for o in out]
    tr = ref.run(prog, store, toks, steps)
    for i, (a, b) in enumerate(zip(fast, tr.outputs, strict=True)):
        step, j = divmod(i, prog.n_ops)
        where = f"step {step} op {j} ({prog.ops[j].name})"
        assert a.shape == b.shape and a.dtype == b.dtype, where
        assert a.tobytes() == b.tobytes(), where


def test_align_linear_inputs_keep_every_leaf_and_root(ree_model, executors):
    """step_plan.ALIGN_LINEAR_INPUTS (the CUDA plans' layout for vector loads of a linear's x):
    every decode linear's x starts 16-byte aligned and every int64 output 8-byte aligned at
    every position, every offset stays affine in the position (a CUDA graph's table is),
    no two outputs overlap, and the steps' outputs and trace root are those of the
    back-to-back layout."""
    planned, _ = executors
    w, q = ree_model.weights_by_root(), ree_model.quant_blocks()
    aligned = FastExecutor(ree_model.program, w, quant=q)
    plan = aligned.plan
    plan.align_linear_inputs = True
    xs = sorted(plan.linear_inputs)
    assert len(xs) >= 4 * 30  # per layer: q·k·v, o, gate·up, down
    wide = [i for i in range(plan.tail) if plan._esize[i] == 8]
    got = [plan.layout(Symbols(1, p)) for p in (3, 4, 5, 6, 40)]
    offs = [g[2] for g in got]
    assert all((o[xs] % 16 == 0).all() and (o[wide] % 8 == 0).all() for o in offs)
    assert (offs[1] - offs[0] == offs[3] - offs[2]).all()
    assert ((offs[4] - offs[0]) * 1 == (offs[1] - offs[0]) * 37).all()
    for _, nb, o in got:
        assert (o[1:] >= o[:-1] + nb[:-1]).all()
    assert not (offs[0] == planned.plan.layout(Symbols(1, 3))[2]).all()
    roots = []
    for ex in (planned, aligned):
        ex.reset()
        rec = TraceRecorder(ex.program, PROMPT)
        got = []
        for step in range(4):
            out = ex.run_step(step, PROMPT)
            got.append([_bits(t) for t in out])
            rec.add_step(out)
        roots.append((rec.root(), got))
        rec.close()
    assert roots[0][1] == roots[1][1]
    assert roots[0][0] == roots[1][0]


def test_decode_layout_lines_equal_the_full_layout(ree_model):
    """A decode step's layout as lines in the position (`StepPlan._decode_lines`, the CUDA
    plans' aligned layout: C + K·past for dims, sizes and offsets) gives the arrays of the
    full computation at every position of the context."""
    w, q = ree_model.weights_by_root(), ree_model.quant_blocks()
    plan = FastExecutor(ree_model.program, w, quant=q).plan
    plan.align_linear_inputs = True
    lines = plan._decode_lines()
    assert lines is not None and lines[0] == 1 and lines[1] >= 2048
    positions = range(1, 2049)
    fast = [plan._layout(Symbols(1, p)) for p in positions]
    plan._lines = ()  # the full computation from here on
    for p, got in zip(positions, fast, strict=True):
        want = plan._layout(Symbols(1, p))
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), p
    assert not np.array_equal(fast[0][2], fast[1][2])  # the offsets move with the position
