"""Fast executor of a trace program (docs/trace-layout.md §L5) on torch tensors through the
RepOps API, CPU or CUDA, bit-identical to the reference `referee.execute` on every leaf.

Why not `referee.ops`: the reference evaluates element by element in NumPy (an fma loop per
k), minutes per token on SmolLM2. Here every op is a few whole-tensor `repops` calls:

* DOT k-segments (§L5.3) are chains that start from the previous segment's accumulator, and
  `repops.matmul` chains from +0.0. Two exact rewrites bridge that:
  - one query row (decode): the accumulator becomes the first term of the chain,
    `fma(1.0, acc[n], +0.0) = acc[n]` (exact), with `acc` written into a spare row of the
    segmented weight buffer;
  - several rows (prefill): the segment's output is the chain from +0.0 over `[0, k1)`,
    which is what the previous segments accumulated (this executor produced them).
  Both rewrites, and the causal exclusion of masked keys (done here by zero products after
  the live ones), can only differ from the spec chain in the sign of a zero result or by a
  NaN from `0·inf` (an accumulator of −0.0 fed as +0.0, or `acc + (±0)` terms). Every output
  element that is ±0 or NaN is therefore recomputed by the reference semantics
  (`referee.ops.elements`), which makes the op exact; such elements are rare.
* FOLD levels, ARGFOLD levels, EW, ROPE, MOVE, CONCAT, GATHER map onto `repops` element
  ops and bit copies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cache, cached_property, partial
from typing import TYPE_CHECKING

import numpy as np
import torch

import repops
from node.ree import fastsample
from node.ree import fold_tree as ft
from node.ree import linear_chain as lc
from node.ree import step_plan as sp
from node.ree.host_arena import Readers
from referee.execute import ArrayView
from referee.f32 import NAN, NEG_INF, NEG_ZERO
from referee.layout import Code, Dim, Fn, Src, Symbols, TraceOp, TraceProgram, is_binary
from referee.ops import EvalContext, elements
from repops.cpu import kernels as cpu_kernels

if TYPE_CHECKING:
    from node.ree.step_plan_cuda import CudaStepPlan

_TORCH = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64,
          "uint8": torch.uint8}
_BIN = {Fn.ADD: repops.add, Fn.SUB: repops.sub, Fn.MUL: repops.mul, Fn.DIV: repops.div,
        Fn.MAX: repops.maximum, Fn.MIN: repops.minimum}
_UN = {Fn.NEG: repops.neg, Fn.SQRT: repops.sqrt, Fn.EXP: repops.exp, Fn.LOG: repops.log,
       Fn.SIGMOID: repops.sigmoid, Fn.SILU: repops.silu}
# The same ops straight to the CPU kernels: the executor's inputs are float32 tensors on
# one device by construction, so `repops`' argument checks (~15 µs a call) only cost time.
_CPU_BIN = {fn: partial(cpu_kernels.binary, f.__name__) for fn, f in _BIN.items()}
_CPU_UN = {fn: partial(cpu_kernels.unary, f.__name__) for fn, f in _UN.items()}


class FastExecError(RuntimeError):
    """An op's inputs do not fit (the reference raises OpError on the same programs)."""


def numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def rows_cols(shape: Sequence[int]) -> tuple[int, int, int]:
    """§L5: (batch, rows, cols) of a tensor read as [..., R, C]; 1-D is one row."""
    if len(shape) == 0:
        return 1, 1, 1
    if len(shape) == 1:
        return 1, 1, int(shape[0])
    return numel(shape[:-2]), int(shape[-2]), int(shape[-1])


def _shape_fn(op: TraceOp, const: tuple[int, ...] | None
              ) -> Callable[[Symbols], tuple[int, ...]]:
    if const is not None:
        return lambda sym: const
    coeffs = tuple((d.c0, d.seq, d.past) for d in op.dims)
    by_seq = not any(d.past for d in op.dims)  # the same shape at every decode step
    memo: dict[object, tuple[int, ...]] = {}

    def shape(sym: Symbols) -> tuple[int, ...]:
        key = sym.seq if by_seq else (sym.seq, sym.past)
        out = memo.get(key)
        if out is None:
            s, p = sym.seq, sym.past
            out = tuple([c0 + cs * s + cp * p for c0, cs, cp in coeffs])
            if out and min(out) < 0:
                return op.shape(sym)  # raises, naming the op and the dim
            if not by_seq:
                memo.clear()  # one step's shape: asked by the handler, then the check
            memo[key] = out
        return out

    return shape


def _cpu_grouped_gemm(a: torch.Tensor, b: torch.Tensor, group: int, k0: int, kend: int
                      ) -> torch.Tensor:
    """§L5.3 activation DOT from +0.0 on the CPU: out[i] = a[i, :, k0:kend] · b[i // group,
    :, k0:kend]ᵀ, one strided call of the RepOps GEMM per head (spec §3.2 chain; b is read as
    W[N, K], so neither the grouped keys are repeated nor a transpose copied)."""
    a, b = a.contiguous(), b.contiguous()
    ba, r, k = a.shape
    n = b.shape[1]
    out = torch.empty((ba, r, n), dtype=torch.float32)
    gemm, nt = _gemm_fn(), cpu_kernels.plan_threads()
    ap, bp, op = a.data_ptr() + 4 * k0, b.data_ptr() + 4 * k0, out.data_ptr()
    for i in range(ba):
        gemm(r, n, kend - k0, ap + 4 * i * r * k, k, bp + 4 * (i // group) * n * k, 1, k,
             op + 4 * i * r * n, n, nt)
    return out


@cache
def _gemm_fn():  # noqa: ANN202 - ctypes function
    from repops.cpu.build import load

    return load().repops_gemm


def bits_scalar(bits: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array([bits], dtype=np.uint32).view(np.float32)).to(device)


@cache
def _dim(word: int) -> Dim:
    """§L3 dim word, decoded once per distinct word (ops are re-run every step)."""
    return Dim.from_word(word)


def _canonical_array(a: np.ndarray) -> bool:
    """No NaN other than the canonical 0x7FC00000 (RepOps spec §1.2)."""
    if a.dtype != np.float32:
        return True
    nan = np.isnan(a)
    return not nan.any() or bool((a[nan].view(np.uint32) == NAN).all())


def canon(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §1.2: NaN → 0x7FC00000 (for bit copies of possibly foreign data)."""
    if x.dtype != torch.float32:
        return x
    nan = torch.isnan(x)
    if not bool(nan.any()):
        return x
    return torch.where(nan, bits_scalar(NAN, x.device), x)


def _fill(shape: Sequence[int], bits: int, device: torch.device) -> torch.Tensor:
    return bits_scalar(bits, device).expand(*shape).contiguous() if shape else \
        bits_scalar(bits, device).reshape(())


class WeightBuffer:
    """A [N, K] weight laid out for segmented chains (layout §L5.3, module docstring).

    Block s (rows s·(S+1) … s·(S+1)+S) holds a spare row then Wᵀ[k0:k1]; rows past K are
    zero. The spare row takes the accumulator in decode and is +0.0 for prefill prefixes.
    """

    def __init__(self, w: np.ndarray, seg: int, device: torch.device) -> None:
        n, k = w.shape
        self.n, self.k, self.seg = n, k, seg
        self.nseg = max(1, -(-k // seg))
        buf = np.zeros((self.nseg * (seg + 1), n), dtype=np.float32)
        for s in range(self.nseg):
            k0, k1 = s * seg, min((s + 1) * seg, k)
            buf[s * (seg + 1) + 1: s * (seg + 1) + 1 + (k1 - k0)] = w[:, k0:k1].T
        self.buf = torch.from_numpy(buf).to(device)
        self.dirty = False
        self._pad_src: torch.Tensor | None = None
        self._pad: torch.Tensor | None = None

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """x[r, K] spread over the buffer's rows (zeros at spare rows), cached per input."""
        if self._pad_src is x and self._pad is not None:
            return self._pad
        r, s1 = x.shape[0], self.seg + 1
        pad = torch.zeros((r, self.nseg, s1), dtype=torch.float32, device=x.device)
        xk = torch.zeros((r, self.nseg * self.seg), dtype=torch.float32, device=x.device)
        xk[:, : self.k] = x
        pad[:, :, 1:] = xk.reshape(r, self.nseg, self.seg)
        self._pad_src, self._pad = x, pad.reshape(r, self.nseg * s1)
        return self._pad

    def segment(self, x: torch.Tensor, k0: int, k1: int, acc: torch.Tensor | None
                ) -> tuple[torch.Tensor, bool]:
        """Chain over [k0, k1) of x[r, K] · Wᵀ from `acc` ([r, N]) or +0; (out, needs check)."""
        if k0 % self.seg or k1 - k0 > self.seg:
            raise FastExecError(f"segment [{k0}:{k1}) does not match the buffer's {self.seg}")
        s, s1 = k0 // self.seg, self.seg + 1
        ln = min(k1, self.k) - k0
        base = s * s1
        if acc is None:
            return repops.matmul(x[:, k0:k0 + ln].contiguous(),
                                 self.buf[base + 1: base + 1 + ln]), False
        if x.shape[0] == 1:
            self.buf[base] = acc.reshape(-1)
            self.dirty = True
            a = torch.cat([torch.ones((1, 1), dtype=torch.float32, device=x.device),
                           x[:, k0:k0 + ln]], dim=1)
            return repops.matmul(a, self.buf[base: base + 1 + ln]), True
        if self.dirty:
            self.buf[0::s1] = 0.0
            self.dirty = False
        a = self._padded(x)[:, : base + 1 + ln].contiguous()
        return repops.matmul(a, self.buf[: base + 1 + ln]), True


@dataclass
class StepState:
    sym: Symbols
    step: int
    job_tokens: Sequence[int]
    config: object | None = None  # the job's referee.layout.JobConfig (SAMPLE, §L5.10)


def _not_here(outs: list, st: StepState) -> torch.Tensor:
    raise FastExecError("this executor runs only the ops from its `ops_from` on")


class _HostPrefix(list):
    """A step's outputs as a host executor reads them: the device ops before the tail are
    copied to the host when first read (the tail reads the logits only); the tail's own
    outputs are appended."""

    def __init__(self, outs: Sequence[torch.Tensor], tail: int) -> None:
        super().__init__([None] * tail)
        self._outs = outs

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - list protocol
        if isinstance(i, int) and 0 <= i < len(self._outs) and list.__getitem__(self, i) is None:
            list.__setitem__(self, i, self._outs[i].cpu())
        return list.__getitem__(self, i)


# A CUDA batch's logits fetched for the host tails in one gather (`_HostTail._fetch`)
# instead of a view and a copy per job. H100 A/B (seventeenth session, profile_batch_cuda.py
# --batch 32 --steps 8): 16.7 → 16.1 and 20.3 → 19.8 ms a step (~3 %); on since the
# thirtieth session, when the GPU stack tests (their fused cases with it on) passed 9/9.
# A one-copy variant (torch.stack of the views) was slower on the H200 (twelfth revision);
# --no-gather-logits for the A/B.
GATHER_LOGITS = True

# A CUDA job's prefill (step 0) on the host's cores, by a CPU executor's own step, instead of
# op by op on the device: the same bits (RepOps), and the step after reads the KV caches
# copied up. The GPU's prefill runs ~5,500 ops through Python with small launches (66 tok/s
# on an H200) where this 2-core CPU prefills at ~350 tok/s. Off until measured on a GPU
# host: scripts/bench_runtime.py --host-prefill.
HOST_PREFILL = False

# Threads of a CUDA batch's host tails up to their argmax (`_HostTail.run_many`, on the
# calling thread) while the rest of the previous batch runs on the worker with half the
# cores; 0: all the host's cores. A/B on the H100 host (thirty-fourth session, b=32 loop,
# 32-step medians): all 16 cores 8.82 / 8.65 / 8.90 ms a step, four 8.52 / 9.63 / 8.08, eight
# 9.84: no difference beyond the host's noise, so all cores stay (that host's environment
# sets OMP_WAIT_POLICY=PASSIVE: its teams do not spin). --tail-early-threads for the A/B.
TAIL_EARLY_THREADS = 0

# Threads of the rest of a CUDA batch's greedy host tails (`_HostTail._rest`, on the worker
# beside the next step); 0: half the host's cores (`run_many`'s comment says why). Once the
# main thread's share shrank (TAIL_IN_PLACE), the worker's ~6.5 ms rest at 8 threads was as
# long as the step (py-spy, H100 host, thirty-sixth session). --tail-rest-threads for the A/B.
TAIL_REST_THREADS = 0

# A CUDA batch's host tails read the logits where they lie on the host (a stack's pinned
# rows, or `_fetch`'s) instead of copying them into the tails' arenas (`StepPlan._batch`):
# the copy was ~1.7 ms (18 %) of a ~9.4 ms b=32 step on the H100 host (py-spy, thirty-fourth
# session). The stack rewrites its rows only after the tails reading them are done
# (`host_arena.Readers`). The same bytes are read either way. --no-tail-in-place for the A/B.
TAIL_IN_PLACE = True


def _on_host(outs: list, i: int) -> torch.Tensor:
    """Output i of a step for its host tail: the host copy already queued
    (`StepOutputs.host_copies`), once complete, else the output itself."""
    got = getattr(outs, "host_copies", None)
    if got and i in got:
        t, ready, _readers = got[i]
        ready.synchronize()
        return t
    return outs[i]


def _readers_of(outs: Sequence[list], ops: Sequence[int]) -> Readers | None:
    """The one `Readers` of every job's host copies of `ops` (a CUDA stack's pinned logits
    rows, `LaneStack.speculate`), else None: then nobody would wait before rewriting them,
    and the tails copy them."""
    found: list[Readers | None] = []
    for o in outs:
        copies = getattr(o, "host_copies", {})
        for i in ops:
            r = copies[i][2] if i in copies else None
            if r is None or (found and r is not found[0]):
                return None
            found.append(r)
    return found[0] if found else None


class _HostTail:
    """A CUDA decode step's ops after the plan (the SAMPLE tail: argmax, sort, merges, scan,
    draws over the 49,152 logits) on the host's C kernels.

    Why: on the device they are ~80 small torch launches and a host round trip (SCAN), ~12 ms
    of a ~30 ms SmolLM2 step; on the host they are ~1-2 ms once the logits (192 KB) are
    there, and the next step needs the token on the host anyway. The same §L5 definitions
    run on both (tests compare every leaf), and the recorder hashes host tensors directly.

    The tail runs as a CPU step plan that starts at the CUDA plan's end (`StepPlan(start=)`,
    the logits its external input): one C call with no Python between the ops, whose outputs
    the CUDA step's outputs read lazily (`StepOutputs.attach_tail`; the recorder hashes them
    from the arena's arrays). A batch's tails run side by side in one call (`run_many`). A
    tail the plan does not cover to the end runs through the executor's handlers.

    A greedy job's token is the argmax (§L5.10 PICK with T = ±0), known once the tail's first
    records ran (`StepPlan.early_records`): `run` returns then, and the rest of the tail
    (~1.5 ms on the H200's host, the sort, MERGE levels and sampler stages whose leaves the
    trace still commits) runs on a worker thread beside the next step's graph, instead of
    leaving the GPU idle. Readers of those outputs wait for it (`StepOutputs.tail_ready`)."""

    def __init__(self, ex: FastExecutor, tail: int) -> None:
        self.ex = ex
        built = sp.StepPlan(ex.program, ex.np_weights, {}, {}, ex._trees, start=tail)
        self.plan = built if built.tail == len(ex.program.ops) else None
        self._worker: ThreadPoolExecutor | None = None
        self._rests: deque[Future] = deque()  # the worker's tails, oldest first (`_rest`)
        self._aranges: dict[tuple[torch.device, int], torch.Tensor] = {}  # `_fetch`'s indices

    @staticmethod
    def fits(program: TraceProgram, tail: int) -> bool:
        """The tail reads only this step's outputs (no KV cache of the previous step)."""
        return all(i.src != Src.OP or i.back == 0 for op in program.ops[tail:]
                   for i in op.inputs)

    def run(self, outs: list, tail: int, st: StepState, feed_token: int | None,
            nthreads: int = 1) -> list[torch.Tensor]:
        plan = self.plan
        if plan is not None and plan.early_records and isinstance(outs, sp.StepOutputs) \
                and (st.config is None or st.config.greedy):
            return self._run_early(outs, st)
        if plan is not None:
            return self.run_many([outs], [st], nthreads)[0]
        ex = self.ex
        ex._feed, ex._sym, ex._flags = feed_token, st.sym, None
        try:
            got = ex._run_ops(tail, _HostPrefix(outs, tail), st)
        finally:
            ex._group_out = None
        outs.extend(list.__getitem__(got, slice(tail, None)))
        return outs

    def run_many(self, outs: Sequence[list], states: Sequence[StepState], nthreads: int
                 ) -> list[list]:
        """Several jobs' tails through the plan, side by side in one C call
        (`StepPlan.run_prepared`): their outputs attached to each job's outputs."""
        plan = self.plan
        early = plan.early_records and all(
            isinstance(o, sp.StepOutputs) for o in outs) and all(
            st.config is None or st.config.greedy for st in states)
        try:
            jobs = self._prepare(outs, states)
            plan.run_prepared(jobs, 0, plan.early_records if early else plan.n_records,
                              min(nthreads, TAIL_EARLY_THREADS or nthreads) if early
                              else nthreads)
        except sp.PlanError as e:
            raise FastExecError(f"{e} at step {states[0].step}") from e
        if early:
            # the rest runs beside the next step, whose host work (queueing the stack, laying
            # out these jobs' successors) is on this thread: on half the cores, not all. H100
            # b=32 loop (thirty-third session, two runs each): 16 threads 10.50/10.29 and
            # 9.77/9.14 ms a step, 8 threads 9.51/9.33 and 7.42/9.16
            self._rest(outs, states, jobs, TAIL_REST_THREADS or max(1, nthreads // 2))
            return list(outs)
        for o, g in zip(outs, jobs.outputs, strict=True):
            if isinstance(o, sp.StepOutputs):
                o.attach_tail(g)
            else:
                o.extend(g[plan.start:])
        return list(outs)

    def _prepare(self, outs: Sequence[list], states: Sequence[StepState]) -> sp.PreparedJobs:
        """The jobs' tail arenas, the logits (the plan's external input) copied in or, where
        their rows may be read in place (`_fetch`'s own, or a stack's with `Readers`), not."""
        plan = self.plan
        exts = self._fetch(outs) if GATHER_LOGITS else None
        # `_fetch`'s rows are this call's own (the jobs hold them): read in place, no one
        # waits; a stack's host copies are read in place where its next writer waits
        in_place, readers = exts is not None, None
        if exts is None:
            exts = [{i: _on_host(o, i) for i in plan.external} for o in outs]
            readers = _readers_of(outs, plan.external)
            in_place = readers is not None
        jobs = plan.prepare_jobs([(st.sym, (), 0, sp.job_words(st.config, st.step))
                                  for st in states], exts, in_place=in_place and TAIL_IN_PLACE)
        jobs.readers = readers
        return jobs

    def _fetch(self, outs: Sequence[list]) -> list[dict[int, torch.Tensor]] | None:
        """The jobs' external inputs (their logits) in one gather and one device→host copy,
        when every job's arena lies in one allocation (a batch's `LaneStack`); else None.

        Why: by a view and a copy per job, a batch of 32 spent ~4 ms of a step on the H200's
        host making 32 device views and waiting on 32 small synchronous copies
        (profile_batch_cuda.py), all between the device's step and the next one."""
        plan = self.plan
        if len(outs) < 2 or not all(isinstance(o, sp.StepOutputs) and o.host_tail is None
                                    and not o.host_copies for o in outs):
            return None
        store = outs[0].arena.untyped_storage()
        base = store.data_ptr()
        if any(o.arena.untyped_storage().data_ptr() != base
               or o.replaced.intersection(plan.external) for o in outs):
            return None
        dev, got = outs[0].arena.device, [{} for _ in outs]
        for o in outs:
            o.wait_ready()
        whole = torch.empty(0, dtype=torch.uint8, device=dev).set_(store, 0, (store.nbytes(),))
        for i in plan.external:
            dt, n = plan.dtypes[i], int(outs[0].nbytes[i])
            esize = dt.itemsize
            starts = np.array([o.address(i) - base for o in outs], dtype=np.int64)
            if any(int(o.nbytes[i]) != n for o in outs) or (starts % esize).any() or n % esize:
                return None
            ar = self._aranges.get((dev, n // esize))
            if ar is None:
                ar = self._aranges[dev, n // esize] = torch.arange(n // esize, device=dev)
            rows = whole.view(dt)[torch.from_numpy(starts // esize).to(dev)[:, None]
                                  + ar[None, :]]
            if dev.type == "cuda":  # pinned: one asynchronous copy, then wait for it
                host = torch.empty(rows.shape, dtype=dt, pin_memory=True)
                host.copy_(rows, non_blocking=True)
                torch.cuda.current_stream(dev).synchronize()
            else:  # the interpreter's tests: the arenas are host tensors already
                host = rows
            for g, r in zip(got, host, strict=True):
                g[i] = r
        return got

    def _run_early(self, outs: sp.StepOutputs, st: StepState) -> sp.StepOutputs:
        """A greedy job's tail: the records up to the argmax now, the rest on the worker."""
        plan = self.plan
        try:
            jobs = self._prepare([outs], [st])
            plan.run_prepared(jobs, 0, plan.early_records, 1)
        except sp.PlanError as e:
            raise FastExecError(f"{e} at step {st.step}") from e
        self._rest([outs], [st], jobs, 1)
        return outs

    def _rest(self, outs: Sequence[sp.StepOutputs], states: Sequence[StepState],
              jobs: sp.PreparedJobs, nthreads: int) -> None:
        """Greedy jobs whose tails ran up to the argmax (`early_records`): each job's token
        readable now, the rest of their tails (one call for all) on the worker thread beside
        the next step; a reader of those outputs waits for it and checks that each job's
        PICK is its argmax."""
        plan, token_op = self.plan, self.ex.program.token_op
        # every job's token by one copy when their arenas are one buffer (`StepPlan._batch`),
        # shaped as the token op once for all jobs (one layout), not a view, a clone, a shape
        # read and a reshape a job. H100 host, 32 jobs, with the rest queued: 2.1-2.8 ms of
        # the main thread before the one copy, 1.6-2.4 after; the shaping once then took 32
        # jobs' tokens 0.15-0.25 → 0.03-0.05 ms on a 2-core EPYC (py-spy had put 14 % of the
        # H100 host's step at the per-job shape read; notes-runtime-perf.md, thirty-fourth
        # revision)
        col = jobs.column(plan.early_op)
        shape = jobs.outputs[0].shape_of(token_op)
        tokens = list(col.clone().reshape(len(outs), *shape)) if col is not None else \
            [g[plan.early_op].clone().reshape(shape) for g in jobs.outputs]
        ints = [int(t.reshape(-1)[0]) for t in tokens] if col is None else \
            col.reshape(len(outs), -1)[:, 0].tolist()
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="ree-tail")
        # at most one batch of tails running and one queued: a host that queues steps faster
        # than the worker finishes their tails (32 jobs' tails are ~185 MB of arenas) waits
        # here rather than hold ever more of them
        while self._rests and (self._rests[0].done() or len(self._rests) >= 2):
            wait([self._rests.popleft()])
        rest = self._worker.submit(plan.run_prepared, jobs, plan.early_records,
                                   plan.n_records, nthreads)
        self._rests.append(rest)
        if jobs.read_in_place and jobs.readers is not None:
            jobs.readers.add(rest)  # the stack's rows this rest reads are not rewritten before
        for o, st, got, token, v in zip(outs, states, jobs.outputs, tokens, ints, strict=True):
            o.attach_tail(got, self._waiter(rest, got, token, st.step), {token_op: token}, v)

    def _waiter(self, rest: Future, got: list, token: torch.Tensor, step: int
                ) -> Callable[[], None]:
        token_op = self.ex.program.token_op

        def wait() -> None:
            try:
                rest.result()
            except sp.PlanError as e:
                raise FastExecError(f"{e} at step {step}") from e
            if not torch.equal(got[token_op].reshape(-1), token.reshape(-1)):
                raise FastExecError(f"step {step}: the tail's PICK differs from its argmax")

        return wait


class FastExecutor:
    """Runs a TraceProgram step by step; `run_step` returns the P outputs of the step."""

    def __init__(self, program: TraceProgram, weights: Mapping[bytes, np.ndarray],
                 device: str | torch.device = "cpu", chains: str = "auto",
                 quant: Mapping[bytes, lc.QuantBlocks] | None = None,
                 plan: bool = True, host_tail: bool = True, ops_from: int = 0) -> None:
        """`chains`: how a linear's segments run together (node/ree/linear_chain.py):
        "auto" (packed panels on the CPU, one masked matmul elsewhere), "panels", "masked",
        or "off" (op by op). Every choice gives the same bits; tests run each on the CPU.
        `quant`: GGUF blocks of weights by root (`Model.quant_blocks`); CPU panel chains of
        those weights read them (`lc.QuantChain`: ~5x fewer bytes, the same bits).
        `plan`: decode steps run the program's prefix as plan records: on the CPU in one C
        call (node/ree/step_plan.py), on CUDA one kernel per record into one device arena
        (node/ree/step_plan_cuda.py); the same bits, no per-op Python.
        `host_tail`: on CUDA, a decode step's ops after the plan (the SAMPLE tail) run on the
        host's C kernels (`_HostTail`). `ops_from`: only ops from this one on can run (such a
        tail executor holds no weight of the ops before)."""
        if chains not in ("auto", "panels", "masked", "off"):
            raise ValueError(f"chains must be auto, panels, masked or off, not {chains!r}")
        self.chain_mode = chains
        self.program = program
        self.device = torch.device(device)
        if self.device.type == "cpu":
            # torch only moves data here; its intra-op thread pool contends with the RepOps
            # C kernels' OpenMP pool and made small ops ~30x slower on 2 cores (measured).
            torch.set_num_threads(1)
        self.np_weights = weights
        self._quant = quant or {}  # only read while the chains are built
        # `HOST_PREFILL`'s CPU executor reads the GGUF blocks too (a CUDA executor's chains
        # do not keep them)
        self._host_quant = dict(quant or {}) if self.device.type == "cuda" else {}
        self.weights: dict[bytes, torch.Tensor] = {}
        self.buffers: dict[bytes, WeightBuffer] = {}
        self.fallbacks = 0  # elements recomputed by the reference (diagnostics)
        seg_of: dict[bytes, int] = {}
        for op in program.ops[ops_from:]:
            for k, inp in enumerate(op.inputs):
                if inp.src != Src.WEIGHT:
                    continue
                if inp.root not in weights:
                    raise FastExecError(f"{op.name}: weight {inp.root.hex()[:16]}… not loaded")
                if op.code == Code.DOT and k == 1:
                    k0, k1 = op.attrs[0], op.attrs[1]
                    if k0 == 0:
                        seg_of[inp.root] = k1 - k0
                else:
                    self.weights.setdefault(inp.root, self._upload(weights[inp.root]))
        for root, seg in seg_of.items():
            w = np.asarray(weights[root], dtype=np.float32)
            if w.ndim != 2:
                raise FastExecError("a DOT weight must be [N, K]")
            self.buffers[root] = WeightBuffer(w, seg, self.device)
        self.prev: list[torch.Tensor] | None = None
        self._host_ex: FastExecutor | None = None  # `HOST_PREFILL`'s CPU executor
        self._kept_ops: list[int] | None = None  # `kept_on_device`'s ops
        # ±0/NaN flags of the step's rewritten chains, checked once at the step's end (None:
        # every op checks its own elements at once, as `_run` callers expect)
        self._flags: list[torch.Tensor] | None = None
        self.reruns = 0  # steps re-run op-exact for a doubtful element (diagnostics)
        self._scalars: dict[int, torch.Tensor] = {}
        self._shapes = {id(op): self._const_shape(op) for op in program.ops}
        self._chains = self._build_chains()
        # (first op, the outputs of its chain or tree, whether their shapes need a check):
        # what a chain's or tree's first op computed for the ops after it
        self._group_out: tuple[int, Sequence[torch.Tensor], bool] | None = None
        self._canonical = self._canonical_outputs()
        self._trees: dict[int, ft.TreeRunner | ft.ArgTreeRunner] = {}
        if self.device.type == "cpu":
            self._trees.update((j, ft.TreeRunner(t)) for j, t in ft.find_trees(program).items()
                               if j >= ops_from)
            self._trees.update((j, ft.ArgTreeRunner(t))
                               for j, t in ft.find_argtrees(program).items() if j >= ops_from)
        self._tree_of = {i: (j, n) for j, r in self._trees.items()
                         for n, i in enumerate(r.tree.levels) if n}
        self._handlers = [self._handler(j, op) if j >= ops_from else _not_here
                          for j, op in enumerate(program.ops)]
        self.plan: sp.StepPlan | CudaStepPlan | None = None
        self._host: _HostTail | None = None
        if plan and self.device.type == "cpu":
            built = sp.StepPlan(program, weights, self._chains, self._panels, self._trees)
            self.plan = built if built.tail else None
        elif plan and self.device.type == "cuda":
            from node.ree.step_plan_cuda import CudaStepPlan  # Triton: CUDA machines only

            cuda = CudaStepPlan(program, weights, self.weights, self._chains, self._wt,
                                self.device, quant=self._host_quant)
            self.plan = cuda if cuda.tail else None
            if self.plan is not None and host_tail and _HostTail.fits(program, cuda.tail):
                self._host = _HostTail(FastExecutor(program, weights, "cpu", plan=False,
                                                    ops_from=cuda.tail), cuda.tail)

    def _upload(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, copy=True)).to(self.device)

    # ------------------------------------------------------------------ step driver

    def reset(self) -> None:
        self.prev = None

    def run_step(self, step: int, job_tokens: Sequence[int], feed_token: int | None = None,
                 config: object | None = None, speculate: bool = False
                 ) -> list[torch.Tensor]:
        """All P outputs of `step`; `feed_token` is the token this step reads (step ≥ 1),
        by default the previous step's token-op output (§L5.1).

        `speculate`: the caller will ask for the next step, reading this one's token, and
        reads nothing of this step's outputs after that call (a recorder's `add_step` is
        queued before it). On a CUDA plan a greedy job's next step is then queued now,
        with the device's own argmax as its token (step_plan_cuda `_Graphs.speculate`), so
        the device does not wait on the host between steps; the next call uses it only
        when it is that step, token included, else runs the step again.

        The step runs once with the chain rewrites' doubt flags deferred (one check, one
        device sync, per step); if any element is doubtful the step is run again with every
        op exact on its own (rare: no real SmolLM2 run has needed it)."""
        st = StepState(Symbols.for_step(len(job_tokens), step), step, job_tokens, config)
        if step > 0 and self.prev is None:
            raise FastExecError("step > 0 without the previous step's outputs")
        if step == 0 and HOST_PREFILL and self.device.type == "cuda":
            return self._prefill_on_host(job_tokens, feed_token, config)
        with torch.no_grad():
            self._flags = []
            try:
                outs = self._step(st, feed_token, speculate)
                flags, self._flags = self._flags, None
                if flags and bool(torch.stack(flags).any()):
                    self.reruns += 1
                    outs = self._step(st, feed_token)
            finally:
                self._flags = None
                self._group_out = None
        # after a prefill, only what the next step reads: the caller decides when the rest
        # goes. Why: the prefill's ~3,400 tensors took 6.4-6.7 ms of the H100 host to free
        # (2.3-3.1 ms here), and held here they were freed inside the first decode step,
        # the device idle behind it (its first step 11 ms against ~1.9 steady)
        self.prev = outs if step > 0 else self.kept_on_device(outs)
        return outs

    def _prefill_on_host(self, job_tokens: Sequence[int], feed_token: int | None,
                         config: object | None) -> list[torch.Tensor]:
        """Step 0 by a CPU executor of the same program (`HOST_PREFILL`): its outputs are
        the step's (host tensors, hashed there by the recorder as the device's would be
        after their copy); what the next step reads of them goes to the device."""
        ex = self._host_ex
        if ex is None:
            ex = self._host_ex = FastExecutor(self.program, self.np_weights, "cpu",
                                              quant=self._host_quant)
        fb = ex.fallbacks
        ex.reset()
        outs = ex.run_step(0, job_tokens, feed_token, config=config)
        self.fallbacks += ex.fallbacks - fb
        self.prev = self.kept_on_device(outs)
        return outs

    def kept_on_device(self, outs: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """`outs` as a next step's `prev`: the outputs a step reads one step later (KV
        caches, the token op) on this executor's device (a CUDA job's prefill may have run
        on the host: `HOST_PREFILL`), None for the others."""
        kept = self._kept_ops
        if kept is None:
            kept = self._kept_ops = sorted({i.op for op in self.program.ops for i in op.inputs
                                            if i.src == Src.OP and i.back == 1})
        prev: list[torch.Tensor | None] = [None] * len(outs)
        dev = self.device
        for i in kept:
            t = outs[i]
            prev[i] = t if dev.type == "cpu" else t.to(dev)
        return prev

    def _step(self, st: StepState, feed_token: int | None, speculate: bool = False
              ) -> list[torch.Tensor]:
        outs: list[torch.Tensor] = []
        sym = st.sym
        self._feed, self._sym = feed_token, sym
        j = 0
        if self.plan is not None and st.step > 0:  # a decode step: seq = 1 (§L1)
            outs = self._plan_prefix(st, feed_token, speculate)
            j = self.plan.tail
            if self._host is not None:
                return self._host.run(outs, j, st, feed_token)
        return self._run_ops(j, outs, st)

    def _run_ops(self, j: int, outs: list[torch.Tensor], st: StepState
                 ) -> list[torch.Tensor]:
        """Ops j … P−1 of a step through their handlers, appended to `outs` (ops < j)."""
        ops, shape_of, sym = self.program.ops, self._shape_fns, st.sym
        handlers, n = self._handlers, len(self._handlers)
        while j < n:
            try:
                y = handlers[j](outs, st)
            except (ValueError, RuntimeError, TypeError) as e:
                raise FastExecError(f"op {j} ({ops[j].name}) at step {st.step}: {e}") from e
            want = shape_of[j](sym)
            if y.shape != want:
                raise FastExecError(f"op {j} ({ops[j].name}) produced {tuple(y.shape)}, "
                                    f"program says {want}")
            outs.append(y)
            j += 1
            rest = self._group_rest(j - 1)
            if rest:  # a chain's or tree's other ops, computed with its first: no dispatch
                outs.extend(rest)
                j += len(rest)
        return outs

    def _plan_prefix(self, st: StepState, feed_token: int | None, speculate: bool = False
                     ) -> sp.StepOutputs:
        """Ops [0, plan.tail) of a decode step in one C call (node/ree/step_plan.py), or on
        the device (node/ree/step_plan_cuda.py; `speculate`: `run_step`'s, for a greedy job
        whose token the host tail finds early)."""
        token = self.plan_token(self.prev, feed_token)
        try:
            if self.speculates([st]):
                return self.plan.run(st.sym, self.prev, token, 1, None, speculate=speculate)
            return self.plan.run(st.sym, self.prev, token, cpu_kernels.plan_threads(),
                                 self.job_words(st))
        except sp.PlanError as e:
            raise FastExecError(f"{e} at step {st.step}") from e

    def speculates(self, states: Sequence[StepState]) -> bool:
        """A CUDA plan may queue these jobs' next steps before their tokens reach the host
        (`run_step`'s `speculate`): every job greedy, its token found early by the host
        tail (`_HostTail._run_early`), against which the device's guess is checked."""
        host = self._host
        return (host is not None and host.plan is not None and bool(host.plan.early_records)
                and all(st.config is None or st.config.greedy for st in states))

    def job_words(self, st: StepState) -> np.ndarray | None:
        """What a CPU plan's SAMPLE records read of the job (`step_plan.job_words`)."""
        plan = self.plan
        return sp.job_words(st.config, st.step) if getattr(plan, "samples", False) else None

    def run_tails(self, states: Sequence[StepState], outs: Sequence[sp.StepOutputs],
                  prevs: Sequence[list | None], feeds: Sequence[int | None]
                  ) -> list[list[torch.Tensor]]:
        """`run_tail` of several jobs; a CUDA plan's host tails side by side in one C call
        on the host's cores (`_HostTail.run_many`)."""
        host = self._host
        if host is not None and host.plan is not None:
            with torch.no_grad():
                return host.run_many(outs, states, cpu_kernels.plan_threads())
        return [self.run_tail(st, o, p, f)
                for st, o, p, f in zip(states, outs, prevs, feeds, strict=True)]

    def plan_token(self, prev: Sequence[torch.Tensor | None], feed_token: int | None) -> int:
        """The token a decode step's TOKENS op reads (§L5.1): the fed one, else element 0 of
        the previous step's token op."""
        src = self.plan.token_src if self.plan is not None else None
        if feed_token is None and src is not None:
            return int(prev[src].reshape(-1)[0])
        return 0 if feed_token is None else feed_token

    def run_tail(self, st: StepState, outs: sp.StepOutputs, prev: list | None,
                 feed_token: int | None) -> list[torch.Tensor]:
        """The ops after a step plan's prefix (`outs`: what the plan computed) for a job
        whose previous outputs are `prev`, each op exact on its own (node/ree/batch.py runs
        several jobs' prefixes together, then each job's tail here)."""
        if self._host is not None:
            with torch.no_grad():
                return self._host.run(outs, self.plan.tail, st, feed_token)
        if self.plan.tail == len(self.program.ops):
            return outs
        saved = self.prev
        self.prev, self._feed, self._sym, self._flags = prev, feed_token, st.sym, None
        try:
            with torch.no_grad():
                return self._run_ops(self.plan.tail, outs, st)
        finally:
            self.prev = saved
            self._group_out = None

    def _group_rest(self, j: int) -> tuple[torch.Tensor, ...] | list[torch.Tensor] | None:
        """The outputs of ops j+1 … that op j's handler computed with its own: a linear's
        other segments (their dims are the first's, `find_chains`) or a tree's other levels
        (shapes checked here against the program, as the step loop would)."""
        g = self._group_out
        if g is None or g[0] != j:
            return None
        if g[2]:
            shape_of, sym = self._shape_fns, self._sym
            for i, y in enumerate(g[1][1:], j + 1):
                if y.shape != shape_of[i](sym):
                    return None  # the step loop runs the level itself and names the mismatch
        return g[1][1:]

    def _out_shape(self, op: TraceOp, sym: Symbols) -> tuple[int, ...]:
        return self._shape_fns[self._index[id(op)]](sym)

    @cached_property
    def _index(self) -> dict[int, int]:
        return {id(op): j for j, op in enumerate(self.program.ops)}

    @cached_property
    def _shape_fns(self) -> list[Callable[[Symbols], tuple[int, ...]]]:
        """Per op its output shape at a step (§L3): constant shapes once, the others from
        their affine coefficients (`TraceOp.shape` costs ~4 µs, asked ~8,000 times a step)."""
        return [_shape_fn(op, self._shapes[id(op)]) for op in self.program.ops]

    @staticmethod
    def _const_shape(op: TraceOp) -> tuple[int, ...] | None:
        """The output shape when no dim depends on the step (§L3), else None."""
        if any(d.seq or d.past for d in op.dims) or not op.dims:
            return None
        return op.shape(Symbols(0, 0))

    def _scalar(self, bits: int) -> torch.Tensor:
        t = self._scalars.get(bits)
        if t is None:
            t = self._scalars[bits] = bits_scalar(bits, self.device)
        return t

    # ------------------------------------------------------------------ per-op handlers

    def _handler(self, j: int, op: TraceOp) -> Callable[[list, StepState], torch.Tensor]:
        """A closure running op j with its inputs and kind resolved once (no per-step
        dispatch); ops without a specialised handler go through `_run`."""
        getters = [self._getter(op, k) for k in range(len(op.inputs))]
        run = self._run

        def generic(outs: list, st: StepState) -> torch.Tensor:
            return run(op, [g(outs, st) for g in getters], st, self._feed)

        chain = self._chains.get(j)
        if chain is not None:
            return self._chain_handler(j, op, chain, generic)
        if j in self._chain_of:
            return self._group_member(self._chain_of[j], generic)
        if op.code == Code.FOLD and op.inputs[0].src == Src.OP:
            x_of = getters[0]
            canonical = self._canonical[op.inputs[0].op]
            fold = self._fold

            def level(outs: list, st: StepState) -> torch.Tensor:
                return fold(op, x_of(outs, st), st, canonical)

            if j in self._trees:
                return self._tree_head(j, op, x_of, canonical, level)
            if j in self._tree_of:
                return self._group_member(self._tree_of[j], level)
            return level
        if op.code == Code.ARGFOLD and j in self._trees:
            return self._argtree_head(j, getters[0], generic)
        if op.code == Code.ARGFOLD and j in self._tree_of:
            return self._group_member(self._tree_of[j], generic)
        if (op.code == Code.DOT and len(getters) == 3 and op.inputs[1].src == Src.OP
                and op.attrs[3] != 2):
            return self._act_segment(j, op, getters)
        if op.code in (Code.EW, Code.DOT, Code.MOVE):
            fn = {Code.EW: self._ew, Code.DOT: self._dot,
                  Code.MOVE: lambda o, ins, st: self._move(o, ins[0], st)}[op.code]
            if len(getters) == 1:
                g0 = getters[0]
                return lambda outs, st: fn(op, [g0(outs, st)], st)
            if len(getters) == 2:
                g0, g1 = getters
                return lambda outs, st: fn(op, [g0(outs, st), g1(outs, st)], st)
            return lambda outs, st: fn(op, [g(outs, st) for g in getters], st)
        return generic

    def _getter(self, op: TraceOp, k: int) -> Callable[[list, StepState], torch.Tensor | None]:
        """`_input` with the source resolved once."""
        inp = op.inputs[k]
        if inp.src == Src.OP:
            i = inp.op
            if inp.back == 0:
                return lambda outs, st: outs[i]
            if inp.back == 1:
                return lambda outs, st: None if st.step == 0 else self.prev[i]
        if inp.src == Src.WEIGHT and not (op.code == Code.DOT and k == 1
                                          and inp.root in self.buffers):
            w = self.weights[inp.root]
            return lambda outs, st: w
        return lambda outs, st: self._input(op, k, outs, st)

    def _canonical_outputs(self) -> list[bool]:
        """Per op: its float output can hold no non-canonical NaN (RepOps spec §1.2), so a
        FOLD copy level may skip `canon`. RepOps arithmetic always canonicalises; bit copies
        (GATHER, MOVE, CONCAT) are canonical when their inputs are; weights are checked."""
        copies = (Code.GATHER, Code.MOVE, Code.CONCAT)
        made = (Code.TOKENS, Code.DOT, Code.FOLD, Code.ARGFOLD, Code.EW, Code.ROPE)
        ops = self.program.ops
        wcanon = {r: _canonical_array(np.asarray(a)) for r, a in self.np_weights.items()
                  if any(i.src == Src.WEIGHT and i.root == r for op in ops
                         if op.code in copies for i in op.inputs)}
        flags = [op.code in made or op.code in copies for op in ops]
        for _ in range(2):  # back-references (KV caches) settle in a second pass
            for j, op in enumerate(ops):
                if op.code not in copies:
                    continue
                flags[j] = all(flags[i.op] if i.src == Src.OP else
                               wcanon.get(i.root, True) if i.src == Src.WEIGHT else True
                               for i in op.inputs)
        return flags

    # ------------------------------------------------------------------ weight chains

    def _build_chains(self) -> dict[int, lc.Chain]:
        """Linears run all segments at once (node/ree/linear_chain.py): packed segment panels
        for CPU decode (the GGUF blocks where `quant` has them), one masked matmul on other
        devices."""
        mode = self.chain_mode
        if mode == "auto":
            mode = "panels" if self.device.type == "cpu" else "masked"
        if mode == "panels" and self.device.type != "cpu":
            raise ValueError("panel chains run on the CPU only")
        chains = {} if mode == "off" else {
            j: c for j, c in lc.find_chains(self.program).items() if c.root in self.buffers}
        self._chain_of = {i: (j, i - j) for j, c in chains.items() for i in c.ops if i != j}
        self._panels: dict[bytes, lc.PanelChain | lc.QuantChain] = {}
        self._wt: dict[bytes, torch.Tensor] = {}
        self._live: dict[tuple, torch.Tensor] = {}
        for c in chains.values():
            w = np.asarray(self.np_weights[c.root], dtype=np.float32)
            if mode == "panels":
                if c.root not in self._panels:
                    q = self._quant.get(c.root)  # QuantChain checks it dequantizes to w
                    self._panels[c.root] = (lc.PanelChain(w, c) if q is None
                                            else lc.QuantChain(q, c, weight=w))
            else:
                if c.root not in self._wt:
                    self._wt[c.root] = torch.from_numpy(np.ascontiguousarray(w.T)).to(
                        self.device)
                key = (c.bounds, w.shape[1])
                if key not in self._live:
                    self._live[key] = lc.masked_rows(c.bounds, w.shape[1], self.device)
        self._quant = {}  # the panels hold what runs; drop the views of the GGUF file
        return chains

    def _chain_handler(self, j: int, op: TraceOp, chain: lc.Chain,
                       generic: Callable) -> Callable[[list, StepState], torch.Tensor]:
        panel = self._panels.get(chain.root)
        quant = isinstance(panel, lc.QuantChain)
        wt = self._wt.get(chain.root)
        live = self._live.get((chain.bounds, self.buffers[chain.root].k))

        def first(outs: list, st: StepState) -> torch.Tensor:
            x = outs[chain.x_op]
            ba, r, k = rows_cols(x.shape)
            self._group_out = None
            if ba != 1 or k != self.buffers[chain.root].k:
                return generic(outs, st)
            if panel is not None:
                if r != 1 and not quant:  # CPU prefill: the weight buffer's prefix chains
                    return generic(outs, st)
                y, flag = panel.run(x.reshape(r, k))  # QuantChain: any rows, exact
                y = y.reshape(len(chain.bounds), r, -1)
            else:
                y, flag = lc.masked_chain(x.reshape(r, k), wt, live)
            if self._flags is None:
                if bool(flag):
                    return generic(outs, st)
            else:
                self._flags.append(flag)
            # every segment of a chain has the first one's dims (find_chains): one unbind
            # gives all of them their output tensors, so a tail only picks its own
            views = y.reshape(len(chain.bounds), *self._out_shape(op, st.sym)).unbind(0)
            self._group_out = (j, views, False)
            return views[0]

        return first

    def _input(self, op: TraceOp, k: int, outs: list[torch.Tensor], st: StepState
               ) -> torch.Tensor | None:
        inp = op.inputs[k]
        if inp.src == Src.OP:
            if inp.back == 0:
                return outs[inp.op]
            if inp.back > 1:
                raise FastExecError("inputs more than one step back are not kept")
            return None if st.step == 0 else self.prev[inp.op]
        if inp.src == Src.WEIGHT:
            if op.code == Code.DOT and k == 1 and inp.root in self.buffers:
                return None  # served by the weight buffer
            return self.weights[inp.root]
        return None

    def _run(self, op: TraceOp, ins: list[torch.Tensor | None], st: StepState,
             feed_token: int | None) -> torch.Tensor:
        c = op.code
        if c == Code.TOKENS:
            return self._tokens(ins, st, feed_token)
        if c == Code.GATHER:
            ids, table = ins
            return table.index_select(0, ids.reshape(-1).to(torch.int64)).reshape(
                *ids.shape, table.shape[1])
        if c == Code.DOT:
            return self._dot(op, ins, st)
        if c == Code.FOLD:
            return self._fold(op, ins[0], st)
        if c == Code.ARGFOLD:
            return self._argfold(op, ins)
        if c == Code.EW:
            return self._ew(op, ins, st)
        if c == Code.ROPE:
            return self._rope(op, ins, st)
        if c == Code.MOVE:
            return self._move(op, ins[0], st)
        if c == Code.CONCAT:
            return self._concat(op, ins)
        if c == Code.SAMPLE:
            return fastsample.run(op, ins, st.config, st.step, self.device)
        raise FastExecError(f"op code {c} has no fast executor")

    # ------------------------------------------------------------------ §L5.1 TOKENS

    def _tokens(self, ins: list[torch.Tensor | None], st: StepState,
                feed_token: int | None) -> torch.Tensor:
        if st.step == 0:
            return torch.tensor(list(st.job_tokens), dtype=torch.int32, device=self.device)
        if feed_token is None:
            return ins[1].reshape(-1)[:1].to(torch.int32).clone()
        return torch.tensor([feed_token], dtype=torch.int32, device=self.device)

    # ------------------------------------------------------------------ §L5.3 DOT

    def _dot(self, op: TraceOp, ins: list[torch.Tensor | None], st: StepState) -> torch.Tensor:
        k0, k1, group, causal = op.attrs
        out_shape = self._out_shape(op, st.sym)
        a = ins[0]
        acc = ins[2] if len(ins) > 2 else None
        if (acc is not None and causal != 2 and k0 >= a.shape[-1] and acc.shape == out_shape
                and (len(ins) < 2 or ins[1] is None or ins[1].shape[-1] == a.shape[-1])):
            return acc  # past the real chain: the same bits (§L5.3), the same tensor object
        root = op.inputs[1].root if op.inputs[1].src == Src.WEIGHT else None
        buf = self.buffers.get(root) if root is not None else None
        ba, r, k = rows_cols(a.shape)
        if buf is not None:
            if ba != 1 or buf.k != k or group != 1 or causal:
                raise FastExecError("weight DOT with batch, group or causal is not lowered so")
            n = buf.n
        else:
            bb, n, kb = rows_cols(ins[1].shape)
            if kb != k or ba != bb * group:
                raise FastExecError("DOT: shapes do not chain")
        kend = min(k1, k)
        acc3 = None if acc is None else acc.reshape(ba, r, n)
        if kend <= k0:  # past the real chain: the accumulator is copied (§L5.3)
            res = acc3 if acc3 is not None else _fill((ba, r, n), 0, self.device)
            check = False
        elif buf is not None:
            res, check = buf.segment(a.reshape(r, k), k0, kend,
                                     None if acc3 is None else acc3.reshape(r, n))
            res = res.reshape(ba, r, n)
        else:
            res, check = self._act_dot(a.reshape(ba, r, k), ins[1].reshape(-1, n, k), acc3,
                                       k0, kend, group, causal, st)
        if check:
            if self._flags is not None:
                self._flags.append(lc.doubtful(res))
            else:
                res = self._exact_where_doubtful(op, ins, res, st, out_shape)
        if causal == 2 and n > st.sym.past + 1:  # some key is after some row's position
            rows = torch.arange(r, device=self.device).reshape(1, r, 1)
            cols = torch.arange(n, device=self.device).reshape(1, 1, n)
            res = torch.where(cols > st.sym.past + rows, self._scalar(NEG_INF), res)
        return res.reshape(out_shape)

    def _act_segment(self, j: int, op: TraceOp, getters: list[Callable]
                     ) -> Callable[[list, StepState], torch.Tensor]:
        """An activation DOT segment with an accumulator: attention's p·v runs one per 64
        keys of the whole context, and every segment past the live keys is its accumulator
        (§L5.3), which shapes alone tell; `_dot`'s first test, ahead of its other work."""
        k0 = op.attrs[0]
        g0, g1, g2 = getters
        dot, shape = self._dot, self._shape_fns[j]

        def segment(outs: list, st: StepState) -> torch.Tensor:
            a, b, acc = g0(outs, st), g1(outs, st), g2(outs, st)
            if (acc is not None and k0 >= a.shape[-1] and acc.shape == shape(st.sym)
                    and (b is None or b.shape[-1] == a.shape[-1])):
                return acc
            return dot(op, [a, b, acc], st)

        return segment

    def _act_dot(self, a: torch.Tensor, b: torch.Tensor, acc: torch.Tensor | None, k0: int,
                 kend: int, group: int, causal: int, st: StepState
                 ) -> tuple[torch.Tensor, bool]:
        ba, r, _ = a.shape
        check = False
        if causal == 1:  # masked keys become zero products after the live ones (docstring)
            if r and kend > st.sym.past + 1:  # row 0 sees keys [0, past]: some key masked
                rows = torch.arange(r, device=self.device).reshape(1, r, 1)
                cols = torch.arange(a.shape[2], device=self.device).reshape(1, 1, -1)
                live = cols <= st.sym.past + rows
                a = torch.where(live, a, torch.zeros((), dtype=a.dtype, device=a.device))
                check = True
        if acc is None and self.device.type == "cpu":
            return _cpu_grouped_gemm(a, b, group, k0, kend), check
        bg = b.repeat_interleave(group, dim=0) if group > 1 else b
        if acc is None:
            lo = k0
        elif r == 1:
            ones = torch.ones((ba, 1, 1), dtype=torch.float32, device=self.device)
            a_aug = torch.cat([ones, a[:, :, k0:kend]], dim=2)
            b_aug = torch.cat([acc.reshape(ba, 1, -1), bg[:, :, k0:kend].transpose(1, 2)],
                              dim=1)
            return repops.matmul(a_aug.contiguous(), b_aug.contiguous()), True
        else:
            lo, check = 0, True
        res = repops.matmul(a[:, :, lo:kend].contiguous(),
                            bg[:, :, lo:kend].transpose(1, 2).contiguous())
        return res, check

    def _exact_where_doubtful(self, op: TraceOp, ins: list[torch.Tensor | None],
                              res: torch.Tensor, st: StepState, out_shape: tuple[int, ...]
                              ) -> torch.Tensor:
        """Recompute ±0 and NaN elements by the reference semantics (module docstring)."""
        flat = res.reshape(-1)
        doubtful = (flat == 0) | torch.isnan(flat)
        if not bool(doubtful.any()):
            return res
        e = torch.nonzero(doubtful).reshape(-1).cpu().numpy().astype(np.int64)
        views = []
        for k, t in enumerate(ins):
            inp = op.inputs[k]
            if t is None and inp.src == Src.WEIGHT:
                views.append(ArrayView(np.asarray(self.np_weights[inp.root])))
            else:
                views.append(None if t is None else ArrayView(t.detach().cpu().numpy()))
        vals = elements(op, views, e, EvalContext(st.sym, st.step, st.job_tokens))
        fixed = flat.clone()
        upd = torch.from_numpy(np.asarray(vals, dtype=np.uint32).view(np.float32))
        fixed[torch.from_numpy(e).to(self.device)] = upd.to(self.device)
        self.fallbacks += len(e)
        return fixed.reshape(res.shape)

    # ------------------------------------------------------------------ §L5.4 FOLD

    def _fold(self, op: TraceOp, x: torch.Tensor, st: StepState,
              canonical: bool = False) -> torch.Tensor:
        """`canonical`: x is known to hold no non-canonical NaN (`_canonical_outputs`)."""
        combine, cap, causal, nword = op.attrs
        _, r, w = rows_cols(x.shape)
        if cap < 1 or w > 2 * cap:
            raise FastExecError("FOLD: row wider than two caps")
        if not causal or r == 1:
            return self._fold_uniform(op, x, st, canonical)
        x2 = x.reshape(-1, w) if canonical else canon(x.reshape(-1, w))
        rows = x2.shape[0]
        lo = x2[:, :cap] if w >= cap else torch.cat(
            [x2, _fill((rows, cap - w), NEG_ZERO, self.device)], dim=1)
        n = min(w, _dim(nword).eval(st.sym))
        out_shape = tuple(x.shape[:-1]) + (cap,)
        if n <= cap:  # no row has a pair: a copy level (§L5.4)
            return lo.contiguous().reshape(out_shape)
        hi = torch.cat([x2[:, cap:], _fill((rows, 2 * cap - w), NEG_ZERO, self.device)], dim=1)
        comb = repops.add(lo, hi) if combine == 0 else repops.maximum(lo, hi)
        nrow = torch.full((rows, 1), n, dtype=torch.int64, device=self.device)
        if causal:
            pos = torch.arange(rows, device=self.device).reshape(rows, 1) % r
            nrow = torch.minimum(nrow, st.sym.past + pos + 1)
        i = torch.arange(cap, device=self.device).reshape(1, cap)
        return torch.where(i + cap < nrow, comb, lo).contiguous().reshape(out_shape)

    def _fold_uniform(self, op: TraceOp, x: torch.Tensor, st: StepState, canonical: bool
                      ) -> torch.Tensor:
        """§L5.4 when every row has the same n (no causal limit, or one row per block:
        decode): the pairs are a column range, so slices replace the masks."""
        combine, cap, causal, nword = op.attrs
        w = x.shape[-1] if x.dim() else 1
        n = min(w, _dim(nword).eval(st.sym))
        if causal:
            n = min(n, st.sym.past + 1)
        m = max(0, n - cap)  # columns i < m combine x[i] and x[i + cap]
        out_shape = tuple(x.shape[:-1]) + (cap,)
        if m == 0 and w == cap and canonical and x.dim():
            return x  # a copy level over a full row: the same bits, the same tensor object
        x2 = x.reshape(-1, w)
        if not canonical:
            x2 = canon(x2)
        out = torch.empty((x2.shape[0], cap), dtype=torch.float32, device=x.device)
        if m:
            f = repops.add if combine == 0 else repops.maximum
            out[:, :m] = f(x2[:, :m], x2[:, cap:cap + m])
        hi = min(w, cap)
        if hi > m:
            out[:, m:hi] = x2[:, m:hi]
        if w < cap:
            out[:, w:] = self._scalar(NEG_ZERO)
        return out.reshape(out_shape)

    def _tree_head(self, j: int, op: TraceOp, x_of: Callable, canonical: bool,
                   level: Callable) -> Callable[[list, StepState], torch.Tensor]:
        """First level of a FOLD tree: every level at once when the rows are uniform
        (node/ree/fold_tree.py), else this level alone."""
        runner = self._trees[j]
        nword = _dim(op.attrs[3])
        causal = op.attrs[2]

        def head(outs: list, st: StepState) -> torch.Tensor:
            self._group_out = None
            x = x_of(outs, st)
            if causal and x.dim() >= 2 and x.shape[-2] != 1:  # prefill: per-row n
                return level(outs, st)
            n = nword.eval(st.sym)
            if causal:
                n = min(n, st.sym.past + 1)
            ys = runner.run(x, max(0, n), canonical)
            if ys is None:
                return level(outs, st)
            self._group_out = (j, ys, True)
            return ys[0]

        return head

    def _argtree_head(self, j: int, x_of: Callable, level: Callable
                      ) -> Callable[[list, StepState], torch.Tensor]:
        """First level of an ARGFOLD tree: every level at once (node/ree/fold_tree.py)."""
        runner = self._trees[j]

        def head(outs: list, st: StepState) -> torch.Tensor:
            self._group_out = None
            x = x_of(outs, st)
            ys = runner.run(x) if x.dtype == torch.float32 else None
            if ys is None:
                return level(outs, st)
            self._group_out = (j, ys, True)
            return ys[0]

        return head

    def _group_member(self, at: tuple[int, int], alone: Callable
                      ) -> Callable[[list, StepState], torch.Tensor]:
        """Op n of the chain or tree starting at op `first`: its output from the first op's
        run, or the op on its own when that run fell back (`_group_rest` normally skips it)."""
        first, n = at

        def member(outs: list, st: StepState) -> torch.Tensor:
            g = self._group_out
            if g is None or g[0] != first:
                return alone(outs, st)
            return g[1][n]

        return member

    # ------------------------------------------------------------------ §L5.5 ARGFOLD

    def _argfold(self, op: TraceOp, ins: list[torch.Tensor | None]) -> torch.Tensor:
        (cap,) = op.attrs
        x = ins[0]
        idx = ins[1] if len(ins) > 1 else None
        v = x.shape[-1]
        xr = x.reshape(-1, v)
        rows = xr.shape[0]
        w = v if idx is None else idx.shape[-1]
        wout = min(w, cap)
        if self.device.type == "cuda":  # one Triton launch instead of ~15 small torch ops
            return self._argfold_cuda(xr, idx, rows, v, w, cap, wout).reshape(
                *x.shape[:-1], wout)
        if idx is None:
            ids = torch.arange(w, device=self.device, dtype=torch.int64).expand(rows, w)
        else:
            ids = idx.reshape(rows, w).to(torch.int64)
        ia = ids[:, :wout]
        res = ia.clone()
        npair = max(0, w - cap)
        if npair:
            ia_p, ib = ia[:, :npair], ids[:, cap:cap + npair]
            va, vb = torch.gather(xr, 1, ia_p), torch.gather(xr, 1, ib)
            na, nb = torch.isnan(va), torch.isnan(vb)
            lo = torch.minimum(ia_p, ib)
            win = torch.where(va > vb, ia_p, torch.where(vb > va, ib, lo))
            win = torch.where(na & ~nb, ia_p, torch.where(nb & ~na, ib,
                                                          torch.where(na & nb, lo, win)))
            res[:, :npair] = win
        return res.to(torch.int32).reshape(*x.shape[:-1], wout)

    def _argfold_cuda(self, xr: torch.Tensor, idx: torch.Tensor | None, rows: int, v: int,
                      w: int, cap: int, wout: int) -> torch.Tensor:
        from repops.gpu import step_kernels as sk  # Triton: CUDA machines only

        out = torch.empty((rows, wout), dtype=torch.int32, device=self.device)
        if rows and wout:
            ids = idx.reshape(rows, w).contiguous() if idx is not None else out
            sk.argfold_level_kernel[(-(-wout // 1024), rows)](
                xr.contiguous(), ids, out, v, w, cap, wout, max(0, w - cap),
                HAS_IDS=idx is not None, BLOCK=1024)
        return out

    # ------------------------------------------------------------------ §L5.6 EW

    def _ew(self, op: TraceOp, ins: list[torch.Tensor | None], st: StepState) -> torch.Tensor:
        fn, scalar, mask, fill = op.attrs
        out_shape = self._out_shape(op, st.sym)
        a = ins[0]
        cpu = self.device.type == "cpu" and a.dtype == torch.float32
        if is_binary(fn):
            b = ins[1] if len(ins) > 1 else self._scalar(scalar)
            res = (_CPU_BIN if cpu and b.dtype == torch.float32 else _BIN)[fn](a, b)
        elif fn == Fn.COPY:
            res = canon(a).clone()
        else:
            res = (_CPU_UN if cpu else _UN)[fn](a)
        if res.shape != out_shape:
            res = res.expand(out_shape).contiguous()
        if mask:
            _, r, c = rows_cols(out_shape)
            past = st.sym.past
            if r == 1:  # one row: the columns after `past` (res is this op's own tensor)
                if c > past + 1:
                    res[..., past + 1:] = self._scalar(fill)
            else:
                rows = torch.arange(r, device=self.device).reshape(r, 1)
                cols = torch.arange(c, device=self.device).reshape(1, c)
                res = torch.where(cols > past + rows, self._scalar(fill), res)
        return res

    # ------------------------------------------------------------------ §L5.7 ROPE

    def _rope(self, op: TraceOp, ins: list[torch.Tensor | None], st: StepState) -> torch.Tensor:
        dh, rot, mode = op.attrs
        x, cos, sin = ins
        t, w = x.shape[-2], x.shape[-1]
        if w % dh or rot > dh or cos.shape[1] != rot // 2:
            raise FastExecError("ROPE: bad head layout")
        p0 = st.sym.past
        if p0 + t > cos.shape[0]:
            raise FastExecError("ROPE: position past the table")
        lead = x.shape[:-2]
        xh = x.reshape(*lead, t, w // dh, dh).transpose(-2, -3).contiguous()
        y = repops.rope(xh, cos[p0:p0 + t].contiguous(), sin[p0:p0 + t].contiguous(),
                        pairing="adjacent" if mode == 0 else "half")
        return y.transpose(-2, -3).contiguous().reshape(x.shape)

    # ------------------------------------------------------------------ §L5.8 MOVE, §L5.9 CONCAT

    def _move(self, op: TraceOp, x: torch.Tensor, st: StepState) -> torch.Tensor:
        out_shape = self._out_shape(op, st.sym)
        off = _dim(op.attrs[0]).eval(st.sym)
        strides = [_dim(a).eval(st.sym) for a in op.attrs[1:]]
        flat = x.contiguous().reshape(-1)
        last = off + sum((d - 1) * s for d, s in zip(out_shape, strides, strict=True)
                         if d > 0)
        if off < 0 or any(s < 0 for s in strides) or (numel(out_shape) and
                                                      last >= flat.numel()):
            raise FastExecError("MOVE: element outside the input")
        return flat.as_strided(out_shape, strides, off).contiguous()

    def _concat(self, op: TraceOp, ins: list[torch.Tensor | None]) -> torch.Tensor:
        (axis,) = op.attrs
        a, b = ins
        return b.clone() if a is None else torch.cat([a, b], dim=axis)
