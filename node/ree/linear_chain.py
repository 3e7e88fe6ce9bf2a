"""All k-segments of one weight linear at once (docs/trace-layout.md §L5.3, §L8).

The lowering emits a linear x·Wᵀ as ⌈K / S⌉ consecutive DOT ops, segment s chaining from
segment s−1's output. Run one at a time, each segment pays a kernel call, an accumulator
copy and Python dispatch (2,138 of the 5,504 SmolLM2 ops per token). Here the executor
computes every segment of a chain in one handler, with one exactness flag per chain:

* CPU, one row (decode): `PanelChain` keeps, per segment, the augmented weight
  `[acc | W[:, k0:k1]]` in the CPU kernel's packed panel layout (`repops.pack_linear`);
  the accumulator is written into the panels' spare k-row and the row `[1, x[k0:k1]]` runs
  the decode kernel: `fma(1, acc, +0) = acc` starts the chain (exact except acc = −0.0,
  which comes out +0.0).
* CPU, weights with GGUF blocks (`QuantChain`): the kernel reads the Q4_1/Q8_0 blocks,
  dequantizes them exactly (ADR 0003) and runs each output's chain once from +0.0, storing the
  running accumulator at every segment end: that IS the spec's segmented chain, so it carries
  no doubt, and it reads ~5x fewer bytes than fp32 panels (decode is memory bound).
* any device, any rows (`masked_chain`): row (s, r) of one matmul is x[r] with the columns
  from k1(s) on replaced by +0.0, against the whole Wᵀ: the chain over [0, k1(s)) is the
  spec chain, the trailing `fma(+0, w, acc)` terms add ±0 (or NaN from ±inf weights).
  One launch per linear: the GPU path, where launches dominate.

`PanelChain` and `masked_chain` differ from the spec chain at most in the sign of a zero
result or by a NaN, so an output element that is ±0 or NaN is "doubtful": the caller treats
the whole chain op by op with the element-exact re-check (node/ree/fastexec.py) when any is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import repops
from referee.layout import Code, Src, TraceProgram


@dataclass(frozen=True)
class Chain:
    """Ops `first … first+len(bounds)−1` are the segments of x·Wᵀ (layout §L8 linear)."""

    first: int
    x_op: int  # the A input: output of this op in the same step
    root: bytes  # the weight's C4 root
    bounds: tuple[tuple[int, int], ...]  # (k0, k1) per segment, as in the op attributes

    @property
    def ops(self) -> range:
        return range(self.first, self.first + len(self.bounds))


def find_chains(program: TraceProgram) -> dict[int, Chain]:
    """Consecutive weight DOT segments of one linear, keyed by the first op's index (one op
    when the program's segment covers K: ADR 0012).

    A chain is only recognised in the exact shape the lowering emits (same A, same weight,
    each segment's accumulator the previous op, contiguous k ranges from 0, no group or
    causal mask, the same output dims); anything else stays with the op-by-op executor.
    """
    ops, out, j = program.ops, {}, 0
    while j < len(ops):
        op = ops[j]
        if not _chain_head(op):
            j += 1
            continue
        a, root = op.inputs[0], op.inputs[1].root
        bounds = [(op.attrs[0], op.attrs[1])]
        i = j + 1
        while i < len(ops):
            nx = ops[i]
            if (nx.code != Code.DOT or len(nx.inputs) != 3 or nx.inputs[0] != a
                    or nx.inputs[1].src != Src.WEIGHT or nx.inputs[1].root != root
                    or nx.inputs[2].src != Src.OP or nx.inputs[2].op != i - 1
                    or nx.inputs[2].back != 0 or nx.attrs[2:] != (1, 0)
                    or nx.attrs[0] != bounds[-1][1] or nx.attrs[1] <= nx.attrs[0]
                    or nx.dims != op.dims or nx.dtype != op.dtype):
                break
            bounds.append((nx.attrs[0], nx.attrs[1]))
            i += 1
        out[j] = Chain(j, a.op, root, tuple(bounds))
        j = i
    return out


def _chain_head(op) -> bool:  # noqa: ANN001 - TraceOp
    return (op.code == Code.DOT and len(op.inputs) == 2 and op.inputs[0].src == Src.OP
            and op.inputs[0].back == 0 and op.inputs[1].src == Src.WEIGHT
            and op.attrs[0] == 0 and op.attrs[1] > 0 and op.attrs[2:] == (1, 0))


def doubtful(y: torch.Tensor) -> torch.Tensor:
    """0-dim bool on y's device: some element is ±0 or NaN (module docstring)."""
    return ((y == 0) | torch.isnan(y)).any()


class PanelChain:
    """Per-segment augmented weights in packed panels, for decode on the CPU (docstring).

    The segments call the CPU decode kernel (`repops_linear_packed`, what `repops.linear`
    runs on a PackedLinear) directly with pointers into one output tensor: per segment that
    saves an allocation, a concatenation and the API's argument checks (~20 µs, more than
    the 65-row product itself)."""

    def __init__(self, w: np.ndarray, chain: Chain) -> None:
        from repops.cpu.build import load

        n, k = w.shape
        self.n, self.k = n, k
        self.spans: list[tuple[int, int]] = []
        self.packed = []
        self.heads: list[torch.Tensor] = []  # per segment: the panels' k = 0 row [npan, NR]
        for k0, k1 in chain.bounds:
            kend = min(k1, k)
            if kend <= k0:
                raise ValueError("a chain segment past the weight's K")
            aug = np.zeros((n, 1 + kend - k0), dtype=np.float32)
            aug[:, 1:] = w[:, k0:kend]
            p = repops.pack_linear(torch.from_numpy(aug))
            npan, width = p.panels.shape[0], p.width
            self.packed.append(p)
            self.heads.append(p.panels.view(npan, 1 + kend - k0, width)[:, 0, :])
            self.spans.append((k0, kend))
        self.width = self.packed[0].width
        self.npad = self.heads[0].shape[0] * self.width
        self.seg = max(b - a for a, b in self.spans)
        self.uniform = all(a == s * self.seg for s, (a, _) in enumerate(self.spans))
        nseg = len(self.spans)
        self._xa = torch.zeros((nseg, 1 + self.seg), dtype=torch.float32)
        self._xa[:, 0] = 1.0
        self._xp = torch.zeros(nseg * self.seg, dtype=torch.float32)
        self._acc = torch.zeros(self.npad, dtype=torch.float32)
        self._zero_head = torch.zeros((self.npad // self.width, self.width), dtype=torch.float32)
        self._fn = load().repops_linear_packed
        self._calls = [(1 + b - a, p.panels.data_ptr(), h)
                       for (a, b), p, h in zip(self.spans, self.packed, self.heads, strict=True)]

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [1, K] → (segment outputs [nseg, N], doubtful flag) (module docstring)."""
        from repops.cpu.kernels import plan_threads

        nseg, n, xa = len(self.spans), self.n, self._xa
        if self.uniform:  # segment s covers [s·S, (s+1)·S): one strided copy
            self._xp[: self.k] = x.reshape(-1)
            xa[:, 1:] = self._xp.view(nseg, self.seg)
        else:
            for s, (k0, k1) in enumerate(self.spans):
                xa[s, 1:1 + k1 - k0] = x[0, k0:k1]
        out = torch.empty((nseg, n), dtype=torch.float32)
        xp, op, lda, nt = xa.data_ptr(), out.data_ptr(), xa.shape[1], plan_threads()
        padded = n != self.npad
        for s, (kk, panels, head) in enumerate(self._calls):
            if s == 0:
                head.copy_(self._zero_head)
            elif padded:
                self._acc[:n] = out[s - 1]
                head.copy_(self._acc.view(-1, self.width))
            else:
                head.copy_(out[s - 1].view(-1, self.width))
            self._fn(1, n, kk, xp + 4 * s * lda, lda, panels, op + 4 * s * n, n, nt)
        return out, doubtful(out[1:])


@dataclass(frozen=True)
class QuantBlocks:
    """A weight W[N, K] as its GGUF blocks (N rows of K/32 blocks, docs/decisions/0003):
    the storage `QuantChain` reads instead of the dequantized fp32 values."""

    qtype: str  # "q4_1" or "q8_0" (repops.pack_linear_quantized)
    raw: np.ndarray  # uint8, the tensor's GGUF data
    n: int
    k: int


_NO_DOUBT = torch.zeros((), dtype=torch.bool)


class QuantChain:
    """All segments of a linear from the weight's GGUF blocks, CPU, any rows (docstring).

    `run` returns the spec's segment outputs themselves (repops_linear_q_segments: one chain
    per output from +0.0, the accumulator stored at each segment end), so its doubt flag is
    always False: there is no rewrite for the executor's re-check to undo."""

    def __init__(self, blocks: QuantBlocks, chain: Chain,
                 weight: np.ndarray | None = None) -> None:
        """`weight`: the fp32 values the trace program binds to this root; when given, the
        blocks must dequantize to exactly these bits (else ValueError), so wrongly keyed
        blocks cannot change a trace."""
        from repops.cpu import kernels
        from repops.cpu.packed import QTYPES

        self.n, self.k = blocks.n, blocks.k
        self.packed = repops.pack_linear_quantized(blocks.raw, blocks.qtype, blocks.n, blocks.k)
        if weight is not None and not self.matches(weight):
            raise ValueError(f"{blocks.qtype} blocks [{blocks.n}, {blocks.k}] do not "
                             "dequantize to the weight's values")
        k1s = [b for _, b in chain.bounds]
        if chain.bounds[0][0] != 0 or any(a != p for (a, _), p in zip(chain.bounds[1:], k1s,
                                                                       strict=False)):
            raise ValueError("chain segments must be contiguous from k = 0 (layout §L8)")
        self.nseg = len(k1s)
        self.ends = tuple(min(b, self.k) for b in k1s)  # where each segment's chain stops
        self._ends = torch.tensor(self.ends, dtype=torch.int64)
        self._code = QTYPES[blocks.qtype][0]
        self._fn = kernels.linear_q_segments_fn()

    def record_words(self) -> list[int]:
        """The step plan's QCHAIN parameters (repops_step_plan.c `run_qchain`)."""
        return [self._code, self.n, self.k, self.packed.panels.data_ptr(),
                self._ends.data_ptr(), self.nseg]

    def matches(self, weight: np.ndarray) -> bool:
        """The blocks' ADR 0003 values are bit for bit `weight` (shape [N, K])."""
        w = np.asarray(weight)
        if w.shape != (self.n, self.k) or w.dtype != np.float32:
            return False
        return np.array_equal(self.packed.dequantize().numpy().view(np.uint32),
                              w.view(np.uint32))

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [R, K] → (segment outputs [nseg, R, N], False): for R = 1 the elements of
        `PanelChain.run`'s [nseg, N], exact where that one is doubtful."""
        from repops.cpu.kernels import plan_threads

        x = x.contiguous()
        r, k = x.shape
        if k != self.k:
            raise ValueError(f"QuantChain: x has K = {k}, the weight {self.k}")
        out = torch.empty((self.nseg, r, self.n), dtype=torch.float32)
        if self._fn(self._code, r, self.n, k, x.data_ptr(), k, self.packed.panels.data_ptr(),
                    self.nseg, self._ends.data_ptr(), out.data_ptr(), plan_threads(), 0):
            raise ValueError("QuantChain: the kernel refused the segment ends")
        return out, _NO_DOUBT


def masked_rows(bounds: tuple[tuple[int, int], ...], k: int, device: torch.device
                ) -> torch.Tensor:
    """[nseg, 1, K] bool: column kk of segment s is live when kk < k1(s)."""
    k1 = torch.tensor([min(b, k) for _, b in bounds], device=device).reshape(-1, 1, 1)
    return torch.arange(k, device=device).reshape(1, 1, k) < k1


def masked_chain(x: torch.Tensor, wt: torch.Tensor, live: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """x [R, K], Wᵀ [K, N], live [nseg, 1, K] → ([nseg, R, N], doubtful flag) (docstring)."""
    r, k = x.shape
    a = torch.where(live, x.reshape(1, r, k), torch.zeros((), dtype=x.dtype, device=x.device))
    y = repops.matmul(a.reshape(-1, k), wt).reshape(live.shape[0], r, wt.shape[1])
    return y, doubtful(y)
