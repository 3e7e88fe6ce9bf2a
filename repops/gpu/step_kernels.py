"""Triton kernels of the CUDA step plan (node/ree/step_plan_cuda.py): one launch per plan
record, reading and writing the step's arena in place (docs/trace-layout.md §L5).

Why separate kernels from the `repops.gpu` ops: those allocate their outputs and take whole
tensors, so the op-by-op executor paid an allocation, views and ~50 µs of Python per trace
op. Here every operand is a base pointer (the step's arena, a weight, the previous step's
arena) plus an element offset, and one record (a whole linear's segments, a whole FOLD tree)
is one launch.

Every integer that changes from step to step (offsets, dims, strides, the position) is read
from the launch's row of an int64 table (`ARGS + ROW·ARGW`), not passed as an argument: the
host fills the table for a step with one copy, so a CUDA graph captured once replays every
decode step (a graph bakes in kernel arguments, not memory). Grids are sized for the largest
step; programs past a step's live elements do nothing.

The arithmetic is the RepOps device functions' (`canon_nan`, `binary_f`, `rope_pair`, …): the
same §L5 element definitions the C plan (repops/cpu/csrc/repops_step_plan.c) computes.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from repops.gpu.elementwise import binary_f, max2_f, unary_f
from repops.gpu.launch import interpreting
from repops.gpu.primitives import canon_nan
from repops.gpu.rope import rope_rows

ARGW = 32  # int64 words per launch row
# [32] register slots a lane of softmax_kernel's WARP body holds: rows up to 512 columns
WARP_SLOTS = tl.constexpr(16)

# Whether kernels carry the GPU-only `_prefetch_l1` (inline asm); the interpreter has none.
ON_GPU = tl.constexpr(not interpreting())


@triton.jit
def _row(ARGS, ROW, LANES: tl.constexpr, LR: tl.constexpr = 1):
    """The launch's row of the table. LANES > 1 (a stack of batch lanes, one launch for all:
    node/ree/step_lanes_cuda.py): the grid's axis 2 is LANES times the launch's own, the
    table is [launches, LANES, ARGW], and lane l = program_id(2) // (its own axis-2 size)
    reads row ROW·LANES + l: its offsets, position and token, the same kernel code.
    LR > 1 (a kernel that runs LR lanes a program, `qchain_v8_kernel`): the axis is LANES/LR
    times the launch's own, and the row returned is the first of the program's LR lanes,
    the others following it (ARGW words apart)."""
    if LANES > 1:
        lane = tl.program_id(2) // (tl.num_programs(2) // (LANES // LR)) * LR
        return ARGS + (ROW * LANES + lane) * 32
    else:
        return ARGS + ROW * 32


@triton.jit
def _batch(LANES: tl.constexpr):
    """The program's batch index on axis 2 (a head, for attention): in a stack of LANES lanes
    the axis is LANES times the launch's own (`_row`), so the lane is taken off."""
    bat = tl.program_id(2).to(tl.int64)
    if LANES > 1:
        bat = bat % (tl.num_programs(2) // LANES)
    return bat


@triton.jit
def _start(PDL: tl.constexpr):
    """Wait for the launch before this one to finish (its writes visible), then let the next
    launch start. Every step kernel calls this before it reads or writes the arena: launched
    with programmatic dependent launch (step_plan_cuda.PDL), a kernel may begin while the
    one before it still runs, and only this wait orders them; since each waits for the one
    before, a kernel also comes after every earlier one.

    Why: a b=1 decode step is ~450 small launches whose work is a few µs each; with PDL the
    next launch's programs are placed on the SMs while this one runs, instead of after it
    (and a linear prefetches its weights, which no launch writes, before the wait).
    PDL (a constexpr the launcher passes, step_plan_cuda.CudaStepPlan.launch): the
    instructions exist from sm_90 (Hopper) on; without it the kernel has neither."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()


@triton.jit
def _index6(e, P):
    """Row-major index of flat element e over the dims (·, d1 … d5) at P (int32: a step's
    tensors are far below 2^31 elements, and int64 division cost ~3 µs a launch)."""
    d5 = tl.load(P + 4).to(tl.int32)
    d4 = tl.load(P + 3).to(tl.int32)
    d3 = tl.load(P + 2).to(tl.int32)
    d2 = tl.load(P + 1).to(tl.int32)
    d1 = tl.load(P).to(tl.int32)
    i5 = e % d5
    t = e // d5
    i4 = t % d4
    t = t // d4
    i3 = t % d3
    t = t // d3
    i2 = t % d2
    t = t // d2
    i1 = t % d1
    i0 = t // d1
    return i0, i1, i2, i3, i4, i5


@triton.jit
def _dot6(i0, i1, i2, i3, i4, i5, S):
    """Σ i_k · S[k] for six strides at S."""
    return (i0 * tl.load(S).to(tl.int32) + i1 * tl.load(S + 1).to(tl.int32)
            + i2 * tl.load(S + 2).to(tl.int32) + i3 * tl.load(S + 3).to(tl.int32)
            + i4 * tl.load(S + 4).to(tl.int32) + i5 * tl.load(S + 5).to(tl.int32))


# how an operand's element is found (constexpr, fixed per record: a graph's launches keep it)
GENERAL = tl.constexpr(0)  # strides over the output's dims (broadcasting, transposes)
CONTIG = tl.constexpr(1)  # the output's own element e
FIRST = tl.constexpr(2)  # element 0, broadcast to every output element


@triton.jit
def _at_index(AT: tl.constexpr, e, idx, S):
    """An operand's element for output element e (GENERAL: strides at S over `idx`)."""
    if AT == CONTIG:
        r = e
    elif AT == FIRST:
        r = e * 0
    else:
        r = _dot6(idx[0], idx[1], idx[2], idx[3], idx[4], idx[5], S)
    return r


@triton.jit
def _ew_fn(a, b, FN: tl.constexpr):
    """§L5.6 fn of an EW op (b: the second operand or the scalar; unread by unary fns),
    canonical: fn 1-6 are add … min, 16-21 neg … SiLU, 22 copy."""
    if FN < 16:
        y = binary_f(a, b, FN - 1)
    elif FN < 22:
        y = unary_f(a, FN - 16)
    else:
        y = a
    return canon_nan(y)


@triton.jit
def _scalar_f(W, BLOCK: tl.constexpr):
    """The f32 whose bits are the table word at W, as a [BLOCK] tensor."""
    bits = tl.zeros([BLOCK], dtype=tl.int32) + tl.load(W).to(tl.int32)
    return bits.to(tl.float32, bitcast=True)


@triton.jit(do_not_specialize=["ROW"])
def ew_kernel(A, B, OUT, ARGS, ROW, FN: tl.constexpr, HAS_B: tl.constexpr,
              MASK: tl.constexpr, A_AT: tl.constexpr, B_AT: tl.constexpr,
              BLOCK: tl.constexpr,
              LANES: tl.constexpr = 1, THEN: tl.constexpr = -1, PDL: tl.constexpr = False):
    """§L5.6 EW: out[e] = fn(a[·], b[·]) with NumPy broadcasting given as element strides
    (0 on a broadcast dim), or, by A_AT/B_AT, the element e itself or element 0; a binary fn
    without b uses the scalar (f32 bits). MASK: column c > past + r of row r ([..., R, C]) is
    `fill`. THEN ≥ 0: a second EW fused in (step_plan_cuda.fuse_ew), out2[e] = THEN(out[e],
    b2[e]), from the registers just stored (a SwiGLU's SiLU then its product with up).
    Row: a_off, b_off, out_off, n, d1…d5, sa0…sa5, sb0…sb5, scalar, fill, past, R, C
    [, b2_off, out2_off]."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    n = tl.load(P + 3)
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = e < n
    if A_AT == GENERAL or (HAS_B and B_AT == GENERAL):
        idx = _index6(e, P + 4)
    else:
        idx = (e, e, e, e, e, e)  # unread
    a = tl.load(A + tl.load(P) + _at_index(A_AT, e, idx, P + 9), mask=m, other=1.0)
    if FN < 16 and HAS_B:
        b = tl.load(B + tl.load(P + 1) + _at_index(B_AT, e, idx, P + 15), mask=m, other=1.0)
    else:
        b = _scalar_f(P + 21, BLOCK)
    y = _ew_fn(a, b, FN)
    if MASK:
        c = tl.load(P + 26).to(tl.int32)
        y = _masked(y, e % c, (e // c) % tl.load(P + 25).to(tl.int32), tl.load(P + 24), P + 22,
                    MASK)
    tl.store(OUT + tl.load(P + 2) + e, y, mask=m)
    if THEN >= 0:
        b2 = tl.load(OUT + tl.load(P + 27) + e, mask=m, other=1.0)
        tl.store(OUT + tl.load(P + 28) + e, _ew_fn(y, b2, THEN), mask=m)


@triton.jit(do_not_specialize=["ROW"])
def fold_tree_kernel(X, OUT, ARGS, ROW, NEG0, CAP0: tl.constexpr, NLEV: tl.constexpr,
                     COMBINE: tl.constexpr,
                     LANES: tl.constexpr = 1, PDL: tl.constexpr = False,
                     REG: tl.constexpr = False, CARRY: tl.constexpr = False):
    """§L5.4 FOLD levels cap = CAP0, CAP0/2, … (NLEV of them), all in one program per row:
    level l keeps i < m = max(n − cap, 0) as combine(x[i], x[i + cap]), copies the rest of
    its input up to cap, pads −0.0; n = min(nlive, the level's input width). Levels lie back
    to back ([rows, cap] each); a barrier orders a level's stores before the next reads.
    Row: x_off, out_off, rows, w, nlive."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    _fold_levels(X + tl.load(P), OUT, tl.load(P + 1), tl.program_id(0).to(tl.int64),
                 tl.load(P + 2), tl.load(P + 3), tl.load(P + 4), NEG0, CAP0, NLEV, COMBINE,
                 REG, CARRY)


@triton.jit
def _fold_levels(X, OUT, base, r, rows, w, nlive, NEG0, CAP0: tl.constexpr,
                 NLEV: tl.constexpr, COMBINE: tl.constexpr, REG: tl.constexpr = False,
                 CARRY: tl.constexpr = False, MINW: tl.constexpr = 0):
    """fold_tree_kernel's levels for row r of X (rows of w), the first level at OUT + base.
    REG: levels after the first from the level before's registers (`_fold_reg`).
    CARRY (step_plan_cuda.FOLD_CARRY): a level's own elements (x[i], i < its input width)
    taken from the registers of the level before, which computed them in the same thread
    (every level spreads i = 0 … CAP0 − 1 alike), and only the pairs x[i + cap] loaded
    back. Why: a level whose cap is at least its live width (mm = 0: the first five of a
    softmax's eleven at ~60 keys) is a copy, and then loads nothing: no trip through L2,
    and no barrier before it (a level's stores need one only where the next level loads
    them; the last level's always has one, for the caller's reads).
    MINW (0 < MINW < CAP0; not with CARRY): each level after the first as a tensor of
    max(cap, MINW) elements instead of CAP0 (`_fold_from`)."""
    if REG:
        _fold_reg(X, OUT, base, r, rows, w, nlive, NEG0, CAP0, NLEV, COMBINE)
    else:
        i = tl.arange(0, CAP0)
        y = tl.load(X + r * w + i, mask=i < tl.minimum(w, CAP0), other=0.0)
        _fold_from(y, X + r * w, OUT, base, r, rows, w, nlive, NEG0, CAP0, NLEV, COMBINE,
                   CARRY, MINW)


@triton.jit
def _fold_from(y, src, OUT, base, r, rows, win, nlive, NEG0, CAP0: tl.constexpr,
               NLEV: tl.constexpr, COMBINE: tl.constexpr, CARRY: tl.constexpr,
               MINW: tl.constexpr = 0):
    """`_fold_levels`' memory body given the first level's own elements y (x[i] for
    i < min(win, CAP0), in the layout of tl.arange(0, CAP0); src the row x, win its width):
    a caller that has just computed x in that layout (`_softmax_rows` with CARRY) passes it
    from its registers.
    MINW (step_plan_cuda.NARROW_SOFTMAX, NARROW_NORMS): a level after the first read as a
    tensor of max(cap, MINW) elements. Why: every level was CAP0 wide (a softmax's 1,024:
    eight elements a thread in each of its eleven levels, masked past cap), so its
    instructions, not its values, grew with the longest context; each element i < cap is
    the same combine of the same x[i] and x[i + cap] in either layout."""
    i = tl.arange(0, CAP0)
    for lev in tl.static_range(NLEV):
        cap = CAP0 >> lev
        if MINW > 0 and MINW < CAP0 and not CARRY and lev > 0:
            if (CAP0 >> lev) > MINW:  # `cap` spelled out: tl.arange needs a constexpr
                i = tl.arange(0, CAP0 >> lev)
            else:
                i = tl.arange(0, MINW)
        if CARRY or lev == 0:
            y = _fold_pairs(y, src, i, win, nlive, cap, NEG0, COMBINE)
        else:
            y = _fold_level(src, i, win, nlive, cap, NEG0, COMBINE)
        dst = OUT + base + r * cap
        tl.store(dst + i, y, mask=i < cap)
        if CARRY and lev + 1 < NLEV:
            if tl.minimum(nlive, cap) > cap // 2:  # the next level loads pairs
                tl.debug_barrier()
        else:
            tl.debug_barrier()
        src = dst
        win = cap
        base += rows * cap


@triton.jit
def _fold_level(src, i, win, nlive, cap, NEG0, COMBINE: tl.constexpr):
    """One level read from memory (§L5.4): i < m = max(n − cap, 0) is combine(x[i],
    x[i + cap]), the rest of the input up to cap is copied, −0.0 past it; n = min(nlive,
    win)."""
    a = tl.load(src + i, mask=i < tl.minimum(win, cap), other=0.0)
    return _fold_pairs(a, src, i, win, nlive, cap, NEG0, COMBINE)


@triton.jit
def _fold_pairs(a, src, i, win, nlive, cap, NEG0, COMBINE: tl.constexpr):
    """`_fold_level` given its input's own elements a (x[i], read for i < hi only): the
    pairs x[i + cap], i < m, read from src."""
    mm = tl.maximum(tl.minimum(nlive, win) - cap, 0)
    hi = tl.minimum(win, cap)
    b = tl.load(src + i + cap, mask=i < mm, other=0.0)
    y = tl.where(i < mm, _combine(a, b, COMBINE), a)
    return tl.where(i < hi, canon_nan(y), NEG0)


@triton.jit
def _combine(a, b, COMBINE: tl.constexpr):
    """A FOLD's combine: 0 add, else max (§L5.4)."""
    if COMBINE == 0:
        c = a + b
    else:
        c = max2_f(a, b)
    return c


@triton.jit
def _fold_reg(X, OUT, base, r, rows, w, nlive, NEG0, CAP0: tl.constexpr, NLEV: tl.constexpr,
              COMBINE: tl.constexpr):
    """`_fold_levels` with each level after the first taken from the level before's values
    in registers: a level of cap values is the one before, [2·cap], split in halves
    (y[i], y[i + cap]), the same pairs combined in the same order, each level still stored
    where its leaf lies. Level 0 (from x, of any width w) is as in `_fold_levels`.

    Why: each level was a store, a barrier and a load of what other threads stored, ~10
    round trips through L2 for a 576-wide RMSNorm (~5 µs a norm_kernel on the H100, a
    launch floor of ~1.5; profile-cuda-step.md)."""
    i = tl.arange(0, CAP0)
    y = _fold_level(X + r * w, i, w, nlive, CAP0, NEG0, COMBINE)
    tl.store(OUT + base + r * CAP0 + i, y)
    base += rows * CAP0
    for _ in tl.static_range(1, NLEV):
        y = _fold_half(y, OUT + base, r, nlive, COMBINE)
        base += rows * y.shape[0]


@triton.jit
def _fold_half(y, dst, r, nlive, COMBINE: tl.constexpr):
    """`_fold_reg`'s level after y (the level before, 2·cap wide, all of it live): its
    halves combined where live, stored at row r of dst, returned."""
    cap: tl.constexpr = y.shape[0] // 2
    j = tl.arange(0, cap)
    a, b = tl.split(tl.permute(tl.reshape(y, [2, cap]), [1, 0]))
    mm = tl.maximum(tl.minimum(nlive, 2 * cap) - cap, 0)
    out = canon_nan(tl.where(j < mm, _combine(a, b, COMBINE), a))
    tl.store(dst + r * cap + j, out)
    return out


@triton.jit
def _lane_take(v, src):
    """Lane src[t]'s value of v for each lane t of a one-warp [32] fp32 tensor: a warp
    shuffle (`_shfl`) on the GPU, a gather under the interpreter (which runs no asm)."""
    if ON_GPU:
        r = _shfl(v, src)
    else:
        r = tl.gather(v, src, 0)
    return r


@triton.jit
def _fold_warp(ys, OUT, base, r, rows, w, nlive, NEG0, CAP0: tl.constexpr,
               NLEV: tl.constexpr, COMBINE: tl.constexpr, JL: tl.constexpr):
    """`_fold_levels` of one row held by one warp: ys is a tuple of JL [32] slots, the row's
    element t + 32·j in lane t of slot j (width w ≤ 32·JL, which the caller ensures; lanes
    past w are not read). Each level is the same `_fold_level` rule on the same pairs,
    stored where its leaf lies; a level of cap ≥ 32 pairs slot j with slot j + cap/32 (the
    same lane: a register add), a narrower one pairs lane t with lane t + cap (a shuffle).
    Slots past JL hold no live value at any level (element i ≥ 32·JL ≥ w is padding, and
    its pair i − cap ≥ mm is copied, not combined), so they are stored as −0.0 and none is
    kept; a level's tuple is its first min(cap/32, JL) slots. Returns the last level's
    slot, whose lane 0 is the tree's value.

    Why: through memory each level was a store, a barrier and a load of what other threads
    stored, ~10 round trips through L1/L2 for a 576-wide RMSNorm (~5 µs a norm_kernel on
    the H100 against a ~2 µs launch floor); REG_FOLDS's halves went through shared memory
    with a barrier a level and were slower still (ADR 0018). One warp needs neither."""
    win = w
    for lev in tl.static_range(NLEV):
        cap = CAP0 >> lev
        mm = tl.maximum(tl.minimum(nlive, win) - cap, 0)
        hi = tl.minimum(win, cap)
        # CAP0 >> lev as an argument: a constexpr there (assigned here it would be a tensor)
        ys = _fold_warp_level(ys, OUT + base + r * cap, mm, hi, NEG0, CAP0 >> lev, COMBINE, JL)
        win = cap
        base += rows * cap
    return ys[0]


@triton.jit
def _fold_warp_level(ys, dst, mm, hi, NEG0, CAP: tl.constexpr, COMBINE: tl.constexpr,
                     JL: tl.constexpr):
    """One level of `_fold_warp` (cap CAP, live pairs i < mm, input up to hi), stored at
    dst; returns its first min(CAP/32, JL) slots (one, for CAP < 32)."""
    t = tl.arange(0, 32)
    new = ()
    if CAP >= 32:
        for j in tl.static_range(CAP // 32):
            i = t + 32 * j
            if j < JL:
                y = ys[j]
                if j + CAP // 32 < JL:
                    y = tl.where(i < mm, _combine(y, ys[j + CAP // 32], COMBINE), y)
                y = tl.where(i < hi, canon_nan(y), NEG0)
                new = new + (y,)
            else:
                y = tl.where(t < 32, NEG0, 0.0)
            tl.store(dst + i, y)
    else:
        b = _lane_take(ys[0], (t + CAP) % 32)
        y = tl.where(t < mm, _combine(ys[0], b, COMBINE), ys[0])
        y = tl.where(t < hi, canon_nan(y), NEG0)
        tl.store(dst + t, y, mask=t < CAP)
        new = (y,)
    return new


@triton.jit(do_not_specialize=["ROW"])
def norm_kernel(X, WT, OUT, ARGS, ROW, NEG0, F_SQ: tl.constexpr, F_MEAN: tl.constexpr,
                F_EPS: tl.constexpr, F_ROOT: tl.constexpr, F_DIV: tl.constexpr,
                F_W: tl.constexpr, CAP0: tl.constexpr, NLEV: tl.constexpr,
                COMBINE: tl.constexpr, BLOCK: tl.constexpr,
                LANES: tl.constexpr = 1, PRE: tl.constexpr = -1, PDL: tl.constexpr = False,
                REG: tl.constexpr = False, WARP: tl.constexpr = False,
                CARRY: tl.constexpr = False):
    """An RMSNorm's seven records in one program (`step_plan_cuda._norm_launch` matched them):
    sq = f(x, x); its FOLD tree; mean = f(last level, s); eps = f(mean, s); root = f(eps);
    div = f(x, root[0]); out = f(div, wt): each the EW or FOLD definition (§L5.4, §L5.6)
    through the same device functions as ew_kernel and fold_tree_kernel, every output
    stored where its own launch would have, a barrier between steps.

    Why: an RMSNorm is 7 launches of ~1.5-2 µs over 576 values (four of them of one value);
    60 of them a step were ~360 of the step graph's 1,301 launches.
    PRE ≥ 0: the EW that makes x fused in first (step_plan_cuda.fuse_ew: the residual add
    before each RMSNorm), x = PRE(a, b) over OUT's words 14 and 15, stored, then a barrier.
    Row: x_off, sq_off, n, fold_base, nlive, last_off, mean_off, s_mean, eps_off, s_eps,
    root_off, div_off, out_off, wt_off[, a_off, b_off].
    WARP (launched with one warp, step_plan_cuda.WARP_FOLDS): `_norm_warp`, the row in
    registers and no barrier. BLOCK: the EW passes' width and the least width of a FOLD
    level's tensors (`_fold_from`'s MINW; below CAP0 only with step_plan_cuda.NARROW_NORMS)."""
    P = _row(ARGS, ROW, LANES)
    if WARP:
        _norm_warp(X, WT, OUT, P, NEG0, F_SQ, F_MEAN, F_EPS, F_ROOT, F_DIV, F_W, CAP0, NLEV,
                   COMBINE, PRE, PDL)
    else:
        _start(PDL)
        n = tl.load(P + 2)
        x = X + tl.load(P)
        e = tl.arange(0, BLOCK)
        if PRE >= 0:
            for start in range(0, n, BLOCK):
                m = start + e < n
                a = tl.load(OUT + tl.load(P + 14) + start + e, mask=m, other=1.0)
                b = tl.load(OUT + tl.load(P + 15) + start + e, mask=m, other=1.0)
                tl.store(x + start + e, _ew_fn(a, b, PRE), mask=m)
            tl.debug_barrier()
        for start in range(0, n, BLOCK):
            m = start + e < n
            a = tl.load(x + start + e, mask=m, other=1.0)
            tl.store(OUT + tl.load(P + 1) + start + e, _ew_fn(a, a, F_SQ), mask=m)
        tl.debug_barrier()
        _fold_levels(OUT + tl.load(P + 1), OUT, tl.load(P + 3), 0, 1, n, tl.load(P + 4), NEG0,
                     CAP0, NLEV, COMBINE, REG, CARRY, BLOCK)
        tl.debug_barrier()
        one = e < 1
        v = tl.load(OUT + tl.load(P + 5) + e, mask=one, other=1.0)
        v = _ew_fn(v, _scalar_f(P + 7, BLOCK), F_MEAN)
        tl.store(OUT + tl.load(P + 6) + e, v, mask=one)
        v = _ew_fn(v, _scalar_f(P + 9, BLOCK), F_EPS)
        tl.store(OUT + tl.load(P + 8) + e, v, mask=one)
        v = _ew_fn(v, v, F_ROOT)
        tl.store(OUT + tl.load(P + 10) + e, v, mask=one)
        tl.debug_barrier()
        root = tl.load(OUT + tl.load(P + 10) + e * 0)
        wt = WT + tl.load(P + 13)
        for start in range(0, n, BLOCK):
            m = start + e < n
            a = tl.load(x + start + e, mask=m, other=1.0)
            d = _ew_fn(a, root, F_DIV)
            tl.store(OUT + tl.load(P + 11) + start + e, d, mask=m)
            y = _ew_fn(d, tl.load(wt + start + e, mask=m, other=1.0), F_W)
            tl.store(OUT + tl.load(P + 12) + start + e, y, mask=m)


@triton.jit
def _norm_warp(X, WT, OUT, P, NEG0, F_SQ: tl.constexpr, F_MEAN: tl.constexpr,
               F_EPS: tl.constexpr, F_ROOT: tl.constexpr, F_DIV: tl.constexpr,
               F_W: tl.constexpr, CAP0: tl.constexpr, NLEV: tl.constexpr,
               COMBINE: tl.constexpr, PRE: tl.constexpr, PDL: tl.constexpr):
    """norm_kernel's WARP body: the same records in one warp, the row in registers (element
    t + 32·j in lane t of slot j), each step computed from the step before's registers and
    stored where its own launch would have; the FOLD levels by `_fold_warp`, the scalar
    steps in every lane (lane 0 stores them).

    Why: without barriers and reloads an RMSNorm is its loads, its arithmetic and its
    stores. The table's words and the weight row, which no launch writes, are read before
    the wait for the launch before (`_start`), so their latency hides behind it."""
    J: tl.constexpr = (2 * CAP0 + 31) // 32
    t = tl.arange(0, 32)
    n = tl.load(P + 2)
    x = X + tl.load(P)
    sq_at = OUT + tl.load(P + 1)
    fold_base = tl.load(P + 3)
    nlive = tl.load(P + 4)
    s_mean = _scalar_f(P + 7, 32)
    s_eps = _scalar_f(P + 9, 32)
    mean_at = OUT + tl.load(P + 6)
    eps_at = OUT + tl.load(P + 8)
    root_at = OUT + tl.load(P + 10)
    div_at = OUT + tl.load(P + 11)
    out_at = OUT + tl.load(P + 12)
    wt = WT + tl.load(P + 13)
    ws = ()
    for j in tl.static_range(J):
        ws = ws + (tl.load(wt + t + 32 * j, mask=t + 32 * j < n, other=1.0),)
    if PRE >= 0:
        pa = OUT + tl.load(P + 14)
        pb = OUT + tl.load(P + 15)
    _start(PDL)
    xs = ()
    for j in tl.static_range(J):
        i = t + 32 * j
        m = i < n
        if PRE >= 0:
            v = _ew_fn(tl.load(pa + i, mask=m, other=1.0), tl.load(pb + i, mask=m, other=1.0),
                       PRE)
            tl.store(x + i, v, mask=m)
        else:
            v = tl.load(x + i, mask=m, other=1.0)
        xs = xs + (v,)
    sq = ()
    for j in tl.static_range(J):
        v = _ew_fn(xs[j], xs[j], F_SQ)
        tl.store(sq_at + t + 32 * j, v, mask=t + 32 * j < n)
        sq = sq + (v,)
    last = _fold_warp(sq, OUT, fold_base, 0, 1, n, nlive, NEG0, CAP0, NLEV, COMBINE, J)
    one = t < 1
    v = _ew_fn(_lane_take(last, t * 0), s_mean, F_MEAN)
    tl.store(mean_at + t, v, mask=one)
    v = _ew_fn(v, s_eps, F_EPS)
    tl.store(eps_at + t, v, mask=one)
    root = _ew_fn(v, v, F_ROOT)
    tl.store(root_at + t, root, mask=one)
    for j in tl.static_range(J):
        if 32 * j < n:  # a slot with live lanes (the slots are J for the widest row)
            i = t + 32 * j
            m = i < n
            d = _ew_fn(xs[j], root, F_DIV)
            tl.store(div_at + i, d, mask=m)
            tl.store(out_at + i, _ew_fn(d, ws[j], F_W), mask=m)


@triton.jit
def _masked(y, col, row, past, FILL, MASK: tl.constexpr):
    """ew_kernel's MASK: column col > past + row is the f32 whose bits are the word at
    FILL."""
    if MASK:
        y = tl.where(col > past + row, _scalar_f(FILL, y.shape[0]), y)
    return y


@triton.jit
def _row_ew(SRC, DST, e0, C, b, F: tl.constexpr, mrow, past, FILL, M: tl.constexpr,
            BLOCK: tl.constexpr):
    """softmax_kernel's first and last EW over its row: DST[e] = f(SRC[e], b), masked."""
    c = tl.arange(0, BLOCK)
    for start in range(0, C, BLOCK):
        m = start + c < C
        a = tl.load(SRC + e0 + start + c, mask=m, other=1.0)
        tl.store(DST + e0 + start + c, _masked(_ew_fn(a, b, F), start + c, mrow, past, FILL, M),
                 mask=m)


@triton.jit(do_not_specialize=["ROW"])
def softmax_kernel(A, OUT, ARGS, ROW, NEG0, F_SCALE: tl.constexpr, F_SUB: tl.constexpr,
                   F_EXP: tl.constexpr, F_DIV: tl.constexpr, M_SCALE: tl.constexpr,
                   M_SUB: tl.constexpr, M_EXP: tl.constexpr, M_DIV: tl.constexpr,
                   C_MAX: tl.constexpr, C_SUM: tl.constexpr, CAP0: tl.constexpr,
                   NLEV: tl.constexpr, BLOCK: tl.constexpr,
                   LANES: tl.constexpr = 1, PDL: tl.constexpr = False,
                   REG: tl.constexpr = False, WARP: tl.constexpr = False,
                   CARRY: tl.constexpr = False):
    """A softmax's six records for one row (program r; `step_plan_cuda._softmax_launch`
    matched them): scaled = f(a, s); its FOLD max tree; sub = f(scaled, max[r]); exp =
    f(sub); its FOLD sum tree; out = f(exp, sum[r]); each EW masked as its own launch
    (causal columns: `_masked`), each output stored where its own launch would have, a
    barrier between steps.

    Why: attention's softmax was 6 launches a layer of ~2.5-3.6 µs each.
    Row: a_off, scaled_off, C, rows, max_base, max_nlive, sub_off, exp_off, sum_base,
    sum_nlive, out_off, s_scale, fill ×4 (scale, sub, exp, div), past, R, max_last,
    sum_last.
    WARP (launched with one warp, step_plan_cuda.WARP_FOLDS): `_softmax_warp`, the row in
    registers and no barrier."""
    P = _row(ARGS, ROW, LANES)
    if WARP:  # rows of up to 32 · WARP_SLOTS columns (a decode step up to position 511)
        in_warp = tl.load(P + 2) <= 32 * WARP_SLOTS
    else:
        in_warp = False
    if in_warp:
        _softmax_warp(A, OUT, P, NEG0, F_SCALE, F_SUB, F_EXP, F_DIV, M_SCALE, M_SUB, M_EXP,
                      M_DIV, C_MAX, C_SUM, CAP0, NLEV, PDL)
    else:
        _start(PDL)
        _softmax_rows(A, OUT, P, NEG0, tl.program_id(0).to(tl.int32), F_SCALE, F_SUB, F_EXP,
                      F_DIV, M_SCALE, M_SUB, M_EXP, M_DIV, C_MAX, C_SUM, CAP0, NLEV, BLOCK,
                      REG, CARRY)


@triton.jit
def _softmax_rows(A, OUT, P, NEG0, r, F_SCALE: tl.constexpr, F_SUB: tl.constexpr,
                  F_EXP: tl.constexpr, F_DIV: tl.constexpr, M_SCALE: tl.constexpr,
                  M_SUB: tl.constexpr, M_EXP: tl.constexpr, M_DIV: tl.constexpr,
                  C_MAX: tl.constexpr, C_SUM: tl.constexpr, CAP0: tl.constexpr,
                  NLEV: tl.constexpr, BLOCK: tl.constexpr, REG: tl.constexpr,
                  CARRY: tl.constexpr = False):
    """softmax_kernel's memory body for row r (its program's, or `attn_kernel`'s head):
    each step's output stored, a barrier, the next step reading it back. With CARRY
    (step_plan_cuda.FOLD_CARRY) a row of at most BLOCK = CAP0 columns runs
    `_softmax_carried` instead."""
    C = tl.load(P + 2).to(tl.int32)
    if CARRY and BLOCK == CAP0 and not REG:
        carried = C <= BLOCK
    else:
        carried = False
    if carried:
        _softmax_carried(A, OUT, P, NEG0, r, C, F_SCALE, F_SUB, F_EXP, F_DIV, M_SCALE, M_SUB,
                         M_EXP, M_DIV, C_MAX, C_SUM, CAP0, NLEV)
    else:
        _softmax_mem(A, OUT, P, NEG0, r, C, F_SCALE, F_SUB, F_EXP, F_DIV, M_SCALE, M_SUB,
                     M_EXP, M_DIV, C_MAX, C_SUM, CAP0, NLEV, BLOCK, REG, CARRY)


@triton.jit
def _softmax_carried(A, OUT, P, NEG0, r, C, F_SCALE: tl.constexpr, F_SUB: tl.constexpr,
                     F_EXP: tl.constexpr, F_DIV: tl.constexpr, M_SCALE: tl.constexpr,
                     M_SUB: tl.constexpr, M_EXP: tl.constexpr, M_DIV: tl.constexpr,
                     C_MAX: tl.constexpr, C_SUM: tl.constexpr, CAP0: tl.constexpr,
                     NLEV: tl.constexpr):
    """`_softmax_mem`'s records for a row of C ≤ CAP0 columns with every step's input
    from the registers of the step before (each step spreads column i = 0 … CAP0 − 1 alike,
    as the FOLD trees' levels do: `_fold_from`), each output still stored where its own
    launch would have; only the trees' roots (held by one thread) and their levels' pairs
    go through memory. Why: the scaled row, each tree's first level and the exp row were
    each a store, a barrier and a load back through L2: ~4 round trips a head."""
    rows = tl.load(P + 3)
    mrow = r % tl.load(P + 17).to(tl.int32)
    past = tl.load(P + 16)
    e0 = r.to(tl.int64) * C
    c = tl.arange(0, CAP0)
    m = c < C
    sc_at = OUT + tl.load(P + 1) + e0
    a = tl.load(A + tl.load(P) + e0 + c, mask=m, other=1.0)
    sc = _masked(_ew_fn(a, _scalar_f(P + 11, CAP0), F_SCALE), c, mrow, past, P + 12, M_SCALE)
    tl.store(sc_at + c, sc, mask=m)
    _fold_from(sc, sc_at, OUT, tl.load(P + 4), r.to(tl.int64), rows, C, tl.load(P + 5),
               NEG0, CAP0, NLEV, C_MAX, True)
    mx = tl.load(OUT + tl.load(P + 18) + r + c * 0)  # the root: one thread's; the last
    y = _masked(_ew_fn(sc, mx, F_SUB), c, mrow, past, P + 13, M_SUB)  # level's barrier
    tl.store(OUT + tl.load(P + 6) + e0 + c, y, mask=m)
    ex = _masked(_ew_fn(y, y, F_EXP), c, mrow, past, P + 14, M_EXP)
    ex_at = OUT + tl.load(P + 7) + e0
    tl.store(ex_at + c, ex, mask=m)
    _fold_from(ex, ex_at, OUT, tl.load(P + 8), r.to(tl.int64), rows, C, tl.load(P + 9),
               NEG0, CAP0, NLEV, C_SUM, True)
    sm = tl.load(OUT + tl.load(P + 19) + r + c * 0)
    tl.store(OUT + tl.load(P + 10) + e0 + c,
             _masked(_ew_fn(ex, sm, F_DIV), c, mrow, past, P + 15, M_DIV), mask=m)


@triton.jit
def _softmax_mem(A, OUT, P, NEG0, r, C, F_SCALE: tl.constexpr, F_SUB: tl.constexpr,
                 F_EXP: tl.constexpr, F_DIV: tl.constexpr, M_SCALE: tl.constexpr,
                 M_SUB: tl.constexpr, M_EXP: tl.constexpr, M_DIV: tl.constexpr,
                 C_MAX: tl.constexpr, C_SUM: tl.constexpr, CAP0: tl.constexpr,
                 NLEV: tl.constexpr, BLOCK: tl.constexpr, REG: tl.constexpr,
                 CARRY: tl.constexpr):
    """`_softmax_rows`' body through memory, any row width: its EW passes BLOCK columns at
    a time, its FOLD levels at least BLOCK wide (`_fold_from`'s MINW: BLOCK < CAP0 only
    with step_plan_cuda.NARROW_SOFTMAX)."""
    rows = tl.load(P + 3)
    mrow = r % tl.load(P + 17).to(tl.int32)
    past = tl.load(P + 16)
    e0 = r.to(tl.int64) * C
    c = tl.arange(0, BLOCK)
    _row_ew(A + tl.load(P), OUT + tl.load(P + 1), e0, C, _scalar_f(P + 11, BLOCK), F_SCALE,
            mrow, past, P + 12, M_SCALE, BLOCK)
    tl.debug_barrier()
    _fold_levels(OUT + tl.load(P + 1), OUT, tl.load(P + 4), r.to(tl.int64), rows, C,
                 tl.load(P + 5), NEG0, CAP0, NLEV, C_MAX, REG, CARRY, BLOCK)
    tl.debug_barrier()
    mx = tl.load(OUT + tl.load(P + 18) + r + c * 0)
    for start in range(0, C, BLOCK):
        m = start + c < C
        a = tl.load(OUT + tl.load(P + 1) + e0 + start + c, mask=m, other=1.0)
        y = _masked(_ew_fn(a, mx, F_SUB), start + c, mrow, past, P + 13, M_SUB)
        tl.store(OUT + tl.load(P + 6) + e0 + start + c, y, mask=m)
        y = _masked(_ew_fn(y, y, F_EXP), start + c, mrow, past, P + 14, M_EXP)
        tl.store(OUT + tl.load(P + 7) + e0 + start + c, y, mask=m)
    tl.debug_barrier()
    _fold_levels(OUT + tl.load(P + 7), OUT, tl.load(P + 8), r.to(tl.int64), rows, C,
                 tl.load(P + 9), NEG0, CAP0, NLEV, C_SUM, REG, CARRY, BLOCK)
    tl.debug_barrier()
    sm = tl.load(OUT + tl.load(P + 19) + r + c * 0)
    _row_ew(OUT + tl.load(P + 7), OUT + tl.load(P + 10), e0, C, sm, F_DIV, mrow, past, P + 15,
            M_DIV, BLOCK)


@triton.jit
def _softmax_warp(A, OUT, P, NEG0, F_SCALE: tl.constexpr, F_SUB: tl.constexpr,
                  F_EXP: tl.constexpr, F_DIV: tl.constexpr, M_SCALE: tl.constexpr,
                  M_SUB: tl.constexpr, M_EXP: tl.constexpr, M_DIV: tl.constexpr,
                  C_MAX: tl.constexpr, C_SUM: tl.constexpr, CAP0: tl.constexpr,
                  NLEV: tl.constexpr, PDL: tl.constexpr):
    """softmax_kernel's WARP body: the same records for row r in one warp, the row in
    registers (element t + 32·j in lane t of slot j), each step from the step before's
    registers, stored where its own launch would have; the FOLD trees by `_fold_warp`.
    Why: `_norm_warp`'s; the table's words are read before the PDL wait. The caller takes
    this path only for rows of C ≤ 32 · WARP_SLOTS columns: the registers hold that many
    (`_fold_warp`'s JL), more would spill."""
    J: tl.constexpr = min((2 * CAP0 + 31) // 32, WARP_SLOTS)
    t = tl.arange(0, 32)
    r = tl.program_id(0).to(tl.int32)
    C = tl.load(P + 2).to(tl.int32)
    rows = tl.load(P + 3)
    mrow = r % tl.load(P + 17).to(tl.int32)
    past = tl.load(P + 16)
    e0 = r.to(tl.int64) * C
    a_at = A + tl.load(P) + e0
    sc_at = OUT + tl.load(P + 1) + e0
    max_base = tl.load(P + 4)
    max_nlive = tl.load(P + 5)
    sub_at = OUT + tl.load(P + 6) + e0
    exp_at = OUT + tl.load(P + 7) + e0
    sum_base = tl.load(P + 8)
    sum_nlive = tl.load(P + 9)
    out_at = OUT + tl.load(P + 10) + e0
    s_scale = _scalar_f(P + 11, 32)
    _start(PDL)
    sc = ()
    for j in tl.static_range(J):
        i = t + 32 * j
        m = i < C
        y = _masked(_ew_fn(tl.load(a_at + i, mask=m, other=1.0), s_scale, F_SCALE), i, mrow,
                    past, P + 12, M_SCALE)
        tl.store(sc_at + i, y, mask=m)
        sc = sc + (y,)
    mx = _lane_take(_fold_warp(sc, OUT, max_base, r.to(tl.int64), rows, C, max_nlive, NEG0,
                               CAP0, NLEV, C_MAX, J), t * 0)
    ex = ()
    for j in tl.static_range(J):
        if 32 * j < C:  # a slot with live lanes: only these pay for the exp
            i = t + 32 * j
            m = i < C
            y = _masked(_ew_fn(sc[j], mx, F_SUB), i, mrow, past, P + 13, M_SUB)
            tl.store(sub_at + i, y, mask=m)
            y = _masked(_ew_fn(y, y, F_EXP), i, mrow, past, P + 14, M_EXP)
            tl.store(exp_at + i, y, mask=m)
        else:  # no lane of it is read (`_fold_warp` masks lanes past C)
            y = sc[j]
        ex = ex + (y,)
    sm = _lane_take(_fold_warp(ex, OUT, sum_base, r.to(tl.int64), rows, C, sum_nlive, NEG0,
                               CAP0, NLEV, C_SUM, J), t * 0)
    for j in tl.static_range(J):
        if 32 * j < C:
            i = t + 32 * j
            tl.store(out_at + i, _masked(_ew_fn(ex[j], sm, F_DIV), i, mrow, past, P + 15,
                                         M_DIV), mask=i < C)


@triton.jit
def _warm(b_col, s_bk, scratch, never, BN: tl.constexpr, K: tl.constexpr):
    """Load rows [0, K) of a weight panel (b_col: its BN column pointers) in blocks of 64,
    all issued at once; their bits reach a store whose mask is a run-time 0 (`never`, a
    table word left 0), so the compiler keeps the loads, and the data stays in L1."""
    wk = tl.arange(0, 64)
    probe = tl.zeros([64, BN], dtype=tl.int32)
    for t in tl.static_range((K + 63) // 64):
        kk = t * 64 + wk
        w = tl.load(b_col[None, :] + kk[:, None].to(tl.int64) * s_bk,
                    mask=kk[:, None] < K, other=0.0)
        probe = probe | w.to(tl.int32, bitcast=True)
    tl.store(scratch[None, :] + wk[:, None], probe.to(tl.float32, bitcast=True),
             mask=(probe == 0x7FC00001) & ((tl.zeros([64, BN], dtype=tl.int64) + never) != 0))


@triton.jit
def l2_touch_kernel(W, n, never, BLOCK: tl.constexpr):
    """Read n words of W (a weight about to be used) so that they sit in L2; the values
    reach a store whose mask is a run-time 0 (`never`), so the loads are kept."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    w = tl.load(W + i, mask=i < n, other=0)
    tl.store(W + i, w, mask=(w == 0x7FC00001) & ((tl.zeros([BLOCK], dtype=tl.int64) + never)
                                                  != 0))


@triton.jit
def _ld8(p):
    """A thread's eight consecutive fp32 weights as two 16-byte loads (`ld.global.nc.v4`).

    Why asm: loaded as a [BN, 8] tile, Triton spreads a row over several threads and moves it
    back through shared memory (a barrier per k block: qchain_vec_kernel's SASS); here the
    eight values are eight [BN] tensors in the accumulator's own layout. The interpreter
    (which runs no asm) loads them one by one: the same values."""
    if ON_GPU:
        a0, a1, a2, a3 = tl.inline_asm_elementwise(
            "ld.global.nc.v4.f32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l", [p],
            dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)
        a4, a5, a6, a7 = tl.inline_asm_elementwise(
            "ld.global.nc.v4.f32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l", [p + 4],
            dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)
    else:
        a0, a1, a2, a3 = tl.load(p), tl.load(p + 1), tl.load(p + 2), tl.load(p + 3)
        a4, a5, a6, a7 = tl.load(p + 4), tl.load(p + 5), tl.load(p + 6), tl.load(p + 7)
    return a0, a1, a2, a3, a4, a5, a6, a7


@triton.jit
def _prefetch_l1(p):
    """Ask for p's cache line in L1 (no register waits on it; the interpreter: nothing)."""
    if ON_GPU:
        r = tl.inline_asm_elementwise("mov.u32 $0, 0;\n\tprefetch.global.L1 [$1];", "=r,l",
                                      [p], dtype=tl.int32, is_pure=False, pack=1)
    else:
        r = tl.zeros(p.shape, dtype=tl.int32)
    return r


@triton.jit
def _ab_block(a_ptr, b_ptr, s_bk, k, ok, BK: tl.constexpr):
    """The BK values of a (the row every thread reads) and of each thread's B row from k
    (one base address, constant offsets); nothing is read unless ok (the values are 0).
    The mask is a [BN] tensor, a too: the interpreter takes no scalar mask."""
    a = ()
    b = ()
    zero = tl.zeros(b_ptr.shape, dtype=tl.int64)
    okv = (zero + ok) != 0
    ab = a_ptr + k + zero
    bb = b_ptr + k * s_bk
    for kk in tl.static_range(BK):
        a = a + (tl.load(ab + kk, mask=okv, other=0.0),)
        b = b + (tl.load(bb + kk * s_bk, mask=okv, other=0.0),)
    return a, b


@triton.jit
def _ab_tail(a_ptr, b_ptr, s_bk, rem, BK: tl.constexpr):
    """`_ab_block`'s values for a segment's last rem < BK ks from a_ptr and b_ptr, all
    loads issued at once (those at rem and past read nothing: 0).
    Why: attention's p·v DOT chains ~60 keys, so ~28 of them were a load and an fma a key
    one after another, each load's wait in turn."""
    a = ()
    b = ()
    zero = tl.zeros(b_ptr.shape, dtype=tl.int64)
    ab = a_ptr + zero
    for kk in tl.static_range(BK):
        m = (zero + kk) < rem
        a = a + (tl.load(ab + kk, mask=m, other=0.0),)
        b = b + (tl.load(b_ptr + kk * s_bk, mask=m, other=0.0),)
    return a, b


@triton.jit
def _prefetch_seg(a_row, b_col, s_bk, k, kmax, BN: tl.constexpr):
    """L1 prefetch of a DOT segment's first 64 ks from k: two lines of the row a and of each
    thread's row of B (k clamped to the last one)."""
    zero = tl.zeros([BN], dtype=tl.int64)
    for h in tl.static_range(2):
        kk = tl.maximum(tl.minimum(k + 32 * h, kmax - 1), 0)
        _prefetch_l1(a_row + kk + zero)
        _prefetch_l1(b_col + kk * s_bk)


@triton.jit(do_not_specialize=["ROW"])
def chain_kernel(A, B, ACC, OUT, ARGS, ROW, NEG_INF, HAS_ACC: tl.constexpr,
                 CAUSAL: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NS: tl.constexpr,
                 WARM: tl.constexpr = 0, PF: tl.constexpr = 0, DB: tl.constexpr = 0,
                 K1: tl.constexpr = False,
                 LANES: tl.constexpr = 1, PDL: tl.constexpr = False, TB: tl.constexpr = False):
    """§L5.3 DOT segments with explicit fma, one row and BN outputs per program: segment s
    chains k over [k0 + s·segw, min(k0 + (s+1)·segw, kmax)) ascending from the previous
    segment's accumulator (the first from ACC or +0.0) and stores it (canonical) at
    OUT + s·s_oseg. A [batch, R, K] rows (k stride 1); B row n of batch b // group at
    b·s_bb + n·s_bn, k stride s_bk. CAUSAL 1: row r's chain stops at past + r + 1;
    CAUSAL 2: outputs n > past + r are −inf.
    WARM > 0 (a weight linear, K = WARM): the program first loads its whole [K, BN] weight
    panel at once, so the chain's loads below hit L1 instead of waiting on memory block by
    block (`_warm`).
    PF 1 (not under the interpreter: inline asm): each segment asks L1 for the lines of the
    segment two ahead (B rows with k stride 1: attention's keys and values, just written by
    the step's MOVE and CONCAT, so in L2), so the chain's loads hit L1 instead of waiting
    ~300 cycles a k.
    DB 1: a k block's BK values of a and of B are loaded while the block before it runs its
    chain (loop-carried registers, `_ab_block`), instead of Triton's pipeline of NS stages.
    K1: B's k stride is 1 (the row's word is not read: a compile-time stride saves an
    address multiply a k).
    TB (step_plan_cuda.CHAIN_TAIL): a segment's last partial k block (fewer than BK ks) as
    one masked block of loads, each fma past the segment's end not taken (`_ab_tail`),
    instead of a load and an fma a k one after another.
    Row: a_off, s_ab, s_ar, b_off, s_bb, s_bn, s_bk, acc_off, out_off, s_oseg, R, N, group,
    nseg, k0, segw, kmax, past."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    bat = _batch(LANES)
    _chain(A, B, ACC, OUT, P, NEG_INF, tl.program_id(0), tl.program_id(1).to(tl.int64), bat,
           HAS_ACC, CAUSAL, BN, BK, NS, WARM, PF, DB, K1, TB)


@triton.jit
def _chain(A, B, ACC, OUT, P, NEG_INF, pid_n, row, bat, HAS_ACC: tl.constexpr,
           CAUSAL: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NS: tl.constexpr,
           WARM: tl.constexpr, PF: tl.constexpr, DB: tl.constexpr, K1: tl.constexpr,
           TB: tl.constexpr = False):
    """chain_kernel's body for its program's (column block pid_n, row, batch bat), or for
    one of `attn_kernel`'s head's."""
    R = tl.load(P + 10)
    N = tl.load(P + 11)
    s_bk = 1 if K1 else tl.load(P + 6)
    past = tl.load(P + 17)
    offs_n = pid_n * BN + tl.arange(0, BN)
    nmask = offs_n < tl.where(row < R, N, 0)  # a row past R (grid of the largest step): none
    rn = (offs_n % tl.maximum(N, 1)).to(tl.int64)
    a_row = A + tl.load(P) + bat * tl.load(P + 1) + row * tl.load(P + 2)
    b_col = B + tl.load(P + 3) + (bat // tl.load(P + 12)) * tl.load(P + 4) + rn * tl.load(P + 5)
    o_at = (bat * R + row) * N + offs_n
    if HAS_ACC:
        acc = tl.load(ACC + tl.load(P + 7) + o_at, mask=nmask, other=0.0)
    else:
        acc = tl.zeros((BN,), dtype=tl.float32)  # the chain starts from +0.0
    segw = tl.load(P + 15)
    kmax = tl.load(P + 16)
    out = OUT + tl.load(P + 8) + o_at
    s_oseg = tl.load(P + 9)
    ks = tl.load(P + 14)
    if WARM > 0:
        _warm(b_col, s_bk, out, tl.load(P + 31), BN, WARM)
    if row < R:
        if PF:
            _prefetch_seg(a_row, b_col, s_bk, ks, kmax, BN)
            _prefetch_seg(a_row, b_col, s_bk, ks + segw, kmax, BN)
        for s in range(tl.load(P + 13)):
            if PF:
                _prefetch_seg(a_row, b_col, s_bk, ks + 2 * segw, kmax, BN)
            ke = tl.minimum(ks + segw, kmax)
            if CAUSAL == 1:
                ke = tl.minimum(ke, past + row + 1)
            a_ptr = a_row + ks
            b_ptr = b_col + ks * s_bk
            nfull = tl.maximum(ke - ks, 0) // BK
            if DB:
                a, b = _ab_block(a_ptr, b_ptr, s_bk, 0, nfull > 0, BK)
                for kb in range(nfull):
                    # the block after this one, if it is a full one
                    a2, b2 = _ab_block(a_ptr, b_ptr, s_bk, BK, kb + 1 < nfull, BK)
                    for kk in tl.static_range(BK):
                        acc = tl.fma(a[kk], b[kk], acc)
                    a = a2
                    b = b2
                    a_ptr += BK
                    b_ptr += BK * s_bk
            else:
                for _kb in tl.range(0, nfull, num_stages=NS):
                    for kk in tl.static_range(BK):
                        acc = tl.fma(tl.load(a_ptr + kk), tl.load(b_ptr + kk * s_bk), acc)
                    a_ptr += BK
                    b_ptr += BK * s_bk
            if TB:
                rem = tl.maximum(ke - ks, 0) - nfull * BK
                a, b = _ab_tail(a_ptr, b_ptr, s_bk, rem, BK)
                for kk in tl.static_range(BK):
                    acc = tl.where(kk < rem, tl.fma(a[kk], b[kk], acc), acc)
            else:
                for _k in range(ks + nfull * BK, ke):
                    acc = tl.fma(tl.load(a_ptr), tl.load(b_ptr), acc)
                    a_ptr += 1
                    b_ptr += s_bk
            acc = canon_nan(acc)
            y = acc
            if CAUSAL == 2:
                y = tl.where(offs_n > past + row, NEG_INF, acc)
            tl.store(out + s * s_oseg, y, mask=nmask)
            ks += segw


@triton.jit(do_not_specialize=["ROW"])
def attn_kernel(X, ARGS, ROW, NEG_INF, NEG0, F_SCALE: tl.constexpr, F_SUB: tl.constexpr,
                F_EXP: tl.constexpr, F_DIV: tl.constexpr, M_SCALE: tl.constexpr,
                M_SUB: tl.constexpr, M_EXP: tl.constexpr, M_DIV: tl.constexpr,
                C_MAX: tl.constexpr, C_SUM: tl.constexpr, CAP0: tl.constexpr,
                NLEV: tl.constexpr, BLOCK: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                NS: tl.constexpr, PF: tl.constexpr, DB: tl.constexpr, K1: tl.constexpr,
                LANES: tl.constexpr = 1, PDL: tl.constexpr = False, OT: tl.constexpr = -2,
                CARRY: tl.constexpr = False, TB: tl.constexpr = False):
    """A decode step's attention for one head (program on axis 2; `step_plan_cuda.
    fuse_attention` matched the launches): the q·k DOT (this row: chain_kernel's, CAUSAL
    2) over every column block, the softmax's six records (the next row: softmax_kernel's
    memory body, row = the head) and the p·v DOT (the row after: chain_kernel's, CAUSAL 1),
    a barrier between them, every output stored where its own launch would have.

    Why: the three were launches of ~7 µs each on the H100 (profile-cuda-step.md), each one
    program a head, each mostly its launch and its wait for the one before; a head's p·v
    reads only its own softmax row, which reads only its own q·k row, so one program a head
    can run all three in order. X: the arena (every operand of the three lies in it).
    OT > −2: the contiguous MOVE after p·v (the heads' outputs as one row: move_kernel with
    X_AT CONTIG and THEN = OT, its row the third rider), each head's program moving its own
    head's values, which it has just stored (bits copied)."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    bat = _batch(LANES)
    row = bat * 0  # decode: one query row
    for pid_n in range(0, (tl.load(P + 11) + BN - 1) // BN):
        _chain(X, X, X, X, P, NEG_INF, pid_n, row, bat, False, 2, BN, BK, NS, 0, PF, DB, K1,
               TB)
    tl.debug_barrier()
    _softmax_rows(X, X, P + LANES * 32, NEG0, bat.to(tl.int32), F_SCALE, F_SUB, F_EXP, F_DIV,
                  M_SCALE, M_SUB, M_EXP, M_DIV, C_MAX, C_SUM, CAP0, NLEV, BLOCK, False, CARRY)
    tl.debug_barrier()
    _chain(X, X, X, X, P + 2 * LANES * 32, NEG_INF, 0, row, bat, False, 1, BN, BK, NS, 0, PF,
           DB, K1, TB)
    if OT > -2:
        tl.debug_barrier()
        n = tl.load(P + 2 * LANES * 32 + 11)  # a head's p·v outputs
        Q = P + 3 * LANES * 32
        c = tl.arange(0, BN)
        e = bat * n + c
        m = c < n
        v = tl.load(X + tl.load(Q) + tl.load(Q + 14) + e, mask=m, other=0.0)
        tl.store(X + tl.load(Q + 1) + e, v, mask=m)
        if OT == CONTIG:
            _then_contig(X, Q, e, v, m)


@triton.jit
def _qtiles(a_ptrs, b_ptrs, s, mm, rk, kend, NEG0):
    """Segment s's x tile (ks past kend: −0.0) and weight tile (+0.0); kend = K, or 0 for a
    prefetch past the last segment (nothing is read)."""
    km = s * rk.shape[0] + rk < kend
    a = tl.load(a_ptrs, mask=mm[:, None] & km[None, :], other=0.0)
    a = tl.where(km[None, :], a, NEG0)
    b = tl.load(b_ptrs, mask=km[:, None], other=0.0)
    return a, b


@triton.jit(do_not_specialize=["ROW"])
def qchain_dot_kernel(X, W, OUT, ARGS, ROW, NEG0, BM: tl.constexpr, BN: tl.constexpr,
                      SEGW: tl.constexpr, NS: tl.constexpr, PRE: tl.constexpr = False,
                      LANES: tl.constexpr = 1, PDL: tl.constexpr = False):
    """§L5.3 a weight linear's DOT segments (chain_kernel's QCHAIN row: x [M, K], w [K, N]
    with n stride 1) as fp32 tiles: `tl.dot(..., input_precision="ieee")` accumulates every
    output in k order with one fma per k (DESIGN §4.3, repops.gpu.matmul), so a segment of
    SEGW ks is one dot from the previous segment's (canonical) accumulator.

    Why: chain_kernel's explicit fma loop has one output per thread and few loads in flight,
    so a decode linear (M = 1) waits on memory (14-36 µs); here the segment's weight tile is
    one block load, prefetched NS segments ahead by Triton's pipeliner, or (PRE) one segment
    ahead in registers. Rows past M (tiles are BM ≥ 16 rows) are not stored; ks past K read
    a = −0.0, w = +0.0: fma(−0, +0, acc) = acc for every acc."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    K = tl.load(P + 16)
    M = tl.load(P + 10)
    N = tl.load(P + 11)
    nseg = tl.load(P + 13)
    s_oseg = tl.load(P + 9)
    offs_m = tl.program_id(1) * BM + tl.arange(0, BM)
    offs_n = tl.program_id(0) * BN + tl.arange(0, BN)
    rk = tl.arange(0, SEGW)
    mm = offs_m < M
    smask = mm[:, None] & (offs_n < N)[None, :]
    rn = (offs_n % tl.maximum(N, 1)).to(tl.int64)
    a_ptrs = X + tl.load(P) + offs_m[:, None].to(tl.int64) * tl.load(P + 2) + rk[None, :]
    b_ptrs = W + rk[:, None].to(tl.int64) * N + rn[None, :]
    o_ptrs = OUT + tl.load(P + 8) + offs_m[:, None].to(tl.int64) * N + offs_n[None, :]
    acc = tl.zeros((BM, BN), dtype=tl.float32)  # the chain starts from +0.0
    if PRE:
        a, b = _qtiles(a_ptrs, b_ptrs, 0, mm, rk, K, NEG0)
        for s in tl.range(0, nseg, num_stages=1):
            a_ptrs += SEGW
            b_ptrs += SEGW * N
            a2, b2 = _qtiles(a_ptrs, b_ptrs, s + 1, mm, rk, tl.where(s + 1 < nseg, K, 0), NEG0)
            acc = canon_nan(tl.dot(a, b, acc, input_precision="ieee"))
            tl.store(o_ptrs + s * s_oseg, acc, mask=smask)
            a, b = a2, b2
    else:
        for s in tl.range(0, nseg, num_stages=NS):
            a, b = _qtiles(a_ptrs, b_ptrs, s, mm, rk, K, NEG0)
            acc = canon_nan(tl.dot(a, b, acc, input_precision="ieee"))
            tl.store(o_ptrs + s * s_oseg, acc, mask=smask)
            a_ptrs += SEGW
            b_ptrs += SEGW * N


@triton.jit
def _fma_cols(acc, xk, w):
    """The fma chain over the columns of w [BN, C] (C a power of two ≥ 2) in column order,
    column c times x[c] (xk: a scalar pointer to x at the block's first k): the columns are
    split off in halves (reshape + permute + split: a row's C values belong to one thread,
    so this moves no data)."""
    c: tl.constexpr = w.shape[1]
    if c == 2:
        w0, w1 = tl.split(w)
        y = tl.fma(tl.load(xk + 1), w1, tl.fma(tl.load(xk), w0, acc))
    else:
        wl, wh = tl.split(tl.permute(tl.reshape(w, (w.shape[0], 2, c // 2)), (0, 2, 1)))
        y = _fma_cols(_fma_cols(acc, xk, wl), xk + c // 2, wh)
    return y


@triton.jit(do_not_specialize=["ROW"])
def qchain_vec_kernel(X, W, OUT, ARGS, ROW, BN: tl.constexpr, TK: tl.constexpr,
                      SEGW: tl.constexpr,
                      LANES: tl.constexpr = 1, PDL: tl.constexpr = False):
    """§L5.3 a decode linear's DOT segments (chain_kernel's QCHAIN row, one row of x) with
    explicit fma, one output per thread, the weight laid out [K/TK + 8, N, TK]
    (`CudaChain.vec`: K a multiple of SEGW, eight zero blocks after it).

    Why: the chain is sequential in k, so a thread waits on its loads unless many are in
    flight: chain_kernel (one 4-byte load per k) and the tl.dot tiles both measured ~60
    cycles a k (scripts/profile_cuda_step.py --linear), L2-warm or not. Here a k block of
    TK weights (TK = 4: one 16-byte load) belongs to one thread, and the loads run eight
    blocks ahead of the chain (registers carry them; the zero blocks take the loads past
    K)."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    N = tl.load(P + 11)
    s_oseg = tl.load(P + 9)
    offs_n = tl.program_id(0) * BN + tl.arange(0, BN)
    nmask = offs_n < N
    rn = (offs_n % tl.maximum(N, 1)).to(tl.int64)
    xp = X + tl.load(P)
    wp = W + tl.multiple_of(rn[:, None] * TK, [TK, 1]) + tl.arange(0, TK)[None, :]
    step = N * TK
    out = OUT + tl.load(P + 8) + offs_n
    acc = tl.zeros([BN], dtype=tl.float32)  # the chain starts from +0.0
    w0 = tl.load(wp)
    w1 = tl.load(wp + step)
    w2 = tl.load(wp + 2 * step)
    w3 = tl.load(wp + 3 * step)
    w4 = tl.load(wp + 4 * step)
    w5 = tl.load(wp + 5 * step)
    w6 = tl.load(wp + 6 * step)
    w7 = tl.load(wp + 7 * step)
    for s in range(tl.load(P + 13)):
        for b in tl.static_range(SEGW // TK):
            kb = s * SEGW + b * TK
            w8 = tl.load(wp + (kb // TK + 8) * step)
            acc = _fma_cols(acc, xp + kb, w0)
            w0, w1, w2, w3, w4, w5, w6, w7 = w1, w2, w3, w4, w5, w6, w7, w8
        acc = canon_nan(acc)
        tl.store(out + s * s_oseg, acc, mask=nmask)


@triton.jit
def _shfl(v, lane):
    """v of the warp's thread `lane` (each thread of a one-warp [32] tensor holds one
    element): `shfl.sync.idx`, a register move between threads, no memory."""
    return tl.inline_asm_elementwise(
        "shfl.sync.idx.b32 $0, $1, $2, 0x1f, 0xffffffff;", "=r,r,r",
        [v.to(tl.int32, bitcast=True), lane], dtype=tl.int32, is_pure=True,
        pack=1).to(tl.float32, bitcast=True)


@triton.jit
def _ld4x(p):
    """Four consecutive fp32 values at p (16-byte aligned; every thread the same address:
    one broadcast `ld.global.v4`), for the [BN] tensors of p's shape; the interpreter loads
    them one by one."""
    if ON_GPU:
        r = tl.inline_asm_elementwise(
            "ld.global.v4.f32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l", [p],
            dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)
    else:
        r = tl.load(p), tl.load(p + 1), tl.load(p + 2), tl.load(p + 3)
    return r


@triton.jit
def _w_block(wp, step, kb, NB: tl.constexpr):
    """The NB weights of the k block from kb (two `_ld8` loads per 8)."""
    w = ()
    wb = wp + (kb // 8) * step
    for q in tl.static_range(NB // 8):
        w = w + _ld8(wb + q * step)
    return w


@triton.jit
def _x_block(xp, kb, NB: tl.constexpr, XS: tl.constexpr, BN: tl.constexpr,
             XV: tl.constexpr = False):
    """The x values of the k block from kb (a multiple of NB inside K: the caller wraps a
    block past the end to 0, so that the x loads are one base address and constant
    offsets)."""
    x = ()
    xb = xp + kb
    if XS:  # x as NB/32 vectors of the warp, one value a thread (`_shfl` hands them out)
        for j in tl.static_range(NB // 32):
            x = x + (tl.load(xb + j * 32 + tl.arange(0, BN)),)
    elif XV:  # four values a load (x 16-byte aligned: step_plan's layout)
        xv = xb + tl.zeros([BN], dtype=tl.int32)
        for j in tl.static_range(NB // 4):
            x = x + _ld4x(xv + j * 4)
    else:
        for t in tl.static_range(NB):
            x = x + (tl.load(xb + t),)
    return x


@triton.jit
def _xs_block(xps, kb, NB: tl.constexpr, XS: tl.constexpr, BN: tl.constexpr,
              XV: tl.constexpr, LR: tl.constexpr):
    """`_x_block` of each of the program's LR rows of x, one after the other."""
    x = ()
    for r in tl.static_range(LR):
        x = x + _x_block(xps[r], kb, NB, XS, BN, XV)
    return x


@triton.jit
def _part_out(OUT, P, n0, offs_n, s_oseg, PARTS: tl.constexpr):
    """A linear launch's output pointers and segment stride for this program's columns:
    PARTS > 1 (linears side by side, `qchain_v8_kernel`'s docstring), those of the part
    holding them."""
    if PARTS > 1:
        o_base = tl.load(P + 8)
        col = offs_n
        for q in tl.static_range(1, PARTS):
            at = n0 >= tl.load(P + 20 + 3 * q)
            o_base = tl.where(at, tl.load(P + 18 + 3 * q), o_base)
            s_oseg = tl.where(at, tl.load(P + 19 + 3 * q), s_oseg)
            col = tl.where(at, offs_n - tl.load(P + 20 + 3 * q), col)
        out = OUT + o_base + col
    else:  # one linear
        out = OUT + tl.load(P + 8) + offs_n
    return out, s_oseg


@triton.jit(do_not_specialize=["ROW"])
def qchain_v8_kernel(X, W, OUT, ARGS, ROW, BN: tl.constexpr, SEGW: tl.constexpr,
                     NB: tl.constexpr, PF: tl.constexpr, XS: tl.constexpr = False,
                     LANES: tl.constexpr = 1, PARTS: tl.constexpr = 1, PDL: tl.constexpr = False,
                     XV: tl.constexpr = False, LR: tl.constexpr = 1):
    """§L5.3 a decode linear's DOT segments (chain_kernel's QCHAIN row, one row of x) with
    explicit fma, one output per thread, the weight laid out [K/8 + 8, N, 8]
    (`CudaChain.vec(8)`; K a multiple of NB): a k block of NB weights and x values is
    loaded while the block before it runs its chain (loop-carried registers); x's lines and
    (PF < 0) the program's whole weight panel are prefetched into L1 at the start, or
    (PF > 0) the weights PF blocks of 8 ahead as the chain goes. XS (BN = 32, one warp): a
    block's x is NB/32 coalesced loads, and each k's value is shuffled to every thread
    (`_shfl`) instead of loaded by each: 2 loads a 64-k block instead of 64, 62 registers
    fewer. XV (x 16-byte aligned, which the plan checks): x as one broadcast 16-byte load
    a 4 ks (`_ld4x`) instead of one load a k: on the H100 a linear's warp issued ~3.8
    instructions a k at ~5.4 cycles each (Nsight Compute: long-scoreboard and fixed-latency
    waits), one of them x's load.

    Why: the chain is sequential in k (§3.1), so its time is the fma latency times K plus
    every load it waits on. Loaded as a [BN, TK] tile (qchain_vec_kernel), a row is spread
    over threads and moved back through shared memory, a barrier a block; loaded just
    before its fma (the first version of this kernel), each k still waited ~37 cycles.
    A linear's weights come from HBM (a step reads ~385 MB, L2 holds 60), and one warp has
    only a few KB in flight, so a program of BN = 32 columns streamed its 72 KB panel for
    ~10 µs: with a few columns a program (BN = 4: 144 programs for N = 576, over all the
    multiprocessors) and the panel asked for at once, the chain starts on data in L1.

    PARTS > 1: the linears of one input (q, k and v; gate and up) in one launch over their
    weights side by side ([K/8 + 8, ΣN, 8], step_plan_cuda.fuse_linears): N (word 11) is
    the sum, and part p's columns start at word 20 + 3p, with its output offset at 18 + 3p
    and its own N (the segment stride) at 19 + 3p; every part's N is a multiple of BN, so a
    program's columns lie in one part. Each output's chain is the one its own launch runs.
    Why: a decode linear waits on its chain and its loads, not on its size (wk and wv, a
    third of wq's columns, took as long as wq on the H200), so q, k and v can cost one.

    LR > 1 (a stack of lanes, step_plan_cuda.STACK_LR, ADR 0019): the program runs LR
    consecutive lanes, each thread one accumulator a lane for its column, every weight
    register used by LR fmas; each lane's x and outputs from its own table row. Why: one
    lane a program read each weight once a lane (32 lanes: w_down's 3.5 MB 32 times a step
    through L2)."""
    P = _row(ARGS, ROW, LANES, LR)
    # the weights are no launch's output: asked for before the wait; x (the launch before's
    # output) only after it (`_qchain_v8`), so that L1 holds no line of it from before
    _panel_l1(W, P, BN, PF)
    _start(PDL)
    _qchain_v8(X, W, OUT, P, BN, SEGW, NB, PF, XS, PARTS, XV, LR)


@triton.jit(do_not_specialize=["ROW"])
def norm_qchain_kernel(X, W, OUT, WT, ARGS, ROW, NEG0, F_SQ: tl.constexpr,
                       F_MEAN: tl.constexpr, F_EPS: tl.constexpr, F_ROOT: tl.constexpr,
                       F_DIV: tl.constexpr, F_W: tl.constexpr, CAP0: tl.constexpr,
                       NLEV: tl.constexpr, COMBINE: tl.constexpr, BN: tl.constexpr,
                       SEGW: tl.constexpr, NB: tl.constexpr, PF: tl.constexpr,
                       XS: tl.constexpr = False, LANES: tl.constexpr = 1,
                       PARTS: tl.constexpr = 1, PDL: tl.constexpr = False,
                       XV: tl.constexpr = False, LR: tl.constexpr = 1,
                       PRE: tl.constexpr = -1):
    """An RMSNorm and the decode linear that reads its output as one launch
    (`step_plan_cuda.fuse_norm_linears` matched them): every program (one warp) first runs
    the RMSNorm's records in registers (`_norm_warp`, norm_kernel's WARP body, its row
    this launch's; with PRE, the residual add before it), then, after a barrier, the
    linear's chains (`_qchain_v8`, qchain_v8_kernel's body, its row the rider after this
    one) from the normalised x it has just stored. Every program stores the same records at
    the same places, from the same inputs, so each value stored is the one its own launch
    would have stored, whichever program's store lands last; a program reads back only
    what it stored itself (the barrier orders it) or what no program of this launch writes.

    Why: an RMSNorm was a launch of ~5 µs on the H100, one program of 576 values, mostly
    launch and wait (profile-cuda-step.md), 61 a step, each followed by the linear that
    waits for it. Computed again by each of the linear's programs it costs their registers
    and a few hundred instructions, not a launch. The weight panel is asked for first, the
    norm's weight row and table words before the wait (`_norm_warp`)."""
    Pn = _row(ARGS, ROW, LANES, LR)
    P = Pn + LANES * 32  # the linear's row: the rider after this one (each lane's)
    _panel_l1(W, P, BN, PF)
    for r in range(LR):  # lane r's norm, then its wait (`_norm_warp`); a loop, not unrolled:
        # the warp body is large, and LR copies of it compiled for minutes
        _norm_warp(X, WT, OUT, Pn + r * 32, NEG0, F_SQ, F_MEAN, F_EPS, F_ROOT, F_DIV, F_W,
                   CAP0, NLEV, COMBINE, PRE, PDL)
    tl.debug_barrier()
    _qchain_v8(X, W, OUT, P, BN, SEGW, NB, PF, XS, PARTS, XV, LR)


@triton.jit
def _panel_l1(W, P, BN: tl.constexpr, PF: tl.constexpr):
    """PF < 0: ask L1 for the program's whole weight panel (BN·32 bytes a k block, 32
    blocks a round) of the linear whose row is P (`qchain_v8_kernel`)."""
    if PF < 0:
        N = tl.load(P + 11)
        last = tl.load(P + 16) // 8 - 1
        n0 = tl.program_id(0) * BN
        warp = tl.arange(0, 32)
        for r in range(0, last + 1, 32):
            blk = W + (tl.minimum(r + warp, last).to(tl.int64) * N + n0) * 8
            for c in tl.static_range((BN * 32 + 127) // 128):
                _prefetch_l1(blk + c * 32)


@triton.jit
def _qchain_v8(X, W, OUT, P, BN: tl.constexpr, SEGW: tl.constexpr, NB: tl.constexpr,
               PF: tl.constexpr, XS: tl.constexpr, PARTS: tl.constexpr, XV: tl.constexpr,
               LR: tl.constexpr):
    """qchain_v8_kernel's body after its wait: x's lines into L1, then the chains."""
    N = tl.load(P + 11)
    K = tl.load(P + 16)
    s_oseg0 = tl.load(P + 9)
    n0 = tl.program_id(0) * BN
    offs_n = n0 + tl.arange(0, BN)
    nmask = offs_n < N
    rn = (offs_n % tl.maximum(N, 1)).to(tl.int64)
    xps = ()  # lane r's row is ARGW words after lane r - 1's (`_row`)
    for r in tl.static_range(LR):
        xps = xps + (X + tl.load(P + r * 32),)
    warp = tl.arange(0, 32)
    step = N * 8
    last = K // 8 - 1
    for r in tl.static_range(2 * LR):  # x's 128-byte lines, K ≤ 2,048 (only a hint past it)
        _prefetch_l1(xps[r // 2] + tl.minimum(((r % 2) * 32 + warp) * 32, K - 1))
    wp = W + rn * 8
    outs = ()
    for r in tl.static_range(LR):
        o, s_oseg = _part_out(OUT, P + r * 32, n0, offs_n, s_oseg0, PARTS)
        outs = outs + (o,)
    accs = ()
    for _r in tl.static_range(LR):
        accs = accs + (tl.zeros([BN], dtype=tl.float32),)  # the chain starts from +0.0
    if XS:
        tl.static_assert(BN == 32)
    w = _w_block(wp, step, 0, NB)
    x = _xs_block(xps, 0, NB, XS, BN, XV, LR)
    for s in range(tl.load(P + 13)):
        for h in tl.static_range(SEGW // NB):
            kb = s * SEGW + h * NB
            if PF > 0:
                for q in tl.static_range(NB // 8):
                    _prefetch_l1(wp + tl.minimum(kb // 8 + q + PF, last) * step)
            kn = tl.where(kb + NB < K, kb + NB, 0)
            w2 = _w_block(wp, step, kn, NB)
            x2 = _xs_block(xps, kn, NB, XS, BN, XV, LR)
            for t in tl.static_range(NB):
                nxt = ()
                for r in tl.static_range(LR):
                    if XS:
                        xt = _shfl(x[r * (NB // 32) + t // 32], tl.full([BN], t % 32, tl.int32))
                    else:
                        xt = x[r * NB + t]
                    nxt = nxt + (tl.fma(xt, w[t], accs[r]),)
                accs = nxt
            w = w2
            x = x2
        done = ()
        for r in tl.static_range(LR):
            a = canon_nan(accs[r])
            tl.store(outs[r] + s * s_oseg, a, mask=nmask)
            done = done + (a,)
        accs = done


@triton.jit
def _quant_block(qp, xp, N, b, BN: tl.constexpr, QT: tl.constexpr):
    """Block b's (32 ks) words of this program's columns and the 32 x values (the rows of
    the layout are one coalesced load each). QT 4, layout [K/32, 6, N]: four words of eight
    4-bit q (q of k = 32b + 8w + j in bits 4j…4j+3 of word w), d and m (fp32 bits). QT 8,
    layout [K/32, 9, N]: eight words of four int8 q (k = 32b + 4w + j in bits 8j…8j+7 of
    word w) and d; m is d (unused)."""
    W: tl.constexpr = 4 if QT == 4 else 8
    ROWS: tl.constexpr = 6 if QT == 4 else 9
    rb = qp + b.to(tl.int64) * ROWS * N
    q = ()
    for w in tl.static_range(W):
        q = q + (tl.load(rb + w * N),)
    d = tl.load(rb + W * N).to(tl.float32, bitcast=True)
    if QT == 4:
        m = tl.load(rb + (W + 1) * N).to(tl.float32, bitcast=True)
    else:
        m = d
    x = ()
    xb = xp + b * 32
    for t in tl.static_range(32):
        x = x + (tl.load(xb + t),)
    return q, d, m, x


@triton.jit(do_not_specialize=["ROW"])
def qchain_quant_kernel(X, Q, OUT, ARGS, ROW, BN: tl.constexpr, SEGW: tl.constexpr,
                        PF: tl.constexpr, LANES: tl.constexpr = 1, PARTS: tl.constexpr = 1,
                        PDL: tl.constexpr = False, QT: tl.constexpr = 4):
    """§L5.3 a decode linear's DOT segments (as `qchain_v8_kernel`: one row of x, one
    output per thread, the same fma chain in k order) reading the weight as its GGUF blocks
    (ADR 0003), laid out by `CudaChain.quant` (`_quant_block`).

    QT 4, Q4_1: per 32 ks and column four words of 4-bit q and the block's d and m as fp32,
    24 bytes instead of 128. Each weight is `fma(d, q, m)`: d·q is exact, so that is ADR
    0003's RNE(f32(d)·q + f32(m)). q's fp32 value is taken without a conversion
    instruction: the bits 0x4B000000 | q are 2^23 + q, and subtracting 2^23 is exact.
    QT 8, Q8_0 (ADR 0024): eight words of int8 q and d, 36 bytes instead of 128; each weight
    is d·q, exact as ADR 0003's (11 + 8 significant bits); q + 128 goes in as above. Either
    is the fp32 value the trace program binds (checked when the layout is built).
    PF < 0: the program's whole panel is prefetched into L1 before the wait for the launch
    before (`_start`). PARTS: linears of one input side by side, as in `qchain_v8_kernel`.

    Why: a decode linear's time was its loads (~17 cycles a k on the H100 for fp32
    weights, whose panel for w_down is 196 KB a program), not its chain (4 cycles a k); the
    head (N 49,152) reads 113 MB of fp32 weights a step, 30 MB as its Q8_0 blocks."""
    ROWS: tl.constexpr = 6 if QT == 4 else 9
    P = _row(ARGS, ROW, LANES)
    N = tl.load(P + 11)
    K = tl.load(P + 16)
    s_oseg = tl.load(P + 9)
    n0 = tl.program_id(0) * BN
    offs_n = n0 + tl.arange(0, BN)
    nmask = offs_n < N
    rn = (offs_n % tl.maximum(N, 1)).to(tl.int64)
    xp = X + tl.load(P)
    warp = tl.arange(0, 32)
    nblk = K // 32
    if PF < 0:  # the panel: ROWS rows of BN words a block (BN = 32: one line each)
        for r in range(0, nblk, 32):
            row = (tl.minimum(r + warp, nblk - 1).to(tl.int64) * ROWS) * N + n0
            for w in tl.static_range(ROWS):
                for c in tl.static_range((BN * 4 + 127) // 128):
                    _prefetch_l1(Q + row + w * N + c * 32)
    _start(PDL)  # x is the launch before's output (`qchain_v8_kernel`'s comment)
    for r in tl.static_range(2):  # x's 128-byte lines, K ≤ 2,048 (only a hint past it)
        _prefetch_l1(xp + tl.minimum((r * 32 + warp) * 32, K - 1))
    out, s_oseg = _part_out(OUT, P, n0, offs_n, s_oseg, PARTS)
    qp = Q + rn
    acc = tl.zeros([BN], dtype=tl.float32)  # the chain starts from +0.0
    q, d, m, x = _quant_block(qp, xp, N, tl.zeros([], dtype=tl.int32), BN, QT)
    for s in range(tl.load(P + 13)):
        for h in tl.static_range(SEGW // 32):
            b = s * (SEGW // 32) + h
            q2, d2, m2, x2 = _quant_block(qp, xp, N, tl.where(b + 1 < nblk, b + 1, 0), BN, QT)
            for t in tl.static_range(32):
                if QT == 4:
                    bits = ((q[t // 8] >> (4 * (t % 8))) & 15) | 0x4B000000
                    w = tl.fma(d, bits.to(tl.float32, bitcast=True) - 8388608.0, m)
                else:  # 2^23 + (q + 128), less 2^23 + 128: q, exact
                    bits = (((q[t // 4] >> (8 * (t % 4))) & 255) ^ 128) | 0x4B000000
                    w = d * (bits.to(tl.float32, bitcast=True) - 8388736.0)
                acc = tl.fma(x[t], w, acc)
            q, d, m, x = q2, d2, m2, x2
        acc = canon_nan(acc)
        tl.store(out + s * s_oseg, acc, mask=nmask)


# A MOVE fused into the launch that writes its input (step_plan_cuda.fuse_moves): its row at
# words 15-29 of that launch's row (x_off, out_off, n, d1…d5, s0…s5, off; x_off is the
# launch's own out_off). CONTIG: it copies a run of that output, stored by the same
# threads from the same registers; GENERAL (concat_kernel only): programs of grid axis 1 = 1
# compute it from the CONCAT's inputs. Why: a decode step's MOVEs are 1.4-3.8 µs launches
# of a few KB each, waiting on the launch before them.
THEN_AT = tl.constexpr(15)


@triton.jit
def _then_contig(OUT, P, e, v, m):
    """The fused CONTIG MOVE's part of this program: its element e − off is this output's e."""
    Q = P + THEN_AT
    k = e - tl.load(Q + 14)
    tl.store(OUT + tl.load(Q + 1) + k, v, mask=m & (k >= 0) & (k < tl.load(Q + 2)))


@triton.jit(do_not_specialize=["ROW"])
def move_kernel(X, OUT, ARGS, ROW, X_AT: tl.constexpr, BLOCK: tl.constexpr,
                LANES: tl.constexpr = 1, THEN: tl.constexpr = -1, PDL: tl.constexpr = False):
    """§L5.8 MOVE: out[idx] = x[off + Σ idx_k·s_k], bits copied (int32 views); X_AT CONTIG:
    the strides are the output's own (a copy of a contiguous run). THEN CONTIG: a MOVE of
    this output's run fused in (`_then_contig`).
    Row: x_off, out_off, n, d1…d5, s0…s5, off."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = e < tl.load(P + 2)
    if X_AT == CONTIG:
        idx = e
    else:
        i0, i1, i2, i3, i4, i5 = _index6(e, P + 3)
        idx = _dot6(i0, i1, i2, i3, i4, i5, P + 8)
    src = X + tl.load(P) + tl.load(P + 14) + idx
    v = tl.load(src, mask=m, other=0)
    tl.store(OUT + tl.load(P + 1) + e, v, mask=m)
    if THEN == CONTIG:
        _then_contig(OUT, P, e, v, m)


@triton.jit
def _concat_at(A, B, P, e, m, ca, cb):
    """The CONCAT's element e (bits), read from its inputs."""
    o = e // (ca + cb)
    c = e % (ca + cb)
    va = tl.load(A + tl.load(P) + o * ca + c, mask=m & (c < ca), other=0)
    vb = tl.load(B + tl.load(P + 1) + o * cb + (c - ca), mask=m & (c >= ca), other=0)
    return tl.where(c < ca, va, vb)


@triton.jit(do_not_specialize=["ROW"])
def concat_kernel(A, B, OUT, ARGS, ROW, BLOCK: tl.constexpr,
                  LANES: tl.constexpr = 1, THEN: tl.constexpr = -1, PDL: tl.constexpr = False,
                  PAIR: tl.constexpr = False):
    """§L5.9 CONCAT of [outer, ca] and [outer, cb] into [outer, ca + cb], bits copied. THEN:
    a MOVE of this output fused in (words 15-29): CONTIG, stored beside the CONCAT's own
    stores; GENERAL, by the programs of grid axis 1 = 1, its every element's source index
    in the CONCAT's output mapped on to the CONCAT's inputs (a KV cache's head transpose).
    Row: a_off, b_off, out_off, outer, ca, cb.

    PAIR (step_plan_cuda.fuse_pairs): the second half of grid axis 1 runs the next table
    row's CONCAT (a layer's V cache append beside its K cache's), the same code on its own
    words. Why: the two are independent ~5 µs launches on the H100, and with PDL each
    waited for the one before."""
    P = _row(ARGS, ROW, LANES)
    role = tl.program_id(1)
    if PAIR:
        half = tl.num_programs(1) // 2
        P = tl.where(role >= half, P + LANES * 32, P)  # the next launch's row of this lane
        role = role % half
    _start(PDL)
    ca = tl.load(P + 4)
    cb = tl.load(P + 5)
    second = False
    if THEN == GENERAL:
        second = role == 1
    if second:
        Q = P + THEN_AT
        e2 = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m2 = e2 < tl.load(Q + 2)
        i0, i1, i2, i3, i4, i5 = _index6(e2, Q + 3)
        src = (tl.load(Q + 14) + _dot6(i0, i1, i2, i3, i4, i5, Q + 8)).to(tl.int64)
        tl.store(OUT + tl.load(Q + 1) + e2, _concat_at(A, B, P, src, m2, ca, cb), mask=m2)
    else:
        e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = e < tl.load(P + 3) * (ca + cb)
        v = _concat_at(A, B, P, e, m, ca, cb)
        tl.store(OUT + tl.load(P + 2) + e, v, mask=m)
        if THEN == CONTIG:
            _then_contig(OUT, P, e, v, m)


@triton.jit(do_not_specialize=["ROW"])
def gather_kernel(IDS, TAB, OUT, ARGS, ROW, BLOCK: tl.constexpr,
                  LANES: tl.constexpr = 1, PDL: tl.constexpr = False):
    """§L5.1 TOKENS then §L5.2 GATHER of a decode step: the token (row word 3) is stored at
    tok_off and its table row [D] copied to out_off (the host checked it is in the table).
    Row: tok_off, out_off, D, token."""
    P = _row(ARGS, ROW, LANES)
    _start(PDL)
    tok = tl.load(P + 3)
    if tl.program_id(0) == 0:
        tl.store(IDS + tl.load(P), tok.to(tl.int32))
    d = tl.load(P + 2)
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = e < d
    tl.store(OUT + tl.load(P + 1) + e, tl.load(TAB + tok * d + e, mask=m, other=0), mask=m)


@triton.jit(do_not_specialize=["ROW"])
def rope_kernel(X, COS, SIN, OUT, ARGS, ROW, HALF_MODE: tl.constexpr, RB: tl.constexpr,
                BH: tl.constexpr,
                LANES: tl.constexpr = 1, THEN: tl.constexpr = -1, PDL: tl.constexpr = False,
                PAIR: tl.constexpr = False):
    """§L5.7 ROPE of a decode row: every D-wide head of x at position past (`rope_rows`).
    THEN CONTIG: a MOVE of this output's run fused in (`_then_contig`), after a barrier.
    Row: x_off, out_off, n_heads, D, R, half (table row length), past.

    PAIR (step_plan_cuda.fuse_pairs): grid axis 1 = 2, and its programs 1 run the next
    table row's ROPE (a layer's k beside its q), the same code on its own words, without
    the MOVE. Why: two independent ~2.4 µs launches on the H100, the second waiting for the
    first under PDL."""
    P = _row(ARGS, ROW, LANES)
    rider = False
    if PAIR:
        rider = tl.program_id(1) == 1
        P = tl.where(rider, P + LANES * 32, P)  # the next launch's row of this lane
    _start(PDL)
    n_rows = tl.load(P + 2)
    D = tl.load(P + 3)
    h = tl.load(P + 4) // 2
    rows = tl.program_id(0) * RB + tl.arange(0, RB)
    i = tl.arange(0, BH)
    m = (rows[:, None] < n_rows) & (i[None, :] < h)
    rope_rows(X + tl.load(P), OUT + tl.load(P + 1), rows[:, None].to(tl.int64) * D, i, h,
              tl.load(P + 6) * tl.load(P + 5) + i[None, :], COS, SIN, m, HALF_MODE)
    if THEN == CONTIG:  # a MOVE of this output's run: this program's rows, read back
        if not rider:  # uniform across the program: the barrier is reached by all
            tl.debug_barrier()  # the rows' stores (other threads of this program) are visible
            c = tl.arange(0, RB * BH * 2)
            r0 = tl.program_id(0) * RB
            for c0 in range(0, RB * D, RB * BH * 2):
                e = r0.to(tl.int64) * D + c0 + c
                mc = (c0 + c < RB * D) & (e < n_rows * D)
                v = tl.load(OUT + tl.load(P + 1) + e, mask=mc, other=0.0)
                _then_contig(OUT, P, e, v, mc)


@triton.jit
def _is_nan(x):
    return (x.to(tl.int32, bitcast=True) & 0x7FFFFFFF) > 0x7F800000


@triton.jit
def argfold_level_kernel(X, IDS, OUT, v, w, cap, wout, npair, HAS_IDS: tl.constexpr,
                         BLOCK: tl.constexpr):
    """§L5.5 ARGFOLD, one level of one row per program column: out[i] = the winner of
    a = ids[i] and b = ids[i + cap] for i < npair (first NaN wins, the lower index if both;
    else the greater value; equal values, −0 = +0, the lower index), ids[i] for the rest up
    to wout. Without IDS the ids are 0 … v−1. An id outside [0, v) reads as NaN (the
    executor's own levels never produce one)."""
    r = tl.program_id(1).to(tl.int64)
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < wout
    pm = i < npair
    if HAS_IDS:
        ia = tl.load(IDS + r * w + i, mask=m, other=0)
        ib = tl.load(IDS + r * w + i + cap, mask=pm, other=0)
    else:
        ia = i.to(tl.int32)
        ib = (i + cap).to(tl.int32)
    xr = X + r * v
    va = tl.load(xr + ia, mask=pm & (ia >= 0) & (ia < v), other=float("nan"))
    vb = tl.load(xr + ib, mask=pm & (ib >= 0) & (ib < v), other=float("nan"))
    na = _is_nan(va)
    nb = _is_nan(vb)
    lo = tl.minimum(ia, ib)
    win = tl.where(va > vb, ia, tl.where(vb > va, ib, lo))
    win = tl.where(na | nb, tl.where(na & nb, lo, tl.where(na, ia, ib)), win)
    tl.store(OUT + r * wout + i, tl.where(pm, win, ia), mask=m)
