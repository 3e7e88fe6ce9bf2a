"""The CUDA step plan (node/ree/step_plan_cuda.py, repops/gpu/step_kernels.py) runs a decode
step's records as Triton kernels into one device arena, replayed as CUDA graphs: every leaf
must equal the CPU plan's (itself equal to the op-by-op handlers and the reference executor:
test_step_plan.py), on the whole SmolLM2 program, greedy and sampled, and the recorder's roots
of the device arena must equal the CPU recorder's. Without a GPU, the first layer's records
run under the Triton interpreter (interp_step_plan_cuda.py in a child process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from node.ree import step_plan_cuda
from node.ree.batch import generate_batch
from node.ree.fastexec import FastExecutor
from node.ree.sampling import SamplingConfig
from node.ree.step_plan import StepOutputs
from node.ree.trace import TraceRecorder
from referee.layout import Code

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def executors(ree_model):
    w, q = ree_model.weights_by_root(), ree_model.quant_blocks()
    return FastExecutor(ree_model.program, w, quant=q), FastExecutor(ree_model.program, w,
                                                                     "cuda")


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().numpy().tobytes()


@needs_cuda
@pytest.mark.parametrize(("sampling", "fused"),
                         [(SamplingConfig(), ""), (SamplingConfig(0.8, 40, 0.9, seed=11), ""),
                          (SamplingConfig(), "linears"), (SamplingConfig(), "linears+moves"),
                          (SamplingConfig(0.8, 40, 0.9, seed=11), "linears+moves+ew")],
                         ids=["greedy", "sampled", "fused-linears", "fused-moves", "fused-all"])
def test_cuda_plan_equals_cpu_plan_leaf_by_leaf(executors, sampling, fused, monkeypatch):
    """`fused`: q, k, v and gate, up as one launch each (`step_plan_cuda.fuse_linears`);
    MOVEs inside their producers' launches (`fuse_moves`); the residual adds inside the
    RMSNorms' launches and SiLU·up in one (`fuse_ew`)."""
    cpu, gpu = executors
    # grids sized for positions 15, 31, …: the steps cross from one graph's grids to the next
    monkeypatch.setattr(step_plan_cuda, "GRID_MIN", 16)
    monkeypatch.setattr(gpu.plan, "fuse_linears", "linears" in fused)
    monkeypatch.setattr(gpu.plan, "fuse_moves", "moves" in fused)
    monkeypatch.setattr(gpu.plan, "fuse_ew", "ew" in fused)
    gpu.plan._graph = None
    prog = cpu.program
    first_tail = next(j for j, op in enumerate(prog.ops) if op.code in (Code.ARGFOLD, Code.SAMPLE))
    # the CUDA plan stops where the SAMPLE tail starts; the tail runs as a host plan
    assert gpu.plan is not None and gpu.plan.tail == first_tail
    assert gpu._host is not None and gpu._host.plan is not None
    config = sampling.job_config(8)
    for ex in executors:
        ex.reset()
    for step in range(6):
        a = cpu.run_step(step, PROMPT, config=config)
        b = gpu.run_step(step, PROMPT, config=config)
        assert isinstance(b, StepOutputs) == (step > 0)
        bad = next(((j, x, y) for j, (x, y) in enumerate(zip(a, b, strict=True))
                    if x.dtype != y.dtype or tuple(x.shape) != tuple(y.shape)
                    or _bits(x) != _bits(y)), None)
        assert bad is None, f"step {step} op {bad[0]} ({prog.ops[bad[0]].name})"
    # decode steps from the third on replay a captured CUDA graph (step_plan_cuda._Graphs)
    assert gpu.plan.graph_error is None and gpu.plan.graph_steps >= 5
    assert {b for _k, b in gpu.plan._graph.graphs} == {0, 1}
    seq = gpu.plan._graph.launches(0, 20)
    parts = [ln.consts.get("PARTS", 1) for ln in seq
             if ln.kernel is step_plan_cuda.sk.qchain_v8_kernel]
    n_layers = sum(op.code == Code.CONCAT for op in prog.ops) // 2
    linears = "linears" in fused
    assert parts.count(3) == (n_layers if linears else 0)  # q, k, v
    assert parts.count(2) == (n_layers if linears else 0)  # gate, up
    # q's heads into its ROPE, k's and v's into their CONCATs, the merge into the transpose;
    # a paired K and V append (`fuse_pairs`) is one launch running both halves' MOVEs
    sk = step_plan_cuda.sk
    moved = sum(2 if ln.kernel is sk.concat_kernel and ln.consts.get("PAIR") else 1
                for ln in step_plan_cuda.launched(seq)
                if "THEN" in ln.consts and ln.kernel is not sk.ew_kernel)
    assert moved == (4 * n_layers if "moves" in fused else 0)
    # each layer's two residual adds, but the last layer's second: the final RMSNorm reads
    # the last row's copy of it (a MOVE between them)
    pre = sum("PRE" in ln.consts for ln in seq)
    assert pre == (2 * n_layers - 1 if "ew" in fused else 0)
    gpu.plan._graph = None  # the next tests build graphs with the module's settings


def _steps_equal(cpu: FastExecutor, gpu: FastExecutor, n: int) -> None:
    """The first n steps of PROMPT on both executors, every leaf's shape and bits equal."""
    prog = cpu.program
    cpu.reset()
    gpu.reset()
    for step in range(n):
        a = cpu.run_step(step, PROMPT)
        b = gpu.run_step(step, PROMPT)
        bad = next((j for j, (x, y) in enumerate(zip(a, b, strict=True))
                    if tuple(x.shape) != tuple(y.shape) or _bits(x) != _bits(y)), None)
        assert bad is None, f"step {step} op {bad} ({prog.ops[bad].name})"


def _switched_gpu(ree_model, monkeypatch, **switches) -> FastExecutor:  # noqa: ANN001
    """A CUDA executor built (as `ree run` builds it) with step_plan_cuda's `switches`."""
    for name, value in switches.items():
        monkeypatch.setattr(step_plan_cuda, name, value)
    return FastExecutor(ree_model.program, ree_model.weights_by_root(), "cuda",
                        quant=ree_model.quant_blocks())


@needs_cuda
def test_cuda_q4_linears_equal_cpu_leaf_by_leaf(ree_model, executors, monkeypatch):
    """Decode linears reading the Q4_1 blocks (`QUANT_LINEARS`, `qchain_quant_kernel` QT 4: the
    weights dequantized in the kernel, ADR 0016), q, k, v and gate, up side by side: every
    leaf of six steps equal to the CPU's (the executor is built with the GGUF blocks, as
    `ree run` builds it)."""
    cpu, _ = executors
    prog = cpu.program
    gpu = _switched_gpu(ree_model, monkeypatch, QUANT_LINEARS=True, GRID_MIN=16)
    _steps_equal(cpu, gpu, 6)
    seq = gpu.plan._graph.launches(0, 20)
    parts = [ln.consts.get("PARTS", 1) for ln in seq
             if ln.kernel is step_plan_cuda.sk.qchain_quant_kernel and ln.consts["QT"] == 4]
    n_layers = sum(op.code == Code.CONCAT for op in prog.ops) // 2
    assert sorted(parts) == [1] * 2 * n_layers + [2] * n_layers + [3] * n_layers


@needs_cuda
@pytest.mark.parametrize("switch,const,kernels", [
    ("X_VECTORS", "XV", ("qchain_v8_kernel",)),
    ("REG_FOLDS", "REG", ("norm_kernel", "softmax_kernel")),
    ("WARP_FOLDS", "WARP", ("norm_kernel",)),
    ("WARP_SOFTMAX", "WARP", ("softmax_kernel",)),
    ("FUSE_PAIRS", "PAIR", ("concat_kernel", "rope_kernel")),
    ("FUSE_ATTENTION", None, ("attn_kernel",)),
    ("FUSE_HEADS_MOVE", "OT", ("attn_kernel",)),
    ("FUSE_NORM_LINEARS", None, ("norm_qchain_kernel",)),
    ("LINEAR_BLOCKS", None, ("qchain_v8_kernel",)),
    ("FOLD_CARRY", "CARRY", ("attn_kernel", "norm_kernel")),
    ("CHAIN_TAIL", "TB", ("attn_kernel",)),
    ("NARROW_SOFTMAX", ("BLOCK", step_plan_cuda.NARROW_BLOCK), ("attn_kernel",)),
    ("NARROW_NORMS", ("BLOCK", step_plan_cuda.NARROW_BLOCK), ("norm_kernel",)),
    ("SMALL_BLOCKS", ("BLOCK", step_plan_cuda.SMALL_BLOCK), ("concat_kernel", "ew_kernel")),
    ("QUANT_Q8", ("QT", 8), ("qchain_quant_kernel",))])
def test_cuda_switch_equal_cpu_leaf_by_leaf(ree_model, executors, monkeypatch, switch, const,
                                            kernels):
    """A switch on (ADR 0017's x four values a load, with the step plan starting each x
    16-byte aligned at every position: on by default) or off (ADR 0018's FOLD levels from
    registers: slower; ADR 0020's RMSNorms and softmaxes in one warp; `fuse_pairs`, a layer's K
    and V appends in one launch, and its q and k ROPEs in one; `fuse_attention`, a layer's
    q·k, softmax and p·v in one, with `FUSE_HEADS_MOVE` the MOVE after them too;
    `fuse_norm_linears`, each RMSNorm run by the programs of the linear after it;
    `with_linear_blocks`, decode linears with fewer columns a program; `with_fold_carry`,
    FOLD levels' own elements from registers; `CHAIN_TAIL`, a DOT chain's last partial
    block loaded at once; `NARROW_SOFTMAX` and `NARROW_NORMS`, a softmax's and an
    RMSNorm's passes and levels 128 wide; `SMALL_BLOCKS`, EW, MOVE and CONCAT launches of
    256 elements a program; `QUANT_Q8`, the head from its Q8_0 blocks): every
    leaf of six steps,
    through the graphs and over a grid bucket, equal to the CPU's, and every launch of the
    kernels it changes with its constexpr set (or at the value named beside it)."""
    gpu = _switched_gpu(ree_model, monkeypatch, **{switch: True, "GRID_MIN": 4})
    _steps_equal(executors[0], gpu, 6)
    assert gpu.plan.graph_steps >= 3, gpu.plan.graph_error
    seq = gpu.plan._graph.launches(0, 20)
    hit = [ln for ln in step_plan_cuda.launched(seq) if ln.kernel.fn.__name__ in kernels]
    name, want = const if isinstance(const, tuple) else (const, True)
    assert hit and (name is None or all((ln.consts.get(name) == want) if want is not True
                                        else ln.consts.get(name) for ln in hit))


@needs_cuda
def test_cuda_speculated_steps_equal_cpu_steps(executors):
    """A greedy job's steps queued ahead with the device's argmax as their token
    (`_Graphs.speculate`) equal the CPU's leaf by leaf, and the guesses are taken; a step
    asked for with another token than the device's guess (fed at step 5) drops the guess,
    runs again into the same arena, and equals the CPU's too."""
    cpu, gpu = executors
    gpu.plan._graph = None
    prog = cpu.program
    for ex in executors:
        ex.reset()
    feed = None
    for step in range(9):
        a = cpu.run_step(step, PROMPT, feed)
        b = gpu.run_step(step, PROMPT, feed, speculate=True)
        bad = next((j for j, (x, y) in enumerate(zip(a, b, strict=True))
                    if tuple(x.shape) != tuple(y.shape) or _bits(x) != _bits(y)), None)
        assert bad is None, f"step {step} op {bad} ({prog.ops[bad].name})"
        tok = int(a[prog.token_op].reshape(-1)[0])
        feed = tok ^ 1 if step == 5 else None
    g = gpu.plan._graph
    assert gpu.plan.graph_error is None and g is not None
    # steps 1 and 2 capture the two arenas' graphs; from step 3 on each was queued ahead,
    # but step 6, asked for with another token
    assert (g.spec_hits, g.spec_misses) == (5, 1)


@needs_cuda
def test_cuda_plan_long_context(executors):
    """Decode steps past position 1,152 (a q·k DOT's ninth 128-key column block): a graph
    bakes in its grids, and graphs once kept the grids of a middle position, which left the
    keys past ~1,150 uncomputed at longer contexts; every leaf must equal the CPU's."""
    cpu, gpu = executors
    prompt = (PROMPT * 90)[:1190]
    gpu.plan._graph = None
    for ex in executors:
        ex.reset()
    for step in range(4):
        a = cpu.run_step(step, prompt)
        b = gpu.run_step(step, prompt)
        if step == 0:
            continue
        bad = next((j for j, (x, y) in enumerate(zip(a, b, strict=True))
                    if tuple(x.shape) != tuple(y.shape) or _bits(x) != _bits(y)), None)
        assert bad is None, f"step {step} op {bad} ({cpu.program.ops[bad].name})"
    assert gpu.plan.graph_error is None and gpu.plan._graph is not None


@needs_cuda
@pytest.mark.parametrize("beside", [False, True])
def test_cuda_arena_roots_equal_cpu_roots(executors, tmp_path, beside, monkeypatch):
    """The arena path, and the kept-tensors path (every tensor written to disk), across graph
    replays that reuse the arenas two steps later; `beside`: the roots graph on a side
    stream beside the next step (`step_plan_cuda.ROOTS_BESIDE`), which must still read each
    arena before the step after next overwrites it."""
    cpu, gpu = executors
    monkeypatch.setattr(step_plan_cuda, "ROOTS_BESIDE", beside)
    gpu.plan._graph = None
    roots = []
    for ex, keep in ((cpu, None), (gpu, None), (gpu, tmp_path / "kept")):
        ex.reset()
        rec = TraceRecorder(ex.program, PROMPT, keep=keep)
        for step in range(6):
            rec.add_step(ex.run_step(step, PROMPT))
        roots.append(rec.roots)
        rec.close()
    assert roots[0] == roots[1] == roots[2]


@needs_cuda
@pytest.mark.parametrize("beside", [False, True])
def test_cuda_compact_roots_equal_cpu_compact_roots(executors, beside, monkeypatch):
    """A compact recorder (docs/trace-layout.md §L10) over device steps: the roots graph
    hashes only the committed ops (`_RootsGraphs(compact=True)`) and the host tail only its
    committed ops; the same leaves and root as on the CPU, with the roots on the executor's
    stream or beside the next step. Steps 0-1 are eager, the rest graph replays."""
    cpu, gpu = executors
    monkeypatch.setattr(step_plan_cuda, "ROOTS_BESIDE", beside)
    gpu.plan._graph = None
    got = []
    for ex in (cpu, gpu):
        ex.reset()
        rec = TraceRecorder(ex.program, PROMPT, compact=True)
        for step in range(8):
            rec.add_step(ex.run_step(step, PROMPT))
        got.append((rec.roots, rec.root()))
        rec.close()
    assert got[0] == got[1]
    g = gpu.plan._graph
    assert g is not None and set(g._roots) == {True} and g.roots_error is None
    assert (g._rstream is not None) == beside


@needs_cuda
@pytest.mark.parametrize("beside", [False, True])
@pytest.mark.parametrize("compact", [False, True])
def test_cuda_speculated_steps_commit_cpu_roots(executors, beside, compact, monkeypatch):
    """Steps queued ahead (`speculate`) under a recorder, its roots on the executor's stream
    or beside the next step (ROOTS_BESIDE). A step queued ahead is queued before the roots of
    the step it follows: they must still read their arena before the step after overwrites
    it (`_Graphs._after_roots`, by the arena). The roots and the trace root equal the
    CPU's; a token fed at step 6 that is not the device's drops that guess."""
    cpu, gpu = executors
    monkeypatch.setattr(step_plan_cuda, "ROOTS_BESIDE", beside)
    gpu.plan._graph = None
    prog = cpu.program
    feeds: dict[int, int] = {}
    got = []
    for ex in (cpu, gpu):
        ex.reset()
        rec = TraceRecorder(prog, PROMPT, compact=compact)
        for step in range(10):
            out = ex.run_step(step, PROMPT, feeds.get(step), speculate=ex is gpu)
            rec.add_step(out)
            if ex is cpu and step == 5:
                feeds[6] = int(out[prog.token_op].reshape(-1)[0]) ^ 1
        got.append((rec.roots, rec.root()))
        rec.close()
    assert got[0] == got[1]
    g = gpu.plan._graph
    assert g is not None and g.roots_error is None and (g._rstream is not None) == beside
    # steps 1 and 2 capture the arenas' graphs; steps 3-9 were queued ahead, step 6 dropped
    assert (g.spec_hits, g.spec_misses) == (6, 1)


@needs_cuda
def test_cuda_host_prefill_equals_cpu(executors, monkeypatch):
    """`fastexec.HOST_PREFILL`: a CUDA job's prefill on the host's cores, then its decode
    steps on the device from the KV caches copied up; alone and in a batch (a waiting job
    prefilling beside the others' decode steps), tokens and every leaf root equal the
    CPU's."""
    from node.ree import fastexec
    from node.ree.generate import generate

    cpu, gpu = executors
    monkeypatch.setattr(fastexec, "HOST_PREFILL", True)
    prompts, budgets = [PROMPT, PROMPT[:9], PROMPT[3:]], [5, 3, 4]
    results = []
    for ex in executors:
        ex.reset()
        runs = [generate(ex, p, m) for p, m in zip(prompts, budgets, strict=True)]
        results.append(runs + generate_batch(ex, prompts, budgets, batch=2))
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        assert a.tokens == b.tokens and a.roots == b.roots, f"run {i}"
    assert gpu._host_ex is not None and cpu._host_ex is None


@needs_cuda
@pytest.mark.parametrize(("stack", "compact", "streams", "lr"),
                         [(True, False, 0, 1), (False, False, 0, 1), (True, True, 2, 1),
                          (False, True, -1, 1), (True, False, 3, 1), (True, False, 3, 2),
                          (True, True, 0, 4)],
                         ids=["stack", "lanes", "stack-compact-streams", "lanes-compact-beside",
                              "stack-fused", "stack-fused-2-lanes-a-linear",
                              "stack-compact-4-lanes-a-linear"])
def test_cuda_batch_lanes_equal_cpu_jobs(executors, stack, compact, streams, lr, monkeypatch):
    """A CUDA batch runs its jobs' decode steps as one stack of lanes, each launch once for
    all jobs (CudaStepPlan.run_lanes, node/ree/step_lanes_cuda.py), or (stack off) each job
    as its own lane of graphs on its own stream: jobs of different lengths, greedy and
    sampled, one finishing early so that a waiting job takes its lane; every job's leaf
    roots must equal the CPU's. With `compact` traces (§L10) the lanes' roots graphs hash
    only the committed ops, on `streams` side streams (step_lanes_cuda.ROOT_STREAMS; −1: a
    per-job lane's roots beside its next step, step_plan_cuda.ROOTS_BESIDE). With `lr` > 1
    a stack of four lanes runs its decode linears `lr` lanes a program (STACK_LR, with k
    blocks of 32: STACK_LINEAR_NB). The fused cases fetch the tails' logits in one gather
    (fastexec.GATHER_LOGITS)."""
    from node.ree import fastexec, step_lanes_cuda

    cpu, gpu = executors
    monkeypatch.setattr(step_lanes_cuda, "ROOT_STREAMS", max(streams, 0) % 3)
    monkeypatch.setattr(step_plan_cuda, "ROOTS_BESIDE", streams < 0)
    monkeypatch.setattr(gpu.plan, "fuse_linears", streams == 3)  # `fuse_linears`, stacked
    monkeypatch.setattr(gpu.plan, "fuse_moves", streams == 3)  # and `fuse_moves`
    monkeypatch.setattr(gpu.plan, "fuse_ew", streams == 3)  # and `fuse_ew`
    monkeypatch.setattr(fastexec, "GATHER_LOGITS", streams == 3)  # the tails' logits at once
    monkeypatch.setattr(step_plan_cuda, "STACK_LR", lr)
    monkeypatch.setattr(step_plan_cuda, "STACK_LINEAR_NB", 32 if lr > 1 else None)
    width = 4 if lr > 1 else 3
    gpu.plan._lanes = []
    prompts = [PROMPT, PROMPT[:9], PROMPT[3:] + PROMPT[:5], PROMPT[:6]]
    budgets = [7, 3, 6, 5]
    samplings = [SamplingConfig(), SamplingConfig(0.8, 40, 0.9, seed=5), SamplingConfig(),
                 SamplingConfig(0.7, 0, 1.0, seed=9)]
    gpu.plan.stack_lanes, gpu.plan._stack = stack, None
    # a stacked step's grids fit its largest position: 16 and 17, then 18-20 (jobs 2 and 0),
    # so the first two steps take the bucket sized for 17 and the rest the next one
    monkeypatch.setattr(step_plan_cuda, "GRID_MIN", 18)
    try:
        results = []
        for ex in executors:
            ex.reset()
            results.append(generate_batch(ex, prompts, budgets, samplings, batch=width,
                                          compact=compact))
        steps = gpu.plan.graph_steps
    finally:
        gpu.plan.stack_lanes = True
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        assert a.tokens == b.tokens and a.roots == b.roots, f"job {i}"
    assert gpu.plan.graph_error is None and steps > 10
    if stack:
        assert gpu.plan._stack is not None and gpu.plan._stack.lanes == width
        assert {b for _k, b in gpu.plan._stack.graphs} == {0, 1}
    else:
        assert len(gpu.plan._lanes) == width


@needs_cuda
@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_cuda_stack_speculated_steps_equal_cpu_jobs(executors, compact, monkeypatch):
    """Greedy jobs in a stack of lanes: each step queued ahead with the device's tokens
    (`LaneStack.speculate`); every job's tokens and leaf roots, full or compact, equal the
    CPU's. A job that ends leaves the guess to the others (taken). A waiting job joins by
    its prefill beside the others' step (`batch_prefill`, CUDA's default), which takes the
    guess but queues none: the next step has a job no guess holds. So no guess is dropped
    here (measured on an H100: 3 taken, 0 dropped); the CPU test below checks the rule that
    drops one, and test_cuda_speculated_steps_equal_cpu_steps a dropped guess on a GPU."""
    cpu, gpu = executors
    monkeypatch.setattr(step_plan_cuda, "GRID_MIN", 18)
    gpu.plan._lanes, gpu.plan.stack_lanes, gpu.plan._stack = [], True, None
    prompts = [PROMPT, PROMPT[:9], PROMPT[3:] + PROMPT[:5], PROMPT[:6]]
    budgets = [9, 4, 8, 6]
    results = []
    for ex in executors:
        ex.reset()
        results.append(generate_batch(ex, prompts, budgets, batch=3, compact=compact))
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        assert a.tokens == b.tokens and a.roots == b.roots, f"job {i}"
    st = gpu.plan._stack
    assert gpu.plan.graph_error is None and st is not None
    assert st.spec_hits >= 3 and st.spec_misses == 0, (st.spec_hits, st.spec_misses)


def test_stack_guess_is_taken_only_for_its_own_jobs():
    """The rule by which a stack's step queued ahead (`LaneStack.speculate`) stands for the
    step asked for (`_StackGuess.match`; the GPU tests above run it for real): each job's
    previous outputs the very object the guess followed, none replaced since, the position
    one on, the host's token the device's, one job a lane; a job of the guess may be
    missing (it ended), a job outside it (it joined) drops the guess."""
    from node.ree.step_lanes_cuda import _StackGuess

    class Outs(list):
        def __init__(self) -> None:
            super().__init__()
            self.replaced: set[int] = set()

    class Done:
        def synchronize(self) -> None:
            pass

    prev, new = [Outs() for _ in range(3)], [Outs() for _ in range(3)]
    tokens = torch.tensor([7, 8, 9])

    def guess() -> _StackGuess:
        return _StackGuess(0, [(lane, 20 + lane, new[j], j, prev[j])
                               for j, lane in enumerate((2, 0, 1))], tokens, Done())

    asked = [(20 + lane, prev[j], 7 + j) for j, lane in enumerate((2, 0, 1))]
    outs, jobs = guess().match(asked)
    assert outs == new and [j[0] for j in jobs] == [2, 0, 1]
    assert all(o is n for o, n in zip(outs, new, strict=True))
    outs, jobs = guess().match([asked[2], asked[0]])  # job 1 ended: the others still hold
    assert outs[0] is new[2] and outs[1] is new[0] and [j[0] for j in jobs] == [1, 2]
    assert guess().match(asked[:2] + [(21, Outs(), 9)]) is None  # a job that joined
    assert guess().match(asked[:2] + [(22, prev[2], 9)]) is None  # another position
    assert guess().match(asked[:2] + [(21, prev[2], 3)]) is None  # another token
    assert guess().match(asked + [asked[0]]) is None  # one lane twice
    prev[1].replaced.add(5)
    assert guess().match(asked) is None  # an output replaced since (a cheating test)


def test_fuse_linears_keeps_every_column_where_its_own_launch_put_it():
    """`fuse_linears` on launches shaped as a layer's q, k, v (576, 192, 192 columns, three
    segments of 192) and gate, up (1,536 each), with an unrelated launch between: each run
    becomes one PARTS launch whose weight column c and output address (the kernel's rule:
    the last part starting at or before c) are those of c's own linear, bit for bit."""
    from node.ree.step_plan_cuda import _Launch, fuse_linears

    sk = step_plan_cuda.sk
    x, arena = torch.zeros(8), torch.zeros(8)
    consts = {"BN": 32, "SEGW": 192, "NB": 64, "PF": -1, "XS": False, "num_warps": 1}

    def linear(n: int, out: int, x_off: int, k: int = 576) -> _Launch:
        w = torch.randn(k // 8 + 8, n, 8)
        return _Launch(sk.qchain_v8_kernel, (n // 32,), (x, w, arena),
                       [x_off, 0, k, 0, 0, 1, n, 0, out, n, 1, n, 1, k // 192, 0, 192, k, 7],
                       dict(consts), 3)

    q, k, v = linear(576, 1000, 40), linear(192, 3000, 40), linear(192, 4000, 40)
    other = _Launch(sk.ew_kernel, (1,), (x, arena), [0] * 27, {}, 4)
    gate, up = linear(1536, 9000, 80), linear(1536, 20000, 80)
    cache: dict = {}
    fused = fuse_linears([q, k, v, other, gate, up], cache)
    assert [ln.consts.get("PARTS", 1) for ln in fused] == [3, 1, 2]
    assert fuse_linears([q, k, v, other, gate, up], cache)[0].ptrs[1] is fused[0].ptrs[1]
    for f, parts in ((fused[0], (q, k, v)), (fused[2], (gate, up))):
        w, t = f.ptrs[1], f.ints
        assert t[11] == sum(p.ints[11] for p in parts) and f.grid == (t[11] // 32,)
        assert t[:11] == parts[0].ints[:11] and t[12:18] == parts[0].ints[12:18]
        starts = [0] + [t[20 + 3 * p] for p in range(1, len(parts))]
        for c in range(t[11]):
            p = max(i for i, s0 in enumerate(starts) if c >= s0)
            base = t[8] if p == 0 else t[18 + 3 * p]
            stride = t[9] if p == 0 else t[19 + 3 * p]
            own = parts[p]
            for s in range(t[13]):
                assert base + s * stride + (c - starts[p]) == \
                    own.ints[8] + s * own.ints[9] + (c - starts[p])
            assert torch.equal(w[:, c], own.ptrs[1][:, c - starts[p]])
    # a run broken by another input, or columns that are not whole programs, stays apart
    assert len(fuse_linears([q, linear(192, 3000, 41), v], {})) == 3
    assert len(fuse_linears([q, linear(200, 3000, 40)], {})) == 2


def test_run_copies_reads_every_source_before_it_writes(monkeypatch):
    """`run_copies`: one multi-tensor copy of the staged caches, and where a source lies
    among the destinations (a stack job whose previous outputs lie in the other arena of a
    lane another job now takes), that source as it was before any destination is written,
    whichever pair comes first. The H100 gave other bits than the CPU's when one
    multi-tensor copy read such sources in place."""
    calls = []
    real = torch._foreach_copy_
    monkeypatch.setattr(torch, "_foreach_copy_", lambda d, s: (calls.append(len(d)), real(d, s)))
    outside = torch.arange(64, dtype=torch.float32) + 100
    for reader_first in (True, False):
        arena = torch.arange(64, dtype=torch.float32)
        span = (arena.data_ptr(), arena.data_ptr() + arena.nbytes)
        # one job stages into arena[16:24] what another job reads from there
        write = (arena.view(torch.uint8), 16 * 4, outside[40:48])  # the arena's bytes
        read = (arena.view(torch.uint8), 32 * 4, arena[16:24])
        step_plan_cuda.run_copies([read, write] if reader_first else [write, read], span)
        assert arena[32:40].tolist() == list(range(16, 24))  # the bytes before the staging
        assert arena[16:24].tolist() == outside[40:48].tolist()
    assert calls == [2, 2]
    step_plan_cuda.run_copies([])  # nothing staged: nothing launched
    assert calls == [2, 2]


def test_fuse_pairs_runs_two_independent_concats_as_one_launch():
    """`fuse_pairs`: a layer's K and V cache appends (CONCATs with the same constants, each
    reading the previous arena and writing its own region) become one launch with PAIR and
    a grid axis 1 twice as long, then a rider carrying the second's row unchanged, which
    `CudaStepPlan.launch` does not launch. CONCATs that read or write what the other writes,
    or differ in constants or operands, stay two launches."""
    from node.ree.step_plan_cuda import _Launch, fuse_pairs

    sk = step_plan_cuda.sk
    prev, arena = torch.zeros(16384, dtype=torch.int32), torch.zeros(16384, dtype=torch.int32)
    other = torch.zeros(8, dtype=torch.int32)
    then = {"BLOCK": 1024, "THEN": 0}

    def concat(a_off: int, b_off: int, out: int, ptrs: tuple = (prev, arena, arena),
               consts: dict = then) -> _Launch:
        ints = [a_off, b_off, out, 1, 40 * 64, 64] + [0] * 9 + [out, 3000 + out, 41 * 64,
                                                                1, 1, 3, 41, 64] + [0] * 7
        return _Launch(sk.concat_kernel, (3, 2), ptrs, ints, dict(consts), 7)

    # k: reads prev[0, 2560) and arena[100, 164), writes arena[200, 2824) and (its head
    # transpose) arena[3200, 5824); v likewise from prev[3000, …), arena[6000, …) to 7000, 10000
    k, v = concat(0, 100, 200), concat(3000, 6000, 7000)
    ew = _Launch(sk.ew_kernel, (1,), (arena, arena), [0] * 27, {}, 8)
    fused = fuse_pairs([ew, k, v, ew])
    assert [ln.kernel for ln in fused] == [sk.ew_kernel, sk.concat_kernel, None, sk.ew_kernel]
    pair, rider = fused[1], fused[2]
    assert pair.grid == (3, 4) and pair.consts == {**then, "PAIR": True}
    assert pair.ints == k.ints and rider.ints == v.ints
    assert fuse_pairs([k, v, concat(0, 9, 3100)])[2].kernel is sk.concat_kernel  # no 3rd
    # v reads k's output, v writes where k's MOVE writes, constants or operands differ: two
    # launches each
    for b in (concat(3000, 250, 7000), concat(3000, 6000, 4000),
              concat(3000, 6000, 7000, consts={"BLOCK": 1024}),
              concat(3000, 6000, 7000, ptrs=(prev, arena, other))):
        assert [ln.kernel for ln in fuse_pairs([k, b])] == [sk.concat_kernel] * 2


def test_fuse_pairs_runs_q_and_k_ropes_as_one_launch():
    """`fuse_pairs` on a layer's ROPEs: q's (with its head transpose fused in, THEN) and k's
    (none) become one launch with PAIR, k's the rider; k's rotation run by the rider half
    without q's MOVE. A ROPE with a MOVE second, one reading what the first writes, or other
    constants, stays its own launch."""
    from node.ree.step_plan_cuda import _Launch, fuse_pairs

    sk = step_plan_cuda.sk
    x, cos, sin = (torch.zeros(n, dtype=torch.float32) for n in (8192, 4096, 4096))
    arena = torch.zeros(16384, dtype=torch.float32)
    base = {"HALF_MODE": True, "RB": 16, "BH": 32}

    def rope(x_off: int, out: int, heads: int, then: bool = False, **consts: object
             ) -> _Launch:
        ints = [x_off, out, heads, 64, 64, 32, 40]
        if then:
            ints += [0] * 8 + [out, 9000, heads * 64] + [0] * 12
        c = {**base, **consts, **({"THEN": 1} if then else {})}
        return _Launch(sk.rope_kernel, (1,), (x, cos, sin, arena), ints, c, 5)

    q, k = rope(0, 100, 9, then=True), rope(576, 800, 3)
    fused = fuse_pairs([q, k])
    assert [ln.kernel for ln in fused] == [sk.rope_kernel, None]
    assert fused[0].grid == (1, 2) and fused[0].consts == {**q.consts, "PAIR": True}
    assert fused[0].ints == q.ints and fused[1].ints == k.ints
    for b in (rope(576, 800, 3, then=True), rope(576, 9050, 3), rope(576, 800, 3, RB=8)):
        assert [ln.kernel for ln in fuse_pairs([q, b])] == [sk.rope_kernel] * 2


def test_dot_runs_cover_each_chain_segment_by_segment(ree_session):
    """`step_plan_cuda._dot_runs` on the real program's DOT records (no GPU needed): every
    segment lies in exactly one run, and the range the kernel runs for segment s of a run,
    [k0 + s·segw, min(k0 + (s+1)·segw, the chain's last k1)), is that segment's record's
    own (the clamp that lets a shorter last segment join). Attention's p·v is one run a
    layer; the run's first record may alias when its later segments may (its own segment
    never aliases: it has no accumulator, and `_dot` keeps it live)."""
    from node.ree import step_plan as sp
    from node.ree.step_plan_cuda import _RUN, _dot_runs

    # the session's CPU executor: its plan's records are the ones CudaStepPlan starts from,
    # and a second executor here would hold ~1.6 GB more at CI's peak
    ree_model = ree_session.model
    recs = [r for r in ree_session.executor.plan._recs.tolist() if r[0] != sp.K_NOP]
    dots = {r[1]: r for r in recs if r[0] == sp.K_DOT}
    assert dots
    runs = [h for h in _dot_runs([list(r) for r in recs]) if h[0] == sp.K_DOT]
    covered: list[int] = []
    for h in runs:
        n, seg = max(1, h[_RUN]), h[7] - h[6]
        end = dots[h[1] + n - 1][7]
        for s in range(n):
            r = dots[h[1] + s]
            assert (r[6], r[7]) == (h[6] + s * seg, min(h[6] + (s + 1) * seg, end)), h[1] + s
            assert r[3:5] == h[3:5] and (s == 0 or r[5] == h[1] + s - 1)
            covered.append(h[1] + s)
        assert h[10] == max(dots[h[1] + s][10] for s in range(n))
    assert sorted(covered) == sorted(dots)
    names = [ree_model.program.ops[h[1]].name for h in runs]
    n_layers = sum(op.code == Code.CONCAT for op in ree_model.program.ops) // 2
    assert sum("/pv[" in x for x in names) == n_layers


def _compile_for(fn, sig: dict, consts: dict, cc: int, num_warps: int):  # noqa: ANN001, ANN202
    """`fn` compiled to machine code for sm_`cc` by Triton's compiler and the ptxas it
    ships (no GPU needed); skips where the wheel has no ptxas for this platform."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from repops.gpu.launch import FP_FLAGS

    src = ASTSource(fn=fn, signature={**sig, **dict.fromkeys(consts, "constexpr")},
                    constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    try:
        return triton.compile(src, target=GPUTarget("cuda", cc, 32),
                              options={"num_warps": num_warps, **FP_FLAGS})
    except RuntimeError as e:  # no ptxas for this platform in the Triton wheel
        if "ptxas" in str(e) and "error" not in str(e):
            pytest.skip(str(e))
        raise


@pytest.mark.parametrize("lanes", [1, 32])
def test_paired_kernels_compile_for_hopper(lanes):
    """`fuse_pairs`' launches (concat_kernel and rope_kernel with PAIR, each with a fused
    MOVE, as a layer's have) compile for sm_90, one job and a stack's lanes: the
    interpreter test checks their values, the GPU test [FUSE_PAIRS] their bits."""
    sk = step_plan_cuda.sk
    rope = {"HALF_MODE": True, "RB": 16, "BH": 32, "THEN": sk.CONTIG.value}
    concat = {"BLOCK": 1024, "THEN": sk.GENERAL.value}
    for fn, sig, consts in (
            (sk.rope_kernel, {"X": "*fp32", "COS": "*fp32", "SIN": "*fp32", "OUT": "*fp32",
                              "ARGS": "*i64", "ROW": "i32"}, rope),
            (sk.concat_kernel, {"A": "*i32", "B": "*i32", "OUT": "*i32", "ARGS": "*i64",
                                "ROW": "i32"}, concat)):
        k = _compile_for(fn, sig, {**consts, "LANES": lanes, "PDL": True, "PAIR": True}, 90,
                         num_warps=4)
        assert k.asm["cubin"] and "griddepcontrol.wait" in k.asm["ptx"]


# an RMSNorm's and a softmax's launches at the step's shapes (576 wide; a cap of 1,024 keys),
# every constexpr given (`_compile_for` fills no default), for the compile tests below
_NORM_SIG = {"X": "*fp32", "WT": "*fp32", "OUT": "*fp32", "ARGS": "*i64", "ROW": "i32",
             "NEG0": "fp32"}
_NORM_CONSTS = {"F_SQ": 3, "F_MEAN": 4, "F_EPS": 1, "F_ROOT": 17, "F_DIV": 4, "F_W": 3,
                "CAP0": 512, "NLEV": 10, "COMBINE": 0, "BLOCK": 1024, "LANES": 1, "PRE": 1,
                "PDL": True, "REG": False, "WARP": False, "CARRY": False}
_SOFTMAX_SIG = {"A": "*fp32", "OUT": "*fp32", "ARGS": "*i64", "ROW": "i32", "NEG0": "fp32"}
_SOFTMAX_CONSTS = {"F_SCALE": 3, "F_SUB": 2, "F_EXP": 18, "F_DIV": 4, "M_SCALE": 1,
                   "M_SUB": 1, "M_EXP": 1, "M_DIV": 1, "C_MAX": 1, "C_SUM": 0, "CAP0": 1024,
                   "NLEV": 11, "BLOCK": 1024, "LANES": 1, "PDL": True, "REG": False,
                   "WARP": False, "CARRY": False}


def test_register_folds_compile_for_hopper():
    """An RMSNorm's and a softmax's launches with REG_FOLDS (`_fold_reg`: a level's halves
    split out of the level before's registers) compile for sm_90 at the step's shapes; the
    interpreter test checks their values, the GPU tests their bits."""
    sk = step_plan_cuda.sk
    k = _compile_for(sk.norm_kernel, _NORM_SIG, {**_NORM_CONSTS, "REG": True}, 90,
                     num_warps=4)
    assert k.asm["cubin"] and "bar.sync" in k.asm["ptx"]
    soft = {**_SOFTMAX_CONSTS, "CAP0": 64, "NLEV": 7, "BLOCK": 128, "REG": True}
    k = _compile_for(sk.softmax_kernel, _SOFTMAX_SIG, soft, 90, num_warps=4)
    assert k.asm["cubin"]


@pytest.mark.parametrize("lanes", [1, 32])
def test_fused_attention_compiles_for_hopper(lanes):
    """`fuse_attention`'s launch (attn_kernel: a head's q·k DOT, softmax and p·v DOT)
    compiles for sm_90: one job at the defaults (NARROW_SOFTMAX's 128-wide softmax, no
    prefetch), and a stack's lanes with the switches that are off (1,024-wide with
    FOLD_CARRY's levels, CHAIN_TAIL's masked last blocks, the chains' GPU prefetch); the
    interpreter test checks its values, the GPU test [FUSE_ATTENTION] its bits."""
    sk = step_plan_cuda.sk
    soft = {k: v for k, v in _SOFTMAX_CONSTS.items() if k not in ("REG", "WARP")}
    consts = {**soft, "LANES": lanes, "BN": 128, "BK": 32, "NS": 2, "PF": int(lanes > 1),
              "DB": 1, "K1": True, "OT": sk.CONTIG.value, "CARRY": lanes > 1,  # FOLD_CARRY
              "TB": lanes > 1,  # CHAIN_TAIL
              "BLOCK": 1024 if lanes > 1 else step_plan_cuda.NARROW_BLOCK}
    k = _compile_for(sk.attn_kernel, {"X": "*fp32", "ARGS": "*i64", "ROW": "i32",
                                      "NEG_INF": "fp32", "NEG0": "fp32"}, consts, 90,
                     num_warps=4)
    ptx = k.asm["ptx"]
    assert k.asm["cubin"] and "griddepcontrol.wait" in ptx and "bar.sync" in ptx
    assert "fma.rn.f32" in ptx


@pytest.mark.parametrize("lr", [1, 4])
def test_norm_linear_compiles_for_hopper(lr):
    """`fuse_norm_linears`' launch (norm_qchain_kernel: the RMSNorm's warp body with the
    residual add, then q, k and v side by side with x four values a load) compiles for
    sm_90, one job and a stack's lanes four a program; the weights' prefetch comes before
    the wait, the norm's shuffles and one barrier after it. The interpreter test checks its
    values, the GPU test [FUSE_NORM_LINEARS] its bits."""
    sk = step_plan_cuda.sk
    norm = {k: v for k, v in _NORM_CONSTS.items()
            if k not in ("BLOCK", "REG", "WARP", "CARRY")}
    consts = {**norm, "BN": 32, "SEGW": 192, "NB": 32 if lr > 1 else 64, "PF": -1,
              "XS": False, "LANES": 32 if lr > 1 else 1, "PARTS": 3, "XV": True, "LR": lr}
    k = _compile_for(sk.norm_qchain_kernel, {"X": "*fp32", "W": "*fp32", "OUT": "*fp32",
                                             "WT": "*fp32", "ARGS": "*i64", "ROW": "i32",
                                             "NEG0": "fp32"}, consts, 90, num_warps=1)
    ptx = k.asm["ptx"]
    assert k.asm["cubin"] and "shfl.sync.idx" in ptx and ptx.count("bar.sync") == 1
    assert ptx.index("prefetch.global.L1") < ptx.index("griddepcontrol.wait")
    assert ptx.index("griddepcontrol.wait") < ptx.index("bar.sync")
    assert "ld.global.v4.f32" in ptx and "ld.global.nc.v4.f32" in ptx


def test_warp_folds_compile_for_hopper():
    """An RMSNorm's and a softmax's launches with WARP_FOLDS and WARP_SOFTMAX (`_norm_warp`,
    `_softmax_warp`: one warp, FOLD levels by register adds and shuffles) compile for sm_90
    at the step's shapes (a softmax's cap of 1,024: its memory body too, for rows past 512 columns):
    shuffles and no barrier in the RMSNorm. The interpreter test checks their values (with
    a gather for the shuffle), the GPU tests their bits."""
    sk = step_plan_cuda.sk
    k = _compile_for(sk.norm_kernel, _NORM_SIG, {**_NORM_CONSTS, "WARP": True}, 90,
                     num_warps=1)
    ptx = k.asm["ptx"]
    assert k.asm["cubin"] and "shfl.sync.idx" in ptx and "bar.sync" not in ptx
    assert ptx.index("ld.global") < ptx.index("griddepcontrol.wait")  # the table, the weight
    soft = {**_SOFTMAX_CONSTS, "LANES": 32, "WARP": True}
    k = _compile_for(sk.softmax_kernel, _SOFTMAX_SIG, soft, 90, num_warps=1)
    assert k.asm["cubin"] and "shfl.sync.idx" in k.asm["ptx"]


@pytest.mark.parametrize("kernel,parts,lr", [("v8", 2, 1), ("v8", 3, 1), ("v8", 2, 4),
                                             ("q4", 1, 1), ("q4", 3, 1), ("q8", 1, 1)])
def test_fused_linear_kernel_compiles_for_hopper(kernel, parts, lr):
    """qchain_v8_kernel with PARTS, and qchain_quant_kernel (Q4_1, Q8_0), compile to sm_90
    machine code (Triton's compiler and the ptxas it ships; no GPU needed): the interpreter
    cannot run v8's inline asm, so without a GPU this is what checks the fused path's code is valid
    (its bits: the GPU tests). With PDL, the wait for the launch before comes after the
    weights' prefetch; without it (GPUs before sm_90, whose ptxas rejects the
    instructions) the kernel has none. LR > 1 (a stack's lanes a program, STACK_LR): LR
    chains a column, each weight loaded once for them."""
    sig = {"X": "*fp32", "W": "*fp32", "OUT": "*fp32", "ARGS": "*i64", "ROW": "i32"}
    if kernel == "v8":
        fn = step_plan_cuda.sk.qchain_v8_kernel
        consts = {"BN": 32, "SEGW": 192, "NB": 32 if lr > 1 else 64, "PF": -1,  # STACK_LINEAR_NB
                  "XS": False, "LANES": 32 if lr > 1 else 1, "PARTS": parts,
                  "XV": parts == 3 or lr > 1, "LR": lr}  # XV: x four values a load
    else:
        fn = step_plan_cuda.sk.qchain_quant_kernel
        sig = {"X": "*fp32", "Q": "*i32", "OUT": "*fp32", "ARGS": "*i64", "ROW": "i32"}
        consts = {"BN": 32, "SEGW": 192, "PF": -1, "LANES": 1, "PARTS": parts,
                  "QT": int(kernel[1])}
    ptx = {}
    for cc, pdl in ((90, True), (80, False)):
        c = {**consts, "PDL": pdl}
        k = _compile_for(fn, sig, c, cc, num_warps=1)
        assert "fma.rn.f32" in k.asm["ptx"] and k.asm["cubin"]
        assert ("ld.global.v4.f32" in k.asm["ptx"]) == bool(c.get("XV"))
        if kernel == "v8":  # LR chains a k of the unrolled segment, one fma each
            assert k.asm["ptx"].count("fma.rn.f32") == lr * consts["SEGW"]
        if kernel == "q8":  # a k: the weight d·q (exact), then the chain's fma
            assert k.asm["ptx"].count("fma.rn.f32") == consts["SEGW"]
            assert k.asm["ptx"].count("mul.rn.f32") == consts["SEGW"]
        ptx[cc] = k.asm["ptx"]
    # step_kernels._start: the wait for the launch before (PDL), after the weights' prefetch
    assert "griddepcontrol.wait" in ptx[90] and "griddepcontrol.launch_dependents" in ptx[90]
    assert ptx[90].index("prefetch.global.L1") < ptx[90].index("griddepcontrol.wait")
    assert "griddepcontrol" not in ptx[80]


def test_every_step_kernel_waits_before_it_touches_the_arena():
    """With PDL (step_plan_cuda.PDL) a launch may start while the one before it runs: each
    step kernel must call `_start` (the grid-dependency wait) before it loads anything but
    its table row or a weight, or stores anything. Read from the kernels' source: a kernel
    that forgot would race only now and then on a GPU."""
    import inspect

    sk = step_plan_cuda.sk
    kernels = [f for f in vars(sk).values()
               if isinstance(f, sk.triton.runtime.jit.JITFunction)
               and ("_row(ARGS, ROW, LANES)" in inspect.getsource(f.fn)
                    or "    _start(PDL)" in inspect.getsource(f.fn))]
    assert len(kernels) >= 13 and sk._norm_warp in kernels
    for f in kernels:
        assert "PDL" in f.arg_names, f.fn.__name__
        body = inspect.getsource(f.fn).split('"""')[-1]
        assert body.count("_start(PDL)") == 1, f.fn.__name__
        before = body[:body.index("_start(PDL)")]
        assert "tl.store(" not in before, f.fn.__name__
        loads = before.split("tl.load(")[1:]
        # the table row, or (norm_kernel's WARP body) the scale, a weight (with_warp_folds)
        assert all(x.startswith(("P", "wt +")) for x in loads), f.fn.__name__
        assert "_xw_block(" not in before and "_prefetch_l1(xp" not in before, f.fn.__name__
    # a kernel whose wait is in the body it calls first (`_norm_warp`): before that call,
    # only its table row's address and the weights' prefetch (`_panel_l1`: table words)
    body = inspect.getsource(sk.norm_qchain_kernel.fn).split('"""')[-1]
    before = body[:body.index("_norm_warp(")]
    assert "tl.load(" not in before and "tl.store(" not in before and "_qchain_v8(" not in before
    panel = inspect.getsource(sk._panel_l1.fn).split('"""')[-1]
    assert "tl.store(" not in panel
    assert all(x.startswith("P") for x in panel.split("tl.load(")[1:])


def test_cuda_plan_kernels_under_the_interpreter():
    """The first layer's records on CPU tensors through TRITON_INTERPRET=1, bit for bit
    against the CPU plan (the interpreter's numpy arithmetic happens to agree on these
    inputs; on a GPU the test above is the evidence). The script's two halves run at once,
    one process each (`--part`)."""
    pytest.importorskip("triton")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    procs = [subprocess.Popen([sys.executable, str(HERE / "interp_step_plan_cuda.py"),
                               "--part", part], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for part in "ab"]
    try:
        outs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-6000:] + err[-3000:]
    stdout = "".join(out for out, _ in outs)
    assert "records equal" in stdout and "argfold levels equal" in stdout, stdout[-3000:]
    assert "q4 records equal" in stdout, stdout[-3000:]
    assert "aligned graph tables and stack equal" in stdout, stdout[-3000:]
    assert "register folds equal" in stdout, stdout[-3000:]
    assert "warp norms equal" in stdout and "warp softmaxes equal" in stdout, \
        stdout[-3000:]
    assert "kinds equal" in stdout, stdout[-3000:]  # the device roots
    assert "qchain_dot tiles equal" in stdout, stdout[-3000:]
    assert "qchain_vec tiles equal" in stdout, stdout[-3000:]
    assert "stacked lanes equal" in stdout and "graph tables equal" in stdout, \
        stdout[-3000:]
    assert "stacked logits fetched in one gather" in stdout, stdout[-3000:]
    assert "fused attention equal past 128 keys" in stdout, stdout[-3000:]
    assert "norm linears equal" in stdout and "fold carry equal" in stdout, stdout[-3000:]
    assert "chain tail equal" in stdout and "narrow softmax equal" in stdout, \
        stdout[-3000:]
    assert "narrow norms equal" in stdout and "small blocks equal" in stdout, \
        stdout[-3000:]
