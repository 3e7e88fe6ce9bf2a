"""Batched execution of a trace program: B jobs, each with its own trace, run together.

The trace layout (docs/trace-layout.md §L1) has no batch axis and gets none: every job keeps
its own steps, leaves, trace root and receipt. A batch is an execution detail only — each
job's outputs are bit-identical to a run of `FastExecutor.run_step` on it alone, which is
what tests/ree/test_batch_invariance.py checks leaf by leaf.

What is batched: the linears — each one's chain of weight DOT segments (§L5.3, §L8), the
bulk of a token's arithmetic. The rows of every job of the batch (a prefill's prompt rows, a
decode's one row, jobs at different steps) are stacked, so the kernels see M = all rows of
the batch. Each output element is still the RepOps §3.2 chain of its own row (the spec fixes
every element's bits independently of M), so stacking cannot change a bit. A segment that
carries an accumulator is rewritten exactly, as in fastexec.py:

* CPU, rows of decode jobs (one row each), one matmul per segment: the accumulators become
  the first terms of the chain through an identity block, `A = [I_M | x_seg]`,
  `B = [acc; Wᵀ_seg]`: row i reads `fma(1, acc_i, +0) = acc_i`, and `fma(0, acc_j, ·)` adds
  ±0 for the other rows;
* CPU, rows of prefill jobs: the chain from +0 over `[0, k1)` (WeightBuffer's prefix path),
  which equals what the previous segments accumulated;
* accelerators (`masked`), all rows and all segments of a linear in ONE matmul: row (s, r)
  is x[r] with the columns past segment s set to +0 (the trailing terms add ±0);
* CPU, weights with GGUF blocks (the executor's `QuantChain`, before the two CPU ways
  above): all rows and all segments in one kernel call that stores each row's running chain
  at the segment ends, i.e. the spec chain itself (node/ree/linear_chain.py): no check.

The other three can differ from the spec chain only in the sign of a zero result or by a
NaN (`0·inf`), so one flag per linear (one device sync) says whether any output is ±0 or
NaN; a job whose rows hold one re-runs that linear op by op through `FastExecutor._run`,
which is exact.
Every other op runs job by job through `FastExecutor._run`, the single definition of the op
semantics here, and a batch of one job is `FastExecutor.run_step` itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

import repops
from node.ree import fastexec
from node.ree.fastexec import FastExecError, FastExecutor, StepState, WeightBuffer
from node.ree.generate import GenResult, check_lengths
from node.ree.linear_chain import QuantChain
from node.ree.sampling import SamplingConfig
from node.ree.step_plan import PlanError, StepOutputs, token_of
from node.ree.trace import TraceRecorder
from referee.layout import Code, JobConfig, Src, Symbols, TraceOp
from repops.cpu.kernels import plan_threads


@dataclass
class Lane:
    """One job of a batch: its own step counter, KV cache (previous step outputs) and feed.

    `feed` is the token the next step's TOKENS op reads (§L5.1); None reads the previous
    step's token op (greedy).
    """

    job_tokens: list[int]
    step: int = 0
    feed: int | None = None
    config: JobConfig | None = None  # what the program's SAMPLE ops read (§L5.10)
    prev: list[torch.Tensor | None] | None = None
    fallbacks: int = 0  # elements the FastExecutor recomputed by the reference for this job

    def state(self) -> StepState:
        return StepState(Symbols.for_step(len(self.job_tokens), self.step), self.step,
                         self.job_tokens, self.config)


class BatchExecutor:
    """Runs one step of several lanes (jobs) of the same trace program together."""

    def __init__(self, executor: FastExecutor, masked: bool | None = None,
                 batch_prefill: bool | None = None) -> None:
        """`masked`: all segments of a linear in one matmul (default on accelerators; the
        CPU default is one matmul per segment, fewer flops). `batch_prefill`: several jobs'
        prefills in one step through the per-op path, their linears over all their rows
        (default on accelerators, where it measured 104.5 against 66.0 tok/s on an H200);
        else each prefill is the executor's own step, one job after another: on the CPU
        that path's trees, chains and fused handlers made SmolLM2's prefills ~13x faster
        (8 jobs of 41 tokens: 0.9 against 11.6 s here)."""
        self.fx = executor
        self.masked = executor.device.type != "cpu" if masked is None else masked
        if batch_prefill is None:  # a CUDA prefill on the host is a CPU executor's step
            batch_prefill = executor.device.type != "cpu" and not fastexec.HOST_PREFILL
        self.batch_prefill = batch_prefill
        self.program = executor.program
        self.device = executor.device
        self._blocks = self._cut()
        self.n_linears = sum(1 for linear, _ in self._blocks if linear)  # batched per step
        self._eye: dict[int, torch.Tensor] = {}
        self._live: dict[tuple, torch.Tensor] = {}
        self.batched_calls = 0  # weight matmuls over more than one job (diagnostics)
        self.reruns = 0  # (job, linear) pairs re-run op by op for a ±0/NaN (diagnostics)
        self.plan_steps = 0  # batch steps whose prefixes ran in the step plan (diagnostics)

    # ------------------------------------------------------------------ step driver

    def _cut(self) -> list[tuple[bool, list[int]]]:
        """The program cut into (is a linear, op indices): each linear's segment chain
        (layout §L8: the first segment from +0, each next one continuing the previous one's
        accumulator, same A, same weight) is one block; the ops between are per-job blocks,
        run job by job so a job's ops follow each other as in a one-job step."""
        ops, bufs = self.program.ops, self.fx.buffers
        blocks: list[tuple[bool, list[int]]] = []
        for j, op in enumerate(ops):
            wdot = (op.code == Code.DOT and len(op.inputs) in (2, 3)
                    and op.inputs[0].src == Src.OP and op.inputs[0].back == 0
                    and op.inputs[1].src == Src.WEIGHT and op.inputs[1].root in bufs
                    and tuple(op.attrs[2:]) == (1, 0))
            head = wdot and len(op.inputs) == 2 and op.attrs[0] == 0
            if wdot and len(op.inputs) == 3 and blocks and blocks[-1][0]:
                last = ops[blocks[-1][1][-1]]
                if (op.inputs[2].src == Src.OP and op.inputs[2].op == j - 1
                        and op.inputs[2].back == 0 and op.inputs[0] == last.inputs[0]
                        and op.inputs[1].root == last.inputs[1].root
                        and op.attrs[0] == last.attrs[1]):
                    blocks[-1][1].append(j)
                    continue
            if head:
                blocks.append((True, [j]))
            elif blocks and not blocks[-1][0]:
                blocks[-1][1].append(j)
            else:
                blocks.append((False, [j]))
        return blocks

    def run_step(self, lanes: Sequence[Lane], speculate: bool = False
                 ) -> list[list[torch.Tensor]]:
        """All P outputs of each lane's current step (what `FastExecutor.run_step` returns
        for that job alone); advances every lane by one step. `speculate`: as
        `FastExecutor.run_step`'s, for the lanes' next steps (a CUDA stack of greedy jobs
        queues them now, `LaneStack.speculate`)."""
        if not lanes:
            return []
        for ln in lanes:
            if ln.step > 0 and ln.prev is None:
                raise FastExecError("step > 0 without the previous step's outputs")
        saved_prev = self.fx.prev
        try:
            new = [i for i, ln in enumerate(lanes) if ln.step == 0]
            if self.fx.plan is not None and 0 < len(new) < len(lanes):
                # a job joining a running batch: its prefill apart, so that the others'
                # decode steps stay on the step plan instead of all going op by op (and
                # queue no step ahead: the next step has the new job, which no guess holds)
                outs: list[list[torch.Tensor]] = [[] for _ in lanes]
                old = [i for i, ln in enumerate(lanes) if ln.step > 0]
                for group in (old, new):
                    for i, o in zip(group, self._group([lanes[i] for i in group]),
                                    strict=True):
                        outs[i] = o
            else:
                outs = self._group(lanes, speculate)
        finally:
            self.fx.prev = saved_prev
        self.advance(lanes, outs)
        return outs

    def _group(self, lanes: Sequence[Lane], speculate: bool = False
               ) -> list[list[torch.Tensor]]:
        """One step of lanes that are all decoding (the step plan) or not all (op by op,
        the linears over every job's rows); one lane, or prefills without `batch_prefill`:
        the executor's own step, job by job."""
        plan = self.fx.plan
        if plan is not None and len(lanes) > 1 and all(ln.step > 0 for ln in lanes):
            return self._plan_step(lanes, speculate)
        if len(lanes) == 1 or (not self.batch_prefill and all(ln.step == 0 for ln in lanes)):
            return [self._own(ln, speculate) for ln in lanes]
        return self._step(lanes)

    def _own(self, ln: Lane, speculate: bool = False) -> list[torch.Tensor]:
        """One lane's step through the executor's own step (its fastest path for one job)."""
        self.fx.prev = ln.prev
        fb = self.fx.fallbacks
        out = self.fx.run_step(ln.step, ln.job_tokens, ln.feed, config=ln.config,
                               speculate=speculate and ln.step > 0)
        ln.fallbacks += self.fx.fallbacks - fb
        return out

    def advance(self, lanes: Sequence[Lane], outs: Sequence[list[torch.Tensor]]) -> None:
        """Each lane keeps what its next step reads of this step's outputs, and moves on a
        step (scripts/profile_batch_cuda.py times a step's parts, this one among them)."""
        for ln, o in zip(lanes, outs, strict=True):
            if isinstance(o, StepOutputs) and o.arena.device.type != "cpu":
                # a CUDA lane's arena: the next step finds its KV caches in place
                # (`step_plan_cuda.in_place`) with no tensor made (~60 views a job a step; a
                # profile loop that made them spent 24 ms a step here at batch 32 on the
                # H200's host). On the CPU the views measured faster (202.7 against 185.9
                # tok/s, 3 A/B runs)
                ln.prev = o
            else:  # only what the next step reads (KV caches, the token op) outlives it
                ln.prev = self.fx.kept_on_device(o)
            ln.step += 1

    def _plan_step(self, lanes: Sequence[Lane], speculate: bool = False
                   ) -> list[list[torch.Tensor]]:
        """Decode steps of every lane through the executor's step plan (node/ree/step_plan.py):
        the plan of all jobs in one call (CPU: one C call, the weight linears stacked over
        the jobs' rows; CUDA: one stack of lanes, each launch once for all jobs, ADR 0011),
        then each job's ops after the plan. A CUDA plan's SAMPLE tails run on the host side
        by side in one C call (`FastExecutor.run_tails`): one after another through Python
        they were most of a 32-job step (3-5 ms each on the H200 host)."""
        fx = self.fx
        states = [ln.state() for ln in lanes]
        steps = [(st.sym, ln.prev, fx.plan_token(ln.prev, ln.feed), fx.job_words(st))
                 for ln, st in zip(lanes, states, strict=True)]
        try:
            if fx.speculates(states):  # a CUDA plan whose host tails find greedy tokens early
                prefixes = fx.plan.run_lanes(steps, plan_threads(), speculate=speculate)
            else:
                prefixes = fx.plan.run_lanes(steps, plan_threads())
        except PlanError as e:
            raise FastExecError(f"{e} at step {states[0].step}") from e
        self.batched_calls += fx.plan.n_linears
        self.plan_steps += 1
        return fx.run_tails(states, prefixes, [ln.prev for ln in lanes],
                            [ln.feed for ln in lanes])

    def _step(self, lanes: Sequence[Lane]) -> list[list[torch.Tensor]]:
        states = [ln.state() for ln in lanes]
        outs: list[list[torch.Tensor]] = [[] for _ in lanes]
        ops = self.program.ops
        with torch.no_grad():
            for linear, idx in self._blocks:
                if linear and self._linear(idx, lanes, states, outs):
                    continue
                for b, (ln, st, o) in enumerate(zip(lanes, states, outs, strict=True)):
                    for j in idx:
                        self._append(j, o, self._one(j, ops[j], ln, st, o), st, b)
        return outs

    def _append(self, j: int, outs: list[torch.Tensor], y: torch.Tensor, st: StepState,
                b: int) -> None:
        op = self.program.ops[j]
        want = op.shape(st.sym)
        if tuple(y.shape) != want:
            raise FastExecError(f"op {j} ({op.name}) of job {b} produced {tuple(y.shape)}, "
                                f"program says {want}")
        outs.append(y)

    def _one(self, j: int, op: TraceOp, lane: Lane, st: StepState,
             outs: list[torch.Tensor]) -> torch.Tensor:
        """One op of one job through the FastExecutor (the op semantics' single home)."""
        self.fx.prev = lane.prev
        ins = [self.fx._input(op, k, outs, st) for k in range(len(op.inputs))]
        fb = self.fx.fallbacks
        try:
            y = self.fx._run(op, ins, st, lane.feed)
        except (ValueError, RuntimeError, TypeError) as e:
            raise FastExecError(f"op {j} ({op.name}) at step {st.step}: {e}") from e
        lane.fallbacks += self.fx.fallbacks - fb
        return y

    # ------------------------------------------------------------------ §L5.3 linears

    def _linear(self, idx: list[int], lanes: Sequence[Lane], states: list[StepState],
                outs: list[list[torch.Tensor]]) -> bool:
        """Every segment of one linear (layout §L8) for every lane, the rows of all lanes in
        each matmul; False (nothing appended) when the inputs do not have the lowered shape."""
        ops = self.program.ops
        first = ops[idx[0]]
        buf = self.fx.buffers[first.inputs[1].root]
        xs = [o[first.inputs[0].op] for o in outs]
        if any(x.dim() != 2 or x.shape[1] != buf.k or x.shape[0] < 1 for x in xs):
            return False
        bounds = [(ops[j].attrs[0], min(ops[j].attrs[1], buf.k)) for j in idx]
        if any(k0 % buf.seg or not 0 < kend - k0 <= buf.seg for k0, kend in bounds):
            return False
        qc = self.fx._panels.get(first.inputs[1].root)
        if isinstance(qc, QuantChain) and qc.ends == tuple(e for _, e in bounds):
            y, _ = qc.run(xs[0] if len(xs) == 1 else torch.cat(xs))  # exact: no flag
            segs, flag = list(y.unbind(0)), None
            self.batched_calls += len(xs) > 1
        elif self.masked:
            segs, flag = self._segments_masked(buf, xs, bounds)
        else:
            segs, flag = self._segments_cpu(buf, xs, bounds)
        rows = [int(x.shape[0]) for x in xs]
        starts = [sum(rows[:b]) for b in range(len(rows))]
        for b, (ln, st, o) in enumerate(zip(lanes, states, outs, strict=True)):
            mine = [y[starts[b]:starts[b] + rows[b]] for y in segs]
            if flag is not None and bool(flag) and any(_doubtful(y) for y in mine):
                self.reruns += 1  # the exactness net (module docstring): op by op, alone
                for j in idx:
                    self._append(j, o, self._one(j, ops[j], ln, st, o), st, b)
                continue
            for j, y in zip(idx, mine, strict=True):
                self._append(j, o, y.reshape(ops[j].shape(st.sym)), st, b)
        return True

    def _segments_cpu(self, buf: WeightBuffer, xs: list[torch.Tensor],
                      bounds: list[tuple[int, int]]
                      ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Per segment one matmul over the decode rows (identity block for the accumulators)
        and one over the prefill rows (the buffer's prefix chains); rows in lane order."""
        one = [b for b, x in enumerate(xs) if x.shape[0] == 1]
        many = [b for b, x in enumerate(xs) if x.shape[0] > 1]
        if many and one and one != list(range(len(one))):
            order = one + many  # rows of lanes in group order, put back into lane order below
        else:
            order = None
        parts, flags = [], []
        for group in (one, many):
            if not group:
                continue
            x = xs[group[0]] if len(group) == 1 else torch.cat([xs[b] for b in group])
            ys, acc = [], None
            for k0, kend in bounds:
                if acc is not None and x.shape[0] > 1 and group is one:
                    a = torch.cat([self._identity(x.shape[0]), x[:, k0:kend]], dim=1)
                    y = repops.matmul(a, torch.cat([acc, _wseg(buf, k0, kend)]))
                else:
                    y, _ = buf.segment(x, k0, kend, acc)
                if acc is not None:
                    flags.append(_doubtful_flag(y))
                ys.append(y)
                acc = y
            self.batched_calls += len(bounds) * (len(group) > 1)
            parts.append(ys)
        segs = [torch.cat([p[s] for p in parts]) if len(parts) > 1 else parts[0][s]
                for s in range(len(bounds))]
        if order is not None:
            rows = [int(xs[b].shape[0]) for b in order]
            at = {b: sum(rows[:i]) for i, b in enumerate(order)}
            sel = torch.cat([torch.arange(at[b], at[b] + int(xs[b].shape[0]))
                             for b in range(len(xs))]).to(self.device)
            segs = [y.index_select(0, sel) for y in segs]
        return segs, (torch.stack(flags).any() if flags else None)

    def _segments_masked(self, buf: WeightBuffer, xs: list[torch.Tensor],
                         bounds: list[tuple[int, int]]
                         ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """All segments of all rows in ONE matmul (accelerators, where launches dominate):
        row (s, r) is x[r] laid out on the buffer's rows with the columns past segment s
        set to +0, i.e. the §3.2 chain over [0, k1(s)) followed by ±0 terms."""
        s1, nseg = buf.seg + 1, len(bounds)
        if nseg > buf.nseg:
            raise FastExecError("a linear with more segments than its weight buffer")
        x = xs[0] if len(xs) == 1 else torch.cat(xs)
        r = x.shape[0]
        if buf.dirty:  # the spare rows must read +0 here (WeightBuffer docstring)
            buf.buf[0::s1] = 0.0
            buf.dirty = False
        xk = torch.zeros((r, nseg * buf.seg), dtype=torch.float32, device=x.device)
        xk[:, : buf.k] = x
        pad = torch.zeros((r, nseg, s1), dtype=torch.float32, device=x.device)
        pad[:, :, 1:] = xk.reshape(r, nseg, buf.seg)
        key = (tuple(bounds), s1)
        live = self._live.get(key)
        if live is None:
            cols = torch.arange(nseg * s1, device=x.device).reshape(1, 1, -1)
            ends = torch.tensor([s * s1 + 1 + kend - k0 for s, (k0, kend) in enumerate(bounds)],
                                device=x.device).reshape(-1, 1, 1)
            live = self._live[key] = cols < ends
        xm = torch.where(live, pad.reshape(1, r, nseg * s1), 0.0)
        y = repops.matmul(xm.reshape(nseg * r, nseg * s1), buf.buf[: nseg * s1])
        self.batched_calls += 1
        y = y.reshape(nseg, r, -1)
        return list(y.unbind(0)), _doubtful_flag(y)

    def _identity(self, m: int) -> torch.Tensor:
        e = self._eye.get(m)
        if e is None:
            e = self._eye[m] = torch.eye(m, dtype=torch.float32, device=self.device)
        return e


def _wseg(buf: WeightBuffer, k0: int, kend: int) -> torch.Tensor:
    """Wᵀ[k0:kend] inside the buffer's block for the segment starting at k0."""
    base = (k0 // buf.seg) * (buf.seg + 1) + 1
    return buf.buf[base: base + kend - k0]


def _doubtful_flag(y: torch.Tensor) -> torch.Tensor:
    """0-dim bool on y's device: some element is ±0 or NaN, where a rewritten chain may
    differ from §L5.3 (module docstring); checked once per linear, one sync."""
    return ((y == 0) | torch.isnan(y)).any()


def _doubtful(y: torch.Tensor) -> bool:
    return bool(_doubtful_flag(y))


# ---------------------------------------------------------------------- generation


@dataclass
class _Job:
    index: int
    lane: Lane
    rec: TraceRecorder
    sampling: SamplingConfig
    max_new: int
    tokens: list[int] = field(default_factory=list)
    exec_s: float = 0.0
    commit_s: float = 0.0
    prefill_s: float = 0.0


def generate_batch(executor: FastExecutor | BatchExecutor, prompts: Sequence[Sequence[int]],
                   max_new_tokens: int | Sequence[int],
                   sampling: SamplingConfig | Sequence[SamplingConfig] | None = None,
                   keep: Sequence[str | Path | None] | None = None,
                   max_ctx: int | None = None, batch: int | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   compact: bool = False) -> list[GenResult]:
    """`node.ree.generate.generate` for many jobs, at most `batch` running at once.

    Each job commits its own TraceRecorder (its own leaves and root, layout §L1) and stops on
    its own EOS or token budget; a finished job leaves the batch and the next waiting prompt
    takes its place (its prefill runs beside the others' decode steps). Results come in
    prompt order and equal the one-job runs bit for bit; `seconds` holds the wall time of
    the batch steps the job took part in (they are shared), its own commit time apart.
    `progress(done, total)` counts tokens over all jobs (total shrinks when a job stops
    early). As in `generate`, a job's token is always the program's token op (the SAMPLE
    PICK, §L5.10) under the job's own JobConfig, and `compact` commits compact traces.
    """
    bx = executor if isinstance(executor, BatchExecutor) else BatchExecutor(executor)
    prog = bx.program
    n = len(prompts)
    budgets = list(max_new_tokens) if isinstance(max_new_tokens, Sequence) \
        else [max_new_tokens] * n
    configs = list(sampling) if isinstance(sampling, Sequence) \
        else [sampling or SamplingConfig()] * n
    keeps = list(keep) if keep is not None else [None] * n
    if not (len(budgets) == len(configs) == len(keeps) == n):
        raise ValueError("one max_new_tokens, sampling config and keep path per prompt")
    width = n if batch is None else batch
    if width < 1:
        raise ValueError("batch must be at least 1")
    jobs_in = [[int(t) for t in p] for p in prompts]
    if max_ctx is not None:
        for p, m in zip(jobs_in, budgets, strict=True):
            check_lengths(len(p), m, max_ctx)
    waiting = deque(range(n))
    running: list[_Job] = []
    results: list[GenResult | None] = [None] * n
    total, done = sum(budgets), 0
    try:
        while waiting or running:
            while waiting and len(running) < width:
                i = waiting.popleft()
                cfg = configs[i].job_config(budgets[i])
                rec = TraceRecorder(prog, jobs_in[i], keeps[i], compact=compact)
                running.append(_Job(i, Lane(jobs_in[i], config=cfg), rec, configs[i],
                                    budgets[i]))
            if bx.batch_prefill:
                groups = [running]
            else:
                # each new job's prefill alone, its leaves (SmolLM2: ~580 MB for a 41-token
                # prompt) hashed before the next but one starts: 32 prefills held at once
                # were ~18.5 GB on this 24 GB machine
                groups = [[jb] for jb in running if jb.lane.step == 0]
                groups.append([jb for jb in running if jb.lane.step > 0])
            still: list[_Job] = []
            hashing: _Job | None = None  # the last prefill, maybe still being hashed
            for group in groups:
                if not group:
                    continue
                if hashing is not None and group[0].lane.step == 0:
                    t1 = time.perf_counter()
                    hashing.rec.flush()
                    hashing.commit_s += time.perf_counter() - t1
                for jb, eos in _step_jobs(bx, group):
                    done += 1
                    if eos or len(jb.tokens) >= jb.max_new:
                        total -= jb.max_new - len(jb.tokens)
                        results[jb.index] = _finish(jb, eos)
                    else:
                        still.append(jb)
                prefilled = len(group) == 1 and group[0].lane.step == 1
                hashing = group[0] if prefilled and still and still[-1] is group[0] else None
            running = still
            if progress is not None:
                progress(done, total)
    except BaseException:
        for jb in running:
            jb.rec.close(False)
        raise
    return [r for r in results if r is not None]


def _step_jobs(bx: BatchExecutor, group: list[_Job]) -> list[tuple[_Job, bool]]:
    """One step of the jobs of `group` together: each job's token recorded, its step's
    outputs queued on its recorder; (job, stopped on EOS) each."""
    prog = bx.program
    t0 = time.perf_counter()
    # tokens read from the host (their tails waited for the device); no device-wide sync:
    # with `speculate` the next step is already queued (a job's last step or EOS wastes it)
    outs = bx.run_step([jb.lane for jb in group],
                       speculate=any(len(jb.tokens) + 1 < jb.max_new for jb in group))
    toks = [token_of(o, prog.token_op) for o in outs]
    dt = time.perf_counter() - t0
    got = []
    for jb, o, tok in zip(group, outs, toks, strict=True):
        t1 = time.perf_counter()
        jb.rec.add_step(o)
        jb.commit_s += time.perf_counter() - t1
        jb.exec_s += dt
        if jb.lane.step == 1:
            jb.prefill_s = dt
        jb.tokens.append(tok)
        jb.lane.feed = tok
        got.append((jb, tok == prog.eos))
    return got


def _finish(jb: _Job, eos: bool) -> GenResult:
    jb.rec.close(True)
    t = time.perf_counter()
    root = jb.rec.root()
    return GenResult(jb.lane.job_tokens, jb.tokens, "stop" if eos else "length", root,
                     jb.rec.length, jb.rec.roots, sampled=not jb.sampling.greedy,
                     seconds={"execute": jb.exec_s,
                              "commit": jb.commit_s + time.perf_counter() - t,
                              "prefill": jb.prefill_s},
                     bytes_kept=jb.rec.bytes_kept, fallbacks=jb.lane.fallbacks)


__all__ = ["BatchExecutor", "Lane", "generate_batch"]
