"""Triton kernels of the CUDA step plan (node/ree/step_plan_cuda.py): one launch per plan
record, reading and writing the step's arena in place (docs/trace-layout.md §L5).

Why separate kernels from the `repops.gpu` ops: those allocate their outputs and take whole
tensors, so the op-by-op executor paid an allocation, views and ~50 µs of Python per trace
op. Here every operand is (base tensor, element offset) into the step's arena, a weight or the
previous step's arena, every dim and stride is a run-time argument (no recompile as the
context grows), and one record (a whole linear's segments, a whole FOLD tree) is one launch.
The arithmetic is the RepOps device functions' (`canon_nan`, `max2_f`, `exp_cr`, …): the same
§L5 element definitions the C plan (repops/cpu/csrc/repops_step_plan.c) computes.
"""

from __future__ import annotations

import triton
import triton.language as tl

from repops.gpu.elementwise import binary_f, max2_f, unary_f
from repops.gpu.primitives import canon_nan

# every int argument that changes from step to step: specialising on it (value 1, multiple
# of 16) would compile a new variant as the context grows
_DYN_EW = ["a_off", "b_off", "out_off", "n", "d1", "d2", "d3", "d4", "d5",
           "sa0", "sa1", "sa2", "sa3", "sa4", "sa5", "sb0", "sb1", "sb2", "sb3", "sb4", "sb5",
           "past", "R", "C", "scalar_bits", "fill_bits"]


@triton.jit
def _index6(e, d1, d2, d3, d4, d5):
    """Row-major index of flat element e over dims (·, d1 … d5)."""
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


@triton.jit(do_not_specialize=_DYN_EW)
def ew_kernel(A, a_off, B, b_off, OUT, out_off, n, d1, d2, d3, d4, d5,
              sa0, sa1, sa2, sa3, sa4, sa5, sb0, sb1, sb2, sb3, sb4, sb5,
              scalar_bits, fill_bits, past, R, C,
              FN: tl.constexpr, HAS_B: tl.constexpr, MASK: tl.constexpr, BLOCK: tl.constexpr):
    """§L5.6 EW: out[e] = fn(a[·], b[·]) with NumPy broadcasting given as element strides
    (0 on a broadcast dim); a binary fn without b uses the scalar (bits as int32: a float
    argument would lose −0.0 to `0.0 + s`). MASK: column c > past + r of
    row r ([..., R, C]) is `fill`."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = e < n
    i0, i1, i2, i3, i4, i5 = _index6(e, d1, d2, d3, d4, d5)
    ia = i0 * sa0 + i1 * sa1 + i2 * sa2 + i3 * sa3 + i4 * sa4 + i5 * sa5
    a = tl.load(A + a_off + ia, mask=m, other=1.0)
    if FN < 16:
        if HAS_B:
            ib = i0 * sb0 + i1 * sb1 + i2 * sb2 + i3 * sb3 + i4 * sb4 + i5 * sb5
            b = tl.load(B + b_off + ib, mask=m, other=1.0)
        else:
            b = (tl.zeros([BLOCK], dtype=tl.int32) + scalar_bits).to(tl.float32, bitcast=True)
        y = binary_f(a, b, FN - 1)  # §L5.6 fn 1-6 are add … min
    elif FN < 22:
        y = unary_f(a, FN - 16)  # fn 16-21 are neg … SiLU
    else:  # 22: copy
        y = a
    y = canon_nan(y)
    if MASK:
        col = e % C
        row = (e // C) % R
        fill = (tl.zeros([BLOCK], dtype=tl.int32) + fill_bits).to(tl.float32, bitcast=True)
        y = tl.where(col > past + row, fill, y)
    tl.store(OUT + out_off + e, y, mask=m)


@triton.jit(do_not_specialize=["x_off", "out_off", "rows", "w", "nlive"])
def fold_tree_kernel(X, x_off, OUT, out_off, rows, w, nlive, NEG0,
                     CAP0: tl.constexpr, NLEV: tl.constexpr, COMBINE: tl.constexpr):
    """§L5.4 FOLD levels cap = CAP0, CAP0/2, … (NLEV of them), all in one program per row:
    level l keeps i < m = max(n − cap, 0) as combine(x[i], x[i + cap]), copies the rest of
    its input up to cap, pads −0.0; n = min(nlive, the level's input width). Levels lie back
    to back ([rows, cap] each); a barrier orders a level's stores before the next reads."""
    r = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, CAP0)
    src = X + x_off + r * w
    win = w
    base = out_off
    for lev in tl.static_range(NLEV):
        cap = CAP0 >> lev
        n = tl.minimum(nlive, win)
        mm = tl.maximum(n - cap, 0)
        hi = tl.minimum(win, cap)
        a = tl.load(src + i, mask=i < hi, other=0.0)
        b = tl.load(src + i + cap, mask=i < mm, other=0.0)
        if COMBINE == 0:
            c = a + b
        else:
            c = max2_f(a, b)
        y = tl.where(i < mm, c, a)
        y = tl.where(i < hi, canon_nan(y), NEG0)
        dst = OUT + base + r * cap
        tl.store(dst + i, y, mask=i < cap)
        tl.debug_barrier()
        src = dst
        win = cap
        base += rows * cap


@triton.jit(do_not_specialize=["a_off", "s_ab", "s_ar", "b_off", "s_bb", "s_bn", "s_bk",
                               "acc_off", "out_off", "s_oseg", "R", "N", "group", "nseg",
                               "k0", "segw", "kmax", "past"])
def chain_kernel(A, a_off, s_ab, s_ar, B, b_off, s_bb, s_bn, s_bk, ACC, acc_off, OUT, out_off,
                 s_oseg, R, N, group, nseg, k0, segw, kmax, past, NEG_INF,
                 HAS_ACC: tl.constexpr, CAUSAL: tl.constexpr, BN: tl.constexpr,
                 BK: tl.constexpr, NS: tl.constexpr):
    """§L5.3 DOT segments with explicit fma, one row and BN outputs per program: segment s
    chains k over [k0 + s·segw, min(k0 + (s+1)·segw, kmax)) ascending from the previous
    segment's accumulator (the first from ACC or +0.0) and stores it (canonical) at
    OUT + s·s_oseg. A [batch, R, K] rows (k stride 1); B row n of batch b // group at
    b·s_bb + n·s_bn, k stride s_bk. CAUSAL 1: row r's chain stops at past + r + 1;
    CAUSAL 2: outputs n > past + r are −inf."""
    pid_n = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    bat = tl.program_id(2).to(tl.int64)
    offs_n = pid_n * BN + tl.arange(0, BN)
    nmask = offs_n < N
    rn = (offs_n % N).to(tl.int64)
    a_row = A + a_off + bat * s_ab + row * s_ar
    b_col = B + b_off + (bat // group) * s_bb + rn * s_bn
    o_at = (bat * R + row) * N + offs_n
    if HAS_ACC:
        acc = tl.load(ACC + acc_off + o_at, mask=nmask, other=0.0)
    else:
        acc = tl.zeros((BN,), dtype=tl.float32)  # the chain starts from +0.0
    ks = k0
    for s in range(nseg):
        ke = tl.minimum(ks + segw, kmax)
        if CAUSAL == 1:
            ke = tl.minimum(ke, past + row + 1)
        a_ptr = a_row + ks
        b_ptr = b_col + ks * s_bk
        nfull = tl.maximum(ke - ks, 0) // BK
        for _kb in tl.range(0, nfull, num_stages=NS):
            for kk in tl.static_range(BK):
                acc = tl.fma(tl.load(a_ptr + kk), tl.load(b_ptr + kk * s_bk), acc)
            a_ptr += BK
            b_ptr += BK * s_bk
        for _k in range(ks + nfull * BK, ke):
            acc = tl.fma(tl.load(a_ptr), tl.load(b_ptr), acc)
            a_ptr += 1
            b_ptr += s_bk
        acc = canon_nan(acc)
        y = acc
        if CAUSAL == 2:
            y = tl.where(offs_n > past + row, NEG_INF, acc)
        tl.store(OUT + out_off + s * s_oseg + o_at, y, mask=nmask)
        ks += segw


@triton.jit(do_not_specialize=["x_off", "out_off", "n", "d1", "d2", "d3", "d4", "d5",
                               "s0", "s1", "s2", "s3", "s4", "s5", "off"])
def move_kernel(X, x_off, OUT, out_off, n, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, off,
                BLOCK: tl.constexpr):
    """§L5.8 MOVE: out[idx] = x[off + Σ idx_k·s_k], bits copied (int32 views)."""
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = e < n
    i0, i1, i2, i3, i4, i5 = _index6(e, d1, d2, d3, d4, d5)
    src = off + i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3 + i4 * s4 + i5 * s5
    tl.store(OUT + out_off + e, tl.load(X + x_off + src, mask=m, other=0), mask=m)
