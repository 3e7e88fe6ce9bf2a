"""Batched execution of a trace program: B jobs, each with its own trace, run together.

The trace layout (docs/trace-layout.md §L1) has no batch axis and gets none: every job keeps
its own steps, leaves, trace root and receipt. A batch is an execution detail only — each
job's outputs are bit-identical to a run of `FastExecutor.run_step` on it alone, which is
what tests/ree/test_batch_invariance.py checks leaf by leaf.

What is batched: the weight DOT segments (§L5.3 with a WEIGHT second input), the bulk of a
token's arithmetic. The rows of every job of the batch (a prefill's prompt rows, a decode's
one row, jobs at different steps) are stacked into one `repops.matmul` call, so the kernels
see M = all rows of the batch. Each output element is still the RepOps §3.2 chain of its own
row (the spec fixes every element's bits independently of M), so stacking cannot change a
bit. A segment that carries an accumulator is rewritten exactly as in fastexec.py:

* rows of decode jobs (one row each): the accumulators become the first terms of the chain
  through an identity block, `A = [I_M | x_seg]`, `B = [acc; Wᵀ_seg]`: row i reads
  `fma(1, acc_i, +0) = acc_i` and `fma(0, acc_j, ·)` adds ±0 for the other rows;
* rows of prefill jobs: the chain from +0 over `[0, k1)` (WeightBuffer's prefix path),
  which equals what the previous segments accumulated.

Both can differ from the spec chain only in the sign of a zero result or by a NaN (`0·inf`
from another row's accumulator), so a job whose rows hold any ±0 or NaN element re-runs
that op alone through `FastExecutor._run`, which is exact. Every other op runs per job
through `FastExecutor._run`, the single definition of the op semantics here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

import repops
from node.ree.fastexec import FastExecError, FastExecutor, StepState, WeightBuffer
from node.ree.generate import GenResult, check_lengths
from node.ree.sampling import SamplingConfig
from node.ree.trace import TraceRecorder
from referee.layout import Code, JobConfig, Src, Symbols, TraceOp


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


class _Stack:
    """Rows of several jobs' inputs stacked once per linear (all its segments read the same
    input tensors), so the weight buffer's per-input cache keeps working."""

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        self._val: torch.Tensor | None = None

    def __call__(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if self._val is None or len(parts) != len(self._parts) or any(
                a is not b for a, b in zip(parts, self._parts, strict=True)):
            self._parts = list(parts)
            self._val = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        return self._val


class BatchExecutor:
    """Runs one step of several lanes (jobs) of the same trace program together."""

    def __init__(self, executor: FastExecutor) -> None:
        self.fx = executor
        self.program = executor.program
        self.device = executor.device
        ops = self.program.ops
        self._weight_dot = [op.code == Code.DOT and len(op.inputs) > 1
                            and op.inputs[1].src == Src.WEIGHT
                            and op.inputs[1].root in executor.buffers for op in ops]
        # only outputs read one step later (KV caches, the token op) outlive their step
        self._kept = {inp.op for op in ops for inp in op.inputs
                      if inp.src == Src.OP and inp.back == 1}
        self._all_stack, self._single_stack, self._multi_stack = _Stack(), _Stack(), _Stack()
        self._eye: dict[int, torch.Tensor] = {}
        self.batched_calls = 0  # weight-DOT matmuls over more than one job (diagnostics)
        self.reruns = 0  # (job, op) pairs re-run alone for a ±0/NaN element (diagnostics)
        self._blocks_cache = self._blocks()

    # ------------------------------------------------------------------ step driver

    def _blocks(self) -> list[tuple[bool, list[int]]]:
        """The program cut into runs of consecutive ops: (batched weight DOTs?, op indices).
        Per-job runs go job by job, so a job's ops follow each other as in a one-job step
        (the executor's per-tensor caches keep hitting)."""
        blocks: list[tuple[bool, list[int]]] = []
        for j, wd in enumerate(self._weight_dot):
            if blocks and blocks[-1][0] == wd:
                blocks[-1][1].append(j)
            else:
                blocks.append((wd, [j]))
        return blocks

    def run_step(self, lanes: Sequence[Lane]) -> list[list[torch.Tensor]]:
        """All P outputs of each lane's current step (what `FastExecutor.run_step` returns
        for that job alone); advances every lane by one step."""
        if not lanes:
            return []
        for ln in lanes:
            if ln.step > 0 and ln.prev is None:
                raise FastExecError("step > 0 without the previous step's outputs")
        states = [ln.state() for ln in lanes]
        outs: list[list[torch.Tensor]] = [[] for _ in lanes]
        ops = self.program.ops
        saved_prev = self.fx.prev
        try:
            with torch.no_grad():
                for batched, idx in self._blocks_cache:
                    if batched and len(lanes) > 1:
                        for j in idx:
                            ys = self._dot_batch(j, ops[j], lanes, states, outs)
                            for b, y in enumerate(ys):
                                self._append(j, outs[b], y, states[b], b)
                        continue
                    for b, (ln, st, o) in enumerate(zip(lanes, states, outs, strict=True)):
                        for j in idx:
                            self._append(j, o, self._one(j, ops[j], ln, st, o), st, b)
        finally:
            self.fx.prev = saved_prev
        for ln, o in zip(lanes, outs, strict=True):
            ln.prev = [t if i in self._kept else None for i, t in enumerate(o)]
            ln.step += 1
        return outs

    def _append(self, j: int, outs: list[torch.Tensor], y: torch.Tensor, st: StepState,
                b: int) -> None:
        op = self.program.ops[j]
        want = op.shape(st.sym)
        if tuple(y.shape) != want:
            raise FastExecError(f"op {j} ({op.name}) of job {b} produced {tuple(y.shape)}, "
                                f"program says {want}")
        outs.append(y)

    def _inputs(self, op: TraceOp, lane: Lane, st: StepState, outs: list[torch.Tensor]
                ) -> list[torch.Tensor | None]:
        self.fx.prev = lane.prev
        return [self.fx._input(op, k, outs, st) for k in range(len(op.inputs))]

    def _one(self, j: int, op: TraceOp, lane: Lane, st: StepState,
             outs: list[torch.Tensor]) -> torch.Tensor:
        """One op of one job through the FastExecutor (the op semantics' single home)."""
        ins = self._inputs(op, lane, st, outs)
        fb = self.fx.fallbacks
        try:
            y = self.fx._run(op, ins, st, lane.feed)
        except (ValueError, RuntimeError, TypeError) as e:
            raise FastExecError(f"op {j} ({op.name}) at step {st.step}: {e}") from e
        lane.fallbacks += self.fx.fallbacks - fb
        return y

    # ------------------------------------------------------------------ §L5.3 weight DOT

    def _dot_batch(self, j: int, op: TraceOp, lanes: Sequence[Lane],
                   states: list[StepState], outs: list[list[torch.Tensor]]
                   ) -> list[torch.Tensor]:
        """Layout §L5.3 segment of x·Wᵀ for every lane in one matmul (module docstring)."""
        k0, k1, group, causal = op.attrs
        buf = self.fx.buffers[op.inputs[1].root]
        xs = [o[op.inputs[0].op] for o in outs] if op.inputs[0].back == 0 else None
        if (len(lanes) == 1 or xs is None or group != 1 or causal
                or any(x.dim() != 2 or x.shape[1] != buf.k for x in xs)
                or min(k1, buf.k) <= k0):
            return [self._one(j, op, ln, st, o)
                    for ln, st, o in zip(lanes, states, outs, strict=True)]
        kend = min(k1, buf.k)
        has_acc = len(op.inputs) > 2
        accs = [self._inputs(op, ln, st, o)[2] for ln, st, o in
                zip(lanes, states, outs, strict=True)] if has_acc else None
        res: list[torch.Tensor | None] = [None] * len(lanes)
        if not has_acc:  # chain from +0 (§3.2) for every row: exact as is
            y, _ = buf.segment(self._all_stack(xs), k0, kend, None)
            self.batched_calls += 1
            return list(torch.split(y, [int(t.shape[0]) for t in xs], dim=0))
        single = [b for b, x in enumerate(xs) if x.shape[0] == 1]
        multi = [b for b, x in enumerate(xs) if x.shape[0] > 1]
        if len(single) == 1:
            b = single[0]
            res[b], _ = buf.segment(xs[b], k0, kend, accs[b])
        elif single:
            x = self._single_stack([xs[b] for b in single])
            acc = torch.cat([accs[b] for b in single], dim=0)
            y = repops.matmul(torch.cat([self._identity(len(single)), x[:, k0:kend]], dim=1),
                              torch.cat([acc, _wseg(buf, k0, kend)], dim=0))
            self.batched_calls += 1
            for i, b in enumerate(single):
                res[b] = y[i:i + 1]
        if multi:
            x = self._multi_stack([xs[b] for b in multi])
            acc = torch.cat([accs[b] for b in multi], dim=0)
            y, _ = buf.segment(x, k0, kend, acc)
            self.batched_calls += len(multi) > 1
            r0 = 0
            for b in multi:
                r = int(xs[b].shape[0])
                res[b] = y[r0:r0 + r]
                r0 += r
        for b, y in enumerate(res):
            if _doubtful(y):
                self.reruns += 1
                res[b] = self._one(j, op, lanes[b], states[b], outs[b])
        return res

    def _identity(self, m: int) -> torch.Tensor:
        e = self._eye.get(m)
        if e is None:
            e = self._eye[m] = torch.eye(m, dtype=torch.float32, device=self.device)
        return e


def _wseg(buf: WeightBuffer, k0: int, kend: int) -> torch.Tensor:
    """Wᵀ[k0:kend] inside the buffer's block for the segment starting at k0."""
    base = (k0 // buf.seg) * (buf.seg + 1) + 1
    return buf.buf[base: base + kend - k0]


def _doubtful(y: torch.Tensor) -> bool:
    """±0 or NaN anywhere: the rewritten chain may differ from §L5.3 there (module doc)."""
    return bool(((y == 0) | torch.isnan(y)).any())


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
                   progress: Callable[[int, int], None] | None = None) -> list[GenResult]:
    """`node.ree.generate.generate` for many jobs, at most `batch` running at once.

    Each job commits its own TraceRecorder (its own leaves and root, layout §L1) and stops on
    its own EOS or token budget; a finished job leaves the batch and the next waiting prompt
    takes its place (its prefill runs beside the others' decode steps). Results come in
    prompt order and equal the one-job runs bit for bit; `seconds` holds the wall time of
    the batch steps the job took part in (they are shared), its own commit time apart.
    `progress(done, total)` counts tokens over all jobs (total shrinks when a job stops
    early). As in `generate`, a job's token is always the program's token op (the SAMPLE
    PICK, §L5.10) under the job's own JobConfig.
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
                running.append(_Job(i, Lane(jobs_in[i], config=cfg),
                                    TraceRecorder(prog, jobs_in[i], keeps[i]), configs[i],
                                    budgets[i]))
            t0 = time.perf_counter()
            outs = bx.run_step([jb.lane for jb in running])
            toks = [int(o[prog.token_op].reshape(-1)[0]) for o in outs]
            if bx.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            still: list[_Job] = []
            for jb, o, tok in zip(running, outs, toks, strict=True):
                t1 = time.perf_counter()
                jb.rec.add_step(o)
                jb.commit_s += time.perf_counter() - t1
                jb.exec_s += dt
                if jb.lane.step == 1:
                    jb.prefill_s = dt
                jb.tokens.append(tok)
                jb.lane.feed = tok
                done += 1
                if tok == prog.eos or len(jb.tokens) >= jb.max_new:
                    total -= jb.max_new - len(jb.tokens)
                    results[jb.index] = _finish(jb, tok == prog.eos)
                else:
                    still.append(jb)
            del outs
            running = still
            if progress is not None:
                progress(done, total)
    except BaseException:
        for jb in running:
            jb.rec.close(False)
        raise
    return [r for r in results if r is not None]


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
