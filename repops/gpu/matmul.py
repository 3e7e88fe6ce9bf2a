"""RepOps matmul on the GPU (RepOps spec §3 / DESIGN §4.3).

out[m, n] is the chain over k = 0..K-1 ascending of acc <- fma(a[m,k], b[k,n], acc), from
acc = +0.0. Two kernels compute exactly that chain:

* `_gemm_kernel`: tiles of C; `tl.dot(a, b, acc, input_precision="ieee")` on fp32 tiles
  accumulates each output in k order with FFMA (measured exact on H100, DESIGN §4.3). K is
  walked ascending in one program: no split-K, no stream-K.
* `_gemv_kernel`: few rows (decode, M = 1): one program owns a strip of N columns for one
  row and issues explicit `tl.fma` in k order.

K-tail padding uses a = -0.0 (a run-time argument, see launch.NEG_ZERO), b = +0.0: the
product is -0.0 and fma(-0, +0, acc) = acc for every acc (also -0.0 and NaN), so padding
cannot change a bit; padding with +0.0 would turn an accumulator of -0.0 into +0.0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from repops.gpu.launch import FP_FLAGS, NEG_ZERO, check_f32_cuda, interpreting
from repops.gpu.primitives import canon_nan


@triton.jit
def _gemm_kernel(A, B, C, M, N, K,
                 s_ab, s_am, s_ak, s_bb, s_bk, s_bn, s_cb, s_cm, s_cn, NEG0,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                 GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):
    """RepOps spec §3 chain per output, tiled; grouped tile order for L2 reuse."""
    pid = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    grid_m = tl.cdiv(M, BM)
    grid_n = tl.cdiv(N, BN)
    group = GROUP_M * grid_n
    first_m = (pid // group) * GROUP_M
    size_m = tl.minimum(grid_m - first_m, GROUP_M)
    pid_m = first_m + ((pid % group) % size_m)
    pid_n = (pid % group) // size_m

    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    # Rows/cols past the edge read a valid row/col (wrapped); their outputs are not stored.
    rm = tl.max_contiguous(tl.multiple_of(offs_m % M, BM), BM)
    rn = tl.max_contiguous(tl.multiple_of(offs_n % N, BN), BN)
    rk = tl.arange(0, BK)
    a_ptrs = A + batch * s_ab + rm[:, None].to(tl.int64) * s_am + rk[None, :] * s_ak
    b_ptrs = B + batch * s_bb + rk[:, None].to(tl.int64) * s_bk + rn[None, :] * s_bn

    acc = tl.zeros((BM, BN), dtype=tl.float32)  # the chain starts from +0.0
    for k in range(0, K, BK):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            kmask = rk < K - k
            a = tl.load(a_ptrs, mask=kmask[None, :], other=0.0)
            a = tl.where(kmask[None, :], a, NEG0)
            b = tl.load(b_ptrs, mask=kmask[:, None], other=0.0)
        acc = tl.dot(a, b, acc, input_precision="ieee")
        a_ptrs += BK * s_ak
        b_ptrs += BK * s_bk

    acc = canon_nan(acc)
    c_ptrs = (C + batch * s_cb + offs_m[:, None].to(tl.int64) * s_cm
              + offs_n[None, :] * s_cn)
    tl.store(c_ptrs, acc, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def _gemv_kernel(A, B, C, M, N, K,
                 s_ab, s_am, s_ak, s_bb, s_bk, s_bn, s_cb, s_cm, s_cn, k_base,
                 BN: tl.constexpr, BK: tl.constexpr, CAUSAL: tl.constexpr, NS: tl.constexpr):
    """RepOps spec §3 chain with explicit fma, one row m and BN columns per program.

    NS > 1 asks Triton's software pipeliner to prefetch the next BK rows of B while the
    current block's chain runs (the chain itself stays strictly sequential).

    CAUSAL: row m's chain stops at k = k_base + m (spec §6.10: masked keys are excluded from
    the chain, not multiplied by zero).
    """
    pid_n = tl.program_id(0)
    m = tl.program_id(1)
    batch = tl.program_id(2).to(tl.int64)
    offs_n = pid_n * BN + tl.arange(0, BN)
    nmask = offs_n < N
    rn = offs_n % N
    a_ptr = A + batch * s_ab + m.to(tl.int64) * s_am
    b_ptr = B + batch * s_bb + rn.to(tl.int64) * s_bn
    k_end = K
    if CAUSAL:
        k_end = tl.minimum(K, k_base + m + 1)
    acc = tl.zeros((BN,), dtype=tl.float32)  # the chain starts from +0.0
    for _k0 in tl.range(0, (k_end // BK) * BK, BK, num_stages=NS):
        for kk in tl.static_range(BK):
            a_k = tl.load(a_ptr + kk * s_ak)
            b_k = tl.load(b_ptr + kk * s_bk)
            acc = tl.fma(a_k, b_k, acc)
        a_ptr += BK * s_ak
        b_ptr += BK * s_bk
    for _k in range((k_end // BK) * BK, k_end):
        a_k = tl.load(a_ptr)
        b_k = tl.load(b_ptr)
        acc = tl.fma(a_k, b_k, acc)
        a_ptr += s_ak
        b_ptr += s_bk
    acc = canon_nan(acc)
    tl.store(C + batch * s_cb + m.to(tl.int64) * s_cm + offs_n.to(tl.int64) * s_cn, acc,
             mask=nmask)


# (BM, BN, BK, GROUP_M, num_warps, num_stages); the fastest of scripts/bench_repops.py --sweep
# on an H100 (docs/reports/bench-repops.md). Every config gives the same bits (checked there).
GEMM_BIG = (64, 128, 32, 8, 4, 3)
GEMM_MID = (32, 64, 64, 8, 2, 3)
GEMM_SMALL_M = (32, 64, 32, 8, 2, 3)
GEMM_SMALL_MN = (16, 32, 32, 8, 1, 3)  # M <= 32, N <= 1024: more programs for short grids
GEMM_TINY_M = (16, 64, 32, 8, 1, 3)  # 4 < M <= 16
GEMM_TINY_MN = (16, 32, 64, 8, 1, 3)
# (BN, BK, num_warps[, stages]) for the explicit fma-chain kernel (causal P·V, or gemv=True)
GEMV_CFG = (128, 32, 4)
GEMV_MAX_M = 4  # M = 1 decode: the fma loop was faster and steadier than 16-row dot tiles

_INTERPRET_GEMM = (16, 16, 8, 2, 1, 1)


def gemm_config(M: int, N: int, K: int) -> tuple[int, int, int, int, int, int]:
    """Tile shape for a problem; any choice gives the same bits (spec §3 fixes the k-order)."""
    if interpreting():
        return _INTERPRET_GEMM
    if M <= 16:
        return GEMM_TINY_MN if N <= 1024 else GEMM_TINY_M
    if M <= 32:
        return GEMM_SMALL_MN if N <= 1024 else GEMM_SMALL_M
    if M * N >= 2048 * 2048:
        return GEMM_BIG
    return GEMM_MID


def _launch(a3: torch.Tensor, b3: torch.Tensor, c3: torch.Tensor, sab: int, sbb: int,
            cfg: tuple | None = None, gemv: bool | None = None,
            causal_base: int | None = None) -> None:
    """Launch on batched 3-D views (batch stride 0 = broadcast operand)."""
    nb, M, K = c3.shape[0], a3.shape[1], a3.shape[2]
    N = b3.shape[2]
    args = (a3, b3, c3, M, N, K, sab, a3.stride(1), a3.stride(2), sbb, b3.stride(1),
            b3.stride(2), c3.stride(0), c3.stride(1), c3.stride(2))
    use_gemv = M <= GEMV_MAX_M if gemv is None else gemv
    if use_gemv or causal_base is not None:
        bn, bk, nw, *ns = cfg or ((32, 4, 1) if interpreting() else GEMV_CFG)
        grid = (triton.cdiv(N, bn), M, nb)
        _gemv_kernel[grid](*args, causal_base or 0, BN=bn, BK=bk,
                           CAUSAL=causal_base is not None, NS=ns[0] if ns else 1,
                           num_warps=nw, **FP_FLAGS)
    else:
        bm, bn, bk, gm, nw, ns = cfg or gemm_config(M, N, K)
        grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn), nb)
        _gemm_kernel[grid](*args, NEG_ZERO, BM=bm, BN=bn, BK=bk, GROUP_M=gm, EVEN_K=K % bk == 0,
                           num_warps=nw, num_stages=ns, **FP_FLAGS)


def matmul(a: torch.Tensor, b: torch.Tensor, *, cfg: tuple | None = None,
           gemv: bool | None = None) -> torch.Tensor:
    """RepOps spec §3 matmul: a[..., M, K] @ b[..., K, N] with broadcast batch dims.

    `cfg`/`gemv` force a kernel and tile shape (benchmarks, tests); results never depend on them.
    """
    check_f32_cuda("matmul", a, b)
    if a.dim() < 1 or b.dim() < 1:
        raise ValueError(f"repops.matmul: operands must have >= 1 dim, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    squeeze_m = a.dim() == 1
    squeeze_n = b.dim() == 1
    a2 = a.unsqueeze(0) if squeeze_m else a
    b2 = b.unsqueeze(-1) if squeeze_n else b
    M, K = a2.shape[-2], a2.shape[-1]
    K2, N = b2.shape[-2], b2.shape[-1]
    if K != K2:
        raise ValueError(f"repops.matmul: inner dims differ: a {tuple(a.shape)} @ b "
                         f"{tuple(b.shape)} (K {K} vs {K2})")
    try:
        batch = torch.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except RuntimeError as e:
        raise ValueError(f"repops.matmul: batch dims do not broadcast: a {tuple(a.shape)} @ b "
                         f"{tuple(b.shape)}") from e
    nb = 1
    for d in batch:
        nb *= d
    out = torch.empty((*batch, M, N), dtype=torch.float32, device=a.device)
    if out.numel() == 0:
        pass
    elif K == 0:
        out.zero_()  # empty chain: the +0.0 start value (spec §3)
    elif b2.dim() == 2 and a2.dim() >= 2:
        # Weights shared by every batch entry: fold batch into M, one launch.
        a3 = a2.contiguous().reshape(1, -1, K)
        c3 = out.view(1, -1, N)
        _launch(a3, b2.unsqueeze(0), c3, 0, 0, cfg, gemv)
    else:
        a3 = a2.expand(*batch, M, K).contiguous().reshape(nb, M, K)
        b3 = b2.expand(*batch, K, N).contiguous().reshape(nb, K, N)
        _launch(a3, b3, out.view(nb, M, N), a3.stride(0), b3.stride(0), cfg, gemv)
    if squeeze_m:
        out = out.squeeze(-2)
    if squeeze_n:
        out = out.squeeze(-1)
    return out


def causal_matmul(p: torch.Tensor, v: torch.Tensor, k_base: int) -> torch.Tensor:
    """out[b, t, d] = chain over j = 0..k_base+t of fma(p[b,t,j], v[b,j,d], acc) from +0.0
    (RepOps spec §6.10, the P·V chain with masked keys excluded). p [B, Tq, Tk], v [B, Tk, D]."""
    check_f32_cuda("attention", p, v)
    p, v = p.contiguous(), v.contiguous()
    nb, tq, tk = p.shape
    out = torch.empty((nb, tq, v.shape[2]), dtype=torch.float32, device=p.device)
    if out.numel():
        _launch(p, v, out, p.stride(0), v.stride(0), causal_base=k_base)
    return out


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """RepOps spec §3.3 linear: x[..., K] with w[N, K] -> [..., N], equal to matmul(x, w^T).

    w^T is passed as a strided view: no copy of the weights.
    """
    check_f32_cuda("linear", x, w)
    if w.dim() != 2 or x.dim() < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"repops.linear: x {tuple(x.shape)} and w {tuple(w.shape)} need "
                         "x[..., K], w[N, K]")
    lead = x.shape[:-1]
    y = matmul(x.reshape(-1, x.shape[-1]), w.t())
    return y.reshape(*lead, w.shape[0])
