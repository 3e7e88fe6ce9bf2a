"""A decode step's ops in one C call on the CPU (docs/trace-layout.md §L5;
repops/cpu/csrc/repops_step_plan.c).

Why: after the kernels themselves got fast, a SmolLM2 decode step spent more than half of its
~50 ms in Python dispatch: ~2,100 ops (EW, ROPE, MOVE, CONCAT, the first op of every chain or
tree) at ~15-30 µs each. A step plan is built once from the program: one fixed-size record per
op, or per linear chain (the GGUF-block kernel) or FOLD tree (all levels at once). Each step,
NumPy evaluates every op's output dims (§L3) and lays the outputs back to back in one arena,
and `repops_step_plan_run` executes all records without returning to Python. Every record
computes its op's §L5 definition exactly (no rewrite to re-check), so the plan's outputs are
the reference's bits; tests compare every leaf with the op-by-op executor.

The plan covers the program up to the first op it does not lower, which the executor's
handlers run on views of the arena. On the CPU that is the whole SmolLM2 step: the SAMPLE tail
(three ARGFOLD trees, the sort, eight MERGE levels, the sampler's stages) is records too, one
per tree, per SORT with its MERGE levels, per stage (~2 ms of Python handlers a step before).
A CUDA plan stops at the first ARGFOLD (`sample=False`): its tail runs on the host, in a plan
that starts there (`start`; the logits, computed on the device, are its external input).
Only decode steps (seq = 1) use a plan; prefill stays op by op.

The arena also serves the trace: `StepOutputs.leaf_arrays` gives every leaf's address, size
and C4 header as arrays, so the recorder hashes the plan's leaves without a Python object per
tensor.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache, cached_property

import numpy as np
import torch

from node.ree import fold_tree as ft
from node.ree import linear_chain as lc
from node.ree.fastsample import U_BITS
from node.ree.host_arena import ArenaPool, Readers
from referee.layout import Code, Dim, JobConfig, Src, Stage, Symbols, TraceProgram
from repops.commit import DTYPE_CODES

REC = 40  # int64 words per record (repops_step_plan.c)
MAXD = 6
W0 = -1_000_000  # weight w is input word W0 - w
(K_NOP, K_TOKENS, K_GATHER, K_EW, K_FOLDTREE, K_QCHAIN, K_DOT, K_ROPE, K_MOVE, K_CONCAT,
 K_ARGTREE, K_SAMPLE) = range(12)
_TORCH = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64}
_ESIZE = {"float32": 4, "int32": 4, "int64": 8}
_ORDER_STRIDE = {"int32": 1, "int64": 2}  # an order input's element in 32-bit words
# each decode linear's x starts 16-byte aligned at every position (`_aligned_offsets`):
# CUDA's vector loads of x need it (step_plan_cuda.X_VECTORS, which sets this per plan)
ALIGN_LINEAR_INPUTS = False


class PlanError(RuntimeError):
    """The step plan refused an op's inputs (the op-by-op path names the same problems)."""


@cache
def _run_fn() -> ctypes._CFuncPtr:
    from repops.cpu.build import load

    fn = load().repops_step_plan_run
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [i64, p, p, p, p, p, p, p, i64, i64, i64, ctypes.c_int, ctypes.c_char_p, p,
                   p]
    fn.restype = i64
    return fn


def job_words(config: JobConfig | None, step: int) -> np.ndarray:
    """What a plan's SAMPLE records read (repops_step_plan.c J_*): temperature, top-k and top-p
    of the job (§L1; None: greedy), and u of this step (RepOps spec §7.2)."""
    cfg = config if config is not None else JobConfig()
    return np.array([cfg.temperature, cfg.top_k, cfg.top_p, U_BITS.get(cfg, step)],
                    dtype=np.int64)


class StepPlan:
    """The records of one program's plannable prefix (module docstring)."""

    def __init__(self, program: TraceProgram, weights: Mapping[bytes, np.ndarray],
                 chains: Mapping[int, lc.Chain], panels: Mapping[bytes, object],
                 trees: Mapping[int, object], sample: bool = True, start: int = 0) -> None:
        """`chains`/`panels`: the executor's linear chains and their `QuantChain`s by weight
        root; `trees`: its `fold_tree.TreeRunner`s and `ArgTreeRunner`s by first level. An op
        the plan cannot lower ends the plan (`tail`); without `sample`, so does the first
        ARGFOLD or SAMPLE op. `start`: the first op of the plan; the ops before it that the plan
        reads (`external`) are the caller's, copied into the arena each step (`run`'s `ext`)."""
        self.program = program
        self.start = start
        ops = program.ops
        external: set[int] = set()
        self._keep: list[object] = []  # arrays whose addresses the records hold
        self._arenas = ArenaPool()
        self._wslot: dict[bytes, int] = {}
        wptr: list[int] = []
        wdims: list[list[int]] = []

        def weight(root: bytes) -> int:
            w = self._wslot.get(root)
            if w is None:
                a = np.ascontiguousarray(np.asarray(weights[root]))
                if a.dtype != np.float32 or a.ndim > MAXD:
                    raise _Stop
                self._keep.append(a)
                w = self._wslot[root] = len(wptr)
                wptr.append(a.ctypes.data)
                wdims.append([a.ndim, *a.shape, *[0] * (MAXD - a.ndim)])
            return W0 - w

        def word(op, k: int) -> int:  # noqa: ANN001 - TraceOp
            if k >= len(op.inputs):
                return -1
            inp = op.inputs[k]
            if inp.src == Src.WEIGHT:
                return weight(inp.root)
            if inp.src != Src.OP or inp.back > 1 or (inp.op < start and inp.back):
                raise _Stop
            if inp.op < start:
                if ops[inp.op].dtype not in _TORCH or len(ops[inp.op].dims) > MAXD:
                    raise _Stop
                external.add(inp.op)
            return inp.op if inp.back == 0 else -2 - inp.op

        recs: list[list[int]] = []
        j = start
        while j < len(ops):
            op = ops[j]
            if op.dtype not in ("float32", "int32") or len(op.dims) > MAXD:
                break
            if not sample and op.code in (Code.ARGFOLD, Code.SAMPLE):
                break
            try:
                if op.code in (Code.ARGFOLD, Code.SAMPLE):
                    rec, n = _tail_record(j, op, word, trees, ops)
                else:
                    rec, n = self._record(j, op, word, chains, panels, trees,
                                          lambda i: ops[i].code)
            except _Stop:
                break
            recs.append(rec + [0] * (REC - len(rec)))
            recs.extend([[K_NOP, j + i] + [0] * (REC - 2) for i in range(1, n)])
            j += n
        self.tail = j
        self.external = sorted(external)
        self.samples = any(r[0] == K_SAMPLE for r in recs)  # `run` needs the job's words
        # a greedy job's token is PICK's index input A (§L5.10: T = ±0 picks A): the records
        # up to the one that writes A give it (`early_records`, `early_op`), the rest of the
        # tail can run beside the next step
        self.early_records, self.early_op = 0, -1
        pick = [r for r in recs if r[0] == K_SAMPLE and r[6] == Stage.PICK
                and r[1] == program.token_op]
        if pick and pick[0][4] >= start:
            a = int(pick[0][4])
            k = next((i for i, r in enumerate(recs) if r[1] <= a < r[1] + r[2]), None)
            if k is not None and ops[a].dtype == "int32" and _static_numel(ops[a]) == 1:
                self.early_records, self.early_op = k + 1, a
        # the op whose previous-step output a TOKENS op reads when no token is fed (§L5.1)
        self.token_src = next((o.inputs[1].op for o in ops[:j] if o.code == Code.TOKENS
                               and len(o.inputs) > 1 and o.inputs[1].src == Src.OP), None)
        self._recs = np.array(recs, dtype=np.int64).reshape(-1, REC)
        self.n_linears = int((self._recs[:, 0] == K_QCHAIN).sum())  # stacked by `run_lanes`
        self._wptr = np.array(wptr or [0], dtype=np.int64)
        self._wdims = np.array(wdims or [[0] * (MAXD + 1)], dtype=np.int64)
        pre = ops[: self.tail]
        # ops before `start` that the plan does not read keep one 4-byte slot (0-D)
        held = set(range(start, self.tail)) | external
        self._ndim = np.array([len(o.dims) if i in held else 0 for i, o in enumerate(pre)],
                              dtype=np.int64)
        coeff = np.zeros((3, self.tail, MAXD), dtype=np.int64)
        for i in held:
            for k, d in enumerate(pre[i].dims):
                coeff[:, i, k] = (d.c0, d.seq, d.past)
        self._esize = np.array([_ESIZE.get(o.dtype, 4) for o in pre], dtype=np.int64)
        self._wide = np.flatnonzero(self._esize == 8).tolist()  # int64 outputs (`_layout`)
        self._coeff = coeff
        self._static: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.align_linear_inputs = ALIGN_LINEAR_INPUTS
        # the decode linears' x (`_aligned_offsets`), but none a record writes after another
        # output of its own (those stay back to back)
        inner = {j for r in recs for j in range(r[1] + 1, r[1] + r[2])}
        self.linear_inputs = {int(r[3]) for r in recs
                              if r[0] == K_QCHAIN and 0 <= r[3] < self.tail and r[3] not in inner}
        self._affine: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per seq
        self._lines: tuple | None = None  # `_decode_lines`, once made
        self._live = np.arange(MAXD)[None, :] < self._ndim[:, None]
        self.dtypes = [_TORCH.get(o.dtype, torch.float32) for o in pre]
        self._dcode = np.array([DTYPE_CODES[o.dtype] for o in pre], dtype=np.uint8)
        # ops whose previous-step output a record reads (the KV caches: CONCAT's own output)
        self.back_refs = sorted({-2 - int(w) for r in self._recs if r[0] != K_TOKENS
                                 for w in r[3:6] if W0 < w <= -2})
        # CONCATs on axis 0 whose first input is their own previous output (the KV caches):
        # their bytes start with last step's, so the recorder reuses those full chunks' leaves
        self.appends = np.array(
            [i for i, o in enumerate(pre) if i >= start and o.code == Code.CONCAT
             and o.attrs[:1] == (0,) and o.inputs and o.inputs[0].src == Src.OP
             and o.inputs[0].op == i and o.inputs[0].back == 1], dtype=np.int64)

    @staticmethod
    def _record(j: int, op, word, chains, panels, trees, ops_code  # noqa: ANN001, ANN205
                ) -> tuple[list[int], int]:
        """(record words, ops it covers) for op j; raises _Stop if the plan cannot lower it."""
        code, a = op.code, op.attrs
        c = chains.get(j)
        q = panels.get(c.root) if c is not None else None
        if hasattr(q, "record_words") and not op.inputs[0].back:
            # every segment of the linear in one record (CPU: from the GGUF blocks; CUDA:
            # step_plan_cuda.CudaChain); other linears go segment by segment through the
            # exact DOT record below
            return [K_QCHAIN, j, len(c.bounds), c.x_op, -1, -1, *q.record_words()], \
                len(c.bounds)
        if code == Code.FOLD and len(op.inputs) == 1:
            runner = trees.get(j)
            if runner is not None and not isinstance(runner, ft.TreeRunner):
                raise _Stop
            caps = runner.tree.caps if runner is not None else (a[1],)
            nw = _dim3(a[3])
            if len(caps) > REC - 12:
                raise _Stop
            return [K_FOLDTREE, j, len(caps), word(op, 0), -1, -1, a[0], a[2], *nw,
                    len(caps), *caps], len(caps)
        if code == Code.TOKENS:
            return [K_TOKENS, j, 1, -1, -1, -1], 1
        if code == Code.GATHER:
            return [K_GATHER, j, 1, word(op, 0), word(op, 1), -1], 1
        if code == Code.EW:
            return [K_EW, j, 1, word(op, 0), word(op, 1), -1, *a], 1
        if code == Code.DOT:
            # an accumulator that is a DOT's output is canonical: a segment with no key to
            # add may then report itself as that op's repeat (`StepOutputs.alias`)
            acc = op.inputs[2] if len(op.inputs) > 2 else None
            may_alias = int(acc is not None and acc.src == Src.OP and acc.back == 0
                            and ops_code(acc.op) == Code.DOT)
            return [K_DOT, j, 1, word(op, 0), word(op, 1), word(op, 2), *a, may_alias], 1
        if code == Code.ROPE:
            return [K_ROPE, j, 1, word(op, 0), word(op, 1), word(op, 2), *a], 1
        if code == Code.MOVE:
            if len(a) != 1 + len(op.dims):
                raise _Stop
            return [K_MOVE, j, 1, word(op, 0), -1, -1,
                    *[v for w in a for v in _dim3(w)]], 1
        if code == Code.CONCAT:
            return [K_CONCAT, j, 1, word(op, 0), word(op, 1), -1, a[0]], 1
        raise _Stop

    # ---------------------------------------------------------------- per step

    def dims_at(self, sym: Symbols) -> np.ndarray:
        """[tail, MAXD+1]: per op its ndim and dims at the step (§L3)."""
        c0, cs, cp = self._coeff
        d = c0 + cs * sym.seq + cp * sym.past
        if (d[self._live] < 0).any():
            j = int(np.flatnonzero((np.where(self._live, d, 0) < 0).any(axis=1))[0])
            raise PlanError(f"op {j} ({self.program.ops[j].name}): a dim is negative at "
                            f"seq={sym.seq}, past={sym.past}")
        return np.concatenate([self._ndim[:, None], d], axis=1)

    def layout(self, sym: Symbols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dims, byte sizes, byte offsets) of the step's outputs, back to back in op order
        (the arena; node/ree/step_plan_cuda.py lays its device arena out the same way).
        A plan whose dims do not depend on the step (a CUDA plan's host tail) computes them
        once and returns them read-only."""
        if self._static is not None:
            return self._static
        got = self._layout(sym)
        if not self._coeff[1:].any():
            for a in got:
                a.flags.writeable = False
            self._static = got
        return got

    def _sizes(self, d: np.ndarray) -> np.ndarray:
        """Byte sizes of the outputs whose dims (no ndim column) are `d`."""
        return self._esize * np.where(self._live, d, 1).prod(axis=1)

    def _layout(self, sym: Symbols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.align_linear_inputs and sym.seq == 1:
            lines = self._decode_lines()
            if lines is not None and lines[0] <= sym.past <= lines[1]:
                p = sym.past
                return tuple(c + k * p for c, k in lines[2])  # type: ignore[return-value]
        dims = self.dims_at(sym)
        nbytes = self._sizes(dims[:, 1:])
        if self.align_linear_inputs:
            a, b = self._aligned_offsets(sym.seq)
            return dims, nbytes, a + b * sym.past
        offs = np.zeros(self.tail, dtype=np.int64)
        np.cumsum(nbytes[:-1], out=offs[1:])
        for i in self._wide:  # an int64 output starts 8-byte aligned (its view needs it)
            if offs[i] % 8:
                offs[i:] += 8 - offs[i] % 8
        return dims, nbytes, offs

    def _decode_lines(self) -> tuple | None:
        """A decode step's layout as lines in the position: (lo, hi, ((C, K) for dims,
        sizes, offsets)), each array C + K·past for lo ≤ past ≤ hi, where every dim (§L3,
        affine in the position) is ≥ 0. None where an output's size is not affine (two of
        its dims move with the position) or a fixed dim is negative: `_layout` computes
        those in full (and names the negative dim).

        Why: in full it is ~10 NumPy passes over ~3,400 × 8 dims, 0.17 ms here and
        0.45-0.70 ms of the H100 host's ~1.9 ms b=1 step (one new position a step);
        three multiply-adds give the same arrays (tests/ree/test_step_plan.py)."""
        if self._lines is None:
            c0, cs, cp = self._coeff
            live, c = self._live, c0 + cs
            if (((cp != 0) & live).sum(axis=1) > 1).any() or (live & (cp == 0) & (c < 0)).any():
                self._lines = ()
                return None
            # a growing dim c + k·past is ≥ 0 from −c/k on, a shrinking one up to −c/k
            grow, shrink = live & (cp > 0), live & (cp < 0)
            lo = max(1, int(np.ceil((-c[grow] / cp[grow]).max()))) if grow.any() else 1
            hi = int(np.floor((-c[shrink] / cp[shrink]).min())) if shrink.any() else 2**62
            zero = np.zeros((self.tail, 1), dtype=np.int64)
            dims = (np.concatenate([self._ndim[:, None], c], axis=1),
                    np.concatenate([zero, cp], axis=1))
            n0 = self._sizes(c)
            self._lines = (lo, hi, (dims, (n0, self._sizes(c + cp) - n0),
                                    self._aligned_offsets(1)))
        return self._lines or None

    def _aligned_offsets(self, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """(A, B): op i's byte offset is A[i] + B[i]·past (`ALIGN_LINEAR_INPUTS`). The outputs are
        back to back but for a pad before each decode linear's x (16 bytes) and int64
        output (8): c + d·past bytes, c and d the least that make both terms multiples, so
        the offset is aligned at every position and stays affine (a CUDA graph's table is
        C + K·past). d ≤ 15 bytes a position: at most ~3.7 MB more arena at 2,048
        positions for SmolLM2.

        Why not a pad to the next multiple at each step (as int64 outputs get otherwise):
        it changes with past in steps, and a graph's table could not follow it."""
        got = self._affine.get(seq)
        if got is None:  # sizes at past 1, 2, 3 (a decode step's past is at least 1)
            n = [self._sizes(self.dims_at(Symbols(seq, p))[:, 1:]) for p in (1, 2, 3)]
            g = n[1] - n[0]
            if not np.array_equal(n[2] - n[1], g):
                raise PlanError("an output's size is not affine in the position")
            a = np.zeros(self.tail, dtype=np.int64)
            b = np.zeros(self.tail, dtype=np.int64)
            np.cumsum((n[0] - g)[:-1], out=a[1:])
            np.cumsum(g[:-1], out=b[1:])
            pa = np.zeros(self.tail, dtype=np.int64)
            pb = np.zeros(self.tail, dtype=np.int64)
            sa = sb = 0
            for i in sorted(self.linear_inputs | set(self._wide)):
                m = 16 if i in self.linear_inputs else 8
                pa[i], pb[i] = -(int(a[i]) + sa) % m, -(int(b[i]) + sb) % m
                sa, sb = sa + int(pa[i]), sb + int(pb[i])
            got = self._affine[seq] = (a + np.cumsum(pa), b + np.cumsum(pb))
        return got

    def _prepare(self, sym: Symbols, prev: Sequence[torch.Tensor | None],
                 ext: Mapping[int, torch.Tensor] | None = None) -> tuple:
        """The step's dims, arena and offsets (the external inputs copied in), and the
        previous step's output addresses."""
        if sym.seq != 1:
            raise PlanError("the step plan runs decode steps (seq = 1) only")
        dims, nbytes, offs = self.layout(sym)
        arena = self._arenas.take(int(offs[-1] + nbytes[-1]) if self.tail else 0)
        for i in self.external:
            t = None if ext is None else ext.get(i)
            o, n = int(offs[i]), int(nbytes[i])
            self._check_external(i, t, n)
            arena[o:o + n].view(self.dtypes[i]).copy_(t.reshape(-1))
        prev_ptr = np.zeros(self.program.n_ops, dtype=np.int64)
        keep = []
        in_arena = isinstance(prev, StepOutputs)  # read in place: no view made (~60 a step)
        for i in self.back_refs:
            if in_arena and i < prev.plan.tail and i not in prev.replaced:
                prev_ptr[i] = prev.address(i)
                continue
            t = prev[i]
            if t is not None:
                t = t.contiguous()
                keep.append(t)
                prev_ptr[i] = t.data_ptr()
        alias = np.full(self.tail, -1, dtype=np.int64)
        return dims, nbytes, offs, arena, prev_ptr, keep, alias

    def _check_external(self, i: int, t: torch.Tensor | None, n: int) -> None:
        """External input i of a job: present, of the op's dtype and `n` bytes."""
        if t is None or t.dtype != self.dtypes[i] or t.numel() * t.element_size() != n:
            raise PlanError(f"op {i} ({self.program.ops[i].name}): the plan's external "
                            "input is absent or of another dtype or size")

    def _error(self, rec: int, err: ctypes.Array, job: int | None = None) -> PlanError:
        j = int(self._recs[rec][1])
        who = "" if job is None else f"job {job}, "
        return PlanError(f"{who}op {j} ({self.program.ops[j].name}): {err.value.decode()}")

    def _job(self, job: np.ndarray | None) -> np.ndarray | None:
        if self.samples and (job is None or job.dtype != np.int64 or job.shape != (4,)):
            raise PlanError("the plan's SAMPLE records need the job's words (`job_words`)")
        return job

    def run(self, sym: Symbols, prev: Sequence[torch.Tensor | None], token: int,
            nthreads: int, job: np.ndarray | None = None,
            ext: Mapping[int, torch.Tensor] | None = None) -> StepOutputs:
        """Ops [start, tail) of a decode step; `prev` the previous step's outputs, `job` the
        job's words (`job_words`, for SAMPLE records), `ext` the external inputs by op."""
        job = self._job(job)
        dims, nbytes, offs, arena, prev_ptr, _keep, alias = self._prepare(sym, prev, ext)
        err = ctypes.create_string_buffer(200)
        rc = _run_fn()(len(self._recs), self._recs.ctypes.data, arena.data_ptr(),
                       offs.ctypes.data, dims.ctypes.data, prev_ptr.ctypes.data,
                       self._wptr.ctypes.data, self._wdims.ctypes.data, sym.seq, sym.past,
                       token, nthreads, err, alias.ctypes.data,
                       None if job is None else job.ctypes.data)
        if rc:
            raise self._error(rc - 1, err)
        return StepOutputs(self, arena, offs, nbytes, dims, alias)

    def run_lanes(self, steps: Sequence[tuple[Symbols, Sequence[torch.Tensor | None], int,
                                              np.ndarray | None]],
                  nthreads: int) -> list[StepOutputs]:
        """One decode step of several jobs (symbols, previous outputs, token, job words
        each): every weight linear runs once over the rows of all jobs
        (`repops_step_plan_run_lanes`), every other record job by job. Each job's outputs are
        its `run` outputs, bit for bit (tests/ree/test_batch_invariance.py)."""
        if self.external:
            raise PlanError("a plan with external inputs runs its jobs by `prepare_jobs`")
        prepared, args = self._lanes(steps, [None] * len(steps))
        q = self._recs[self._recs[:, 0] == K_QCHAIN]
        nb = len(steps)
        xs = int(nb * q[:, 8].max()) if len(q) else 0
        ys = int(nb * (q[:, 7] * q[:, 11]).max()) if len(q) else 0
        scratch = torch.empty(xs + ys, dtype=torch.float32)
        err = ctypes.create_string_buffer(200)
        rc = _lanes_fn()(len(self._recs), self._recs.ctypes.data, nb, args.ctypes.data,
                         self._wptr.ctypes.data, self._wdims.ctypes.data, nthreads, err,
                         scratch.data_ptr(), xs)
        if rc:
            raise self._error((rc & 0xFFFFFFFF) - 1, err, (rc >> 32) - 1)
        return [StepOutputs(self, arena, offs, nbytes, dims, alias)
                for dims, nbytes, offs, arena, _, _, alias in prepared]

    def prepare_jobs(self, steps: Sequence[tuple[Symbols, Sequence[torch.Tensor | None], int,
                                                 np.ndarray | None]],
                     exts: Sequence[Mapping[int, torch.Tensor] | None],
                     in_place: bool = False) -> PreparedJobs:
        """One decode step of several jobs (as `run_lanes`, with each job's external inputs),
        laid out: their arenas (external inputs copied in) and C arguments. `run_prepared`
        then runs record ranges of all of them, the jobs side by side in one GIL-free C call
        (`repops_step_plan_run_jobs`): a CUDA batch's SAMPLE tails; a greedy job's token is
        known after the argmax tree's records (`early_records`). Each job's outputs are its
        `run` outputs, bit for bit.

        `in_place`: the caller keeps the external inputs unchanged until every `run_prepared`
        of these jobs has returned (`PreparedJobs.read_in_place` says whether the records
        read them where they lie, `StepPlan._batch`, rather than from copies)."""
        if len(steps) > 1 and not self.back_refs:
            got = self._batch(steps, exts, in_place)
            if got is not None:
                return got
        prepared, args = self._lanes(steps, exts)
        return PreparedJobs(list(steps), prepared, args,
                            [StepOutputs(self, arena, offs, nbytes, dims, alias)
                             for dims, nbytes, offs, arena, _, _, alias in prepared])

    def _batch(self, steps: Sequence[tuple], exts: Sequence[Mapping[int, torch.Tensor] | None],
               in_place: bool = False) -> PreparedJobs | None:
        """`prepare_jobs` for jobs that read no previous step and share one layout (a plan
        whose dims do not depend on the step: a CUDA plan's host tail), laid out together:
        one buffer holds every job's arena (a row each), each external input is copied in
        by one copy for all jobs, the arguments are filled column by column. None for a
        plan whose layout depends on the step. `in_place`: an external input that is rows
        of one tensor (`rows_of`) is read there, by each job's offsets (its arena row to
        its input's row, which may be negative), not copied.

        Why: job by job (an arena taken, a copy, three arrays and a row of arguments each)
        a 32-job tail lay out took 2.6-3.7 ms of the H100 host's main thread in a ~10 ms
        b=32 step. Together: 1.51 → 0.98 ms for 32 tails on a 2-core EPYC; on the H100 host
        it stayed ~2.9 ms, for reasons not measured yet (notes-runtime-perf.md, thirty-third
        revision). The records and their values are the same either way."""
        dims, nbytes, offs = self.layout(steps[0][0])
        if self._static is None:
            return None
        for sym, *_ in steps:
            if sym.seq != 1:
                raise PlanError("the step plan runs decode steps (seq = 1) only")
        jobs = [self._job(job) for *_, job in steps]
        nb = len(steps)
        size = int(offs[-1] + nbytes[-1]) if self.tail else 0
        stride = -(-size // 64) * 64
        big = self._arenas.take(nb * stride)
        rows = big.view(nb, stride)
        at = np.arange(nb, dtype=np.int64)
        read: list[torch.Tensor] = []  # inputs read in place (held while the jobs live)
        job_offs = None  # [nb, tail] when an input is read in place: each job's offsets
        for i in self.external:
            o, n, dt = int(offs[i]), int(nbytes[i]), self.dtypes[i]
            ts = [None if e is None else e.get(i) for e in exts]
            for t in ts:
                self._check_external(i, t, n)
            src = rows_of(ts)
            if src is not None and in_place:
                # H100 host, 32 jobs: the one copy of 6.3 MB of logits was ~1.7 ms (18 %)
                # of a ~9.4 ms b=32 step (py-spy, notes-runtime-perf.md thirty-fourth
                # revision); the records only read it (no output of this plan lies there)
                if job_offs is None:
                    job_offs = self._rows_of_offsets(nb, read)
                    job_offs[:] = offs
                pitch = src.stride(0) * src.element_size()
                job_offs[:, i] = src.data_ptr() + pitch * at - (big.data_ptr() + stride * at)
                read.append(src)
                continue
            dst = rows[:, o:o + n].view(dt)
            if src is not None:
                dst.copy_(src)
            else:
                for b, t in enumerate(ts):
                    dst[b].copy_(t.reshape(-1))
        # no record reads a previous step, and only a DOT's writes the alias row: one
        # read-only row each for all jobs, not two new [jobs, ops] arrays a step (their
        # first touch was ~3.4 % of a b=32 step on the H100 host: py-spy, thirty-sixth
        # session)
        prev = self._no_prev
        alias = np.full((nb, self.tail), -1, dtype=np.int64) if self._writes_alias else \
            np.broadcast_to(self._no_alias, (nb, self.tail))
        args = np.empty((nb, 9), dtype=np.int64)
        args[:, 0] = big.data_ptr() + stride * at
        args[:, 1] = offs.ctypes.data if job_offs is None else \
            job_offs.ctypes.data + job_offs.strides[0] * at
        args[:, 2] = dims.ctypes.data
        args[:, 3] = prev.ctypes.data
        args[:, 4] = [sym.seq for sym, *_ in steps]
        args[:, 5] = [sym.past for sym, *_ in steps]
        args[:, 6] = [token for _sym, _prev, token, *_ in steps]
        args[:, 7] = alias.ctypes.data + alias.strides[0] * at
        args[:, 8] = [0 if job is None else job.ctypes.data for job in jobs]
        outs = [StepOutputs(self, big[b * stride:b * stride + size], offs, nbytes, dims,
                            alias[b]) for b in range(nb)]
        got = PreparedJobs(list(steps), [(big, alias, jobs, read)], args, outs, rows)
        got.read_in_place = bool(read)
        return got

    def _rows_of_offsets(self, nb: int, held: list) -> np.ndarray:
        """An uninitialised [nb, tail] int64 array on a pooled buffer (reused once nothing
        holds it: `held` keeps it while the jobs live)."""
        t = self._offsets_pool.take(nb * self.tail * 8)
        held.append(t)
        return t.numpy().view(np.int64)[:nb * self.tail].reshape(nb, self.tail)

    @cached_property
    def _offsets_pool(self) -> ArenaPool:
        # not the arenas' pool: that one drops free buffers smaller than the one asked for
        return ArenaPool()

    @cached_property
    def _no_prev(self) -> np.ndarray:
        got = np.zeros(self.program.n_ops, dtype=np.int64)
        got.flags.writeable = False
        return got

    @cached_property
    def _no_alias(self) -> np.ndarray:
        got = np.full(self.tail, -1, dtype=np.int64)
        got.flags.writeable = False
        return got

    @cached_property
    def _writes_alias(self) -> bool:
        """A DOT record marks its output a repeat of its accumulator (repops_step_plan.c)."""
        return bool(len(self._recs)) and bool((self._recs[:, 0] == K_DOT).any())

    @property
    def n_records(self) -> int:
        """Records of the plan (`run_prepared` ranges)."""
        return len(self._recs)

    def run_prepared(self, jobs: PreparedJobs, first: int, end: int, nthreads: int) -> None:
        """Records [first, end) of every prepared job (`repops_step_plan_run_jobs`)."""
        nb = len(jobs.steps)
        errs = ctypes.create_string_buffer(200 * max(1, nb))
        rcs = np.zeros(nb, dtype=np.int64)
        recs = self._recs[first:end]
        if not len(recs):
            return
        _jobs_fn()(len(recs), recs.ctypes.data, nb, jobs.args.ctypes.data,
                   self._wptr.ctypes.data, self._wdims.ctypes.data, nthreads, errs,
                   rcs.ctypes.data)
        bad = np.flatnonzero(rcs)
        if len(bad):
            b = int(bad[0])
            err = ctypes.create_string_buffer(errs.raw[200 * b:200 * b + 200])
            raise self._error(first + int(rcs[b]) - 1, err, b)

    def _lanes(self, steps: Sequence[tuple], exts: Sequence[Mapping | None]
               ) -> tuple[list[tuple], np.ndarray]:
        """Each job's `_prepare` and its row of lane arguments (repops_step_plan.c
        LANE_ARGS: arena, offsets, dims, previous addresses, seq, past, token, alias, job)."""
        jobs = [self._job(job) for *_, job in steps]
        prepared = [self._prepare(sym, prev, ext)
                    for (sym, prev, _, _), ext in zip(steps, exts, strict=True)]
        args = np.zeros((len(steps), 9), dtype=np.int64)
        for b, ((sym, _, token, _), job, (dims, _, offs, arena, prev_ptr, _, alias)) in \
                enumerate(zip(steps, jobs, prepared, strict=True)):
            args[b] = (arena.data_ptr(), offs.ctypes.data, dims.ctypes.data,
                       prev_ptr.ctypes.data, sym.seq, sym.past, token, alias.ctypes.data,
                       0 if job is None else job.ctypes.data)
        return prepared, args


@cache
def _jobs_fn() -> ctypes._CFuncPtr:
    from repops.cpu.build import load

    fn = load().repops_step_plan_run_jobs
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [i64, p, i64, p, p, p, ctypes.c_int, ctypes.c_char_p, p]
    fn.restype = None
    return fn


@cache
def _lanes_fn() -> ctypes._CFuncPtr:
    from repops.cpu.build import load

    fn = load().repops_step_plan_run_lanes
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [i64, p, i64, p, p, p, ctypes.c_int, ctypes.c_char_p, p, i64]
    fn.restype = i64
    return fn


class PreparedJobs:
    """Jobs `StepPlan.prepare_jobs` laid out: their step tuples and `_prepare` results (which
    hold the job words, arrays and tensors the arguments point to), the C arguments, and the
    outputs the records fill."""

    def __init__(self, steps: list[tuple], prepared: list[tuple], args: np.ndarray,
                 outputs: list[StepOutputs], rows: torch.Tensor | None = None) -> None:
        self.steps, self.prepared, self.args, self.outputs = steps, prepared, args, outputs
        self.rows = rows  # [jobs, stride] bytes: the jobs' arenas in one buffer (`_batch`)
        self.read_in_place = False  # the records read an external input where it lies
        self.readers: Readers | None = None  # who waits for these jobs before rewriting

    def column(self, i: int) -> torch.Tensor | None:
        """Output i of every job as one [jobs, *shape] view, when their arenas are rows of
        one buffer (`StepPlan._batch`), else None: one tensor for all jobs instead of one
        view each."""
        if self.rows is None:
            return None
        o = self.outputs[0]
        a, n = int(o.offs[i]), int(o.nbytes[i])
        return self.rows[:, a:a + n].view(o.plan.dtypes[i]).view(len(self.outputs),
                                                                  *o.shape_of(i))


def rows_of(ts: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """`ts` as one [len(ts), n] tensor, no copy made, when they are consecutive rows of one
    contiguous buffer (a batch's logits, copied to the host in one copy), else None."""
    t0 = ts[0]
    n, base, ptr = t0.numel(), t0.storage_offset(), t0.untyped_storage().data_ptr()
    for b, t in enumerate(ts):
        if (t.dtype != t0.dtype or t.device != t0.device or not t.is_contiguous()
                or t.numel() != n or t.storage_offset() != base + b * n
                or t.untyped_storage().data_ptr() != ptr):
            return None
    return torch.empty(0, dtype=t0.dtype, device=t0.device).set_(
        t0.untyped_storage(), base, (len(ts), n))


class _Stop(Exception):
    """The plan cannot lower this op: the prefix ends here."""


def _static_numel(op) -> int | None:  # noqa: ANN001 - TraceOp
    """An op's element count when no dim depends on the step (§L3), else None."""
    if any(d.seq or d.past for d in op.dims):
        return None
    return int(np.prod([d.c0 for d in op.dims], dtype=np.int64))


# per SAMPLE stage (§L5.10): output dtype, input dtypes (None: an order, int32 or int64)
_STAGE_TYPES = {
    Stage.SCALE: ("float32", ("float32",)), Stage.SORT: ("int32", ("float32",)),
    Stage.EXP: ("float32", ("float32", None)), Stage.SCAN: ("float32", ("float32",)),
    Stage.TOPP: ("float32", ("float32",)),
    Stage.DRAW: ("float32", ("float32", "float32", "int32")),
    Stage.JSTAR: ("int32", ("float32", "int32", "float32", "int32")),
    Stage.PICK: ("int32", ("float32", "int32", None, "int32"))}


def _tail_record(j: int, op, word, trees, ops) -> tuple[list[int], int]:  # noqa: ANN001
    """(record words, ops covered) of an ARGFOLD tree or a SAMPLE stage (repops_step_plan.c
    K_ARGTREE, K_SAMPLE). The dtypes are checked here, once (the program fixes them), the sizes
    in C each step; a shape the records do not cover raises _Stop, and the handlers run it
    (and name what is wrong with it)."""
    if op.code == Code.ARGFOLD:
        runner = trees.get(j)
        if not isinstance(runner, ft.ArgTreeRunner) or len(runner.tree.caps) > REC - 7:
            raise _Stop
        t = runner.tree
        return [K_ARGTREE, j, len(t.levels), word(op, 0), -1, -1, len(t.caps), *t.caps], \
            len(t.levels)
    a = op.attrs
    types = _STAGE_TYPES.get(a[0]) if len(a) == 1 + (a[:1] == (Stage.SORT,)) else None
    if types is None or op.dtype != types[0] or len(op.inputs) != len(types[1]):
        raise _Stop
    stride = 0
    for inp, want in zip(op.inputs, types[1], strict=True):
        if inp.src != Src.OP or inp.back:
            raise _Stop
        got = ops[inp.op].dtype
        if want is None and got in _ORDER_STRIDE:
            stride = _ORDER_STRIDE[got]
        elif got != want:
            raise _Stop
    words = [word(op, k) for k in range(len(op.inputs))]
    merges = 0
    if a[0] == Stage.SORT:
        # SORT's record writes the MERGE levels that follow it (node/ree/fastsample.py)
        v, block = _static_numel(ops[op.inputs[0].op]), a[1]
        if v is None or block < 1:
            raise _Stop
        if block < v:  # the levels h = B, 2B, … below V (repops_sample_levels)
            merges = 1
            while block << merges < v:
                merges += 1
        for i in range(merges):
            m = ops[j + 1 + i] if j + 1 + i < len(ops) else None
            if (m is None or m.code != Code.SAMPLE or tuple(m.attrs) != (Stage.MERGE, block << i)
                    or m.dtype != "int64" or len(m.dims) > MAXD or len(m.inputs) != 2
                    or m.inputs[0].src != Src.OP or m.inputs[0].op != j + i
                    or m.inputs[0].back or m.inputs[1] != op.inputs[0]):
                raise _Stop
    fourth = words[3] if len(words) > 3 else -1
    block = a[1] if len(a) > 1 else 0
    return [K_SAMPLE, j, 1 + merges, *(words[:3] + [-1] * (3 - min(3, len(words)))), a[0],
            block, fourth, stride, merges], 1 + merges


def _dim3(word: int) -> tuple[int, int, int]:
    d = Dim.from_word(word)
    return d.c0, d.seq, d.past


_SENTINEL = object()


@cache
def _blank(n: int) -> list:
    """n sentinels, copied into a new StepOutputs (never changed itself). Why: a CUDA step
    at batch 32 makes 64 outputs lists of ~3,400 entries; copying one list is 5.1 µs a
    list against 8.8 µs built and copied (2-core EPYC)."""
    return [_SENTINEL] * n


def token_of(outs: Sequence[torch.Tensor], token_op: int) -> int:
    """A step's token as an int: the one its host tail read early (`StepOutputs.token`),
    else read from its output. Why: read from the output it is a view, a reshape and an
    item a job, ~7 % of a b=32 step's main thread on the H100 host (py-spy, thirty-fourth
    session), where the tail has all jobs' tokens from one copy already."""
    t = getattr(outs, "token", None)
    return t if t is not None else int(outs[token_op].reshape(-1)[0])


class StepOutputs(list):
    """A step's outputs: ops [0, tail) live in the plan's arena and become tensors (views)
    only when read; the executor appends the tail's tensors. Behaves as the list of P
    tensors `FastExecutor.run_step` returns.

    A plan that starts at op `start` > 0 (a CUDA step's host tail) holds slots for its own
    ops only, and reads None for the ops before: 32 such lists of ~3,400 slots were made
    and freed every b=32 step, for ~80 ops each."""

    def __init__(self, plan: StepPlan, arena: torch.Tensor, offs: np.ndarray,
                 nbytes: np.ndarray, dims: np.ndarray, alias: np.ndarray) -> None:
        self._start = plan.start  # op of slot 0
        super().__init__(_blank(plan.tail - plan.start))
        self.plan, self.arena, self.offs, self.nbytes, self.dims = plan, arena, offs, nbytes, dims
        self.alias = alias  # per op: the earlier op whose bits (and so root) it repeats, or -1
        self._base = arena.data_ptr()
        self.replaced: set[int] = set()  # plan ops whose output was set to another tensor
        # a device step queued on another stream (a CUDA batch lane): makes the calling
        # thread's stream wait for it; called once per stream before views are handed out
        self.ready: Callable[[], None] | None = None
        self._waited: set[int] = set()
        # a CUDA step's SAMPLE tail, run on the host as a plan of its own (`attach_tail`)
        self.host_tail: StepOutputs | None = None
        self._tail_pending: Callable[[], None] | None = None
        # outputs already on their way to the host (pinned copies, complete once the event
        # has): a CUDA step queued the next step behind them (step_plan_cuda `_Graphs.
        # speculate`), so its host tail reads these rather than copy after that step; the
        # third: who reads them in place, for their writer to wait on (or None: no one may)
        self.host_copies: dict[int, tuple[torch.Tensor, torch.cuda.Event,
                                          Readers | None]] = {}
        self.token: int | None = None  # the step's token, where its tail knew it early

    def attach_tail(self, host: StepOutputs, pending: Callable[[], None] | None = None,
                    early: Mapping[int, torch.Tensor] | None = None,
                    token: int | None = None) -> None:
        """The outputs of the ops after this plan's, from a plan that starts where this one
        ends (`StepPlan(start=)`): read from it when read, no tensor made before. `pending`:
        waits for records still running into that plan's arena (`tail_ready`); `early`:
        outputs already known (a greedy job's token), readable at once; `token`: that token
        as an int (`token_of`)."""
        if host.plan.start != self.plan.tail or len(self) != self.plan.tail:
            raise ValueError("attach_tail: the host plan must start where this plan ends")
        list.extend(self, _blank(len(host) - self.plan.tail))
        self.host_tail, self._tail_pending = host, pending
        for i, t in (early or {}).items():
            list.__setitem__(self, i - self._start, t)
        self.token = token

    def tail_ready(self) -> None:
        """Wait until the attached tail's arena is complete (readers of its bytes: views, the
        recorder)."""
        wait = self._tail_pending
        if wait is not None:
            wait()
            self._tail_pending = None

    def __setitem__(self, i, t) -> None:  # noqa: ANN001 - list protocol
        """An output replaced after the step (tests play a cheating executor this way): the
        arena no longer holds it, so readers of the arena (the recorder, the next step's
        back-references) take the tensor instead."""
        if isinstance(i, slice):
            raise TypeError("StepOutputs: assign outputs one at a time")
        i = i if i >= 0 else len(self) + i
        if not self._start <= i < len(self):
            raise IndexError(f"StepOutputs: op {i} is not one of this plan's")
        if i < self.plan.tail or self.host_tail is not None:
            self.replaced.add(i)
        self.token = None  # read from the outputs again (`token_of`)
        list.__setitem__(self, i - self._start, t)

    def __len__(self) -> int:
        return self._start + list.__len__(self)

    def wait_ready(self) -> None:
        """Order the calling thread's current stream after the step (`ready`)."""
        if self.ready is not None:
            sid = torch.cuda.current_stream(self.arena.device).cuda_stream
            if sid not in self._waited:
                self._waited.add(sid)
                self.ready()

    def address(self, i: int) -> int:
        return self._base + int(self.offs[i])

    def shape_of(self, i: int) -> tuple[int, ...]:
        """Output i's shape, read from the layout (no view made)."""
        return tuple(int(d) for d in self.dims[i, 1:1 + int(self.dims[i, 0])])

    def _view(self, i: int) -> torch.Tensor | None:
        if i < self._start:
            if i < 0:
                raise IndexError("StepOutputs index out of range")
            return None  # an op before the plan's start: not this plan's output
        t = list.__getitem__(self, i - self._start)
        if t is _SENTINEL and i >= self.plan.tail:
            self.tail_ready()
            t = self.host_tail._view(i)
            list.__setitem__(self, i - self._start, t)
        elif t is _SENTINEL:
            self.wait_ready()
            o, n = int(self.offs[i]), int(self.nbytes[i])
            t = self.arena[o:o + n].view(self.plan.dtypes[i]).view(self.shape_of(i))
            list.__setitem__(self, i - self._start, t)
        return t

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - list protocol
        if isinstance(i, slice):
            return [self._view(k) for k in range(*i.indices(len(self)))]
        return self._view(i if i >= 0 else len(self) + i)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self._view(i)

    def leaf_arrays(self, first: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]:
        """For the plan's ops from `first` on: addresses, byte sizes, and C4 headers
        (commitments C4: tag, dtype code, ndim, big-endian u32 dims) as one
        [n, 3 + 4·MAXD] byte matrix with each row's used length, for one `tensor_roots`
        call."""
        plan = self.plan
        n = plan.tail - first
        hdr = np.zeros((n, 3 + 4 * MAXD), dtype=np.uint8)
        hdr[:, 0] = 2
        hdr[:, 1] = plan._dcode[first:]
        hdr[:, 2] = plan._ndim[first:]
        hdr[:, 3:] = self.dims[first:, 1:].astype(">u4").view(np.uint8).reshape(n, 4 * MAXD)
        return (self.offs[first:] + self._base, self.nbytes[first:], hdr,
                3 + 4 * plan._ndim[first:])
