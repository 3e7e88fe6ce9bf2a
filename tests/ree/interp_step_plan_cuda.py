"""Child process of test_step_plan_cuda.py (TRITON_INTERPRET=1 must be set before triton is
imported): the CUDA plan's first layer of records on CPU tensors against the CPU plan."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

assert os.environ.get("TRITON_INTERPRET") == "1"

from node.models import ModelError  # noqa: E402
from node.ree.fastexec import FastExecutor  # noqa: E402
from node.ree.model import ModelLoadError, load_model  # noqa: E402
from node.ree.step_plan import K_CONCAT, StepOutputs  # noqa: E402
from node.ree.step_plan_cuda import NARROW_BLOCK, CudaStepPlan, arena_rows  # noqa: E402
from referee.layout import Symbols  # noqa: E402

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646]
LONG = (PROMPT * 20)[:150]  # a decode step at 151 keys: past the q·k's 128-key column block
FULL = "--full" in sys.argv  # every record of the step (minutes), not the first two layers
# `--segment N`: the trace program with DOT segments of N (ADR 0012), default the lowering's
SEGMENT = int(sys.argv[sys.argv.index("--segment") + 1]) if "--segment" in sys.argv else None
# `--part a` or `--part b`: one half of the checks after the first (the test runs the halves
# in two processes at once: ~6 minutes one after the other on a 2-core CI machine)
PART = sys.argv[sys.argv.index("--part") + 1] if "--part" in sys.argv else "ab"


@contextmanager
def _grid_min(value: int | None) -> Iterator[None]:
    """step_plan_cuda.GRID_MIN set to `value` while graphs or stacks are built."""
    from node.ree import step_plan_cuda

    old, step_plan_cuda.GRID_MIN = step_plan_cuda.GRID_MIN, value
    try:
        yield
    finally:
        step_plan_cuda.GRID_MIN = old


@contextmanager
def _switched(plan: CudaStepPlan, **values: bool) -> Iterator[None]:
    """The plan's switches (attributes) set to `values` inside the block, then restored."""
    old = {k: getattr(plan, k) for k in values}
    for k, v in values.items():
        setattr(plan, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(plan, k, v)


def main() -> int:
    try:
        m = load_model("smollm2", max_ctx=2048,
                       **({} if SEGMENT is None else {"segment": SEGMENT}))
    except (ModelError, ModelLoadError) as e:
        print(f"skipped: {e}")
        return 0
    w = m.weights_by_root()
    cpu = FastExecutor(m.program, w, quant=m.quant_blocks())
    shaped = FastExecutor(m.program, w, chains="masked", plan=False)  # CUDA's weight layout
    plan = CudaStepPlan(m.program, w, shaped.weights, shaped._chains, shaped._wt,
                        torch.device("cpu"))
    plan.qchain = ("fma", 128, 32, 4, 2, True)  # the weight panels loaded first (`_warm`)
    plan.fuse_moves = True  # the MOVEs fused into their producers (`fuse_moves`), every kind
    plan.fuse_ew = True  # the residual adds into the RMSNorms, SiLU·up in one (`fuse_ew`)
    plan.fuse_pairs = True  # a layer's K and V appends, q and k ROPEs: a launch a pair
    plan.warp_folds = plan.warp_softmax = True  # RMSNorms and softmaxes in one warp
    # records up to the second layer's K-cache append: every record kind once or more
    if not FULL:
        cut = [i for i, r in enumerate(plan.records) if r[0] == K_CONCAT][2]
        plan.records = plan.records[:cut + 1]
    last = plan.records[-1][1] + 1
    prev = cpu.run_step(0, PROMPT)
    want = cpu.run_step(1, PROMPT)
    tok = cpu.plan_token(prev, None)
    got, launches = _run_seen(plan, prev, tok)
    kernels = [ln.kernel for ln in launches]
    thens = {(ln.kernel, ln.consts["THEN"]) for ln in launches if "THEN" in ln.consts}
    thens |= {(ln.kernel, "PRE") for ln in launches if "PRE" in ln.consts}
    from repops.gpu import step_kernels as sk
    if sk.norm_kernel not in kernels or sk.softmax_kernel not in kernels:
        print("the RMSNorm and softmax records were not fused (fuse_launches)")
        return 1
    if not all(ln.consts.get("WARP") for ln in launches
               if ln.kernel in (sk.norm_kernel, sk.softmax_kernel)):
        print("an RMSNorm or softmax launch is not in one warp (WARP_FOLDS, WARP_SOFTMAX):",
              [(ln.kernel.fn.__name__, ln.consts["CAP0"]) for ln in launches
               if ln.kernel in (sk.norm_kernel, sk.softmax_kernel)
               and not ln.consts.get("WARP")])
        return 1
    want_thens = {(sk.rope_kernel, 1), (sk.concat_kernel, 0), (sk.move_kernel, 1),
                  (sk.norm_kernel, "PRE"), (sk.ew_kernel, 3)}
    if not want_thens <= thens:
        print(f"launches not fused (fuse_moves, fuse_ew): {want_thens - thens}")
        return 1
    if _differs("differ", want, got, last, m.program):
        return 1
    print(f"{len(plan.records)} records equal ({last} ops)")
    if "a" in PART and (
            check_q4_records(m, shaped, plan.records, prev, tok, want, last)
            or check_aligned_records(m, shaped, plan.records, prev, tok, want, last, cpu)
            or check_device_roots(got, last) or check_graph_tables(plan, cpu, last)
            or check_stack(plan, cpu, last) or check_argfold(cpu) or check_reg_folds()
            or check_warp_norms() or check_qchain_dot()
            or check_fused_attention(plan, cpu, prev, tok, want, last)):
        return 1
    if "b" in PART and (
            check_norm_linears(m, shaped, plan.records, prev, tok, want, last, cpu)
            or check_fold_carry(plan, cpu, prev, tok, want, last)
            or check_chain_tail(plan, cpu, prev, tok, want, last)
            or check_narrow_softmax(plan, cpu, prev, tok, want, last)
            or check_narrow_norms(plan, prev, tok, want, last)
            or check_small_blocks(plan, prev, tok, want, last)):
        return 1
    return 0


def check_q4_records(m, shaped, records, prev, tok: int, want, last: int  # noqa: ANN001
                     ) -> int:
    """The same records with the decode linears reading the Q4_1 blocks
    (`qchain_quant_kernel` QT 4, step_plan_cuda.QUANT_LINEARS; q, k, v and gate, up side by side
    with PARTS): their layout checked against the fp32 weights when built (`CudaChain.quant`),
    every output equal to the CPU plan's. The interpreter's arithmetic is NumPy's, not the
    GPU's: the layout, the indexing and the parts are what this shows; the GPU tests show
    the bits."""
    from repops.gpu import step_kernels as sk

    plan = CudaStepPlan(m.program, m.weights_by_root(), shaped.weights, shaped._chains,
                        shaped._wt, torch.device("cpu"), quant=m.quant_blocks())
    plan.qchain = ("v8", 32, 64, -1, 1)
    plan.fuse_linears = plan.quant_linears = True
    plan.records = records
    got, launches = _run_seen(plan, prev, tok)
    parts = [ln.consts.get("PARTS", 1) for ln in launches if ln.kernel is sk.qchain_quant_kernel]
    if sorted(set(parts)) != [1, 2, 3]:
        print(f"q4 launches by parts: {parts}")
        return 1
    if _differs("q4 differ", want, got, last, m.program):
        return 1
    print(f"q4 records equal ({len(parts)} launches, parts {sorted(set(parts))})")
    return 0


def check_aligned_records(m, shaped, records, prev, tok: int, want, last: int,  # noqa: ANN001
                          cpu: FastExecutor) -> int:
    """The same records in the layout `X_VECTORS` gives a CUDA plan (step_plan's
    ALIGN_LINEAR_INPUTS: a pad before each linear's x, growing with the position), and with
    `REG_FOLDS` (FOLD levels from registers: step_kernels._fold_reg): every launch's
    offsets follow the layout, every output equal to the CPU plan's (back to back), also
    through a graph's derived table and a stack of lanes. The vector loads themselves
    (inline asm) run only on a GPU (the GPU tests)."""
    from repops.gpu import step_kernels as sk

    plan = CudaStepPlan(m.program, m.weights_by_root(), shaped.weights, shaped._chains,
                        shaped._wt, torch.device("cpu"))
    plan.plan.align_linear_inputs = True
    plan.fuse_moves = plan.fuse_ew = plan.reg_folds = True
    plan.records = records
    xs = sorted(plan.plan.linear_inputs)
    offs = plan.layout(len(PROMPT))[2]
    if (offs[xs] % 16).any():
        print("aligned: a linear's x is not 16-byte aligned")
        return 1
    got, launches = _run_seen(plan, prev, tok)
    folds = [ln for ln in launches if ln.kernel in (sk.norm_kernel, sk.softmax_kernel)]
    if not folds or not all(ln.consts.get("REG") for ln in folds):
        print("aligned: the folds did not run from registers")
        return 1
    if _differs("aligned differ", want, got, last, m.program):
        return 1
    print(f"aligned records equal ({len(xs)} linear inputs aligned, {len(folds)} folds "
          "from registers)")
    if check_graph_tables(plan, cpu, last) or check_stack(plan, cpu, last):
        print("aligned: the graph's table or the stack differs")
        return 1
    print("aligned graph tables and stack equal")
    return 0


def _run_seen(plan: CudaStepPlan, prev, tok: int, prompt_len: int = len(PROMPT)  # noqa: ANN001
              ) -> tuple:
    """The decode step after `prev` (a prompt of `prompt_len` tokens) through `plan`, and
    the launches its `emit` made."""
    seen: list = []
    emit = plan.emit

    def spy(*a, **k):  # noqa: ANN002, ANN003, ANN202
        launches = emit(*a, **k)
        seen.extend(launches)
        return launches

    plan.emit = spy
    try:
        got = plan.run(Symbols.for_step(prompt_len, 1), prev, tok)
    finally:
        plan.emit = emit
    return got, seen


def _differs(what: str, want, got, last: int, program) -> bool:  # noqa: ANN001
    """Whether any op before `last` has outputs that differ in shape or in any bit between
    two steps' outputs; the first such ops are printed after `what`."""
    bad = [j for j in range(last) if want[j].shape != got[j].shape or not np.array_equal(
        want[j].numpy().view(np.uint32), got[j].numpy().view(np.uint32))]
    if bad:
        print(f"{what}:", [(j, program.ops[j].name) for j in bad[:20]])
    return bool(bad)


def _after_prefill(cpu: FastExecutor, prompt: list[int]) -> tuple:
    """A job's prefill (its outputs cloned: the executor reuses its arenas), the CPU's
    decode step after it, and that step's token."""
    cpu.reset()
    prev = [t.clone() if isinstance(t, torch.Tensor) else t for t in cpu.run_step(0, prompt)]
    want = cpu.run_step(1, prompt)
    return prev, want, cpu.plan_token(prev, None)


def check_graph_tables(plan: CudaStepPlan, cpu: FastExecutor, last: int) -> int:
    """A one-job graph's launches and table (`_Graphs`: derived from emitted steps, grids per
    position bucket, `grid_tops`) launched eagerly for a job at position 8 with the grids
    for position 63, against the CPU plan; the CUDA graph capture itself needs a GPU. The
    table is the one a speculated step gets (`speculate_cuda.NextTable` from the graph's
    terms and a logits row whose greedy token is the job's), so the device's table
    arithmetic is checked on the real table's shape too."""
    from node.ree import step_plan_cuda
    from node.ree.speculate_cuda import NextTable
    from node.ree.step_plan_cuda import _Graphs

    prev, want, token = _after_prefill(cpu, PROMPT)
    past = Symbols.for_step(len(PROMPT), 1).past
    with _grid_min(64):
        g = _Graphs(plan, past, token)
    k = 0
    pd, _, po = plan.layout(past - 1)
    step_plan_cuda.stage_prev(plan, prev, g.arenas[1 - k], pd, po)
    c0, kp, kt = g.tables[k]
    seq = g.launches(k, past)
    if g.tops[0] != 63 or seq is not g.seqs[k][0]:
        print("the graph's grids are not sized per position bucket")
        return 1
    if _unpaired(plan, seq):
        return 1
    table = torch.zeros(c0.shape, dtype=torch.int64)
    logits = torch.zeros(49152)  # SmolLM2's vocabulary
    logits[token] = 1.0
    guess = NextTable(*(torch.from_numpy(t) for t in (c0, kp, kt))).queue(logits, past, table)
    if int(guess[0]) != token or not np.array_equal(table.numpy(), c0 + kp * past + kt * token):
        print(f"NextTable's guess {int(guess[0])} or table is not the graph's ({token})")
        return 1
    plan.launch(seq, table)
    dims, nbytes, offs = plan.layout(past)
    got = StepOutputs(plan.plan, g.arenas[k], offs, nbytes, dims,
                      np.full(plan.tail, -1, dtype=np.int64))
    if _differs("graph table launches differ", want, got, last, plan.program):
        return 1
    print(f"graph tables equal ({last} ops)")
    return 0


def _unpaired(plan: CudaStepPlan, seq: list) -> bool:
    """With `fuse_pairs`, no pair of K and V appends (`concat_kernel`'s PAIR) or of q and k
    ROPEs among the launches of a step whose previous outputs lie in an arena, or a pair
    without its rider (launches whose previous outputs are separate tensors read them from
    separate pointers, and stay apart). A fused attention's riders (`fuse_attention`: two,
    three with the MOVE after it) and a fused RMSNorm's (`fuse_norm_linears`: the linear's)
    are not pairs'."""
    from repops.gpu import step_kernels as sk

    kinds = {ln.kernel for ln in seq if ln.consts.get("PAIR")}
    pairs = sum(bool(ln.consts.get("PAIR")) for ln in seq)
    riders = sum(ln.kernel is None for ln in seq) - sum(
        2 + (ln.consts.get("OT", -2) > -2) for ln in seq if ln.kernel is sk.attn_kernel) - sum(
        ln.kernel is sk.norm_qchain_kernel for ln in seq)
    if plan.fuse_pairs and (kinds != {sk.concat_kernel, sk.rope_kernel} or pairs != riders):
        print(f"not paired: {pairs} pairs of {len(kinds)} kernels, {riders} riders")
        return True
    return False


def check_stack(plan: CudaStepPlan, cpu: FastExecutor, last: int) -> int:
    """Two jobs at different positions as one stack of lanes (node/ree/step_lanes_cuda.py),
    launched eagerly on CPU tensors: each lane's records equal the CPU plan's for its job
    (the kernels' lane axis `step_kernels._row`, the lanes' arena offsets, the table derived
    from emitted launches), with grids sized for position 63 (`grid_tops`). The jobs take
    lanes 1 and 0, so a lane's rows are not the first."""
    from node.ree.step_lanes_cuda import LaneStack

    jobs = []
    for prompt in (PROMPT, PROMPT[:5]):
        prev, want, tok = _after_prefill(cpu, prompt)
        jobs.append((Symbols.for_step(len(prompt), 1).past, prev, tok,
                     [want[j].clone() for j in range(last)]))
    with _grid_min(64):  # grids sized for position 63 (`grid_tops`), whatever the default
        stack = LaneStack(plan, 2, jobs[0][0], jobs[0][2])
    if stack.tops[0] != 63:
        print("the stack's grids are not sized per position bucket")
        return 1
    if _unpaired(plan, stack.seqs[0][0]):
        return 1
    outs = stack.step([(1 - i, past, prev, tok) for i, (past, prev, tok, _w) in enumerate(jobs)])
    for i, (out, (_p, _prev, _t, want)) in enumerate(zip(outs, jobs, strict=True)):
        if _differs(f"stacked lane {1 - i} differs", want, out, last, plan.program):
            return 1
    print(f"stacked lanes equal ({last} ops of 2 jobs)")
    # the host tails' logits of all lanes in one gather (`_HostTail._fetch`)
    from node.ree.fastexec import _HostTail

    host = _HostTail(cpu, plan.tail)
    got = host._fetch(outs)
    if got is None or any(not torch.equal(g[i].reshape(o[i].shape), o[i])
                          for g, o in zip(got, outs, strict=True) for i in host.plan.external):
        print("the stack's logits fetched in one gather differ from the lanes' own")
        return 1
    print("stacked logits fetched in one gather")
    return 0


def check_fused_attention(plan: CudaStepPlan, cpu: FastExecutor, prev, tok: int,  # noqa: ANN001
                          want, last: int) -> int:  # noqa: ANN001
    """A layer's q·k DOT, softmax and p·v DOT as one `attn_kernel` launch a step
    (`fuse_attention`; the softmax's memory body, so without WARP_SOFTMAX), with the MOVE
    of the heads' outputs after it (OT): eagerly (at 9 and at 151 keys: two q·k column
    blocks), through a graph's table and through a stack of two lanes, every record equal
    to the CPU plan's."""
    from repops.gpu import step_kernels as sk

    with _switched(plan, fuse_attention=True, fuse_heads_move=True, warp_softmax=False):
        got, launches = _run_seen(plan, prev, tok)
        layers = sum(r[0] == K_CONCAT for r in plan.records) // 2
        fused = [ln for ln in launches if ln.kernel is sk.attn_kernel]
        if len(fused) != layers or sk.softmax_kernel in {ln.kernel for ln in launches}:
            print(f"attention not fused: {len(fused)} attn_kernel launches for {layers} layers")
            return 1
        if not all(ln.consts.get("OT") == sk.CONTIG.value for ln in fused):
            print("the heads' MOVE after p·v not fused into attn_kernel (`_heads_move`)")
            return 1
        if _differs("fused attention differs", want, got, last, plan.program):
            return 1
        print(f"fused attention equal ({len(fused)} launches)")
        # past 128 keys: the q·k DOT's column blocks, one launch's programs apart, one loop
        # of a head's program here
        prev_l, want_l, tok_l = _after_prefill(cpu, LONG)
        got_l, seen = _run_seen(plan, prev_l, tok_l, len(LONG))
        if sum(ln.kernel is sk.attn_kernel for ln in seen) != layers:
            print("attention not fused past 128 keys")
            return 1
        if _differs("fused attention differs past 128 keys", want_l, got_l, last,
                    plan.program):
            return 1
        print("fused attention equal past 128 keys")
        return check_graph_tables(plan, cpu, last) or check_stack(plan, cpu, last)


def check_chain_tail(plan: CudaStepPlan, cpu: FastExecutor, prev, tok: int,  # noqa: ANN001
                     want, last: int) -> int:  # noqa: ANN001
    """The fused attention's DOT chains with their last partial k block loaded at once
    (`CHAIN_TAIL`, step_kernels._ab_tail), eagerly at 9 keys (p·v: no full block, the tail
    alone) and at 151 (four full blocks, then 23), every record equal to the CPU plan's."""
    return _attention_equal(plan, cpu, prev, tok, want, last, "chain tail", "TB", True,
                            chain_tail=True)


def check_narrow_softmax(plan: CudaStepPlan, cpu: FastExecutor, prev, tok: int,  # noqa: ANN001
                         want, last: int) -> int:  # noqa: ANN001
    """The fused attention's softmax on NARROW_BLOCK-wide passes and FOLD levels
    (`NARROW_SOFTMAX`) at 9 keys (one pass, the levels past 128 wide narrowed) and at 151
    (two passes a row), every record equal to the CPU plan's."""
    return _attention_equal(plan, cpu, prev, tok, want, last, "narrow softmax", "BLOCK",
                            NARROW_BLOCK, narrow_softmax=True)


def _attention_equal(plan: CudaStepPlan, cpu: FastExecutor, prev, tok: int,  # noqa: ANN001
                     want, last: int, name: str, const: str, value: object,  # noqa: ANN001
                     **switches: bool) -> int:
    """The fused attention with `switches` on, eagerly at 9 keys and at 151: an attn_kernel
    launch with `const` at `value`, every record equal to the CPU plan's."""
    from repops.gpu import step_kernels as sk

    with _switched(plan, fuse_attention=True, warp_softmax=False, **switches):
        for n, (p, w, t) in ((len(PROMPT), (prev, want, tok)),
                             (len(LONG), _after_prefill(cpu, LONG))):
            got, seen = _run_seen(plan, p, t, n)
            if not any(ln.kernel is sk.attn_kernel and ln.consts.get(const) == value
                       for ln in seen):
                print(f"{name}: no attention launch with {const} {value}")
                return 1
            if _differs(f"{name} differs after {n} tokens", w, got, last, plan.program):
                return 1
        print(f"{name} equal")
        return 0


def check_narrow_norms(plan: CudaStepPlan, prev, tok: int, want, last: int  # noqa: ANN001
                       ) -> int:
    """Every RMSNorm's norm_kernel on NARROW_BLOCK-wide passes and FOLD levels
    (`NARROW_NORMS`: 576 values in five passes, a tree from cap 512 whose levels past 128
    are narrowed), eagerly, every record equal to the CPU plan's."""
    from repops.gpu import step_kernels as sk

    return _blocks_equal(plan, prev, tok, want, last, "narrow norms", {sk.norm_kernel},
                         NARROW_BLOCK, narrow_norms=True, warp_folds=False)


def check_small_blocks(plan: CudaStepPlan, prev, tok: int, want, last: int  # noqa: ANN001
                       ) -> int:
    """EW, MOVE and CONCAT launches of SMALL_BLOCK elements a program (`SMALL_BLOCKS`),
    their fused MOVEs and EWs and the K/V appends' pairs with them, eagerly, every record
    equal to the CPU plan's."""
    from node.ree.step_plan_cuda import SMALL_BLOCK
    from repops.gpu import step_kernels as sk

    return _blocks_equal(plan, prev, tok, want, last, "small blocks",
                         {sk.ew_kernel, sk.concat_kernel}, SMALL_BLOCK, small_blocks=True)


def _blocks_equal(plan: CudaStepPlan, prev, tok: int, want, last: int,  # noqa: ANN001
                  name: str, kinds: set, block: int, **switches: bool) -> int:
    """The step with `switches` on: every launch of `kinds` with BLOCK `block`, every
    record equal to the CPU plan's."""
    with _switched(plan, **switches):
        got, seen = _run_seen(plan, prev, tok)
        if not kinds <= {ln.kernel for ln in seen if ln.consts.get("BLOCK") == block}:
            print(f"{name}: a launch of {sorted(k.fn.__name__ for k in kinds)} kept its BLOCK")
            return 1
        if _differs(f"{name} differ", want, got, last, plan.program):
            return 1
    print(f"{name} equal")
    return 0


def check_norm_linears(m, shaped, records, prev, tok: int, want, last: int,  # noqa: ANN001
                       cpu: FastExecutor) -> int:
    """Each RMSNorm and the linear after it as one `norm_qchain_kernel` launch
    (`fuse_norm_linears`) with the GPU's defaults around it (`qchain_v8_kernel` with x four
    values a load in the aligned layout, the linears side by side, the residual adds in the
    norms, the attention fused), eagerly, every record equal to the CPU plan's. (Through a
    graph's table and a stack of two lanes, two lanes a program, it was equal too in the
    twenty-eighth session; it is off, slower on the H100, and those runs of the interpreted
    linears took minutes of CI.) The vector loads are the interpreter's one by one
    (`_ld8`, `_ld4x`); the GPU test [FUSE_NORM_LINEARS] checks the bits."""
    from repops.gpu import step_kernels as sk

    plan = CudaStepPlan(m.program, m.weights_by_root(), shaped.weights, shaped._chains,
                        shaped._wt, torch.device("cpu"))
    plan.plan.align_linear_inputs = True
    plan.qchain = ("v8", 32, 64, -1, 1)
    plan.fuse_moves = plan.fuse_ew = plan.fuse_linears = plan.fuse_pairs = True
    plan.fuse_attention = plan.fuse_norm_linears = True
    plan.records = records
    got, launches = _run_seen(plan, prev, tok)
    fused = [ln for ln in launches if ln.kernel is sk.norm_qchain_kernel]
    norms = sum(r[0] == K_CONCAT for r in records) // 2 * 2  # attention's and the MLP's
    if len(fused) < norms or sk.norm_kernel in {ln.kernel for ln in launches}:
        print(f"norm linears: {len(fused)} fused launches for {norms} norms, "
              f"{sum(ln.kernel is sk.norm_kernel for ln in launches)} left alone")
        return 1
    if not any(ln.consts.get("PRE", -1) >= 0 for ln in fused) or not any(
            ln.consts.get("PARTS", 1) > 1 for ln in fused) or not all(
            ln.consts.get("XV") for ln in fused):
        print("norm linears: none with the residual add, parts or x vectors")
        return 1
    if _differs("norm linears differ", want, got, last, m.program):
        return 1
    print(f"norm linears equal ({len(fused)} launches)")
    return 0


def check_fold_carry(plan: CudaStepPlan, cpu: FastExecutor, prev, tok: int,  # noqa: ANN001
                     want, last: int) -> int:  # noqa: ANN001
    """FOLD levels with their own elements carried in registers (`with_fold_carry`) in the
    memory bodies: the RMSNorms' (576 wide: every level combines) and the fused attention's
    softmax (a tree for 2,048 keys at 9 and at 151 keys: its first levels are copies; the
    softmax's steps from registers, `_softmax_carried`), eagerly and through a stack of two
    lanes, every record equal to the CPU plan's."""
    from repops.gpu import step_kernels as sk

    with _switched(plan, fold_carry=True, warp_folds=False, warp_softmax=False,
                   fuse_attention=True):
        got, launches = _run_seen(plan, prev, tok)
        kinds = {ln.kernel for ln in launches if ln.consts.get("CARRY")}
        if not {sk.norm_kernel, sk.attn_kernel} <= kinds:
            print("fold carry: the norms or the attention did not fold with CARRY")
            return 1
        if _differs("fold carry differs", want, got, last, plan.program):
            return 1
        prev_l, want_l, tok_l = _after_prefill(cpu, LONG)
        got_l, _ = _run_seen(plan, prev_l, tok_l, len(LONG))
        if _differs("fold carry differs after 150 tokens", want_l, got_l, last,
                    plan.program):
            return 1
        print(f"fold carry equal ({sum(ln.consts.get('CARRY', False) for ln in launches)} "
              "launches)")
        return check_stack(plan, cpu, last)


def check_device_roots(got, last: int) -> int:  # noqa: ANN001 - a StepOutputs
    """The trace's device roots of a plan arena (node/ree/trace.py `_DeviceStep`'s eager
    path: `arena_rows` + `device_roots`) on the first op of every kind and others spread over
    the layer, against the C keccak's roots of the same tensors: headers from the plan's
    dtype codes, ndims and dims. Outputs of at most three 1 KiB chunks, and few of them: the
    interpreter spends ~2.5 s a tensor (tree_kernel runs one program per tensor), and
    multi-chunk trees are interp_checks.py's (tests/repops/gpu)."""
    from repops.commit import tensor_roots
    from repops.gpu.keccak import device_roots

    small = [j for j in range(last) if got[j].numel() * got[j].element_size() <= 3 * 1024]
    kinds = {got.plan.program.ops[j].code: j for j in reversed(small)}
    ops = np.unique(np.array([*kinds.values(), *small[::max(1, len(small) // 3)]],
                             dtype=np.int64))
    rows = arena_rows(got.plan, ops, got.dims, got.nbytes, got.offs)
    have = [bytes(r) for r in device_roots(got.arena, rows).numpy()]
    want = tensor_roots([got[int(j)].numpy() for j in ops])
    if have != want:
        print("device roots differ at ops", [int(j) for j, a, b in zip(ops, have, want,
                                                                      strict=True) if a != b])
        return 1
    print(f"device roots of {len(ops)} ops of {len(kinds)} kinds equal")
    return 0


def check_argfold(cpu: FastExecutor) -> int:
    """`argfold_level_kernel` level by level against the CPU executor's §L5.5 levels, on
    rows with NaNs, ties, ±0 and ±inf (odd widths, caps that pair part of a row)."""
    from referee.layout import Code, TraceOp
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(5)
    x = torch.randint(-3, 4, (3, 1001), generator=g).float()
    x[0, 7], x[1, 500], x[1, 3], x[2, 0] = float("nan"), float("nan"), float("inf"), -0.0
    x[2, 1] = 0.0
    idx, w = None, 1001
    for cap in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
        op = TraceOp(Code.ARGFOLD, "int32", (), (), (cap,), "t")
        want = cpu._argfold(op, [x] if idx is None else [x, idx])
        wout = min(w, cap)
        got = torch.empty((3, wout), dtype=torch.int32)
        sk.argfold_level_kernel[(-(-wout // 64), 3)](
            x, idx if idx is not None else got, got, 1001, w, cap, wout, max(0, w - cap),
            HAS_IDS=idx is not None, BLOCK=64)
        if not torch.equal(want.reshape(3, wout), got):
            print(f"argfold level cap {cap} differs")
            return 1
        idx, w = got, wout
    print("argfold levels equal")
    return 0


def check_reg_folds() -> int:
    """`fold_tree_kernel` with REG (levels after the first from registers, `_fold_reg`)
    against the same kernel through memory: every level of sum and max trees, rows with
    NaNs, ±0, ±inf and ties, widths wider and narrower than the first cap, and a live
    count short of the width (a causal row)."""
    from repops.gpu import step_kernels as sk
    from repops.gpu.launch import NEG_ZERO

    g = torch.Generator().manual_seed(7)
    for w, cap0, nlive, rows in ((576, 512, 576, 1), (70, 64, 70, 3), (70, 128, 41, 2),
                                 (9, 8, 9, 4)):
        nlev = cap0.bit_length()
        x = torch.randn((rows, w), generator=g)
        x[0, min(3, w - 1)], x[-1, 0], x[0, 1] = float("nan"), -0.0, float("inf")
        x[-1, w - 1] = 0.0
        size = rows * (2 * cap0 - 1)
        for combine in (0, 1):
            outs = []
            for reg in (False, True):
                out = torch.full((size,), 7.0)
                args = torch.tensor([[0, 0, rows, w, nlive] + [0] * (sk.ARGW - 5)])
                sk.fold_tree_kernel[(rows,)](x.reshape(-1), out, args, 0, NEG0=NEG_ZERO,
                                             CAP0=cap0, NLEV=nlev, COMBINE=combine, REG=reg)
                outs.append(out.view(torch.int32))
            if not torch.equal(outs[0], outs[1]):
                print(f"register folds differ: w {w} cap0 {cap0} nlive {nlive} "
                      f"combine {combine}")
                return 1
    print("register folds equal")
    return 0


def check_warp_norms() -> int:
    """`norm_kernel` with WARP (one warp, the row in registers: `_norm_warp`, `_fold_warp`)
    against the same kernel through memory: every output word of the arena equal, with and
    without the fused residual add, widths from 1 to 576 (caps that pair all, part or none
    of a slot's lanes), a row with ±0 and one with a NaN and an inf."""
    from repops.gpu import step_kernels as sk
    from repops.gpu.launch import NEG_ZERO
    from repops.gpu.norm import f32_bits as bits

    for n in (576, 70, 64, 33, 9, 2, 1):
        cap0 = max(1, (1 << (n - 1).bit_length()) // 2)
        nlev = cap0.bit_length()
        last = 4000 + sum(cap0 >> k for k in range(nlev)) - 1
        ints = [0, 2000, n, 4000, n, last, 9000, bits(float(n)), 9001, bits(1e-5), 9002,
                10000, 11000, 3, 12000, 13000]
        args = torch.tensor([ints + [0] * (sk.ARGW - len(ints))])
        for pre, odd in ((-1, False), (1, False), (-1, True), (1, True)):
            outs = []
            for warp in (False, True):
                arena = torch.randn(14000, generator=torch.Generator().manual_seed(n))
                arena[min(5, n - 1)] = -0.0
                if odd:
                    arena[n // 2], arena[12000 + n - 1] = float("nan"), float("inf")
                wt = torch.randn(n + 3, generator=torch.Generator().manual_seed(2))
                sk.norm_kernel[(1,)](arena, wt, arena, args, 0, NEG0=NEG_ZERO, F_SQ=3,
                                     F_MEAN=4, F_EPS=1, F_ROOT=17, F_DIV=4, F_W=3, CAP0=cap0,
                                     NLEV=nlev, COMBINE=0, BLOCK=1024, PRE=pre, WARP=warp,
                                     num_warps=1 if warp else 4)
                outs.append(arena.view(torch.int32))
            if not torch.equal(outs[0], outs[1]) or torch.equal(outs[1][11000:11000 + n],
                                                                outs[1][1000:1000 + n]):
                print(f"warp norm differs: n {n} pre {pre} odd {odd}")
                return 1
    print("warp norms equal")
    return check_warp_softmax()


def check_warp_softmax() -> int:
    """`softmax_kernel` with WARP (`_softmax_warp`; past 512 columns its memory body in one
    warp) against the same kernel through memory: every output word equal, rows of a
    causal block (columns past past + row filled, each EW with its own fill), live counts
    short of the width, a NaN and an inf, a cap of 1,024 over a 512-wide row."""
    from repops.gpu import step_kernels as sk
    from repops.gpu.launch import NEG_ZERO
    from repops.gpu.norm import f32_bits as bits

    for c, rows, past, nlive, cap0 in ((70, 3, 66, 70, 64), (9, 2, 6, 8, 8),
                                       (512, 1, 511, 512, 1024), (33, 4, 30, 33, 1024),
                                       (600, 2, 598, 600, 512)):
        nlev = cap0.bit_length()
        lead = sum(cap0 >> k for k in range(nlev - 1)) * rows
        ints = [0, 10000, c, rows, 20000, nlive, 30000, 40000, 50000, nlive, 60000,
                bits(0.125), bits(float("-inf")), bits(float("-inf")), bits(0.0), bits(0.0),
                past, rows, 20000 + lead, 50000 + lead]
        args = torch.tensor([ints + [0] * (sk.ARGW - len(ints))])
        for masked in (False, True):
            outs = []
            for warp in (False, True):
                arena = torch.randn(70000, generator=torch.Generator().manual_seed(c)) * 4
                arena[c + 1], arena[2 * c - 1] = float("nan"), float("inf")
                sk.softmax_kernel[(rows,)](arena, arena, args, 0, NEG0=NEG_ZERO, F_SCALE=3,
                                           F_SUB=2, F_EXP=18, F_DIV=4, M_SCALE=masked,
                                           M_SUB=masked, M_EXP=masked, M_DIV=masked, C_MAX=1,
                                           C_SUM=0, CAP0=cap0, NLEV=nlev, BLOCK=1024,
                                           WARP=warp, num_warps=1 if warp else 4)
                outs.append(arena.view(torch.int32))
            if not torch.equal(outs[0], outs[1]) or torch.equal(outs[1][60000:60000 + c],
                                                                outs[1][1000:1000 + c]):
                print(f"warp softmax differs: c {c} rows {rows} masked {masked}")
                return 1
    print("warp softmaxes equal")
    return 0


def check_qchain_dot() -> int:
    """`qchain_dot_kernel`'s indexing (rows, columns past a tile, a short last segment, the
    segment outputs' stride) on small integers, whose sums are exact in any order: the
    interpreter's tl.dot is NumPy's matmul, so only a GPU shows the k order (test above)."""
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(3)
    for m, n, k, segw, bn, pre in ((1, 40, 200, 64, 16, False), (3, 33, 128, 64, 32, False),
                                   (1, 40, 200, 64, 16, True), (2, 17, 64, 64, 16, True)):
        x = torch.randint(-3, 4, (m, k), generator=g).float()
        wt = torch.randint(-3, 4, (k, n), generator=g).float()
        nseg = -(-k // segw)
        arena = torch.full((7 + m * k + nseg * m * n,), 9.0)
        arena[7:7 + m * k] = x.reshape(-1)
        out = 7 + m * k
        args = torch.zeros((2, sk.ARGW), dtype=torch.int64)
        args[1, :18] = torch.tensor([7, 0, k, 0, 0, 1, n, 0, out, m * n, m, n, 1, nseg, 0, segw,
                                     k, 0])
        sk.qchain_dot_kernel[(-(-n // bn), 1)](arena, wt, arena, args, 1, -0.0, BM=16, BN=bn,
                                               SEGW=segw, NS=1, PRE=pre)
        for s in range(nseg):
            ke = min(k, (s + 1) * segw)
            want = x[:, :ke] @ wt[:ke]
            got = arena[out + s * m * n:out + (s + 1) * m * n].reshape(m, n)
            if not torch.equal(want, got):
                print(f"qchain_dot m={m} n={n} segment {s} differs")
                return 1
    print("qchain_dot tiles equal")
    return check_qchain_vec()


def check_qchain_vec() -> int:
    """`qchain_vec_kernel` (one row, weight [K/TK + 2, N, TK]) on small integers, as above:
    columns past a tile, two blocks of prefetch, K a multiple of the segment."""
    from node.ree.step_plan_cuda import CudaChain
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(4)
    for n, k, segw, bn, tk in ((40, 192, 64, 32, 16), (17, 64, 32, 16, 8), (33, 128, 64, 32, 4)):
        x = torch.randint(-3, 4, (k,), generator=g).float()
        wt = torch.randint(-3, 4, (k, n), generator=g).float()
        nseg = -(-k // segw)
        ch = CudaChain.__new__(CudaChain)
        ch.wt, ch._vec, ch.k, ch.n = wt, {}, k, n
        arena = torch.full((5 + k + nseg * n,), 9.0)
        arena[5:5 + k] = x
        out = 5 + k
        args = torch.zeros((1, sk.ARGW), dtype=torch.int64)
        args[0, :18] = torch.tensor([5, 0, k, 0, 0, 1, n, 0, out, n, 1, n, 1, nseg, 0, segw,
                                     k, 0])
        sk.qchain_vec_kernel[(-(-n // bn),)](arena, ch.vec(tk), arena, args, 0, BN=bn, TK=tk,
                                             SEGW=segw)
        for s in range(nseg):
            ke = min(k, (s + 1) * segw)
            if not torch.equal(x[:ke] @ wt[:ke], arena[out + s * n:out + (s + 1) * n]):
                print(f"qchain_vec n={n} k={k} segment {s} differs")
                return 1
    print("qchain_vec tiles equal")
    return check_fused_rows()


def _ew(arena, b, ints, fn, a_at, b_at, mask=False):  # noqa: ANN001, ANN202
    """An ew_kernel launch as `CudaStepPlan._ew` makes it (b None: the scalar)."""
    from node.ree.step_plan_cuda import _Launch
    from repops.gpu import step_kernels as sk
    from repops.gpu.launch import FP_FLAGS

    return _Launch(sk.ew_kernel, (-(-ints[3] // 1024),), (arena, arena if b is None else b,
                                                          arena), ints,
                   {"FN": fn, "HAS_B": b is not None, "MASK": mask, "A_AT": a_at,
                    "B_AT": b_at, "BLOCK": 1024, **FP_FLAGS}, 0)


def _fold(arena, x_off, out_off, rows, w, combine):  # noqa: ANN001, ANN202
    from node.ree.step_plan_cuda import _Launch
    from repops.gpu import step_kernels as sk
    from repops.gpu.launch import FP_FLAGS

    return _Launch(sk.fold_tree_kernel, (rows,), (arena, arena), [x_off, out_off, rows, w, w],
                   {"NEG0": -0.0, "CAP0": 1024, "NLEV": 11, "COMBINE": combine,
                    "num_warps": 4, **FP_FLAGS}, 0)


def _run(launches, arena) -> torch.Tensor:  # noqa: ANN001
    from repops.gpu import step_kernels as sk

    args = torch.zeros((len(launches), sk.ARGW), dtype=torch.int64)
    for i, ln in enumerate(launches):
        args[i, :len(ln.ints)] = torch.tensor(ln.ints)
    for i, ln in enumerate(launches):
        ln.kernel[ln.grid](*ln.ptrs, args, i, **ln.consts)
    return arena.clone()


def _fuses_equal(launches, arena, kernel) -> bool:  # noqa: ANN001
    """`fuse_launches` makes the run one launch of `kernel`, and it leaves the arena as the
    run's own launches do."""
    from node.ree.step_plan_cuda import fuse_launches

    fused = fuse_launches(launches)
    start = arena.clone()
    want = _run(launches, arena)
    arena.copy_(start)
    return [ln.kernel for ln in fused] == [kernel] and torch.equal(
        _run(fused, arena).view(torch.int32), want.view(torch.int32))


def check_fused_rows() -> int:
    """`norm_kernel` and `softmax_kernel` (ADR 0010) against the launches they replace, on
    rows longer than the model's decode rows: more than one 1,024-block, a tree of 11 levels,
    three softmax rows whose last columns are masked (a position before the row's end)."""
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(6)
    ci, fi, gi = sk.CONTIG.value, sk.FIRST.value, sk.GENERAL.value
    bits = {"n": 0x44C00000, "eps": 0x3727C5AC, "ninf": -8388608, "scale": 0x3E000000}
    lev = 2047  # 1,024 + 512 + … + 1 words of tree levels a row
    # RMSNorm over n = 1,536 (x at 0)
    n = 1536
    arena = torch.randn(16 * n + 4 * lev, generator=g)
    wt = torch.randn(n, generator=g)
    z = [0] * 18
    o = [n, 2 * n, 2 * n + lev, 2 * n + lev + 1, 2 * n + lev + 2, 2 * n + lev + 3, 3 * n + lev + 3]
    dims = [1, 1, 1, 1, n]
    norm = [_ew(arena, arena, [0, 0, o[0], n, *dims, *z[:12], 0, 0, 0, 0, 1, n], 3, ci, ci),
            _fold(arena, o[0], o[1], 1, n, 0),
            _ew(arena, None, [o[1] + lev - 1, 0, o[2], 1, 1, 1, 1, 1, 1, *z[:12], bits["n"],
                               0, 0, 0, 1, 1], 4, fi, fi),
            _ew(arena, None, [o[2], 0, o[3], 1, 1, 1, 1, 1, 1, *z[:12], bits["eps"], 0, 0, 0,
                               1, 1], 1, fi, fi),
            _ew(arena, None, [o[3], 0, o[4], 1, 1, 1, 1, 1, 1, *z[:15]], 17, fi, fi),
            _ew(arena, arena, [0, o[4], o[5], n, *dims, *z[:12], 0, 0, 0, 0, 1, n], 4, ci, fi),
            _ew(arena, wt, [o[5], 0, o[6], n, *dims, *z[:12], 0, 0, 0, 0, 1, n], 3, ci, ci)]
    if not _fuses_equal(norm, arena, sk.norm_kernel):
        print("norm_kernel differs from its seven launches (or was not fused)")
        return 1
    # softmax over 3 rows of C = 1,500, position 1,200: columns past it are masked
    rows, c, past = 3, 1500, 1200
    m = rows * c
    arena = torch.randn(8 * m + 2 * rows * lev, generator=g)
    a = [0, m, 2 * m, 2 * m + rows * lev, 3 * m + rows * lev, 4 * m + rows * lev,
         4 * m + 2 * rows * lev]
    dims = [1, 1, rows, 1, c]
    row_b = [0, 0, 0, 1, 0, 0]
    tail = [0, past, 1, c]
    soft = [_ew(arena, None, [0, 0, a[1], m, *dims, *z[:12], bits["scale"], bits["ninf"],
                               *tail], 3, ci, fi, True),
            _fold(arena, a[1], a[2], rows, c, 1),
            _ew(arena, arena, [a[1], a[2] + rows * (lev - 1), a[3], m, *dims, *z[:6], *row_b,
                               0, bits["ninf"], *tail], 2, ci, gi, True),
            _ew(arena, None, [a[3], 0, a[4], m, *dims, *z[:12], 0, 0, *tail], 18, ci, fi,
                True),
            _fold(arena, a[4], a[5], rows, c, 0),
            _ew(arena, arena, [a[4], a[5] + rows * (lev - 1), a[6], m, *dims, *z[:6], *row_b,
                               0, 0, *tail], 4, ci, gi, True)]
    if not _fuses_equal(soft, arena, sk.softmax_kernel):
        print("softmax_kernel differs from its six launches (or was not fused)")
        return 1
    print("fused norm and softmax rows equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
