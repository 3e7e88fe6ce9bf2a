"""A batch's decode steps on the GPU as one stack of lanes: each plan launch runs once for
every job of the batch (docs/decisions/0011-stacked-cuda-lanes.md).

Why: with a lane of CUDA graphs per job (ADR 0007, `step_plan_cuda._Graphs`), a 32-job
step queued 32 graph launches of 785 nodes, 32 table copies and 32 streams' events: ~50 ms
of host time a step, against ~18 ms of device work. Here the jobs' arenas lie in one
allocation at a fixed stride, so every job's launches have the same kernels, grids and
pointers and differ only in their integers (offsets, position, token). A launch's grid gets
the lanes on its axis 2 and each lane reads its own row of the table (step_kernels._row):
one graph of 785 launches replays the whole batch's step, and its table is computed on the
device from the jobs' positions and tokens (C + K·past + T·token + L·lane, every integer
affine in all three, derived from emitted launches and checked like `_Graphs`).

Every lane computes exactly its own job's launches (the same kernels and integers as that
job's one-job graph, only its arena elsewhere), so the bits are the one-job bits. A lane
with no job this step recomputes its last step in its own arena (a graph has a fixed grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from node.ree import step_plan as sp
from node.ree.host_arena import Readers
from node.ree.step_plan_cuda import (
    CudaStepPlan,
    Staged,
    _Launch,
    _NoGraph,
    _PrevArena,
    _RootsGraphs,
    affine_table,
    grid_bucket,
    grid_tops,
    run_copies,
    stage_prev,
)

_ALIGN = 4096  # a lane's arena starts on a page: every tensor keeps its offset's alignment
# Side streams the lanes' trace roots replay on, side by side and beside the next step
# (`LaneStack.roots`); 0: on the caller's stream, one lane after another. 0 until measured
# on a GPU (scripts/profile_batch_cuda.py --root-streams 8 for the A/B).
ROOT_STREAMS = 0


class _LaneArenas:
    """One lane's two arenas as views of the stack (what `_RootsGraphs` reads)."""

    def __init__(self, sp_: CudaStepPlan, arenas: list[torch.Tensor]) -> None:
        self.sp, self.arenas = sp_, arenas


class LaneStack:
    """`lanes` jobs' decode steps, each plan launch once for all of them (module docstring).

    The arena of lane l at parity k is bytes [(2l + k)·size, (2l + k + 1)·size) of one
    allocation; a step writes parity k and reads the KV caches of parity 1 − k, and the
    stack's parity alternates for all lanes together."""

    def __init__(self, sp_: CudaStepPlan, lanes: int, past: int, token: int) -> None:
        if lanes < 2:
            raise ValueError("a stack has two lanes or more")
        self.sp, self.lanes = sp_, lanes
        top = sp_.max_past
        if top is None or past > top:
            raise _NoGraph("position past the RoPE table")
        _, nb, of = sp_.layout(top)
        self.size = -(-int(of[-1] + nb[-1]) // _ALIGN) * _ALIGN
        dev = sp_.device
        self.big = torch.empty(2 * lanes * self.size, dtype=torch.uint8, device=dev)
        self.views = [[self.big[(2 * j + k) * self.size:(2 * j + k + 1) * self.size]
                       for k in range(2)] for j in range(lanes)]
        self.tops = grid_tops(top)
        self.seqs: list[list[list[_Launch]]] = []  # per parity, per grid size (`grid_tops`)
        self.base: list[torch.Tensor] = []  # per parity: C + L·lane, [launches, lanes, ARGW]
        self.kp: list[torch.Tensor] = []  # per parity: K, [launches, 1, ARGW]
        self.kt: list[torch.Tensor] = []
        self._derive(past, token)
        self.pt_host = torch.ones((2, lanes, 1), dtype=torch.int64,
                                  pin_memory=dev.type == "cuda")
        self.pt_host[1] = 0
        self.pt = torch.zeros_like(self.pt_host, device=dev)
        self.args = torch.empty(self.base[0].shape, dtype=torch.int64, device=dev)
        self.copied: torch.cuda.Event | None = None
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}  # (parity, grid size)
        self.parity = 0
        self._roots: list[dict[bool, _RootsGraphs]] = [{} for _ in range(lanes)]  # by compact
        self.roots_error: str | None = None
        # the trace roots' replays, lane l's on stream l % ROOT_STREAMS, after the step's
        # graph (`_stepped`): one lane's roots (~0.7 ms on an H200) leave most of the GPU
        # idle, and 32 of them on one stream took ~22 ms a step
        self._rstreams: list[torch.cuda.Stream] = []
        self._stepped: torch.cuda.Event | None = None
        self._marks: list[torch.cuda.Event] = []  # the side streams' work before this step
        self.graph = dev.type == "cuda"  # else (the interpreter's CPU tensors) launch eagerly
        # `speculate`: the step queued ahead; its positions' pinned rows (and the lanes'
        # logits offsets) with their copy; per parity the host copies of the logits, tokens
        self._spec: _StackGuess | None = None
        self._spec_host = torch.zeros((4, lanes), dtype=torch.int64, pin_memory=self.graph)
        self._spec_copied: torch.cuda.Event | None = None
        self._spec_dev = torch.zeros(self._spec_host.shape, dtype=torch.int64, device=dev)
        self._logits_host: list[torch.Tensor | None] = [None, None]
        self._logits_rows: list[list[torch.Tensor]] = [[], []]  # its rows, the logits' shape
        self._logits_readers = [Readers(), Readers()]  # host tails still reading those rows
        # no stack output repeats another's bits: one read-only alias row (-1) for all
        self._alias = np.full(sp_.tail, -1, dtype=np.int64)
        self._alias.flags.writeable = False
        self._token_host: list[torch.Tensor | None] = [None, None]
        self._iota: torch.Tensor | None = None
        self.spec_hits = self.spec_misses = 0

    # ------------------------------------------------------------------ the table

    def _emit(self, k: int, lane: int, past: int, token: int) -> list[_Launch]:
        sp_ = self.sp
        dims, _, offs = sp_.layout(past)
        pd, _, po = sp_.layout(past - 1)
        here = (2 * lane + k) * self.size
        there = (2 * lane + 1 - k) * self.size
        seq = sp_.emit(self.big, dims, offs + here, _PrevArena(self.big, pd, po + there),
                       past, token, None, stacked=True)
        fixed = {self.big.data_ptr()} | sp_.weight_ptrs()
        if any(t.data_ptr() not in fixed for ln in seq for t in ln.ptrs):
            raise _NoGraph("a launch reads memory outside the stack and weights")
        return seq

    def _derive(self, past: int, token: int) -> None:
        """Per parity the table's C, K, T and L (`affine_table`), on the device as the base
        C + L·lane and the coefficients `_fill` reads."""
        sp_, n = self.sp, self.lanes
        dev = sp_.device
        for k in range(2):
            c0, kp, kt, kl, sized = affine_table(lambda lane, p, t, k=k: self._emit(k, lane, p, t),
                                                 sp_.table, n, past, token, sp_.max_past,
                                                 self.tops)
            self.seqs.append(sized)
            lane_ix = np.arange(n, dtype=np.int64)[None, :, None]
            base = c0[:, None, :] + kl[:, None, :] * lane_ix
            self.base.append(torch.from_numpy(np.ascontiguousarray(base)).to(dev))
            self.kp.append(torch.from_numpy(kp[:, None, :].copy()).to(dev))
            self.kt.append(torch.from_numpy(kt[:, None, :].copy()).to(dev))

    def _fill(self, k: int) -> None:
        """The step's table from the lanes' positions and tokens (queued on the device)."""
        torch.mul(self.kp[k], self.pt[0][None], out=self.args)
        self.args.add_(self.base[k])
        self.args.add_(self.kt[k] * self.pt[1][None])

    # ------------------------------------------------------------------ a step

    def lane_of(self, prev: Sequence[torch.Tensor | None] | None) -> int | None:
        """The lane whose arena of the other parity holds `prev` (its last step), if any."""
        if not isinstance(prev, sp.StepOutputs) or prev.arena.device != self.sp.device:
            return None
        off = prev.arena.data_ptr() - self.big.data_ptr()
        if not 0 <= off < self.big.numel():
            return None
        lane, at = divmod(off, 2 * self.size)
        return lane if at == (1 - self.parity) * self.size else None

    def step(self, jobs: Sequence[tuple[int, int, Sequence[torch.Tensor | None], int]],
             speculate: bool = False) -> list[sp.StepOutputs]:
        """One decode step of each (lane, past, prev, token): `prev` is staged into the
        lane's other arena (`stage_prev`: nothing to copy for the lane's own last step);
        with `speculate`, the step after it queued too (`speculate`)."""
        outs = self._replay(jobs)
        if speculate:
            self._spec = self.speculate(jobs, outs)
        return outs

    def take(self, steps: Sequence[tuple[int, Sequence[torch.Tensor | None], int]],
             speculate: bool = False) -> list[sp.StepOutputs] | None:
        """The outputs of the step queued by the last call's speculation when every one of
        `steps` (past, prev, token) is a job of it (the job's previous outputs the same
        object with none replaced since, its token the device's; a job of the guess not
        asked for, which ended, is left out), with `speculate` the step after it queued
        too. Else None, the guess dropped as if never queued (`step` then runs the step
        into the arenas it wrote)."""
        guess, self._spec = self._spec, None
        if guess is None:
            return None
        got = guess.match(steps)
        if got is None:
            self.spec_misses += 1
            self.parity = guess.k
            return None
        self.spec_hits += 1
        outs, jobs = got
        if speculate:
            self._spec = self.speculate(jobs, outs)
        return outs

    def _replay(self, jobs: Sequence[tuple[int, int, Sequence[torch.Tensor | None], int]]
                ) -> list[sp.StepOutputs]:
        sp_, k = self.sp, self.parity
        if len({j[0] for j in jobs}) != len(jobs):
            raise ValueError("two jobs in one lane")
        copies: list[Staged] = []
        for lane, past, prev, _token in jobs:
            if past > sp_.max_past:
                raise _NoGraph("position past the RoPE table")
            if self._rstreams and self.lane_of(prev) != lane:
                # staged into the arena the lane's last roots may still be reading
                torch.cuda.current_stream(sp_.device).wait_stream(self._rstream(lane))
            pd, _, po = sp_.frozen_layout(past - 1)
            stage_prev(sp_, prev, self.views[lane][1 - k], pd, po, copies)
        # every lane's at once: ~60 a lane after job-by-job prefills (a source inside the
        # stack's arenas, a job's whose lane another job now takes, is read before any write)
        run_copies(copies, (self.big.data_ptr(), self.big.data_ptr() + self.big.nbytes))
        if self.copied is not None:
            self.copied.synchronize()  # the pinned positions of the last step were read
        host = self.pt_host.numpy()
        host[0], host[1] = 1, 0  # a lane with no job: position 1, token 0 (module docstring)
        for lane, past, _prev, token in jobs:
            host[0, lane, 0], host[1, lane, 0] = past, token
        self.pt.copy_(self.pt_host, non_blocking=True)
        if self.graph:
            self.copied = torch.cuda.Event()
            self.copied.record()
        b = grid_bucket(self.tops, max(j[1] for j in jobs))
        seq = self.seqs[k][b]
        self._after_roots()
        g = self.graphs.get((k, b))
        if g is None:
            self._fill(k)
            sp_.launch(seq, self.args, self.lanes)  # compiles every kernel
            if self.graph:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, capture_error_mode="thread_local"):
                    self._fill(k)
                    sp_.launch(seq, self.args, self.lanes)
                self.graphs[k, b] = g
        else:
            g.replay()
        if self.graph and ROOT_STREAMS > 0:  # what the roots' side streams wait for
            self._stepped = torch.cuda.Event()
            self._stepped.record()
        return self._outputs(k, [(lane, past) for lane, past, _prev, _token in jobs])

    def _outputs(self, k: int, jobs: Sequence[tuple[int, int]]) -> list[sp.StepOutputs]:
        """The (lane, past) jobs' outputs in arena k, just queued; the parity moves on."""
        sp_ = self.sp
        self.parity = 1 - k
        outs = []
        for lane, past in jobs:
            dims, nbytes, offs = sp_.frozen_layout(past)
            out = sp.StepOutputs(sp_.plan, self.views[lane][k], offs, nbytes, dims, self._alias)
            if self.roots_error is None and self.graph:
                out.roots_graph = self._roots_fn(lane, k, past)
                if self._rstreams:  # made by the first roots asked for (a traced batch)
                    out.roots_stream = self._rstream(lane)
            outs.append(out)
        return outs

    def speculate(self, jobs: Sequence[tuple[int, int, Sequence[torch.Tensor | None], int]],
                  outs: Sequence[sp.StepOutputs]) -> _StackGuess | None:
        """`_Graphs.speculate` for the stack: the jobs' next step queued with the device's
        greedy tokens of their logits (one gather of the lanes' rows, one argmax), after
        the host copies of those rows and tokens that the jobs' host tails read. None where
        the next step's graph is not captured yet, a job passes the RoPE table, or the
        trace roots run on side streams (`ROOT_STREAMS`)."""
        sp_, li = self.sp, self.sp.logits_op
        if li is None or not self.graph or ROOT_STREAMS > 0 or not sp_.speculate or not jobs:
            return None
        nxt = [(lane, past + 1) for lane, past, _prev, _token in jobs]
        top = max(p for _lane, p in nxt)
        if top > sp_.max_past:
            return None
        k1 = self.parity
        g = self.graphs.get((k1, grid_bucket(self.tops, top)))
        if g is None:
            return None
        k, n = 1 - k1, len(jobs)  # `outs`' arenas
        starts = [(2 * lane + k) * self.size + int(o.offs[li])
                  for (lane, *_rest), o in zip(jobs, outs, strict=True)]
        nb = int(outs[0].nbytes[li])
        if any(int(o.nbytes[li]) != nb for o in outs) or nb % 4 or any(a % 4 for a in starts):
            return None
        v = nb // 4
        if self._spec_copied is not None:
            self._spec_copied.synchronize()  # the pinned rows of the last guess were read
        h = self._spec_host.numpy()
        h[0], h[1] = 1, 0  # positions and tokens as `_replay` lays them out (free lanes too)
        for lane, p in nxt:
            h[0, lane] = p
        h[2, :n] = [a // 4 for a in starts]
        h[3, :n] = [lane for lane, _p in nxt]
        self._spec_dev.copy_(self._spec_host, non_blocking=True)
        self._spec_copied = torch.cuda.Event()
        self._spec_copied.record()
        if self._iota is None or self._iota.numel() != v:
            self._iota = torch.arange(v, device=sp_.device)
        from node.ree.fastsample import argmax_token

        rows = self.big.view(torch.float32)[self._spec_dev[2, :n, None] + self._iota[None, :]]
        tok = argmax_token(rows)
        lh = self._logits_host[k]
        if lh is None or lh.shape[0] < n or lh.shape[1] != v:
            lh = self._logits_host[k] = torch.empty((self.lanes, v), dtype=torch.float32,
                                                    pin_memory=True)
            self._token_host[k] = torch.empty(self.lanes, dtype=torch.int64, pin_memory=True)
            # made once, not a row view and an output view (for its shape) per job per
            # step: with the shared alias row, `speculate` went 2.4-2.7 → 1.7-2.0 ms at
            # batch 32 on the H100 host (notes-runtime-perf.md, thirty-third revision)
            self._logits_rows[k] = list(lh.view(self.lanes, *outs[0].shape_of(li)))
        th, lrows = self._token_host[k], self._logits_rows[k]
        # the host tails of two steps ago read these rows in place (`StepPlan._batch`),
        # the rest of them on a worker: rewritten only once those are done
        self._logits_readers[k].wait()
        lh[:n].copy_(rows, non_blocking=True)
        th[:n].copy_(tok, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        readers = self._logits_readers[k]
        for j, o in enumerate(outs):
            o.host_copies[li] = (lrows[j], ready, readers)
        self.pt[0].copy_(self._spec_dev[0, :, None])
        self.pt[1].zero_()
        self.pt[1].index_copy_(0, self._spec_dev[3, :n], tok[:, None])
        g.replay()  # its table is filled from `pt` inside the graph (`_fill`)
        new = self._outputs(k1, nxt)
        return _StackGuess(k1, [(lane, p, o, j, prev_out) for j, ((lane, p), o, prev_out)
                                in enumerate(zip(nxt, new, outs, strict=True))], th, ready)

    def _rstream(self, lane: int) -> torch.cuda.Stream:
        if not self._rstreams:
            self._rstreams = [torch.cuda.Stream(self.sp.device) for _ in range(ROOT_STREAMS)]
        return self._rstreams[lane % ROOT_STREAMS]

    def _after_roots(self) -> None:
        """Order this step's graph after the trace roots of two steps ago, which read the
        arenas it overwrites; the roots of the last step (the other parity) run beside it."""
        if not self._rstreams:
            return
        cur = torch.cuda.current_stream(self.sp.device)
        for e in self._marks:
            cur.wait_event(e)
        self._marks = [s.record_event() for s in self._rstreams]

    def _roots_fn(self, lane: int, k: int, past: int):  # noqa: ANN202 - a thunk
        def roots(wait: bool = True, compact: bool = False) -> torch.Tensor | None:
            return self.roots(lane, k, past, wait, compact)
        return roots

    def roots(self, lane: int, k: int, past: int, wait: bool = True, compact: bool = False
              ) -> torch.Tensor | None:
        """The C4 roots of a lane's arena k at `past` (`_Graphs.roots`: a graph replay
        queued now, on the lane's side stream `roots_stream`; `compact`: the compact trace's
        only), or None where they cannot be a graph. `wait`: the current stream waits for
        them (else the caller reads them on `roots_stream`: the recorder, so that the next
        step's graph need not wait)."""
        r = self._roots[lane].get(compact)
        if r is None and self.roots_error is None:
            like = next((x[compact] for x in self._roots if compact in x), None)
            try:
                r = self._roots[lane][compact] = _RootsGraphs(
                    _LaneArenas(self.sp, self.views[lane]), like,  # type: ignore[arg-type]
                    compact)
            except _NoGraph as e:
                self.roots_error = str(e)
        if r is None:
            return None
        if ROOT_STREAMS <= 0:
            return r.run(k, past)
        s = self._rstream(lane)
        with torch.cuda.stream(s):
            # after the step's graph; after this lane's last roots too (same stream, same
            # scratch)
            s.wait_event(self._stepped)
            out = r.run(k, past)
        if wait:
            torch.cuda.current_stream(self.sp.device).wait_stream(s)
        return out


class _StackGuess:
    """A stack step queued before the host knew its tokens (`LaneStack.speculate`)."""

    def __init__(self, k: int, jobs: list[tuple[int, int, sp.StepOutputs, int, sp.StepOutputs]],
                 tokens: torch.Tensor, ready: torch.cuda.Event) -> None:
        self.k = k
        # by the previous outputs' identity: (lane, past, outputs, row of `tokens`, previous)
        self.by_prev = {id(prev): (lane, p, o, j, prev) for lane, p, o, j, prev in jobs}
        self.tokens, self.ready = tokens, ready  # the device's tokens, pinned, once `ready`

    def match(self, steps: Sequence[tuple[int, Sequence[torch.Tensor | None], int]]
              ) -> tuple[list[sp.StepOutputs], list[tuple]] | None:
        """(outputs, `LaneStack.step` jobs) of `steps` (past, prev, token) if the guess holds
        for every one of them."""
        outs, jobs, lanes = [], [], set()
        for past, prev, token in steps:
            got = self.by_prev.get(id(prev))
            if got is None:
                return None
            lane, p, o, j, was = got
            if was is not prev or p != past or prev.replaced or lane in lanes:
                return None
            lanes.add(lane)
            outs.append(o)
            jobs.append((lane, past, prev, token, j))
        self.ready.synchronize()
        toks = self.tokens.numpy()
        if any(int(toks[j]) != token for *_x, token, j in jobs):
            return None
        return outs, [job[:4] for job in jobs]


__all__ = ["LaneStack"]
