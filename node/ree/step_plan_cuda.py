"""A decode step's plan records on the GPU (docs/trace-layout.md §L5; the CPU twin is
node/ree/step_plan.py, the kernels repops/gpu/step_kernels.py; docs/decisions/0004).

Why: op by op, a CUDA decode step paid ~50 µs of Python, allocation and launch per trace op
(5,569 of them: ~270 ms a SmolLM2 token), and the recorder then staged 4,639 separate device
tensors. The plan's records group a linear's segments and a FOLD tree's levels, and here a
chain of DOT segments too, so a step is 1,301 launches into one device arena laid out as the
CPU plan's; an RMSNorm's and a softmax's launches then become one each (`fuse_launches`,
ADR 0010): 785; the later passes in `CudaStepPlan.emit` (MOVEs, EWs and linears fused,
a layer's attention as one launch, pairs: ADRs 0014, 0021) bring it to 336. Each launch
reads its integers (offsets, dims, strides, position, token) from its row of a table in
device memory; they are affine in the position and the token, so `_Graphs` replays every
decode step as a CUDA graph after filling the table. Run eagerly (batches, or
when the graph is given up), attention p·v segments past the live keys launch nothing: their
output is their accumulator's bits (§L5.3), so they take that op's place in the arena and the
recorder its root (`alias`). The recorder copies the arena to the host in one transfer.

Every record computes the op's §L5 definition (the same element rules as
repops_step_plan.c); tests/ree/test_step_plan_cuda.py compares every leaf with the CPU plan.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import triton

from node.ree import fold_tree as ft
from node.ree import linear_chain as lc
from node.ree import step_plan as sp
from node.ree.fastexec import numel, rows_cols
from node.ree.speculate_cuda import NextTable
from referee.compact import compact_ops
from referee.layout import Code, Symbols, TraceProgram
from repops.gpu import keccak
from repops.gpu import step_kernels as sk
from repops.gpu.launch import FP_FLAGS, NEG_ZERO, interpreting

_EW_BLOCK = 1024
_MOVE_BLOCK = 1024
_CHAIN = (128, 32, 4, 2)  # BN, BK, num_warps, pipeline stages (repops.gpu.matmul GEMV_CFG)
# The weight linears' kernel (scripts/profile_cuda_step.py --sweep measures them; every one
# gives the same bits): ("dot", BM, BN, num_warps, stages, prefetch) for qchain_dot_kernel,
# ("fma", BN, BK, num_warps, stages, warm) for chain_kernel, ("vec", BN, TK, num_warps) for
# qchain_vec_kernel, ("v8", BN, NB, PF, num_warps[, XS]) for qchain_v8_kernel (ADR 0009; the
# last two: one row of x, else chain_kernel). The interpreter's tl.dot is NumPy's matmul,
# not an fma chain, and it runs no inline asm, so it runs chain_kernel there.
QCHAIN = ("fma", *_CHAIN, False) if interpreting() else ("v8", 32, 64, -1, 1)
# chain_kernel's L1 prefetch of the segments ahead (inline asm: not under the interpreter)
# and its double-buffered k blocks (scripts/profile_cuda_step.py --sweep measures both).
# Off since the thirtieth session: with the attention fused, chain_kernel runs only its
# DOTs, whose chains at ~60 keys are one segment, so the prefetches (~290 instructions a
# warp, Nsight Compute) bought nothing. H100 A/B (profile_cuda_step.py --no-pdl, 32 steps,
# interleaved): graph 2.461 / 2.468 → 2.434 / 2.432 ms; bits: the same loads (the prefetch
# reads into L1 only). --prefetch 1 for the A/B
PREFETCH = 0
DOUBLE_BUFFER = 1
# an RMSNorm's seven launches and a softmax's six as one each (`fuse_launches`)
FUSE = True
# the decode linears of one input (q, k, v; gate, up) as one qchain_v8 launch over their
# weights side by side (`fuse_linears`). Measured on the H100 (seventeenth session,
# profile-cuda-step and bench A/B): graph 4.18 → 3.54 ms a step (815 → 725 launches), b=1
# decode 204 → 238 tok/s; every leaf equal (test_step_plan_cuda.py's [fused-linears] cases)
FUSE_LINEARS = True
# each MOVE of one launch's output fused into that launch (`fuse_moves`). H100 A/B
# (seventeenth session): b=1 exec only 224-226 → 230-241 tok/s, graph 3.54 → 3.28 ms
FUSE_MOVES = True
# an EW fused into the RMSNorm it feeds or the EW before it (`fuse_ew`; A/B:
# bench_runtime.py --no-fuse-ew)
FUSE_EW = True
# a layer's K and V cache CONCATs (each with its fused head transpose) as one launch, and
# its q and k ROPEs as one (`fuse_pairs`, concat_kernel's and rope_kernel's PAIR). Bits:
# unchanged (each half its own op's code; the interpreter check compares them with the
# CPU's). On since the twenty-fifth session: GPU test test_cuda_switch_equal_cpu_leaf_by_leaf
# [FUSE_PAIRS] passed on the H100, and the A/B (scripts/gpu_ab.sh fuse-pairs, PDL off)
# gave 2.601 ms against 2.828 a step graph, 396 launches against 456
FUSE_PAIRS = True
# a batch's jobs as one stack of lanes, each launch once for all (ADR 0011), else a lane of
# graphs per job (ADR 0007)
STACK_LANES = True
# a stack's decode linears with this many lanes a program (qchain_v8_kernel's LR; 1: one
# lane a program), each thread running its column's chain for each of them, so that a
# weight is read once for LR lanes instead of once a lane, and (STACK_LINEAR_NB) with k
# blocks of this many weights (None: QCHAIN's). Bits: unchanged (each lane's chains are its
# own, in the same k order). Why: at 32 lanes the linears were 4.7 of a stack step's 8 ms
# on the H200 (ADR 0011), 32 × 3.5 MB of w_down alone through L2 each step. A/B:
# profile_batch_cuda.py --stack-lr. H100 (twenty-third session, 32 lanes, x four values a
# load): the stack's graph 7.91 → 5.46 ms, its linears 5.29 → 2.74 ms (LR 2: 5.81, 3.18;
# LR 4 with x a value a load: 5.97, 3.29); the GPU test's stack of four lanes at LR 2
# passed leaf by leaf
STACK_LR = 4
STACK_LINEAR_NB: int | None = 32
# a step's launch grids are sized for the first of these positions at or past its own:
# GRID_MIN − 1, then doubling, then the largest position (`grid_tops`); None: the largest
# position only. 64: the stack's step at ~60 tokens and 32 lanes 21.5 → 8.5 ms on the H200
# (ADR 0011); the GPU tests set 16 and 18 so that their jobs cross a bucket
GRID_MIN: int | None = 64
# a decode linear whose weight has Q4_1 GGUF blocks reads those (`qchain_quant_kernel`: 24
# bytes a column per 32 ks instead of 128, dequantized exactly in the kernel, ADR 0003),
# else the fp32 values (`qchain_v8_kernel`). Off: on the H100 (ADR 0016) its bits equal the
# CPU's (GPU report, 2,934,510 leaves) but b=1 decode fell 347.4 → 301.8 tok/s (likely
# its six instructions a k on one warp, where fp32 weights need two). bench_runtime.py
# --quant-linears for the A/B.
QUANT_LINEARS = False
# the same for a decode linear whose weight has Q8_0 blocks: in SmolLM2's GGUF, the head
# (`qchain_quant_kernel` QT 8, ADR 0024: 36 bytes a column per 32 ks instead of 128; d·q is
# exact). Why: the head is N = 49,152 columns of K = 576, 113 MB of fp32 weights a step,
# one launch of ~57 µs on the H100 (profile_cuda_step.py --loop, thirty-first session) where
# its chains take ~1.2 µs: it is bound by the bytes (~2 TB/s), which Q8_0 cuts to 30 MB.
# Bits: test_cuda_switch_equal_cpu_leaf_by_leaf[QUANT_Q8] passed on the H100 (six steps leaf
# by leaf, with SMALL_BLOCKS); interpreter-checked against the CPU's Q8_0 kernel. H100, same
# lease, PDL on: graph 2.061 / 2.053 ms → 2.022 (one run each). A stack's lanes keep
# qchain_v8_kernel (`emit(stacked=True)`), which shares each weight load among STACK_LR
# lanes. On since the thirty-first session (bench_runtime.py --no-quant-q8 for the A/B)
QUANT_Q8 = True
# a decode linear's x loaded four values at a time (qchain_v8_kernel's XV), the step plan
# starting each x 16-byte aligned (step_plan.ALIGN_LINEAR_INPUTS, which this sets for CUDA
# plans). Bits: unchanged (the same values in the same chain; GPU test
# test_cuda_switch_equal_cpu_leaf_by_leaf[X_VECTORS] passed on the H100). H100 A/B
# (twenty-third session, profile_cuda_step.py --no-pdl): graph 2.996 → 2.767 ms a step,
# w_down 16.1 → 12.6 µs. bench_runtime.py --no-x-vectors for the A/B
X_VECTORS = True
# FOLD trees (alone, in an RMSNorm, in a softmax) with each level after the first from the
# level before's registers (step_kernels._fold_reg) instead of a store, barrier and load.
# Bits: unchanged (the GPU test passed on the H100). Off: slower there (twenty-third
# session, profile_cuda_step.py --no-pdl): graph 2.996 → 3.301 ms, softmax 6.8 → 11.8 µs,
# RMSNorm 5.0 → 7.6 µs (ADR 0018). bench_runtime.py --reg-folds
REG_FOLDS = False
# an RMSNorm (norm_kernel) in one warp, the row in registers: FOLD levels by register adds
# and warp shuffles, no barrier, no reload (step_kernels._norm_warp), the table's words and
# the weight row read before the PDL wait. WARP_SOFTMAX: a softmax (softmax_kernel) alike
# for rows up to 512 keys (_softmax_warp). Bits: unchanged (the same fns on the same values;
# interpreter checks, sm_90 compiles; not yet run leaf by leaf on a GPU). Off: both on
# together were slower on the H100 (twenty-sixth session, scripts/gpu_ab.sh, PDL off):
# graph 2.569 → 2.858 ms a step (ADR 0020); each alone is unmeasured.
# bench_runtime.py --warp-folds / --warp-softmax for the A/B
WARP_FOLDS = False
WARP_SOFTMAX = False
# a decode layer's q·k DOT, softmax and p·v DOT as one launch, one program a head
# (`fuse_attention`, step_kernels.attn_kernel: each part the code of its own kernel, a
# barrier between them; ADR 0021). Bits: unchanged (GPU test
# test_cuda_switch_equal_cpu_leaf_by_leaf[FUSE_ATTENTION] and the H100 report, ALL EQUAL).
# On since the twenty-seventh session's H100 A/B (scripts/gpu_ab.sh fuse-attention 32, PDL
# off): graph 2.578 → 2.476 ms a step, 396 → 336 launches; b=1 exec only 439.1 tok/s.
# bench_runtime.py --no-fuse-attention for the A/B
FUSE_ATTENTION = True
# with FUSE_ATTENTION, the MOVE of the heads' p·v outputs into one row (~1.9 µs a layer on
# the H100) done by `attn_kernel` too, each head's program its own values (OT,
# `_heads_move`). Bits: copies; test_cuda_switch_equal_cpu_leaf_by_leaf[FUSE_HEADS_MOVE]
# passed on the H100 (twenty-eighth session). H100 A/B (profile_cuda_step.py, 32 steps):
# graph 2.534 / 2.521 → 2.468 / 2.464 ms with PDL off, 2.161 → 2.146 / 2.145 with it on;
# 336 → 306 launches. On since the thirtieth session: with it on, the H100 report (20 jobs,
# 2,934,510 leaves) ALL EQUAL and the GPU stack tests (lanes_equal_cpu_jobs,
# stack_speculated) 9/9 passed (bench_runtime.py --no-fuse-heads-move for the A/B)
FUSE_HEADS_MOVE = True
# an RMSNorm and the decode linear after it (q, k, v; gate, up; the LM head) as one launch,
# each of the linear's programs running the norm's warp body first (`fuse_norm_linears`,
# step_kernels.norm_qchain_kernel; ADR 0022). Bits: unchanged (each part its own kernel's
# code; test_cuda_switch_equal_cpu_leaf_by_leaf[FUSE_NORM_LINEARS] passed on the H100).
# Off: slower there (twenty-eighth session, profile_cuda_step.py, 32 steps): graph 2.161 →
# 2.264 ms with PDL on, 2.53 → 2.654 with it off, for 336 → 275 launches: each program's
# norm costs more than the launch it saves (bench_runtime.py --fuse-norm-linears)
FUSE_NORM_LINEARS = False
# a one-job decode linear with 8 or 16 columns a program where that keeps its programs
# within the GPU's multiprocessors (`with_linear_blocks`): w_down 18 → 72 programs. Bits:
# unchanged (the same kernel and chains; BN 8 and 16 bit-equal in the sweep). Off: slower
# on the H100 (twenty-eighth session, profile_cuda_step.py, 32 steps): graph 2.161 → 2.224
# ms with PDL on, 2.53 → 2.563 / 2.572 with it off; w_down 13.26 → 13.83 µs, wq 6.9 → 7.26:
# a linear's time is not its panel's stream through few SMs (bench_runtime.py
# --linear-blocks)
LINEAR_BLOCKS = False
# a FOLD tree's memory body (alone, in an RMSNorm, in a softmax, in the fused attention)
# with each level's own elements from the level before's registers and only its pairs
# loaded back (`with_fold_carry`, step_kernels._fold_levels' CARRY): a softmax's tree is
# sized for the longest context (eleven levels), so at ~60 keys its first five levels are
# copies that then load nothing, and a level's barrier is kept only where the next level
# loads its pairs. In a softmax of at most CAP0 keys every step takes its input from the
# step before's registers too (`_softmax_carried`: the scaled row, the trees' first levels,
# the exp row). Bits: unchanged (the same values in the same order; interpreter-checked at
# 9 and 151 keys). Off: slower on the H100 (thirtieth session, profile_cuda_step.py
# --no-pdl, 32 steps, interleaved: graph 2.538 / 2.543 → 2.555 ms). Nsight Compute says
# why: attn_kernel is bound by the instructions each warp issues, not by its round trips
# through L2, and carrying CAP0-wide levels in registers adds instructions (ADR 0023)
FOLD_CARRY = False
# an attention DOT chain's last partial k block (p·v at ~60 keys: 28 keys after one block of
# 32) as one masked block of loads whose fmas past the end are not taken
# (step_kernels._ab_tail, chain_kernel's and attn_kernel's TB), instead of a load and an fma
# a key in turn. Bits: unchanged (the same fmas in the same order; a not-taken fma keeps the
# accumulator's bits; interpreter-checked). Off: slower on the H100 (thirtieth session,
# profile_cuda_step.py --no-pdl, 32 steps: graph 2.538 / 2.543 → 2.608 ms; the q·k chain,
# K = 64, runs a tail block of 32 fmas not taken)
CHAIN_TAIL = False
# a softmax's (alone or in the fused attention) EW passes NARROW_BLOCK columns at a time and
# its FOLD levels as tensors of max(cap, NARROW_BLOCK) elements (`with_narrow`,
# step_kernels._softmax_mem's BLOCK, _fold_from's MINW) instead of 1,024 each. Why: Nsight
# Compute on the H100 (thirtieth session) counted ~5,500 instructions a warp in a layer's
# attn_kernel at ~60 keys, ~2,100 of them the softmax's, nearly all on the masked lanes of
# 1,024-wide tensors (eight elements a thread a step; exp in f64 on all eight). Bits:
# unchanged (each element the same operation on the same inputs): interpreter-checked at 9
# and 151 keys, test_cuda_switch_equal_cpu_leaf_by_leaf[NARROW_SOFTMAX] passed on the H100,
# and with it on the H100 report ALL EQUAL and the GPU stack tests 9/9. H100 A/B
# (profile_cuda_step.py --no-pdl, 32 steps, interleaved): graph 2.461 / 2.468 → 2.425 /
# 2.416 ms, with PREFETCH 0 too 2.389 / 2.388; attn_kernel 20.2 → 13.8 µs (Nsight Compute,
# 198,738 → 150,732 instructions). On since the thirtieth session (--no-narrow-softmax)
NARROW_SOFTMAX = True
NARROW_BLOCK = 128
# the same for every RMSNorm's norm_kernel (`with_narrow`): its passes 128 wide, its
# FOLD levels max(cap, 128) (576 values: a tree from cap 512, ten levels, each four
# elements a thread at BLOCK 1,024), and its three one-value steps (mean, eps, the
# correctly rounded root) on one element a thread instead of eight. Bits: unchanged (as
# NARROW_SOFTMAX; interpreter-checked; test_cuda_switch_equal_cpu_leaf_by_leaf[NARROW_NORMS]
# passed on the H100). Off: slower on the H100 (thirty-first session, profile_cuda_step.py
# --no-pdl, 32 steps, interleaved: graph 2.413 / 2.402 → 2.509 / 2.513 ms): the norm is one
# program, and five 128-wide passes over 576 values wait on five rounds of loads where one
# 1,024-wide pass waits on one (bench_runtime.py --narrow-norms for the A/B)
NARROW_NORMS = False
# ew_kernel, move_kernel and concat_kernel launches of SMALL_BLOCK elements a program instead
# of 1,024 (`CudaStepPlan._block`): at decode sizes a layer's K and V appends (~12k elements
# each, with the head transpose's six-way index arithmetic fused in) were ~12 programs of
# eight elements a thread, 5.9 µs on the H100, and SiLU·up (1,536 elements, a correctly
# rounded exp each) two programs, 3.5 µs: each thread's elements one after another, on a
# few SMs. Four times the programs, two elements a thread. Bits: unchanged (each element
# the same operation; interpreter-checked; test_cuda_switch_equal_cpu_leaf_by_leaf
# [SMALL_BLOCKS] passed on the H100). H100 A/B (thirty-first session, profile_cuda_step.py
# --no-pdl, 32 steps, interleaved): graph 2.413 / 2.402 → 2.317 / 2.321 ms (then with 336
# launches: `_heads_move` asked for a one-program MOVE; it no longer looks at the grid).
# On since the thirty-first session (bench_runtime.py --no-small-blocks for the A/B)
SMALL_BLOCKS = True
SMALL_BLOCK = 256
# every step launch with programmatic dependent launch (Hopper and later: the next
# launch's programs placed while this one runs; each kernel waits for the one before it in
# step_kernels._start). Bits: unchanged, the same kernels in the same order. A/B:
# bench_runtime.py --no-pdl
PDL = not interpreting()


def stack_linear_consts(consts: dict, lanes: int) -> dict:
    """A decode linear's constexprs for a stack of `lanes` (STACK_LR, STACK_LINEAR_NB):
    LR the largest of STACK_LR and its halvings that divides the lanes, NB kept where the
    segment is not a multiple of the new block."""
    lr = max(1, STACK_LR)
    while lanes % lr:
        lr //= 2
    nb = STACK_LINEAR_NB
    out = dict(consts)
    if lr > 1:
        out["LR"] = lr
    if nb and consts["SEGW"] % nb == 0 and nb % (32 if consts.get("XS") else 8) == 0:
        out["NB"] = nb
    return out


def grid_tops(top: int) -> list[int]:
    """The positions a graph's launch grids are sized for, a graph each (`_Graphs`,
    step_lanes_cuda.LaneStack).

    Why: a graph bakes in its grids, and sized for the largest position (2,047) a KV-cache
    CONCAT launched programs for 2,048 keys and a q·k DOT 16 column blocks where a
    60-token context has live elements for 1: ~97 % of those programs only exit, which at
    32 stacked lanes was most of the step's device time (notes-runtime-perf.md)."""
    tops, t = [], GRID_MIN or top + 1
    while t - 1 < top:
        tops.append(t - 1)
        t *= 2
    return [*tops, top]


def grid_bucket(tops: Sequence[int], past: int) -> int:
    """The `grid_tops` entry whose grids a step at `past` (a stack's: its jobs' largest)
    runs with: the first top at or past it."""
    return bisect_left(tops, past)


def affine_table(emit: Callable[[int, int, int], list[_Launch]], table: Callable,
                 lanes: int, past: int, token: int, top: int, tops: Sequence[int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[list[_Launch]]]:
    """A graph's launch integers as C + K·past + T·token + L·lane (ADR 0004, ADR 0011), and
    its launch sequences sized for each of `tops`. `emit(lane, past, token)`: one step's
    launches; `table`: their integers (`CudaStepPlan.table`).

    Why derived and then checked: a graph replays fixed launches, so everything but the
    integers must not change with the position, token or lane, and the integers must be affine
    in them. Four emitted steps give C, K, T and L; the steps whose grids are kept (one at
    each of `tops`: a q·k DOT's grid grows with the keys) and one more, lanes and tokens far
    apart, must match them, or the caller runs without a graph (`_NoGraph`)."""
    lo = max(1, min(past, top - 8))
    pts = [(0, lo, token), (0, lo + 1, token), (0, lo, token + 1)]
    seqs = [emit(*p) for p in pts + ([(1, lo, token)] if lanes > 1 else [])]
    kind = _kinds(seqs[0])
    if any(_kinds(q) != kind for q in seqs[1:]):
        raise _NoGraph("the launch sequence changes with the position or lane")
    rows = [table(q) for q in seqs]
    kp, kt = rows[1] - rows[0], rows[2] - rows[0]
    kl = rows[3] - rows[0] if lanes > 1 else np.zeros_like(kp)
    c0 = rows[0] - kp * lo - kt * token
    sized = []
    for lane, p, t in ((lanes // 2, (lo + top) // 2, token + 7),
                       *((lanes - 1, q, token + 3) for q in tops)):
        seq = emit(lane, p, t)
        if _kinds(seq) != kind or not np.array_equal(table(seq),
                                                     c0 + kp * p + kt * t + kl * lane):
            raise _NoGraph(f"launch integers are not affine in the lane, position and token "
                           f"(lane {lane}, position {p})")
        sized.append(seq)
    return c0, kp, kt, kl, sized[1:]


def _kinds(seq: Sequence[_Launch]) -> list:
    """What a graph bakes in of each launch: kernel, pointers, constants."""
    return [(ln.kernel, tuple(t.data_ptr() for t in ln.ptrs), sorted(ln.consts.items()))
            for ln in seq]


class CudaChain:
    """A linear's weight for the plan's QCHAIN record: fp32 values transposed to [K, N] on the
    device (the executor's `_wt`), so a program's BN outputs read one coalesced row per k;
    and, where the GGUF blocks are Q4_1 or Q8_0 (`blocks`), those blocks laid out for
    `qchain_quant_kernel` (`quant`)."""

    def __init__(self, wt: torch.Tensor, chain: lc.Chain,
                 blocks: lc.QuantBlocks | None = None) -> None:
        self.wt = wt
        self._vec: dict[int, torch.Tensor] = {}
        self._blocks = blocks if blocks is not None and blocks.qtype in _QT else None
        self.qtype = self._blocks.qtype if self._blocks is not None else None
        self._quant: torch.Tensor | None = None
        self.k, self.n = wt.shape
        self.nseg = len(chain.bounds)
        self.segw = chain.bounds[0][1] - chain.bounds[0][0]
        if any((a, b) != (s * self.segw, (s + 1) * self.segw)
               for s, (a, b) in enumerate(chain.bounds[:-1])) or \
                chain.bounds[-1][0] != (self.nseg - 1) * self.segw:
            raise ValueError("chain segments must be equal and contiguous from k = 0")

    def vec(self, tk: int) -> torch.Tensor:
        """The weight laid out [K/tk + 8, N, tk] for `qchain_vec_kernel` (K a multiple of tk):
        a thread's tk values of one column are contiguous; the eight zero blocks after K
        take the kernel's loads ahead of its chain."""
        wv = self._vec.get(tk)
        if wv is None:
            if self.k % tk:
                raise ValueError("K is not a multiple of the vector block")
            kp = self.k + 8 * tk
            w = torch.zeros((kp, self.n), dtype=self.wt.dtype, device=self.wt.device)
            w[:self.k] = self.wt
            wv = w.reshape(kp // tk, tk, self.n).permute(0, 2, 1).contiguous()
            self._vec[tk] = wv
        return wv

    def quant(self) -> tuple[torch.Tensor, int] | None:
        """The GGUF blocks as `qchain_quant_kernel` reads them, and its QT; None without
        Q4_1 or Q8_0 blocks. Q4_1: int32 [K/32, 6, N], per block and column four words of
        4-bit q (k = 32b + 8w + j in bits 4j…4j+3 of word w), then f32(d) and f32(m) as bits.
        Q8_0: int32 [K/32, 9, N], eight words of int8 q (k = 32b + 4w + j in bits 8j…8j+7 of
        word w), then f32(d). The blocks must dequantize to this chain's fp32 values bit for
        bit (ADR 0003), else ValueError: wrongly keyed blocks cannot change a trace."""
        if self._quant is None and self._blocks is not None:
            self._quant, self._blocks = self._lay_out(self._blocks), None
        return None if self._quant is None else (self._quant, _QT[self.qtype])

    def _lay_out(self, bl: lc.QuantBlocks) -> torch.Tensor:
        from node.runtime.gguf_loader import q4_1_parts, q8_0_parts

        if (bl.n, bl.k) != (self.n, self.k) or self.k % 32:
            raise ValueError(f"{bl.qtype} blocks [{bl.n}, {bl.k}] for a [{self.n}, {self.k}] "
                             "weight")
        nb, q4 = self.k // 32, bl.qtype == "q4_1"
        if q4:
            d, m, q = q4_1_parts(bl.raw, bl.n * bl.k)
        else:
            d, q = q8_0_parts(bl.raw, bl.n * bl.k)
        per, bits = (8, 4) if q4 else (4, 8)  # q a word, bits a q
        nw = 32 // per
        q = q.view(np.uint8).reshape(self.n, nb, nw, per).astype(np.uint32)
        words = np.zeros((nb, nw + 1 + q4, self.n), dtype=np.uint32)
        words[:, :nw] = (q << (bits * np.arange(per, dtype=np.uint32))).sum(
            axis=3, dtype=np.uint32).transpose(1, 2, 0)
        words[:, nw] = d.reshape(self.n, nb).T.view(np.uint32)
        if q4:
            words[:, nw + 1] = m.reshape(self.n, nb).T.view(np.uint32)
        lay = torch.from_numpy(words.view(np.int32)).to(self.wt.device)
        # ADR 0003's value of every weight, from this layout, against the fp32 one
        sh = (bits * torch.arange(per, device=lay.device))[None, None, :, None]
        qd = (lay[:, :nw, None, :] >> sh) & (2 ** bits - 1)
        if not q4:
            qd = (qd ^ 128) - 128  # the int8
        w = lay[:, nw, None, :].view(torch.float32) * qd.reshape(nb, 32, self.n).float()
        if q4:
            w = w + lay[:, nw + 1, None, :].view(torch.float32)
        if not torch.equal(w.reshape(self.k, self.n).view(torch.int32),
                           self.wt.contiguous().view(torch.int32)):
            raise ValueError(f"{bl.qtype} blocks [{bl.n}, {bl.k}] do not dequantize to the "
                             "weight's values")
        return lay

    def record_words(self) -> list[int]:
        """QCHAIN parameters (the CPU's are the GGUF kernel's; the runner keeps this object)."""
        return [-1, self.n, self.k, 0, 0, self.nseg]


_QT = {"q4_1": 4, "q8_0": 8}  # `CudaChain.quant`'s layouts, by GGUF block type


def _i32(bits: int) -> int:
    return bits - (1 << 32) if bits >= 1 << 31 else bits


def _bstrides(ind: Sequence[int], outd: Sequence[int]) -> list[int] | None:
    """Element strides of a contiguous input broadcast to the output dims (NumPy rules), or
    None (repops_step_plan.c bstrides)."""
    nd, ni = len(outd), len(ind)
    if ni > nd:
        return None
    st, s = [0] * nd, 1
    for k in range(nd - 1, -1, -1):
        ik = k - (nd - ni)
        if ik < 0:
            continue
        dv = ind[ik]
        if dv == outd[k]:
            st[k] = 0 if dv == 1 else s
        elif dv != 1:
            return None
        s *= dv
    return st


_RUN = sp.REC - 1  # record word where a DOT record keeps the length of its segment chain


def _dot_runs(recs: list[list[int]]) -> list[list[int]]:
    """Consecutive DOT records that chain one dot product's k-segments (same A and B, each
    segment's accumulator the previous op, contiguous equal k ranges) become their first
    record with the chain's length in word `_RUN`: one launch runs them all.

    Two cases that used to start or end a run of their own join it too: the first segment
    (no accumulator, so its record may not alias; word 10) and a shorter last segment. The
    kernel runs segment s over [k0 + s·segw, min(k0 + (s+1)·segw, kmax)), and a chain's last
    segment ends at the dot's largest K, which the row's kmax never passes, so the clamp
    gives it its own range. Why: attention's p·v was three launches a layer ([0:192],
    [192:1920], [1920:2048] at segment 192), each ~3.8 µs on the H100 even with no key."""
    out: list[list[int]] = []
    for r in recs:
        head = out[-1] if out else None
        if (head is not None and r[0] == sp.K_DOT == head[0] and r[3:5] == head[3:5]
                and r[8:10] == head[8:10]):
            n = max(1, head[_RUN])
            last_op, seg = head[1] + n - 1, head[7] - head[6]
            first = n == 1 and head[5] == -1 and head[10] == 0 and r[10] == 1
            # after a shorter segment nothing joins: the next one starts where it ended,
            # not at head k0 + n·seg
            if (r[1] == last_op + 1 and r[5] == last_op and r[6] == head[6] + n * seg
                    and 0 < r[7] - r[6] <= seg and (r[10] == head[10] or first)):
                head[10] = r[10]
                head[_RUN] = n + 1
                continue
        out.append(list(r))
    return out


def _at(strides: Sequence[int], outd: Sequence[int]) -> int:
    """How a kernel finds an operand's element (step_kernels GENERAL / CONTIG / FIRST): its
    broadcast strides are the output's own, all zero, or neither."""
    if not any(s for s, d in zip(strides, outd, strict=True) if d != 1):
        return sk.FIRST.value
    own = _bstrides(outd, outd)
    return sk.CONTIG.value if all(s == o for s, o, d in zip(strides, own, outd, strict=True)
                                  if d != 1) else sk.GENERAL.value


def _pad6(d: Sequence[int], fill: int) -> list[int]:
    return [fill] * (6 - len(d)) + list(d)


class _Launch:
    """A kernel launch of a step: its integers are its row of the step's table. `kernel`
    None: a rider, launched by the launch before it, which reads this row (`fuse_pairs`)."""

    __slots__ = ("kernel", "grid", "ptrs", "ints", "consts", "op")

    def __init__(self, kernel, grid: tuple[int, ...], ptrs: tuple[torch.Tensor, ...],  # noqa: ANN001
                 ints: list[int], consts: dict, op: int) -> None:
        self.kernel, self.grid, self.ptrs, self.ints, self.consts = (kernel, grid, ptrs, ints,
                                                                     consts)
        self.op = op  # the record's (first) op: profiles name launches by it


def _ew_is(ln: _Launch, a_at: int | None, b_at: int | None, binary: bool,
           masked: bool | None = False) -> bool:
    """An ew_kernel launch with these operand modes (b_at None: no second operand but the
    scalar), a binary fn (else unary) and MASK as `masked` (None: either)."""
    c = ln.consts
    return (ln.kernel is sk.ew_kernel and masked in (None, c["MASK"])
            and (c["FN"] < 16) == binary
            and (a_at is None or c["A_AT"] == a_at)
            and (c["HAS_B"] if b_at is not None else not c["HAS_B"])
            and (b_at is None or c["B_AT"] == b_at))


def _norm_launch(g: Sequence[_Launch]) -> _Launch | None:
    """One `norm_kernel` launch for seven launches that are an RMSNorm's records (sq, FOLD,
    mean, eps, root, div, w: step_kernels.norm_kernel's docstring), or None.

    Every link is checked on the launches' own pointers and words (same tensors, each step's
    input at the offset the step before it wrote), so the fused kernel reads and writes
    exactly what the seven launches would; anything else stays as it is."""
    sq, fold, mean, eps, root, div, w = g
    contig, first = sk.CONTIG.value, sk.FIRST.value
    if not (_ew_is(sq, contig, contig, True) and sq.ptrs[0] is sq.ptrs[1]
            and sq.ints[0] == sq.ints[1] and fold.kernel is sk.fold_tree_kernel
            and all(ln.kernel is sk.ew_kernel for ln in (mean, eps, root, div, w))):
        return None
    arena = sq.ptrs[2]
    n, cap0, nlev = sq.ints[3], fold.consts["CAP0"], fold.consts["NLEV"]
    last = fold.ints[1] + sum(cap0 >> k for k in range(nlev - 1))
    ok = (fold.ptrs[0] is arena and fold.ints[0] == sq.ints[2] and fold.ints[2] == 1
          and fold.ints[3] == n and cap0 >> (nlev - 1) == 1
          and _ew_is(mean, None, None, True) and mean.ints[0] == last
          and _ew_is(eps, None, None, True) and eps.ints[0] == mean.ints[2]
          and _ew_is(root, None, None, False) and root.ints[0] == eps.ints[2]
          and _ew_is(div, contig, first, True) and div.ptrs[0] is sq.ptrs[0]
          and div.ints[0] == sq.ints[0] and div.ints[1] == root.ints[2] and div.ints[3] == n
          and _ew_is(w, contig, contig, True) and w.ints[0] == div.ints[2] and w.ints[3] == n
          and all(ln.ptrs[0] is arena for ln in (mean, eps, root, w))
          and div.ptrs[1] is arena
          and all(ln.ints[3] == 1 for ln in (mean, eps, root))
          and all(ln.ptrs[2] is arena for ln in (mean, eps, root, div, w)))
    if not ok:
        return None
    ints = [sq.ints[0], sq.ints[2], n, fold.ints[1], fold.ints[4], last, mean.ints[2],
            mean.ints[21], eps.ints[2], eps.ints[21], root.ints[2], div.ints[2], w.ints[2],
            w.ints[1]]
    return _Launch(sk.norm_kernel, (1,), (sq.ptrs[0], w.ptrs[1], arena), ints,
                   {"NEG0": NEG_ZERO, "F_SQ": sq.consts["FN"], "F_MEAN": mean.consts["FN"],
                    "F_EPS": eps.consts["FN"], "F_ROOT": root.consts["FN"],
                    "F_DIV": div.consts["FN"], "F_W": w.consts["FN"], "CAP0": cap0,
                    "NLEV": nlev, "COMBINE": fold.consts["COMBINE"], "BLOCK": 1024,
                    "num_warps": 4, **FP_FLAGS}, sq.op)


def _row_gather(ln: _Launch, c: int) -> bool:
    """An EW launch whose second operand's element for output element e is e // c: its
    dims (d0 … d5 with d5 = c) and b strides are row-major over all but the last dim, and
    0 on it (a per-row value broadcast along the row)."""
    n, d = ln.ints[3], ln.ints[4:9]
    sb = ln.ints[15:21]
    if d[4] != c or sb[5] != 0 or n % max(1, numel(d)):
        return False
    dims = [n // numel(d), *d[:4]]
    inner = 1
    for k in range(4, -1, -1):
        if dims[k] != 1 and sb[k] != inner:
            return False
        inner *= dims[k]
    return True


def _softmax_launch(g: Sequence[_Launch]) -> _Launch | None:
    """One `softmax_kernel` launch (a program per row) for six launches that are a softmax's
    records (scale, FOLD max, sub, exp, FOLD sum, div), or None; every link checked as in
    `_norm_launch`."""
    scale, mx, sub, ex, sm, div = g
    ews = (scale, sub, ex, div)
    if not (all(ln.kernel is sk.ew_kernel for ln in ews) and mx.kernel is sk.fold_tree_kernel
            and sm.kernel is sk.fold_tree_kernel):
        return None
    contig, general = sk.CONTIG.value, sk.GENERAL.value
    arena = scale.ptrs[2]
    rows, c, cap0, nlev = mx.ints[2], mx.ints[3], mx.consts["CAP0"], mx.consts["NLEV"]
    lead = sum(cap0 >> k for k in range(nlev - 1)) * rows  # the levels before the last

    def gathered(ln: _Launch) -> bool:
        return _ew_is(ln, contig, general, True, None) and _row_gather(ln, c)

    ok = (all(ln.ints[3] == rows * c and ln.ints[3:9] == scale.ints[3:9]
              and ln.ints[24:27] == scale.ints[24:27] and ln.ints[26] == c
              and ln.ptrs[2] is arena for ln in ews)
          and _ew_is(scale, contig, None, True, None) and _ew_is(ex, contig, None, False, None)
          and gathered(sub) and gathered(div)
          and (sm.consts["CAP0"], sm.consts["NLEV"]) == (cap0, nlev) and cap0 >> (nlev - 1) == 1
          and mx.ptrs[0] is arena and sm.ptrs[0] is arena
          and mx.ints[0] == scale.ints[2] and sm.ints[2:4] == mx.ints[2:4]
          and sub.ptrs[0] is arena and sub.ints[0] == scale.ints[2]
          and sub.ptrs[1] is arena and sub.ints[1] == mx.ints[1] + lead
          and ex.ptrs[0] is arena and ex.ints[0] == sub.ints[2] and sm.ints[0] == ex.ints[2]
          and div.ptrs[0] is arena and div.ints[0] == ex.ints[2]
          and div.ptrs[1] is arena and div.ints[1] == sm.ints[1] + lead)
    if not ok:
        return None
    ints = [scale.ints[0], scale.ints[2], c, rows, mx.ints[1], mx.ints[4], sub.ints[2],
            ex.ints[2], sm.ints[1], sm.ints[4], div.ints[2], scale.ints[21],
            *(ln.ints[22] for ln in ews), scale.ints[24], scale.ints[25], sub.ints[1],
            div.ints[1]]
    k = {"F_SCALE": scale, "F_SUB": sub, "F_EXP": ex, "F_DIV": div}
    return _Launch(sk.softmax_kernel, (rows,), (scale.ptrs[0], arena), ints,
                   {"NEG0": NEG_ZERO, **{f: ln.consts["FN"] for f, ln in k.items()},
                    **{"M" + f[1:]: ln.consts["MASK"] for f, ln in k.items()},
                    "C_MAX": mx.consts["COMBINE"], "C_SUM": sm.consts["COMBINE"],
                    "CAP0": cap0, "NLEV": nlev, "BLOCK": 1024, "num_warps": 4, **FP_FLAGS},
                   scale.op)


def fuse_launches(launches: list[_Launch]) -> list[_Launch]:
    """The launches with every RMSNorm's seven (`_norm_launch`) and every softmax's six
    (`_softmax_launch`) as one."""
    out: list[_Launch] = []
    i = 0
    while i < len(launches):
        fused = None
        if launches[i].kernel is sk.ew_kernel:  # both runs start with an EW launch
            for size, match in ((7, _norm_launch), (6, _softmax_launch)):
                fused = match(launches[i:i + size]) if i + size <= len(launches) else None
                if fused is not None:
                    out.append(fused)
                    i += size
                    break
        if fused is None:
            out.append(launches[i])
            i += 1
    return out


_MAX_PARTS = 4  # qchain_v8_kernel's part words 18 + 3p … 20 + 3p fit the table row (ARGW)


_SIDE_BY_SIDE = {sk.qchain_v8_kernel: 1, sk.qchain_quant_kernel: 2}  # the weight layouts' N axis


def _same_input_linear(a: _Launch, b: _Launch) -> bool:
    """b is a one-row qchain_v8 (or qchain_quant) launch of a's input, K, segments and
    constants: the two can be one launch over their weights side by side (`fuse_linears`)."""
    return (a.kernel in _SIDE_BY_SIDE and b.kernel is a.kernel
            and a.consts == b.consts and a.ptrs[0] is b.ptrs[0] and a.ptrs[2] is b.ptrs[2]
            and a.ints[0] == b.ints[0] and a.ints[10] == b.ints[10] == 1
            and a.ints[2] == b.ints[2] and a.ints[13] == b.ints[13]
            and a.ints[15] == b.ints[15])


def fuse_linears(launches: list[_Launch], side_by_side: dict[tuple[int, ...], torch.Tensor]
                 ) -> list[_Launch]:
    """The launches with each run of consecutive decode linears of one input (attention's
    q, k, v; the MLP's gate, up) as one qchain_v8_kernel (or qchain_quant_kernel) launch with
    PARTS (qchain_v8_kernel's docstring):
    the same chains, outputs and bits, one launch's latency instead of two or three.
    `side_by_side` caches the concatenated weights by their parts' addresses, so that every
    emitted step (a graph's table is derived from several) points at the same tensor."""
    out: list[_Launch] = []
    i = 0
    while i < len(launches):
        a = launches[i]
        j = i + 1
        if a.kernel in _SIDE_BY_SIDE:
            while (j < len(launches) and j - i < _MAX_PARTS
                   and _same_input_linear(a, launches[j])):
                j += 1
        run = launches[i:j]
        bn = a.consts.get("BN", 0)
        if len(run) < 2 or any(ln.ints[11] % bn for ln in run):
            out.append(a)
            i += 1
            continue
        key = tuple(ln.ptrs[1].data_ptr() for ln in run)
        w = side_by_side.get(key)
        if w is None:  # [K/8 + 8, ΣN, 8] (or [K/32, 6 or 9, ΣN]): each part's columns where its
            # own launch reads them
            w = side_by_side[key] = torch.cat([ln.ptrs[1] for ln in run],
                                              dim=_SIDE_BY_SIDE[a.kernel]).contiguous()
        ints = list(a.ints) + [0] * (18 + 3 * _MAX_PARTS - len(a.ints))
        col = 0
        for q, ln in enumerate(run):
            ints[18 + 3 * q:21 + 3 * q] = [ln.ints[8], ln.ints[9], col]
            col += ln.ints[11]
        ints[11] = col
        out.append(_Launch(a.kernel, (col // bn,), (a.ptrs[0], w, a.ptrs[2]),
                           ints[:18 + 3 * len(run)], {**a.consts, "PARTS": len(run)}, a.op))
        i = j
    return out


def with_linear_blocks(launches: list[_Launch], programs: int) -> list[_Launch]:
    """The launches with each one-row `qchain_v8_kernel` launch given the fewest columns a
    program, 8 or 16 below its BN, that keeps its programs within `programs` (the GPU's
    multiprocessors) and every part's columns in whole programs (`LINEAR_BLOCKS`).

    Why: a decode linear's chain is sequential in k, so its program's time is its chain and
    the weights it streams; at BN 32, w_down (N 576) is 18 programs, each streaming a 196 KB
    panel through one multiprocessor while ~110 others idle. With BN 8 it is 72 programs of
    49 KB. The same kernel, chains and outputs: the bits cannot change (BN 8 and 16 were
    bit-equal in profile_cuda_step.py's sweep). A BN chosen for all linears at once was
    slower (the sweep): gate and up side by side (N 3,072) then need two waves. Measured
    on the H100 this is slower too (LINEAR_BLOCKS' note): the premise does not hold."""
    out: list[_Launch] = []
    for ln in launches:
        c = ln.consts
        if ln.kernel is sk.qchain_v8_kernel and ln.ints[10] == 1 and not c.get("XS"):
            n = ln.ints[11]
            starts = [ln.ints[20 + 3 * q] for q in range(1, c.get("PARTS", 1))]
            for bn in (8, 16):
                if bn < c["BN"] and -(-n // bn) <= programs and n % bn == 0 \
                        and all(x % bn == 0 for x in starts):
                    ln = _Launch(ln.kernel, (n // bn,), ln.ptrs, ln.ints, {**c, "BN": bn},
                                 ln.op)
                    break
        out.append(ln)
    return out


_NORM_CONSTS = ("NEG0", "F_SQ", "F_MEAN", "F_EPS", "F_ROOT", "F_DIV", "F_W", "CAP0", "NLEV",
                "COMBINE", "PRE")


def _norm_linear(norm: _Launch, lin: _Launch, weights: set[int]) -> _Launch | None:
    """`norm_qchain_kernel` for an RMSNorm and the decode linear right after it that reads its
    output (`fuse_norm_linears`), or None where they are not exactly that: the norm's x,
    records and the linear's x and outputs in one arena, the linear's x the norm's output
    (one row of K = the norm's width), the linear one warp a program (the norm's warp body
    runs in it), and the norm's scale a weight (read before the PDL wait)."""
    if norm.kernel is not sk.norm_kernel or lin.kernel is not sk.qchain_v8_kernel:
        return None
    arena = norm.ptrs[0].data_ptr()
    ok = (norm.ptrs[2].data_ptr() == arena and lin.ptrs[0].data_ptr() == arena
          and lin.ptrs[2].data_ptr() == arena and norm.ptrs[1].data_ptr() in weights
          and lin.consts.get("num_warps") == 1 and lin.ints[10] == 1
          and lin.ints[0] == norm.ints[12] and lin.ints[16] == norm.ints[2]
          and len(norm.grid) == 1 and norm.grid[0] == 1)
    if not ok:
        return None
    consts = {**lin.consts, **{k: norm.consts[k] for k in _NORM_CONSTS if k in norm.consts}}
    return _Launch(sk.norm_qchain_kernel, lin.grid, (*lin.ptrs, norm.ptrs[1]), norm.ints,
                   consts, norm.op)


def fuse_norm_linears(launches: list[_Launch], weights: set[int]) -> list[_Launch]:
    """Each RMSNorm and the decode linear after it that reads its output (a layer's q, k and
    v; its gate and up; the LM head) as one `norm_qchain_kernel` launch and a rider, the
    linear's row, which it reads after its own (`_norm_linear`; `CudaStepPlan.launch`
    launches no rider).

    Why: 61 RMSNorm launches a step of ~5 µs each on the H100, one program each, mostly
    launch and wait, each followed by a linear that waits for it (FUSE_NORM_LINEARS)."""
    out: list[_Launch] = []
    for ln in launches:
        fused = _norm_linear(out[-1], ln, weights) if out else None
        if fused is not None:
            out[-1:] = [fused, _Launch(None, (), ln.ptrs, ln.ints, {}, ln.op)]
            continue
        out.append(ln)
    return out


_FOLDING = (sk.fold_tree_kernel, sk.norm_kernel, sk.softmax_kernel)


def _folding_with(launches: list[_Launch], const: str) -> list[_Launch]:
    """The same launches, those that fold (`_FOLDING`) with the constexpr `const` on."""
    return [_Launch(ln.kernel, ln.grid, ln.ptrs, ln.ints, {**ln.consts, const: True}, ln.op)
            if ln.kernel in _FOLDING else ln for ln in launches]


def with_reg_folds(launches: list[_Launch]) -> list[_Launch]:
    """The launches with every FOLD tree's levels after the first taken from registers
    (`REG_FOLDS`, step_kernels._fold_reg): the same launches, those that fold with REG."""
    return _folding_with(launches, "REG")


def with_fold_carry(launches: list[_Launch]) -> list[_Launch]:
    """The launches with every FOLD tree's memory body taking a level's own elements from
    the level before's registers (`FOLD_CARRY`, step_kernels._fold_levels' CARRY): the same
    launches, those that fold (and later a fused attention, which takes the softmax's
    constants) with CARRY."""
    return _folding_with(launches, "CARRY")


def with_narrow(launches: list[_Launch], kernel: object) -> list[_Launch]:
    """The launches with every `kernel` launch's memory body (a softmax's: `NARROW_SOFTMAX`;
    an RMSNorm's: `NARROW_NORMS`) on NARROW_BLOCK-wide passes and FOLD levels; a fused
    attention later takes the softmax's BLOCK with its other constants."""
    return [_Launch(ln.kernel, ln.grid, ln.ptrs, ln.ints, {**ln.consts, "BLOCK": NARROW_BLOCK},
                    ln.op)
            if ln.kernel is kernel and not ln.consts.get("WARP") else ln
            for ln in launches]


def _warp_fold(ln: _Launch, weights: set[int], kernels: tuple) -> bool:
    """Whether `with_warp_folds` takes this launch: one of `kernels`, and for an RMSNorm a
    scale that is a weight (an address in `weights`: the warp body reads it before its PDL
    wait, which is safe only for memory no launch writes). A softmax's kernel takes the warp
    body for rows that fit one warp's registers (step_kernels.WARP_SLOTS) and its memory
    body, in one warp, past them."""
    if ln.kernel not in kernels or ln.consts.get("REG"):
        return False
    return ln.kernel is not sk.norm_kernel or ln.ptrs[1].data_ptr() in weights


def with_warp_folds(launches: list[_Launch], weights: set[int], kernels: tuple
                    ) -> list[_Launch]:
    """The launches with RMSNorms and softmaxes (those of `kernels`) in one warp
    (`WARP_FOLDS`, `WARP_SOFTMAX`: step_kernels._norm_warp and _softmax_warp; `_warp_fold`
    says which): the same launches, those with WARP and one warp."""
    return [_Launch(ln.kernel, ln.grid, ln.ptrs, ln.ints,
                    {**ln.consts, "WARP": True, "num_warps": 1}, ln.op)
            if _warp_fold(ln, weights, kernels) else ln for ln in launches]


def _ew_pair(a: _Launch, b: _Launch) -> _Launch | None:
    """One launch for two adjacent launches where the second is an EW that reads the first's
    output element for element (`fuse_ew`), or None."""
    if not (_ew_is(b, sk.CONTIG.value, sk.CONTIG.value, True) and "THEN" not in b.consts):
        return None
    arena = b.ptrs[2].data_ptr()
    if b.ptrs[0].data_ptr() != arena or b.ptrs[1].data_ptr() != arena:
        return None
    if (a.kernel is sk.ew_kernel and "THEN" not in a.consts and not a.consts["MASK"]
            and a.ptrs[2].data_ptr() == arena and b.ints[0] == a.ints[2]
            and b.ints[3] == a.ints[3] and a.grid == b.grid and len(a.ints) <= 27):
        # the second EW after the first's store, from its registers
        ints = list(a.ints) + [0] * (27 - len(a.ints)) + [b.ints[1], b.ints[2]]
        return _Launch(a.kernel, a.grid, a.ptrs, ints, {**a.consts, "THEN": b.consts["FN"]},
                       a.op)
    return None


def _ew_then_norm(a: _Launch, b: _Launch) -> _Launch | None:
    """One norm_kernel launch for an EW (a binary fn of two contiguous arena operands: the
    residual add) and the RMSNorm that reads its output (`fuse_ew`), or None."""
    if not (b.kernel is sk.norm_kernel and "PRE" not in b.consts
            and _ew_is(a, sk.CONTIG.value, sk.CONTIG.value, True)):
        return None
    arena = b.ptrs[2].data_ptr()
    if (any(p.data_ptr() != arena for p in (a.ptrs[0], a.ptrs[1], a.ptrs[2], b.ptrs[0]))
            or a.ints[2] != b.ints[0] or a.ints[3] != b.ints[2] or len(b.ints) != 14):
        return None
    return _Launch(b.kernel, b.grid, b.ptrs, [*b.ints, a.ints[0], a.ints[1]],
                   {**b.consts, "PRE": a.consts["FN"]}, a.op)


def fuse_ew(launches: list[_Launch]) -> list[_Launch]:
    """The launches with each EW fused into its neighbour where the two are one pass over the
    same elements: an EW that makes an RMSNorm's input (the residual add) into the
    norm_kernel launch, and an EW that reads the EW before it element for element (SiLU,
    then its product with up) into that EW's launch. Every output is still stored where its
    own launch stored it, from the same fn on the same values.

    Why: each was a ~1.8 µs launch over 576 or 1,536 values, three a layer (90 a step)."""
    out: list[_Launch] = []
    for ln in launches:
        if out:
            fused = _ew_then_norm(out[-1], ln) or _ew_pair(out[-1], ln)
            if fused is not None:
                out[-1] = fused
                continue
        out.append(ln)
    return out


def _out_run(ln: _Launch) -> tuple[torch.Tensor, int, int] | None:
    """(arena, first element, element count) of the output of a launch that can take a fused
    MOVE (`fuse_moves`), or None."""
    if "THEN" in ln.consts:
        return None
    if ln.kernel is sk.move_kernel:
        return ln.ptrs[1], ln.ints[1], ln.ints[2]
    if ln.kernel is sk.concat_kernel:
        return ln.ptrs[2], ln.ints[2], ln.ints[3] * (ln.ints[4] + ln.ints[5])
    if ln.kernel is sk.rope_kernel:
        return ln.ptrs[3], ln.ints[1], ln.ints[2] * ln.ints[3]
    return None


def _reads_within(mv: _Launch, n: int) -> bool:
    """Every element the MOVE reads lies in the first n of its input (row: x_off, out_off,
    n, d1…d5, s0…s5, off; d0 is implied by n)."""
    dims, st, off = mv.ints[3:8], mv.ints[8:14], mv.ints[14]
    if mv.ints[2] <= 0 or any(d <= 0 for d in dims) or any(x < 0 for x in st) or off < 0:
        return False
    d0 = mv.ints[2] // max(1, int(np.prod(dims)))
    return off + sum((d - 1) * x for d, x in zip((d0, *dims), st, strict=True)) < n


def fuse_moves(launches: list[_Launch]) -> list[_Launch]:
    """The launches with each MOVE that reads one launch's output fused into that launch
    (step_kernels.THEN_AT): a contiguous run (CONTIG) into a MOVE, ROPE or CONCAT; any
    strided MOVE (GENERAL) into a CONCAT, computed from the CONCAT's inputs.

    Why: a SmolLM2 decode layer has five such MOVEs (q's, k's and v's heads, attention's
    output transpose and merge), 1.4-3.8 µs launches each on the H100, each waiting on the
    one before it. Why it may move a MOVE up to its producer: every op writes its own arena
    region (the trace is SSA), so nothing between them writes what the MOVE reads or
    writes, and nothing reads its output before its own place in the sequence."""
    out: list[_Launch] = []
    # (arena address, out offset) → the producer's index in out and its `_out_run`
    producer: dict[tuple[int, int], tuple[int, tuple[torch.Tensor, int, int]]] = {}
    for ln in launches:
        if ln.kernel is sk.move_kernel and "THEN" not in ln.consts:
            at = producer.pop((ln.ptrs[0].data_ptr(), ln.ints[0]), None)
            if at is not None:
                fused = _with_move(out[at[0]], at[1], ln)
                if fused is not None:
                    out[at[0]] = fused
                    continue
        run = _out_run(ln)
        if run is not None:
            producer[(run[0].data_ptr(), run[1])] = (len(out), run)
        out.append(ln)
    return out


def _with_move(ln: _Launch, run: tuple[torch.Tensor, int, int], mv: _Launch
               ) -> _Launch | None:
    """`ln` (its output `run`: `_out_run`) with the MOVE `mv` of that output fused in, or
    None where it cannot take it."""
    if mv.ptrs[1].data_ptr() != run[0].data_ptr() \
            or not _reads_within(mv, run[2]) or len(ln.ints) > sk.THEN_AT.value:
        return None
    contig = mv.consts.get("X_AT") == sk.CONTIG.value
    if contig:
        then, grid = sk.CONTIG.value, ln.grid
    elif ln.kernel is sk.concat_kernel and len(ln.grid) == 1:
        then, grid = sk.GENERAL.value, (max(ln.grid[0], mv.grid[0]), 2)
    else:
        return None
    ints = list(ln.ints) + [0] * (sk.THEN_AT.value - len(ln.ints)) + list(mv.ints[:15])
    return _Launch(ln.kernel, grid, ln.ptrs, ints, {**ln.consts, "THEN": then}, ln.op)


def launched(launches: Sequence[_Launch]) -> list[_Launch]:
    """The launches a step makes: all but the riders (`fuse_pairs`), whose rows the launch
    before them reads (profiles count and name kernels by these)."""
    return [ln for ln in launches if ln.kernel is not None]


def _byte_ranges(ln: _Launch) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The (start, end) device byte ranges a CONCAT or ROPE launch reads and writes (its
    inputs, its output and its fused MOVE's; a ROPE's tables are weights, never written):
    float32 or int32 views, offsets in elements."""
    w = ln.ints

    def rng(t: torch.Tensor, off: int, n: int) -> tuple[int, int]:
        return t.data_ptr() + 4 * off, t.data_ptr() + 4 * (off + n)

    if ln.kernel is sk.rope_kernel:
        x, out = ln.ptrs[0], ln.ptrs[3]
        reads, writes = [rng(x, w[0], w[2] * w[3])], [rng(out, w[1], w[2] * w[3])]
    else:
        a, b, out = ln.ptrs
        outer, ca, cb = w[3], w[4], w[5]
        reads = [rng(a, w[0], outer * ca), rng(b, w[1], outer * cb)]
        writes = [rng(out, w[2], outer * (ca + cb))]
    if "THEN" in ln.consts:
        q = sk.THEN_AT.value
        writes.append(rng(out, w[q + 1], w[q + 2]))
    return reads, writes


def _overlap(x: list[tuple[int, int]], y: list[tuple[int, int]]) -> bool:
    return any(s0 < e1 and s1 < e0 for s0, e0 in x for s1, e1 in y)


def _pair_of(a: _Launch, b: _Launch) -> tuple[_Launch, _Launch] | None:
    """a and b as one launch (PAIR: a with a grid axis 1 twice as long, then b as its rider,
    the row it reads), or None where they differ in kernel, constants or operands, or one
    touches what the other writes (they then run at once). CONCATs: the same constants, each
    half its own fused MOVE (`concat_kernel`); ROPEs: b without a fused MOVE, a with or
    without (`rope_kernel`: the rider half runs none)."""
    if a.kernel is not b.kernel or "PAIR" in a.consts or len(a.grid) > 2 \
            or len(a.grid) != len(b.grid) or a.grid[1:] != b.grid[1:] \
            or any(x.data_ptr() != y.data_ptr() for x, y in zip(a.ptrs, b.ptrs, strict=True)):
        return None
    if a.kernel is sk.concat_kernel:
        if a.consts != b.consts:
            return None
    elif a.kernel is sk.rope_kernel:
        if "THEN" in b.consts or {k: v for k, v in a.consts.items() if k != "THEN"} != b.consts \
                or len(a.grid) > 1:
            return None
    else:
        return None
    ra, wa = _byte_ranges(a)
    rb, wb = _byte_ranges(b)
    if _overlap(wa, rb + wb) or _overlap(wb, ra):
        return None
    grid = (max(a.grid[0], b.grid[0]), 2 * (a.grid[1] if len(a.grid) > 1 else 1))
    return (_Launch(a.kernel, grid, a.ptrs, a.ints, {**a.consts, "PAIR": True}, a.op),
            _Launch(None, (), b.ptrs, b.ints, {}, b.op))


def fuse_pairs(launches: list[_Launch]) -> list[_Launch]:
    """Each two consecutive CONCATs, or ROPEs, that touch nothing of each other's as one
    launch and a rider (`_pair_of`; `CudaStepPlan.launch` launches no rider): a decode
    layer's K and V cache appends, each with its fused head transpose (`fuse_moves`), and
    its q and k rotations. The rider keeps its table row, which the pair's second half reads.

    Why: 60 CONCAT launches a SmolLM2 step at ~5.4 µs each on the H100 and 60 ROPEs at ~2.4
    (profile-cuda-step), mostly launch and wait: the two of a layer are independent, so one
    launch does both."""
    out: list[_Launch] = []
    for ln in launches:
        pair = _pair_of(out[-1], ln) if out and out[-1].kernel is not None else None
        if pair is not None:
            out[-1:] = pair
            continue
        out.append(ln)
    return out


_CHAIN_CONSTS = ("BN", "BK", "NS", "PF", "DB", "K1", "TB", "num_warps")


def _attention_of(qk: _Launch, soft: _Launch, pv: _Launch) -> _Launch | None:
    """`attn_kernel` for a q·k DOT, its softmax and their p·v DOT (`fuse_attention`), or
    None where they are not exactly that: one query row, one program a head in each (the
    softmax's row r = the DOT's head r), the softmax reading q·k's output and p·v reading
    the softmax's, every operand in one arena, and the kernels' own bodies the fused kernel
    calls (no accumulator, no warp body, no register folds)."""
    if not (qk.kernel is sk.chain_kernel and soft.kernel is sk.softmax_kernel
            and pv.kernel is sk.chain_kernel):
        return None
    cq, cs, cp = qk.consts, soft.consts, pv.consts
    heads = soft.grid[0]
    x = qk.ptrs[0].data_ptr()
    ok = (cq["CAUSAL"] == 2 and cp["CAUSAL"] == 1 and not cq["HAS_ACC"] and not cp["HAS_ACC"]
          and not cq.get("WARM") and not cp.get("WARM") and "THEN" not in cp
          and all(cq.get(k) == cp.get(k) for k in _CHAIN_CONSTS)
          and cs.get("num_warps") == cq.get("num_warps")
          and not cs.get("WARP") and not cs.get("REG")
          and len(soft.grid) == 1 and qk.grid[1:] == (1, heads) and pv.grid == (1, 1, heads)
          and qk.ints[10] == 1 and pv.ints[10] == 1 and soft.ints[17] == 1
          and soft.ints[3] == heads and soft.ints[0] == qk.ints[8]
          and soft.ints[2] == qk.ints[11] and pv.ints[0] == soft.ints[10]
          and pv.ints[1] == soft.ints[2]
          and all(t.data_ptr() == x and t.dtype == torch.float32
                  for ln in (qk, soft, pv) for t in ln.ptrs))
    if not ok:
        return None
    consts = {k: v for k, v in cs.items() if k not in ("REG", "WARP")}
    consts.update({k: cq[k] for k in _CHAIN_CONSTS if k in cq}, NEG_INF=float("-inf"))
    return _Launch(sk.attn_kernel, (1, 1, heads), (qk.ptrs[0],), qk.ints, consts, qk.op)


def fuse_attention(launches: list[_Launch], heads_move: bool = False) -> list[_Launch]:
    """Each decode layer's q·k DOT, softmax and p·v DOT as one `attn_kernel` launch and two
    riders, whose rows (the softmax's, the p·v DOT's) it reads after its own
    (`_attention_of`; `CudaStepPlan.launch` launches no rider).

    Why: three launches of ~7 µs a layer on the H100, each one program a head and mostly
    launch and wait (FUSE_ATTENTION). The MOVE after them (the heads' outputs as one row,
    ~1.9 µs) rides along with `heads_move` where `_heads_move` allows."""
    out: list[_Launch] = []
    i = 0
    while i < len(launches):
        got = _attention_of(*launches[i:i + 3]) if i + 3 <= len(launches) else None
        if got is None:
            out.append(launches[i])
            i += 1
            continue
        soft, pv = launches[i + 1], launches[i + 2]
        out += [got, _Launch(None, (), soft.ptrs, soft.ints, {}, soft.op),
                _Launch(None, (), pv.ptrs, pv.ints, {}, pv.op)]
        i += 3
        mv = launches[i] if i < len(launches) else None
        if heads_move and mv is not None and _heads_move(pv, mv, got.grid[2]):
            got.consts["OT"] = mv.consts.get("THEN", -1)
            out.append(_Launch(None, (), mv.ptrs, mv.ints, {}, mv.op))
            i += 1
    return out


def _heads_move(pv: _Launch, mv: _Launch, heads: int) -> bool:
    """Whether `mv` is a contiguous MOVE of exactly the p·v DOT's output (its last
    segment), all heads' values as one run, with at most a contiguous MOVE fused in
    (`attn_kernel`'s OT: each head's program then moves its own head's values)."""
    n = pv.ints[11]
    last = pv.ints[8] + (pv.ints[13] - 1) * pv.ints[9]
    return (mv.kernel is sk.move_kernel and mv.consts["X_AT"] == sk.CONTIG.value
            and mv.consts.get("THEN", sk.CONTIG.value) == sk.CONTIG.value
            and n <= pv.consts["BN"] and mv.ints[2] == heads * n
            and mv.ints[0] + mv.ints[14] == last and pv.ints[9] == heads * n
            and all(t.data_ptr() == pv.ptrs[0].data_ptr() for t in mv.ptrs))


class _Operand:
    __slots__ = ("f", "i", "off", "dims")

    def __init__(self, f: torch.Tensor, i: torch.Tensor, off: int, dims: list[int]) -> None:
        self.f, self.i, self.off, self.dims = f, i, off, dims  # float32 / int32 views


class CudaStepPlan:
    """The CPU plan's records, run by Triton kernels on one device (module docstring)."""

    def __init__(self, program: TraceProgram, weights: Mapping[bytes, np.ndarray],
                 dev_weights: Mapping[bytes, torch.Tensor], chains: Mapping[int, lc.Chain],
                 wt: Mapping[bytes, torch.Tensor], device: torch.device,
                 graphs: bool = True, quant: Mapping[bytes, lc.QuantBlocks] | None = None
                 ) -> None:
        """`dev_weights`: the executor's device copies of non-linear weights by root; `wt`:
        its transposed linear weights by root; `chains`: its linear chains; `graphs`: replay
        single-job decode steps as CUDA graphs (`_Graphs`); `quant`: GGUF blocks by root
        (decode linears of Q4_1 weights read them: `QUANT_LINEARS`)."""
        self.device = device
        panels: dict[bytes, CudaChain] = {}
        self._chain: dict[int, CudaChain] = {}
        for j, c in chains.items():
            if c.root in wt:
                try:
                    panels.setdefault(c.root, CudaChain(wt[c.root], c,
                                                        (quant or {}).get(c.root)))
                except ValueError:
                    continue
                self._chain[j] = panels[c.root]
        trees = {j: ft.TreeRunner(t) for j, t in ft.find_trees(program).items()}
        self.plan = sp.StepPlan(program, weights, chains, panels, trees, sample=False)
        self.tail = self.plan.tail
        self.token_src = self.plan.token_src
        self.n_linears = self.plan.n_linears
        self.back_refs = self.plan.back_refs
        self.program = program
        self._w: list[_Operand] = []
        for root, _slot in sorted(self.plan._wslot.items(), key=lambda kv: kv[1]):
            t = dev_weights.get(root)
            if t is None:
                t = torch.from_numpy(np.ascontiguousarray(weights[root])).to(device)
            flat = t.contiguous().reshape(-1)
            self._w.append(_Operand(flat.view(torch.float32), flat.view(torch.int32), 0,
                                    list(t.shape)))
        # the records that launch something (a covered op's NOP record is its group's), with
        # each chain of DOT segments (attention's p·v: 32 a layer) as its first record
        self.records = _dot_runs([r for r in self.plan._recs.tolist() if r[0] != sp.K_NOP])
        rope = [r for r in self.records if r[0] == sp.K_ROPE and r[4] <= sp.W0]
        # the largest position a step may have: the RoPE tables' rows (§L5.7)
        self.max_past = (min(self._w[sp.W0 - r[4]].dims[0] for r in rope) - 1 if rope
                         else None)
        self.graphs = graphs and device.type == "cuda" and self.max_past is not None
        self.graph_error: str | None = None  # why graphs were given up (diagnostics)
        self.graph_steps = 0
        self._graph: _Graphs | None = None
        self._lanes: list[_Graphs] = []  # batch lanes' graphs (`run_lanes`)
        self.stack_lanes = STACK_LANES
        self._stack = None  # a LaneStack (`_run_stack`)
        self._layouts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._stage_specs: dict[tuple[int, int], tuple] = {}  # _stage_spec's
        self.max_lanes = 64
        self._launches: list[_Launch] = []
        self._op = -1
        self.qchain = QCHAIN
        self.prefetch = PREFETCH
        self.double_buffer = DOUBLE_BUFFER
        self.fuse = FUSE
        self.fuse_linears = FUSE_LINEARS
        self.quant_linears = QUANT_LINEARS
        self.quant_q8 = QUANT_Q8
        self.reg_folds = REG_FOLDS
        self.warp_folds = WARP_FOLDS
        self.warp_softmax = WARP_SOFTMAX
        self.fuse_attention = FUSE_ATTENTION
        self.fuse_heads_move = FUSE_HEADS_MOVE
        self.fuse_norm_linears = FUSE_NORM_LINEARS
        self.fold_carry = FOLD_CARRY
        self.chain_tail = CHAIN_TAIL
        self.narrow_softmax = NARROW_SOFTMAX
        self.narrow_norms = NARROW_NORMS
        self.small_blocks = SMALL_BLOCKS
        self.fused_speculate = FUSED_SPECULATE
        self.linear_blocks = LINEAR_BLOCKS
        self.sms = (torch.cuda.get_device_properties(device).multi_processor_count
                    if device.type == "cuda" else 132)  # `with_linear_blocks`
        # X_VECTORS: each linear's x aligned (before any layout is made), read by `_qchain`
        self.plan.align_linear_inputs = X_VECTORS
        # PDL's instructions exist from sm_90 (Hopper) on; older GPUs launch without them
        self.pdl = PDL and device.type == "cuda" and \
            torch.cuda.get_device_capability(device)[0] >= 9
        self.fuse_moves = FUSE_MOVES
        self.fuse_ew = FUSE_EW
        self.fuse_pairs = FUSE_PAIRS
        self._side_by_side: dict[tuple[int, ...], torch.Tensor] = {}  # `fuse_linears`' weights
        self.speculate = SPECULATE
        # the logits row the greedy token is the argmax of, when this plan computes it
        # (`_Graphs.speculate`)
        from node.ree.generate import GenerationError, logits_op  # it imports the executor

        try:
            self.logits_op: int | None = logits_op(program)
        except GenerationError:
            self.logits_op = None
        if self.logits_op is not None and self.logits_op >= self.tail:
            self.logits_op = None

    # ---------------------------------------------------------------- per step

    def layout(self, past: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dims, nbytes, byte offsets) of a decode step at `past`: the CPU arena's layout."""
        return self.plan.layout(Symbols(1, past))

    def frozen_layout(self, past: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`layout`, read-only and kept for the last few positions: a batch's lanes at the
        same position share it (~0.2 ms of NumPy each)."""
        got = self._layouts.get(past)
        if got is None:
            got = self.layout(past)
            for a in got:
                a.setflags(write=False)
            if len(self._layouts) >= 8:
                self._layouts.pop(next(iter(self._layouts)))
            self._layouts[past] = got
        return got

    def run(self, sym: Symbols, prev: Sequence[torch.Tensor | None], token: int,
            nthreads: int = 1, job: np.ndarray | None = None, speculate: bool = False
            ) -> sp.StepOutputs:
        """Ops [0, tail) of a decode step on the device; `prev` the previous step's outputs
        (`nthreads`, `job`: `StepPlan.run`'s, unused: this plan has no SAMPLE record).
        With graphs on, the outputs live in one of two arenas that alternate: they stay valid
        until the step after next (the recorder's copy is queued before that). `speculate`
        (a greedy job with a next step): the next step is queued too, with the device's
        argmax as its token (`_Graphs.speculate`); then these outputs stay valid only
        until the next call, whose work is queued by then."""
        del nthreads, job
        self._check(sym, token)
        if self.graphs:
            try:
                if self._graph is None:
                    self._graph = _Graphs(self, sym.past, token)
                out = self._graph.step(sym.past, prev, token, speculate and self.speculate)
                self.graph_steps += 1
                return out
            except _NoGraph as e:  # shapes the graph cannot cover: run eagerly from now on
                self.graphs, self.graph_error, self._graph = False, str(e), None
        return self._eager(sym, prev, token)

    @staticmethod
    def _check(sym: Symbols, token: int) -> None:
        if sym.seq != 1:
            raise sp.PlanError("the step plan runs decode steps (seq = 1) only")
        if not 0 <= token < 2**31:
            raise sp.PlanError(f"token {token} is not a token id")

    def _eager(self, sym: Symbols, prev: Sequence[torch.Tensor | None], token: int
               ) -> sp.StepOutputs:
        dims, nbytes, offs = self.layout(sym.past)
        arena = torch.empty(int(offs[-1] + nbytes[-1]) if self.tail else 0, dtype=torch.uint8,
                            device=self.device)
        alias = np.full(self.tail, -1, dtype=np.int64)
        launches = self.emit(arena, dims, offs, prev, sym.past, token, alias)
        self.launch(launches, self.table(launches))
        return sp.StepOutputs(self.plan, arena, offs, nbytes, dims, alias)

    def run_lanes(self, steps: Sequence[tuple], nthreads: int = 1, speculate: bool = False
                  ) -> list[sp.StepOutputs]:
        """Several jobs' decode steps (the same bits as each alone: a job's launches and
        table are those of its one-job graph). With graphs on, each job takes a lane of
        `_Graphs` (its own arenas, graphs and stream), so the jobs' replays run side by
        side: one job's launches fill a few dozen SMs at most. A job that cannot have a
        lane (memory, shapes) runs eagerly on the caller's stream. `speculate` (greedy
        jobs with a next step): the stack queues that step too (`LaneStack.speculate`)."""
        del nthreads
        steps = [s[:3] for s in steps]  # (symbols, previous outputs, token[, job words])
        for sym, _prev, token in steps:
            self._check(sym, token)
        if self.graphs and self.stack_lanes and len(steps) > 1:
            try:
                outs = self._run_stack(steps, speculate and self.speculate)
                if outs is not None:
                    return outs
            except _NoGraph as e:  # per-job lanes from now on
                self.graph_error, self.stack_lanes, self._stack = str(e), False, None
        lanes = self._claim_lanes(steps) if self.graphs and len(steps) > 1 else \
            [None] * len(steps)
        start = torch.cuda.Event() if any(g is not None for g in lanes) else None
        if start is not None:
            start.record()
        outs = []
        for g, (sym, prev, token) in zip(lanes, steps, strict=True):
            out = None
            if g is not None:
                try:
                    out = g.lane_step(sym.past, prev, token, start)
                    self.graph_steps += 1
                except _NoGraph as e:
                    self.graph_error = str(e)
                    self._lanes.remove(g)
            outs.append(out if out is not None else self._eager(sym, prev, token))
        return outs

    def _run_stack(self, steps: Sequence[tuple[Symbols, Sequence[torch.Tensor | None], int]],
                   speculate: bool = False) -> list[sp.StepOutputs] | None:
        """`run_lanes` through one stack of lanes (node/ree/step_lanes_cuda.py), made for
        the batch's width and made again when a wider batch comes; None when device memory
        cannot hold it. The step the last call queued ahead is taken when it is this one."""
        from node.ree.step_lanes_cuda import LaneStack  # it builds on this module

        st = self._stack
        if st is not None and st.lanes >= len(steps):
            outs = st.take([(sym.past, prev, token) for sym, prev, token in steps], speculate)
            if outs is not None:
                self.graph_steps += len(steps)
                return outs
        if st is None or st.lanes < len(steps):
            self._stack = st = None
            if max(sym.past for sym, _p, _t in steps) > (self.max_past or 0):
                return None
            need = 2 * len(steps) * int(self.layout(self.max_past)[2][-1])
            if torch.cuda.mem_get_info(self.device)[0] < need + (2 << 30):
                return None
            st = self._stack = LaneStack(self, len(steps), steps[0][0].past, steps[0][2])
        lanes: list[int | None] = [st.lane_of(prev) for _sym, prev, _t in steps]
        seen: set[int] = set()
        for i, ln in enumerate(lanes):
            if ln is not None and ln in seen:
                lanes[i] = None
            elif ln is not None:
                seen.add(ln)
        free = iter(sorted(set(range(st.lanes)) - seen))
        lanes = [ln if ln is not None else next(free) for ln in lanes]
        outs = st.step([(ln, sym.past, prev, token)
                        for ln, (sym, prev, token) in zip(lanes, steps, strict=True)], speculate)
        self.graph_steps += len(steps)
        return outs

    def _claim_lanes(self, steps: Sequence[tuple[Symbols, Sequence[torch.Tensor | None], int]]
                     ) -> list[_Graphs | None]:
        """Each job's lane: the one whose arena holds its previous step (the KV caches stay
        in place), else a free one, else a new one while device memory allows."""
        out: list[_Graphs | None] = [None] * len(steps)
        taken: set[int] = set()
        for i, (_sym, prev, _token) in enumerate(steps):
            g = self._lane_of(prev)
            if g is not None and id(g) not in taken:
                out[i] = g
                taken.add(id(g))
        free = [g for g in self._lanes if id(g) not in taken]
        for i, (sym, _prev, token) in enumerate(steps):
            if out[i] is not None:
                continue
            if free:
                out[i] = free.pop(0)
                continue
            if len(self._lanes) >= self.max_lanes or sym.past > (self.max_past or 0):
                continue
            size = 2 * self.layout(self.max_past)[2][-1]
            if torch.cuda.mem_get_info(self.device)[0] < size + (2 << 30):
                continue
            try:
                like = self._lanes[0] if self._lanes else None
                g = _Graphs(self, sym.past, token, like)
            except _NoGraph as e:
                self.graph_error = str(e)
                return out
            self._lanes.append(g)
            out[i] = g
        return out

    def _lane_of(self, prev: Sequence[torch.Tensor | None] | None) -> _Graphs | None:
        """The lane whose last step's arena holds `prev`'s KV caches."""
        t = next((prev[i] for i in self.back_refs if prev is not None and i < len(prev)
                  and isinstance(prev[i], torch.Tensor)), None)
        if t is None or t.device != self.device:
            return None
        p = t.data_ptr()
        for g in self._lanes:
            a = g.arenas[1 - g.parity]
            if a.data_ptr() <= p < a.data_ptr() + a.numel():
                return g
        return None

    def emit(self, arena: torch.Tensor, dims: np.ndarray, offs: np.ndarray,
             prev: Sequence[torch.Tensor | None] | _PrevArena | None, past: int, token: int,
             alias: np.ndarray | None, stacked: bool = False) -> list[_Launch]:
        """The step's launches (kernel, grid, pointers, the row of run-time integers); `alias`
        None: every record launches (a graph's fixed sequence), else p·v segments past the
        live keys take their accumulator's place. `stacked`: a lane of a stack
        (step_lanes_cuda.LaneStack), whose linears stay on `qchain_v8_kernel` (QUANT_Q8)."""
        self._stacked = stacked
        self._arena_f, self._arena_i = arena.view(torch.float32), arena.view(torch.int32)
        self._offs = (offs // 4).tolist()
        self._dims = [row[1:1 + row[0]] for row in dims.tolist()]
        self._prev, self._past, self._token, self._alias = prev, past, token, alias
        self._launches = []
        run = self._run
        try:
            for r in self.records:
                self._op = r[1]
                try:
                    run[r[0]](self, r)
                except (ValueError, RuntimeError, IndexError) as e:
                    j = r[1]
                    raise sp.PlanError(f"op {j} ({self.program.ops[j].name}): {e}") from e
            if alias is not None:
                offs[:] = np.array(self._offs, dtype=np.int64) * 4
            out = fuse_launches(self._launches) if self.fuse else self._launches
            out = fuse_moves(out) if self.fuse_moves else out
            out = fuse_ew(out) if self.fuse_ew else out
            out = with_reg_folds(out) if self.reg_folds else out
            out = with_fold_carry(out) if self.fold_carry else out
            out = with_narrow(out, sk.softmax_kernel) if self.narrow_softmax else out
            out = with_narrow(out, sk.norm_kernel) if self.narrow_norms else out
            warp = ((sk.norm_kernel,) * self.warp_folds
                    + (sk.softmax_kernel,) * self.warp_softmax)
            out = with_warp_folds(out, self.weight_ptrs(), warp) if warp else out
            out = fuse_linears(out, self._side_by_side) if self.fuse_linears else out
            out = with_linear_blocks(out, self.sms) if self.linear_blocks else out
            out = fuse_norm_linears(out, self.weight_ptrs()) if self.fuse_norm_linears else out
            out = fuse_attention(out, self.fuse_heads_move) if self.fuse_attention else out
            return fuse_pairs(out) if self.fuse_pairs else out
        finally:
            self._prev = None
            self._launches = []

    def table(self, launches: Sequence[_Launch]) -> np.ndarray:
        t = np.zeros((len(launches), sk.ARGW), dtype=np.int64)
        for i, ln in enumerate(launches):
            t[i, :len(ln.ints)] = ln.ints
        return t

    def launch(self, launches: Sequence[_Launch], table: np.ndarray | torch.Tensor,
               lanes: int = 1) -> None:
        """Every launch, reading its integers from row i of `table` (copied to the device);
        `lanes` > 1: each launch once for a stack of lanes, the table [launches, lanes,
        ARGW] (node/ree/step_lanes_cuda.py; step_kernels._row)."""
        args = table if isinstance(table, torch.Tensor) else torch.from_numpy(table).to(
            self.device)
        pdl = {"launch_pdl": True, "PDL": True} if self.pdl else {}
        if lanes == 1:
            for i, ln in enumerate(launches):
                if ln.kernel is not None:  # else a rider: the launch before reads its row
                    ln.kernel[ln.grid](*ln.ptrs, args, i, **ln.consts, **pdl)
            return
        for i, ln in enumerate(launches):
            if ln.kernel is None:
                continue
            g = (*ln.grid, 1, 1)[:3]
            consts = ln.consts
            if ln.kernel in (sk.qchain_v8_kernel, sk.norm_qchain_kernel):
                consts = stack_linear_consts(consts, lanes)
            ln.kernel[(g[0], g[1], g[2] * lanes // consts.get("LR", 1))](
                *ln.ptrs, args, i, LANES=lanes, **consts, **pdl)

    def weight_ptrs(self) -> set[int]:
        """The addresses of every weight tensor a launch may read (fixed for the plan's
        life): a graph replays launches whose other pointers are its own arenas."""
        return {w.f.data_ptr() for w in self._w} | {
            c.wt.data_ptr() for c in self._chain.values()} | {
            v.data_ptr() for c in self._chain.values() for v in c._vec.values()} | {
            c._quant.data_ptr() for c in self._chain.values() if c._quant is not None} | {
            w.data_ptr() for w in self._side_by_side.values()}

    def _block(self, default: int) -> int:
        """Elements a program of an EW, MOVE or CONCAT launch (`SMALL_BLOCKS`)."""
        return SMALL_BLOCK if self.small_blocks else default

    def _emit(self, kernel, grid: tuple[int, ...], ptrs: tuple[torch.Tensor, ...],  # noqa: ANN001
              ints: list[int], **consts) -> None:  # noqa: ANN003
        self._launches.append(_Launch(kernel, tuple(max(1, g) for g in grid), ptrs, ints,
                                      consts, self._op))

    def _operand(self, v: int) -> _Operand | None:
        if v >= 0:
            return _Operand(self._arena_f, self._arena_i, self._offs[v], self._dims[v])
        if v <= sp.W0:
            return self._w[sp.W0 - v]
        if v == -1:
            return None
        i = -2 - v
        prev = self._prev
        if isinstance(prev, _PrevArena):
            return prev.operand(i)
        t = prev[i] if prev is not None else None
        if t is None:
            return None
        if (isinstance(prev, sp.StepOutputs) and i < prev.plan.tail and i not in prev.replaced
                and prev.arena.device == self.device):
            return _PrevArena(prev.arena, prev.dims, prev.offs).operand(i)
        flat = t.to(self.device).contiguous().reshape(-1)
        return _Operand(flat.view(torch.float32), flat.view(torch.int32), 0, list(t.shape))

    def _out(self, j: int) -> tuple[int, list[int], int]:
        d = self._dims[j]
        return self._offs[j], d, numel(d)

    # ---------------------------------------------------------------- records

    def _nop(self, r: list[int]) -> None:
        pass

    def _tokens(self, r: list[int]) -> None:
        off, _, n = self._out(r[1])
        if n != 1:
            raise ValueError("TOKENS: a decode step has one")
        self._emit(sk.gather_kernel, (1,), (self._arena_i, self._arena_i, self._arena_i),
                   [off, off, 0, self._token], BLOCK=64)

    def _gather(self, r: list[int]) -> None:
        ids, tab = self._operand(r[3]), self._operand(r[4])
        if ids is None or tab is None or len(tab.dims) != 2:
            raise ValueError("GATHER: inputs")
        if r[3] < 0 or self.program.ops[r[3]].code != Code.TOKENS:
            raise ValueError("GATHER: the plan reads the step's TOKENS op only")
        v, d = tab.dims
        if not 0 <= self._token < v:
            raise ValueError("GATHER: id outside the table")
        self._emit(sk.gather_kernel, (triton.cdiv(d, 1024),), (self._arena_i, tab.i,
                                                               self._arena_i),
                   [ids.off, self._offs[r[1]], d, self._token], BLOCK=1024)

    def _ew(self, r: list[int]) -> None:
        fn, scalar, mask, fill = r[6], r[7], r[8], r[9]
        off, od, n = self._out(r[1])
        a, b = self._operand(r[3]), self._operand(r[4])
        binary = fn < 16
        if a is None or (binary and r[4] != -1 and b is None):
            raise ValueError("EW: absent input")
        if len(od) > 6:
            raise ValueError("EW: more than 6 dims")
        sa = _bstrides(a.dims, od)
        sb = _bstrides(b.dims, od) if b is not None else [0] * len(od)
        if sa is None or sb is None:
            raise ValueError("EW: an input does not broadcast to the output")
        _, rr, cc = rows_cols(od)
        bb = b if b is not None else a
        blk = self._block(_EW_BLOCK)
        self._emit(sk.ew_kernel, (triton.cdiv(n, blk),), (a.f, bb.f, self._arena_f),
                   [a.off, bb.off, off, n, *_pad6(od, 1)[1:], *_pad6(sa, 0), *_pad6(sb, 0),
                    _i32(scalar & 0xFFFFFFFF), _i32(fill & 0xFFFFFFFF), 0, self._past, rr, cc],
                   FN=fn, HAS_B=b is not None, MASK=bool(mask), A_AT=_at(sa, od),
                   B_AT=_at(sb, od), BLOCK=blk, **FP_FLAGS)

    def _foldtree(self, r: list[int]) -> None:
        combine, causal, nlev = r[6], r[7], r[11]
        caps = r[12:12 + nlev]
        x = self._operand(r[3])
        if x is None:
            raise ValueError("FOLD: absent input")
        ba, rr, w = rows_cols(x.dims)
        if causal and rr != 1:
            raise ValueError("FOLD: causal rows (prefill) are not planned")
        cap0 = caps[0]
        if cap0 & (cap0 - 1) or any(c != cap0 >> k for k, c in enumerate(caps)) or w > 2 * cap0:
            raise ValueError("FOLD: levels are not one halving tree over the row")
        nl = min(r[8] + r[9] * 1 + r[10] * self._past, w)
        if causal:
            nl = min(nl, self._past + 1)
        rows = ba * rr
        self._emit(sk.fold_tree_kernel, (rows,), (x.f, self._arena_f),
                   [x.off, self._offs[r[1]], rows, w, max(nl, 0)], NEG0=NEG_ZERO, CAP0=cap0,
                   NLEV=nlev, COMBINE=combine, num_warps=4 if cap0 >= 256 else 1, **FP_FLAGS)

    def _qchain(self, r: list[int]) -> None:
        ch = self._chain[r[1]]
        x = self._operand(r[3])
        if x is None or not x.dims or x.dims[-1] != ch.k:
            raise ValueError("DOT: x does not match the weight's K")
        m = numel(x.dims) // ch.k
        ints = [x.off, 0, ch.k, 0, 0, 1, ch.n, 0, self._offs[r[1]], m * ch.n, m, ch.n, 1,
                ch.nseg, 0, ch.segw, ch.k, self._past]
        kind, *cfg = self.qchain
        # a stack keeps the v8 head: it runs STACK_LR lanes a program on each weight it loads,
        # and the Q8_0 head was measured and GPU-tested for one job a launch only
        wanted = {"q4_1": self.quant_linears,
                  "q8_0": self.quant_q8 and not self._stacked}.get(ch.qtype, False)
        quant = ch.quant() if (wanted and kind == "v8" and m == 1 and ch.segw % 32 == 0
                               and ch.k % ch.segw == 0) else None
        if quant is not None:
            bn, _nb, pf, nw, *_xs = cfg
            self._emit(sk.qchain_quant_kernel, (triton.cdiv(ch.n, bn),),
                       (x.f, quant[0], self._arena_f), ints, BN=bn, SEGW=ch.segw, PF=pf,
                       QT=quant[1], num_warps=nw, **FP_FLAGS)
            return
        if kind == "v8" and m == 1 and ch.segw % cfg[1] == 0 and ch.k % ch.segw == 0:
            bn, nb, pf, nw, *xs = cfg
            xs = bool(xs and xs[0])
            # x's values four a load: the step plan starts an arena x 16-byte aligned at
            # every step (a graph replays one kernel for all of them)
            xv = self.plan.align_linear_inputs and not xs and r[3] in self.plan.linear_inputs
            if xv and (x.off % 4 or x.f.data_ptr() % 16):
                raise ValueError("a linear's x is not 16-byte aligned (X_VECTORS)")
            self._emit(sk.qchain_v8_kernel, (triton.cdiv(ch.n, bn),),
                       (x.f, ch.vec(8), self._arena_f), ints, BN=bn, SEGW=ch.segw, NB=nb,
                       PF=pf, XS=xs, XV=xv, num_warps=nw, **FP_FLAGS)
            return
        if kind == "vec" and m == 1 and ch.segw % cfg[1] == 0 and ch.k % ch.segw == 0:
            bn, tk, nw = cfg
            self._emit(sk.qchain_vec_kernel, (triton.cdiv(ch.n, bn),),
                       (x.f, ch.vec(tk), self._arena_f), ints, BN=bn, TK=tk, SEGW=ch.segw,
                       num_warps=nw, **FP_FLAGS)
            return
        if kind == "dot":
            bm, bn, nw, ns, pre = cfg
            self._emit(sk.qchain_dot_kernel, (triton.cdiv(ch.n, bn), triton.cdiv(m, bm)),
                       (x.f, ch.wt, self._arena_f), ints, NEG0=NEG_ZERO, BM=bm, BN=bn,
                       SEGW=ch.segw, NS=ns, PRE=pre, num_warps=nw, **FP_FLAGS)
            return
        bn, bk, nw, ns, warm = cfg if kind == "fma" else _CHAIN + (False,)
        self._emit(sk.chain_kernel, (triton.cdiv(ch.n, bn), m, 1),
                   (x.f, ch.wt, x.f, self._arena_f), ints, NEG_INF=float("-inf"),
                   HAS_ACC=False, CAUSAL=0, BN=bn, BK=bk, NS=ns, WARM=ch.k if warm else 0,
                   num_warps=nw, **FP_FLAGS)

    def _dot(self, r: list[int]) -> None:
        k0, k1, group, causal, may_alias = r[6], r[7], r[8], r[9], r[10]
        j = r[1]
        a, b, acc = self._operand(r[3]), self._operand(r[4]), self._operand(r[5])
        if a is None or b is None:
            raise ValueError("DOT: absent input")
        ba, rr, k = rows_cols(a.dims)
        bb, n, kb = rows_cols(b.dims)
        if kb != k or group < 1 or ba != bb * group:
            raise ValueError("DOT: shapes do not chain")
        off, od, size = self._out(j)
        if size != ba * rr * n:
            raise ValueError("DOT: output size")
        if acc is not None and numel(acc.dims) != size:
            raise ValueError("DOT: accumulator size")
        past, seg = self._past, k1 - k0
        nseg = max(1, r[_RUN])  # segments j … j+nseg−1 of one chain (`_dot_runs`)
        if any(self._offs[j + s] != off + s * size or self._dims[j + s] != od
               for s in range(1, nseg)):
            raise ValueError("DOT: a segment chain's outputs are not back to back")

        def idle(s: int) -> bool:  # no row has a key in segment s (§L5.3)
            lo = k0 + s * seg
            return min(lo + seg, k) <= lo or (causal == 1 and past + rr <= lo)

        live = nseg
        if self._alias is not None and may_alias and causal != 2:
            while live and idle(live - 1) and (live > 1 or (acc is not None and r[5] >= 0
                                                             and acc.dims == od)):
                live -= 1
        if live:
            bn, bk, nw, ns = _CHAIN
            # segw and kmax as the record has them (the kernel clamps): affine in the position
            self._emit(sk.chain_kernel, (triton.cdiv(n, bn), rr, ba),
                       (a.f, b.f, acc.f if acc is not None else a.f, self._arena_f),
                       [a.off, rr * k, k, b.off, n * k, k, 1,
                        acc.off if acc is not None else 0, off, size, rr, n, group, live, k0,
                        seg, k, past],
                       NEG_INF=float("-inf"), HAS_ACC=acc is not None, CAUSAL=causal, BN=bn,
                       BK=bk, NS=ns, PF=self.prefetch, DB=self.double_buffer, K1=True,
                       TB=self.chain_tail, num_warps=nw, **FP_FLAGS)
        for s in range(live, nseg):
            # no row has a key here: the accumulator's bits (a DOT output, canonical), in
            # its place in the arena; the recorder takes that op's root
            src = j + s - 1 if s else r[5]
            self._offs[j + s] = self._offs[src]
            self._alias[j + s] = self._alias[src] if self._alias[src] >= 0 else src

    def _rope(self, r: list[int]) -> None:
        dh, rot, mode = r[6], r[7], r[8]
        x, cs, sn = self._operand(r[3]), self._operand(r[4]), self._operand(r[5])
        if x is None or cs is None or sn is None or len(x.dims) < 2 or len(cs.dims) != 2:
            raise ValueError("ROPE: inputs")
        t, w, half = x.dims[-2], x.dims[-1], cs.dims[1]
        if dh < 1 or w % dh or rot > dh or half != rot // 2:
            raise ValueError("ROPE: bad head layout")
        if t != 1:
            raise ValueError("ROPE: one row per step in decode")
        if self._past + t > cs.dims[0]:
            raise ValueError("ROPE: position past the table")
        off, od, n = self._out(r[1])
        if rot < dh:  # dims >= R are bit copies: copy the row, then rotate in place
            blk = self._block(_MOVE_BLOCK)
            self._emit(sk.move_kernel, (triton.cdiv(n, blk),),
                       (x.i, self._arena_i),
                       [x.off, off, n, 1, 1, 1, 1, n, 0, 0, 0, 0, 0, 1, 0],
                       X_AT=sk.CONTIG.value, BLOCK=blk)
        rows = n // dh
        bh = max(1, 1 << max(0, (rot // 2 - 1).bit_length()))
        rb = 16
        self._emit(sk.rope_kernel, (triton.cdiv(rows, rb),), (x.f, cs.f, sn.f, self._arena_f),
                   [x.off, off, rows, dh, rot, half, self._past], HALF_MODE=bool(mode), RB=rb,
                   BH=bh, **FP_FLAGS)

    def _move(self, r: list[int]) -> None:
        j = r[1]
        x = self._operand(r[3])
        if x is None:
            raise ValueError("MOVE: absent input")
        off_o, od, n = self._out(j)
        if len(od) > 6:
            raise ValueError("MOVE: more than 6 dims")
        past = self._past
        p = r[6:]
        base = p[0] + p[1] + p[2] * past
        st = [p[3 + 3 * k] + p[4 + 3 * k] + p[5 + 3 * k] * past for k in range(len(od))]
        if any(s < 0 for s in st):
            raise ValueError("MOVE: negative stride")
        last = base + sum((d - 1) * s for d, s in zip(od, st, strict=True) if d > 0)
        xn = numel(x.dims)
        if n and (base < 0 or last >= xn):
            raise ValueError("MOVE: element outside the input")
        at = sk.CONTIG.value if n <= 1 or _at(st, od) == sk.CONTIG.value else sk.GENERAL.value
        blk = self._block(_MOVE_BLOCK)
        self._emit(sk.move_kernel, (triton.cdiv(n, blk),), (x.i, self._arena_i),
                   [x.off, off_o, n, *_pad6(od, 1)[1:], *_pad6(st, 0), base],
                   X_AT=at, BLOCK=blk)

    def _concat(self, r: list[int]) -> None:
        axis, j = r[6], r[1]
        a, b = self._operand(r[3]), self._operand(r[4])
        off, od, n = self._out(j)
        nd = len(od)
        if b is None or axis < 0 or axis >= nd or len(b.dims) != nd:
            raise ValueError("CONCAT: inputs")
        outer, inner = numel(od[:axis]), numel(od[axis + 1:])
        lb = b.dims[axis]
        la = od[axis] - lb
        if la < 0 or (la > 0 and a is None):
            raise ValueError("CONCAT: lengths")
        aa = a if a is not None else b
        blk = self._block(_MOVE_BLOCK)
        self._emit(sk.concat_kernel, (triton.cdiv(n, blk),), (aa.i, b.i, self._arena_i),
                   [aa.off, b.off, off, outer, la * inner, lb * inner], BLOCK=blk)

    _run = {sp.K_NOP: _nop, sp.K_TOKENS: _tokens, sp.K_GATHER: _gather, sp.K_EW: _ew,
            sp.K_FOLDTREE: _foldtree, sp.K_QCHAIN: _qchain, sp.K_DOT: _dot, sp.K_ROPE: _rope,
            sp.K_MOVE: _move, sp.K_CONCAT: _concat}


# A greedy job's next decode step queued before its token reaches the host
# (`_Graphs.speculate`): the device's own argmax of the logits (fastsample.argmax_token)
# feeds the next graph's table, so the host's tail, the recorder and the caller's loop run
# beside the device instead of between its steps (b=1 on the H100, seventeenth session:
# graph 3.03 ms of GPU time, step 3.56 ms of wall time). The host's token stays the
# definition: a step asked for with another token, or after outputs of the step before were
# replaced, drops the guess and runs again. bench_runtime.py --no-speculate for the A/B.
SPECULATE = True
# the speculation's guess and the next graph's table as two Triton launches
# (speculate_cuda.NextTable: partial maxima, then the reduction and the whole table with the
# position a launch argument), and the host's copies of the logits and guess on a side
# stream beside the next graph, instead of ~10 torch launches and a pinned table copy on the
# executor's stream (~35 µs of device time a b = 1 step on the H100, profile_cuda_step.py
# --loop, thirty-first session). The guess follows fastsample.argmax_token's order; the host's
# token stays the definition. Bits: the guess picks only which graph is queued ahead; the
# host's tail checks it (a wrong guess drops the step and reruns it). On the H100 its
# kernels' guesses and tables equal argmax_token's and numpy's (test_next_table_on_the_gpu),
# and the speculation tests pass with it on (10/10, thirty-second session: `-k "next_table or
# speculat"`); the 20-job H100 report ran with it (ALL EQUAL). H100 loop A/B (thirty-second
# session, `LOOP=64 scripts/gpu_ab.sh fused-speculate 16`, interleaved): wall 2.070 / 2.069
# ms a step → 2.020 / 2.017 (−2.5 %); bench b=1 exec only 477.6 tok/s. On since the
# thirty-second session (bench_runtime.py --no-fused-speculate for the A/B)
FUSED_SPECULATE = True

# A one-job graph step's trace roots replayed on a side stream beside the next step's graph
# (`_Graphs.roots`) rather than after it on the executor's stream: a b = 1 step's launches
# fill a few dozen SMs, and its roots graph took ~0.4 ms of each ~2.8 ms H100 step. With
# speculated steps and PDL on one H100 (twenty-first session, bench-runtime.md
# `cuda-h100-dec06-roots-beside` / `-roots-on-stream`): compact trace 306.4 → 326.0 tok/s
# (overhead 14.5 → 9.9 %), full 285.2 → 309.8; another H100 gave 270.9 (28 %) with it, no
# A/B there (notes-runtime-perf.md). bench_runtime.py --no-roots-beside for the A/B.
ROOTS_BESIDE = True


class _NoGraph(Exception):
    """The step's launches are not one fixed sequence with integers affine in the position
    and token: graphs are given up, steps run eagerly."""


def arena_rows(plan: sp.StepPlan, ops: np.ndarray, dims: np.ndarray, nbytes: np.ndarray,
               offs: np.ndarray) -> np.ndarray:
    """repops/gpu/keccak.py's per-tensor rows of the plan ops `ops` of an arena laid out by
    `dims`, `nbytes`, `offs` (all ops' rows of StepPlan.layout)."""
    return keccak.tensor_rows(offs[ops], nbytes[ops], plan._dcode[ops], plan._ndim[ops],
                              np.where(plan._live[ops], dims[ops, 1:], 0))


def compact_body(plan: sp.StepPlan) -> np.ndarray:
    """The plan ops before its tail (the device's part of a step) whose roots a compact
    trace commits (docs/trace-layout.md §L10), ascending: plan op i is trace op i."""
    cmap = compact_ops(plan.program)
    return cmap[:int(np.searchsorted(cmap, plan.tail))]


class _RootsGraphs:
    """The trace's C4 roots of a graph step's arena as a CUDA graph per arena
    (repops/gpu/keccak.py: `slot_leaves_kernel`, `tree_kernel`), so that committing a step
    costs the executor's thread a table copy and a replay instead of ~4 ms of tables and
    launches a step (notes-runtime-perf.md). Each op's row (offset, size, tree region, dtype
    code, ndim, dims) is affine in the position like the step's launch integers: C + K·past,
    checked at two more positions; chunk slots and tree regions are laid out for the sizes
    at the largest position, where every size is largest (K ≥ 0)."""

    def __init__(self, g: _Graphs, like: _RootsGraphs | None = None,
                 compact: bool = False) -> None:
        """`like`: another lane's roots of the same plan and selection: its rows and slots
        (read-only on the device) are taken, the scratch and outputs are this one's own.
        `compact`: only the roots a compact trace commits (docs/trace-layout.md §L10: the
        step's ops in `referee.compact.compact_ops` before the host tail), in that order:
        a third of a SmolLM2 step's bytes and tensors to hash."""
        sp_, self.g = g.sp, g
        plan = sp_.plan
        if like is not None:
            self.ops = like.ops
            self.c0, self.kp, n_nodes = like.c0, like.kp, like.nodes.shape[0]
        else:
            self.ops = compact_body(plan) if compact else np.arange(plan.tail)
            self.c0, self.kp, slots, n_nodes = self._derive(sp_, self.ops)
        dev, n = sp_.device, len(self.ops)
        self.slots = like.slots if like is not None else torch.from_numpy(slots).to(dev)
        self.nodes = torch.zeros((max(1, n_nodes), 4), dtype=torch.int64, device=dev)
        self.tens = torch.zeros(self.c0.shape, dtype=torch.int32, device=dev)
        self.host = torch.zeros(self.c0.shape, dtype=torch.int32, pin_memory=True)
        self.copied: torch.cuda.Event | None = None
        self.out = [torch.empty((n, 32), dtype=torch.uint8, device=dev) for _ in range(2)]
        self.graphs: list[torch.cuda.CUDAGraph | None] = [None, None]

    @classmethod
    def _derive(cls, sp_: CudaStepPlan, ops: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(C, K, chunk slots, tree nodes): the rows at a position are C + K·past."""
        top = sp_.max_past
        rows = [cls._rows(sp_, p, ops) for p in (1, 2)]
        c0, kp = 2 * rows[0] - rows[1], rows[1] - rows[0]
        if (kp < 0).any():
            raise _NoGraph("a tensor shrinks as the position grows")
        for p in (top, top // 2 + 1):
            if not np.array_equal(cls._rows(sp_, p, ops), c0 + kp * p):
                raise _NoGraph(f"tensor rows are not affine in the position ({p})")
        big = c0 + kp * top
        if int((big[:, 0] + big[:, 1]).max()) >= 2**31:
            raise _NoGraph("an arena over 2 GiB (the roots' tables are int32)")
        slots, base, n_nodes = keccak.slot_layout(big[:, 1])
        c0[:, keccak.T_BASE] = base
        return c0, kp, slots, n_nodes

    @staticmethod
    def _rows(sp_: CudaStepPlan, past: int, ops: np.ndarray) -> np.ndarray:
        dims, nbytes, offs = sp_.layout(past)
        return arena_rows(sp_.plan, ops, dims, nbytes, offs)

    def run(self, k: int, past: int) -> torch.Tensor:
        if self.copied is not None:
            self.copied.synchronize()  # the pinned rows of the last step were read
        self.host.numpy()[:] = self.c0 + self.kp * past
        self.tens.copy_(self.host, non_blocking=True)
        self.copied = torch.cuda.Event()
        self.copied.record()
        g = self.graphs[k]
        args = (self.g.arenas[k], self.tens, self.slots, self.nodes, self.out[k])
        if g is None:
            keccak.graph_roots(*args)  # compiles both kernels; then capture
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, capture_error_mode="thread_local"):
                keccak.graph_roots(*args)
            self.graphs[k] = g
        else:
            g.replay()
        return self.out[k]


class _PrevArena:
    """The previous step's outputs in an arena with its dims and byte offsets: a
    `StepOutputs`, or, for a graph, the other arena laid out as a decode step at past − 1."""

    def __init__(self, arena: torch.Tensor, dims: np.ndarray, offs: np.ndarray) -> None:
        self.f, self.i = arena.view(torch.float32), arena.view(torch.int32)
        self.offs, self.dims = offs, dims

    def operand(self, i: int) -> _Operand:
        nd = int(self.dims[i, 0])
        return _Operand(self.f, self.i, int(self.offs[i]) // 4,
                        [int(d) for d in self.dims[i, 1:1 + nd]])


class _Guess:
    """A decode step queued before the host knew its token (`_Graphs.speculate`)."""

    def __init__(self, past: int, prev: sp.StepOutputs, k: int, out: sp.StepOutputs,
                 token: torch.Tensor, ready: torch.cuda.Event) -> None:
        self.past, self.prev, self.k, self.out = past, prev, k, out
        self.token, self.ready = token, ready  # the device's token, pinned, once `ready`

    def holds(self, past: int, prev: Sequence[torch.Tensor | None], token: int) -> bool:
        """The step asked for is the one queued: same position, the previous outputs the
        same object with none replaced since, the host's token the device's."""
        if past != self.past or prev is not self.prev or self.prev.replaced:
            return False
        self.ready.synchronize()
        return int(self.token[0]) == token


class _Graphs:
    """Decode steps of one job as CUDA graph replays.

    A graph replays fixed kernel arguments, so every launch reads its integers from a row of
    a device table (repops/gpu/step_kernels.py). The launch sequence is the same at every
    position when p·v segments are not skipped, and every integer in it is affine in the
    position and the token (dims §L3 are; so are offsets, sums of sizes): the table is
    C + K·past + T·token, derived from the emitted rows at three (past, token) points and
    checked at two more, else `_NoGraph`. Grids are sized at the largest position. Two
    arenas alternate (a step reads the previous step's KV cache in the other), so two graphs,
    captured after the first eager launch of each has compiled every kernel."""

    def __init__(self, sp_: CudaStepPlan, past: int, token: int,
                 like: _Graphs | None = None) -> None:
        """`like`: another job's graphs of the same plan, whose tables and launch sequences
        this one takes with its own arenas in place of that one's (a batch lane: deriving
        the tables again would cost ~0.5 s of Python a lane)."""
        self.sp = sp_
        top = sp_.max_past
        if past > top:
            raise _NoGraph("position past the RoPE table")
        _, nb, of = sp_.layout(top)
        size = int(of[-1] + nb[-1])
        dev = sp_.device
        self.arenas = [torch.empty(size, dtype=torch.uint8, device=dev) for _ in range(2)]
        self.stream: torch.cuda.Stream | None = None  # a batch lane's own stream
        self.tops = grid_tops(top)
        # per parity, per grid size (`grid_tops`): the launches
        self.seqs: list[list[list[_Launch]]] = []
        if like is not None:
            self.tables = like.tables
            self.seqs = [[self._repoint(q, like.arenas) for q in qs] for qs in like.seqs]
        else:
            self.tables = []
            self._derive(past, token)
        self.args = torch.zeros(self.tables[0][0].shape, dtype=torch.int64, device=dev)
        self.host = torch.zeros(self.args.shape, dtype=torch.int64,
                                pin_memory=dev.type == "cuda")  # CPU: the interpreter's test
        self.copied: torch.cuda.Event | None = None
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}  # (parity, grid size)
        self.parity = 0
        self._like = like
        self._roots: dict[bool, _RootsGraphs] = {}  # by `compact`
        self.roots_error: str | None = None  # why the trace's roots are not a graph, if not
        # ROOTS_BESIDE: the roots' side stream; per arena, the end of the last graph that
        # wrote it on the executor's stream (what its roots wait for) and the end of its
        # roots on the side stream (what the next graph writing it waits for)
        self._rstream: torch.cuda.Stream | None = None
        self._wrote: list[torch.cuda.Event | None] = [None, None]
        self._read: list[torch.cuda.Event | None] = [None, None]
        # `speculate`: the step queued ahead, its table's pinned rows and their copy, the
        # token terms on the device, and per arena the host copies of its logits and token
        self._spec: _Guess | None = None
        self._spec_host = torch.zeros(self.args.shape, dtype=torch.int64,
                                      pin_memory=dev.type == "cuda")
        self._spec_copied: torch.cuda.Event | None = None
        self._kt: list[torch.Tensor | None] = [None, None]
        self._logits_host: list[torch.Tensor | None] = [None, None]
        self._token_host: list[torch.Tensor | None] = [None, None]
        # FUSED_SPECULATE: per parity the next table's device terms (and the guess that
        # picks it), the side stream of the host copies and the end of each arena's copies
        self._next: list[NextTable | None] = [None, None]
        self._cstream: torch.cuda.Stream | None = None
        self._copied_out: list[torch.cuda.Event | None] = [None, None]
        self.spec_hits = self.spec_misses = 0

    def _derive(self, past: int, token: int) -> None:
        sp_ = self.sp
        for k in range(2):
            c0, kp, kt, _, sized = affine_table(lambda _lane, p, t, k=k: self._emit(k, p, t),
                                                sp_.table, 1, past, token, sp_.max_past,
                                                self.tops)
            self.seqs.append(sized)
            self.tables.append((c0, kp, kt))

    def launches(self, k: int, past: int) -> list[_Launch]:
        """Arena k's launches of a step at `past` (grids sized for its `grid_tops`)."""
        return self.seqs[k][grid_bucket(self.tops, past)]

    def _repoint(self, seq: list[_Launch], arenas: Sequence[torch.Tensor]) -> list[_Launch]:
        """`seq` (launched over `arenas`) with this one's arenas in their place: every
        arena operand is a view of a whole arena (offsets are in the table)."""
        mine = {a.data_ptr(): b for a, b in zip(arenas, self.arenas, strict=True)}
        out = []
        for ln in seq:
            ptrs = []
            for t in ln.ptrs:
                b = mine.get(t.data_ptr())
                if b is not None:
                    if t.numel() * t.element_size() != b.numel():
                        raise _NoGraph("an arena operand that is not the whole arena")
                    t = b.view(t.dtype)
                ptrs.append(t)
            out.append(_Launch(ln.kernel, ln.grid, tuple(ptrs), ln.ints, ln.consts, ln.op))
        return out

    def _emit(self, k: int, past: int, token: int) -> list[_Launch]:
        sp_ = self.sp
        dims, _, offs = sp_.layout(past)
        pd, _, po = sp_.layout(past - 1)
        seq = sp_.emit(self.arenas[k], dims, offs, _PrevArena(self.arenas[1 - k], pd, po),
                       past, token, None)
        fixed = {a.data_ptr() for a in self.arenas} | sp_.weight_ptrs()
        if any(t.data_ptr() not in fixed for ln in seq for t in ln.ptrs):
            # a pointer that may change from step to step cannot be replayed
            raise _NoGraph("a launch reads memory outside the arenas and weights")
        return seq

    def step(self, past: int, prev: Sequence[torch.Tensor | None], token: int,
             speculate: bool = False) -> sp.StepOutputs:
        """The decode step at `past` reading `prev` and `token`: the one queued by the last
        call's speculation when it was this step (same position, the previous outputs
        unchanged, the device's token equal to `token`), else replayed now; then, with
        `speculate`, the step after it queued too (`speculate`)."""
        out = None
        guess, self._spec = self._spec, None
        if guess is not None:
            if guess.holds(past, prev, token):
                self.spec_hits += 1
                out = guess.out
            else:  # as if never queued: this step is run into the arena the guess wrote
                self.spec_misses += 1
                self.parity = guess.k
        if out is None:
            out = self._replay(past, prev, token)
        if speculate:
            self._spec = self.speculate(out, past)
        return out

    def _replay(self, past: int, prev: Sequence[torch.Tensor | None], token: int
                ) -> sp.StepOutputs:
        sp_ = self.sp
        if past > sp_.max_past:
            raise _NoGraph("position past the RoPE table")
        k = self.parity
        other = self.arenas[1 - k]
        pd, _, po = sp_.frozen_layout(past - 1)
        if self._rstream is not None and not (isinstance(prev, sp.StepOutputs)
                                              and prev.arena.data_ptr() == other.data_ptr()
                                              and not prev.replaced):
            # staged into the arena whose roots the side stream may still be reading
            torch.cuda.current_stream(sp_.device).wait_stream(self._rstream)
        self._after_copies(1 - k)  # staging may write where those copies read
        stage_prev(sp_, prev, other, pd, po)
        c0, kp, kt = self.tables[k]
        if self.copied is not None:
            self.copied.synchronize()  # the pinned rows of the last step were read
        self.host.numpy()[:] = c0 + kp * past + kt * token
        self.args.copy_(self.host, non_blocking=True)
        self.copied = torch.cuda.Event()
        self.copied.record()
        b = grid_bucket(self.tops, past)
        g = self.graphs.get((k, b))
        self._after_roots(k)
        if g is None:
            sp_.launch(self.seqs[k][b], self.args)  # compiles every kernel; then capture
            g = torch.cuda.CUDAGraph()
            # thread_local: the recorder's worker may touch CUDA (event waits, copies) while
            # this thread captures; only this thread's calls belong to the capture
            with torch.cuda.graph(g, capture_error_mode="thread_local"):
                sp_.launch(self.seqs[k][b], self.args)
            self.graphs[k, b] = g
        else:
            g.replay()
        return self._outputs(k, past)

    def _outputs(self, k: int, past: int) -> sp.StepOutputs:
        """Arena k's outputs of the step at `past`, just queued; the parity moves on."""
        sp_ = self.sp
        self.parity = 1 - k
        dims, nbytes, offs = sp_.frozen_layout(past)
        alias = np.full(sp_.tail, -1, dtype=np.int64)
        out = sp.StepOutputs(sp_.plan, self.arenas[k], offs, nbytes, dims, alias)
        if self.roots_error is None:
            out.roots_graph = lambda wait=True, compact=False: self.roots(k, past, wait,
                                                                          compact)
            if ROOTS_BESIDE and self.arenas[k].device.type == "cuda":
                if self._rstream is None:
                    self._rstream = torch.cuda.Stream(sp_.device)
                self._wrote[k] = torch.cuda.current_stream(sp_.device).record_event()
                out.roots_stream = self._rstream
            else:  # these roots on the current stream, even where an earlier step's were not
                self._wrote[k] = None
        return out

    def speculate(self, out: sp.StepOutputs, past: int) -> _Guess | None:
        """Queue the step after `out` (at `past`) with the device's greedy token of `out`'s
        logits, and the copies the host's tail of `out` reads (its logits, `host_copies`)
        before it (beside it with FUSED_SPECULATE), so that tail waits for this step only.
        None where the next step has no captured graph yet (its first replay captures it)
        or passes the RoPE table."""
        sp_, li, p1 = self.sp, self.sp.logits_op, past + 1
        if li is None or p1 > sp_.max_past:
            return None
        k1 = self.parity
        g = self.graphs.get((k1, grid_bucket(self.tops, p1)))
        if g is None:
            return None
        logits = out[li]
        k = 1 - k1  # `out`'s arena
        if self._logits_host[k] is None or self._logits_host[k].shape != logits.shape:
            self._logits_host[k] = torch.empty(logits.shape, dtype=logits.dtype,
                                               pin_memory=True)
            self._token_host[k] = torch.empty(1, dtype=torch.int64, pin_memory=True)
        lh, th = self._logits_host[k], self._token_host[k]
        if sp_.fused_speculate:
            ready = self._speculate_fused(logits, k, k1, p1, lh, th)
        else:
            ready = self._speculate_torch(logits, k1, p1, lh, th)
        out.host_copies[li] = (lh, ready, None)  # the tail copies it (one job)
        self._after_roots(k1)
        g.replay()
        return _Guess(p1, out, k1, self._outputs(k1, p1), th, ready)

    def _speculate_torch(self, logits: torch.Tensor, k1: int, p1: int, lh: torch.Tensor,
                         th: torch.Tensor) -> torch.cuda.Event:
        """The guess of `logits`, the host's copies of it and them, and the table of the step
        at p1 (arena k1's), as torch launches and a pinned copy on the executor's stream;
        returns the copies' end."""
        from node.ree.fastsample import argmax_token

        tok = argmax_token(logits)
        lh.copy_(logits, non_blocking=True)
        th.copy_(tok, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        c0, kp, kt = self.tables[k1]
        if self._spec_copied is not None:
            self._spec_copied.synchronize()  # the pinned rows of the last guess were read
        self._spec_host.numpy()[:] = c0 + kp * p1
        self.args.copy_(self._spec_host, non_blocking=True)
        self._spec_copied = torch.cuda.Event()
        self._spec_copied.record()
        kt_d = self._kt[k1]
        if kt_d is None:
            kt_d = self._kt[k1] = torch.from_numpy(kt).to(self.sp.device)
        self.args.add_(kt_d * tok)  # the table's token term, from the device's token
        return ready

    def _speculate_fused(self, logits: torch.Tensor, k: int, k1: int, p1: int,
                         lh: torch.Tensor, th: torch.Tensor) -> torch.cuda.Event:
        """FUSED_SPECULATE: the guess of `logits` (arena k's) and the table of the step at
        p1 (arena k1's) queued on the executor's stream, the host's copies of both on a
        side stream; returns the copies' end (what the host's tail waits for)."""
        nt = self._next[k1]
        if nt is None:
            nt = self._next[k1] = NextTable(*(torch.from_numpy(t).to(self.sp.device)
                                              for t in self.tables[k1]))
        tok = nt.queue(logits, p1, self.args)  # read by the copies below until `ready`
        guessed = torch.cuda.Event()
        guessed.record()
        if self._cstream is None:
            self._cstream = torch.cuda.Stream(self.sp.device)
        cs = self._cstream
        cs.wait_event(guessed)
        with torch.cuda.stream(cs):
            lh.copy_(logits, non_blocking=True)
            th.copy_(tok, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(cs)
        self._copied_out[k] = ready  # arena k and its guess are not written before this
        return ready

    def _after_roots(self, k: int) -> None:
        """ROOTS_BESIDE: order the graph about to write arena k after the trace roots queued
        for its last step, which read that arena; the other arena's roots (the step before,
        queued or not yet) run beside it (`_replay` waits for them too where it stages
        outputs from elsewhere into their arena). By the arena, not by the call: a step
        queued ahead (`speculate`) is queued before the roots of the step it follows. The
        same for the host's copies of arena k's logits and guess (FUSED_SPECULATE)."""
        self._after_copies(k)
        ev, self._read[k] = self._read[k], None
        if ev is not None:
            torch.cuda.current_stream(self.sp.device).wait_event(ev)

    def _after_copies(self, k: int) -> None:
        """Order what is queued next on the executor's stream after the side stream's copies
        out of arena k (FUSED_SPECULATE), which the next write of that arena must follow."""
        ev, self._copied_out[k] = self._copied_out[k], None
        if ev is not None:
            torch.cuda.current_stream(self.sp.device).wait_event(ev)

    def lane_step(self, past: int, prev: Sequence[torch.Tensor | None], token: int,
                  start: torch.cuda.Event) -> sp.StepOutputs:
        """`step` on this lane's own stream, after the work queued before `start` on the
        caller's stream (its reads of this lane's arenas and roots: the step overwrites
        those of two steps ago); readers of the outputs wait for it (`StepOutputs.ready`)."""
        if self.stream is None:
            self.stream = torch.cuda.Stream(self.sp.device)
        s = self.stream
        with torch.cuda.stream(s):
            s.wait_event(start)
            out = self.step(past, prev, token)
            done = torch.cuda.Event()
            done.record(s)
        out.ready = lambda: torch.cuda.current_stream().wait_event(done)
        graph = getattr(out, "roots_graph", None)
        if graph is not None:
            def roots(wait: bool = True, compact: bool = False) -> torch.Tensor | None:
                with torch.cuda.stream(s):
                    r = graph(wait, compact)
                if wait:
                    torch.cuda.current_stream().wait_stream(s)
                return r
            out.roots_graph = roots
        return out

    def roots(self, k: int, past: int, wait: bool = True, compact: bool = False
              ) -> torch.Tensor | None:
        """The C4 roots ([tail, 32] uint8, on the device; `compact`: only the compact
        trace's, `_RootsGraphs`) of arena k's outputs at `past`, by a graph replay queued
        now (the recorder calls this right after the step, before the next step's replay)
        on the current stream, or with ROOTS_BESIDE on the side stream `roots_stream`
        (`wait`: the current stream waits for them; else the caller reads them on that
        stream); None where the roots cannot be a graph (the recorder then launches the same
        kernels for the step: keccak.device_roots)."""
        r = self._roots.get(compact)
        if r is None and self.roots_error is None:
            try:
                like = self._like._roots.get(compact) if self._like is not None else None
                r = self._roots[compact] = _RootsGraphs(self, like, compact)
            except _NoGraph as e:
                self.roots_error = str(e)
        if r is None:
            return None
        # the side stream only for a step whose write it can wait for: a plan made while
        # ROOTS_BESIDE was on keeps its stream after the switch goes off (the GPU tests
        # switch it per test on one executor)
        s = self._rstream if self._wrote[k] is not None else None
        if s is None:
            return r.run(k, past)
        with torch.cuda.stream(s):
            s.wait_event(self._wrote[k])  # after the graph that wrote the arena
            out = r.run(k, past)
            self._read[k] = s.record_event()
        if wait:
            torch.cuda.current_stream(self.sp.device).wait_stream(s)
        return out


def in_place(sp_: CudaStepPlan, prev: Sequence[torch.Tensor | None], other: torch.Tensor,
             po: np.ndarray) -> bool:
    """Every back-referenced output is already the other arena's own view at its offset
    (a batch lane's last step): a view made by `StepOutputs` from the layout at
    past − 1, so its shape is that layout's too."""
    base = other.data_ptr()
    refs = sp_.back_refs
    if not refs or len(prev) <= refs[-1]:
        return False
    if isinstance(prev, sp.StepOutputs) and prev.plan is sp_.plan:
        # the lane's own last step, read from its layout without making a view
        return (prev.arena.data_ptr() == base and not prev.replaced.intersection(refs)
                and bool(np.array_equal(prev.offs[refs], po[refs])))
    for i in refs:
        t = prev[i]
        if t is None or t.data_ptr() != base + int(po[i]) or not t.is_contiguous():
            return False
    return True


def stage_prev(sp_: CudaStepPlan,
               prev: Sequence[torch.Tensor | None] | Mapping[int, torch.Tensor],
               other: torch.Tensor, pd: np.ndarray, po: np.ndarray,
               copies: list[Staged] | None = None) -> None:
    """The previous step's back-referenced outputs (the KV caches) into the other arena
    where the graph reads them: when `prev` is that arena's own last step, only the outputs
    replaced since then.

    With `copies`, the copies (`Staged`) are appended there for the caller to run with
    `run_copies` (a stack stages every lane's, ~60 a lane, in one go); without, they run
    now. Why: a stack's first step after job-by-job prefills staged 32 × 60 caches with a
    `copy_` each, ~1,900 launches from the host."""
    pairs: list[Staged] = [] if copies is None else copies
    if isinstance(prev, sp.StepOutputs) and prev.arena.data_ptr() == other.data_ptr():
        _stage_pairs(sp_, {i: prev[i] for i in prev.replaced}, other, pd, po, pairs)
    else:
        _stage_pairs(sp_, prev, other, pd, po, pairs)
    if copies is None:
        run_copies(pairs)


# a staged copy: (destination arena, byte offset in it, contiguous source of 32-bit elements)
Staged = tuple[torch.Tensor, int, torch.Tensor]


def run_copies(pairs: Sequence[Staged], span: tuple[int, int] | None = None) -> None:
    """`stage_prev`'s copies: on a GPU one launch for all (node/ree/stage_copies_cuda.py,
    from a table of addresses: no tensor made per copy), else one multi-tensor copy
    (`_foreach_copy_`); byte copies, so the bits are the sources'. `span`: the device byte
    range holding every destination (default: the destinations' own).

    A source inside that range is cloned first, so every source is read before any
    destination is written. Why: in a stack, a job whose previous outputs lie in the other
    arena of a lane that another job now takes reads its caches from where that job's are
    being staged; one multi-tensor launch copies its pairs in no set order, and gave other
    bits than the CPU's on the H100 (test_cuda_batch_lanes_equal_cpu_jobs
    [stack-fused-2-lanes-a-linear], a step with six such sources)."""
    if not pairs:
        return
    dst = np.fromiter((a.data_ptr() + o for a, o, _ in pairs), dtype=np.int64,
                      count=len(pairs))
    nbytes = np.fromiter((t.nbytes for _, _, t in pairs), dtype=np.int64, count=len(pairs))
    lo, hi = span if span is not None else (int(dst.min()), int((dst + nbytes).max()))
    srcs = [t.clone() if lo <= t.data_ptr() < hi else t for _, _, t in pairs]
    dev = pairs[0][0].device
    if dev.type == "cuda" and not interpreting():
        from node.ree.stage_copies_cuda import copy_words

        copy_words(dst, np.fromiter((t.data_ptr() for t in srcs), dtype=np.int64,
                                    count=len(srcs)), nbytes // 4, dev)
        return
    torch._foreach_copy_([a[o:o + t.nbytes].view(t.dtype) for a, o, t in pairs],
                         [t.reshape(-1) for t in srcs])


def _stage_pairs(sp_: CudaStepPlan,
                 prev: Sequence[torch.Tensor | None] | Mapping[int, torch.Tensor],
                 other: torch.Tensor, pd: np.ndarray, po: np.ndarray,
                 pairs: list[Staged]) -> None:
    """`stage_prev`'s copies: of every back-referenced output of `prev`, or of the outputs
    a Mapping names (those replaced since `other`'s own last step)."""
    if not isinstance(prev, Mapping) and prev is not None and in_place(sp_, prev, other, po):
        return
    base = other.data_ptr()
    for i, shape, o in _stage_spec(sp_, pd, po):
        if isinstance(prev, Mapping) and i not in prev:
            continue  # not replaced since the arena's own last step
        t = prev[i] if prev is not None else None
        if t is None:
            raise _NoGraph("a step without the previous step's outputs")
        if t.shape != shape:
            raise _NoGraph("previous outputs not shaped as a decode step's")
        if not t.is_contiguous():
            t = t.contiguous()
        elif t.data_ptr() == base + o:
            continue  # already there: a batch lane's views of its own last step
        if t.element_size() != 4:
            raise _NoGraph("a staged cache of other than 32-bit elements")
        pairs.append((other, o, t))


def _stage_spec(sp_: CudaStepPlan, pd: np.ndarray, po: np.ndarray
                ) -> list[tuple[int, torch.Size, int]]:
    """(output, its shape, its byte offset) of every back-referenced output in the layout
    (pd, po), kept for the plan's frozen layouts (keyed by the arrays' identity, which
    `frozen_layout` keeps while it holds them). Why: read element by element from NumPy
    they took ~4 of the ~20 ms of Python that collected 32 prefilled jobs' 1,920 caches
    on a 2-core EPYC (scripts/bench_stage_copies.py: 19.5 → 15.4 ms)."""
    key = (id(pd), id(po))
    cache = sp_._stage_specs
    got = cache.get(key)
    if got is None or got[0] is not pd or got[1] is not po:
        spec = [(i, torch.Size(int(d) for d in pd[i, 1:1 + int(pd[i, 0])]), int(po[i]))
                for i in sp_.back_refs]
        got = (pd, po, spec)
        if len(cache) >= 16:
            cache.pop(next(iter(cache)))
        cache[key] = got
    return got[2]
