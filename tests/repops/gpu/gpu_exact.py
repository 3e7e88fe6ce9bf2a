"""Independent exact oracles for the GPU tests (no code shared with the backends).

fp32 fma emulated in float64 with round-to-odd: a*b is exact in float64 (48 significant
bits); acc + a*b rounded to odd in float64 and then to nearest float32 is the correctly rounded
fma (53 >= 24 + 2), which plain float64 addition would double-round.
"""

from __future__ import annotations

import torch


def _round_to_odd_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + y in float64, rounded to odd (exact when representable)."""
    s = x + y
    bp = s - x
    err = (x - (s - bp)) + (y - bp)  # TwoSum: s + err == x + y exactly
    inexact = (err != 0) & torch.isfinite(s)
    # truncation toward zero of the exact sum: s itself if |s| < |x+y|, else one step toward 0
    toward_zero = torch.where((err > 0) == (s > 0), s, torch.nextafter(s, torch.zeros_like(s)))
    bits = toward_zero.view(torch.int64) | 1
    return torch.where(inexact, bits.view(torch.float64), s)


def fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """IEEE binary32 fma(a, b, c), correctly rounded, for float32 tensors."""
    p = a.double() * b.double()
    return _round_to_odd_sum(p, c.double()).float()


def matmul_chain(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DESIGN §4.3: acc <- fma(a[m,k], b[k,n], acc) for k ascending from +0.0 (2-D inputs)."""
    M, K = a.shape
    N = b.shape[1]
    acc = torch.zeros((M, N), dtype=torch.float32, device=a.device)
    for k in range(K):
        acc = fma32(a[:, k:k + 1].expand(M, N), b[k:k + 1, :].expand(M, N), acc)
    return canon(acc)


def fold_sum(x: torch.Tensor) -> torch.Tensor:
    """DESIGN §4.4 fold tree along the last dim (pad -0.0 to a power of two)."""
    n = x.shape[-1]
    p = 1 << max(0, (max(n, 1) - 1).bit_length())
    pad = torch.full((*x.shape[:-1], p - n), -0.0, dtype=x.dtype, device=x.device)
    y = torch.cat([x, pad], dim=-1)
    while y.shape[-1] > 1:
        h = y.shape[-1] // 2
        y = y[..., :h] + y[..., h:]
    return canon(y[..., 0])


def canon(x: torch.Tensor) -> torch.Tensor:
    """DESIGN §4.1 canonical NaN."""
    nan = torch.tensor(0x7FC00000, dtype=torch.int32, device=x.device).view(torch.float32)
    return torch.where(torch.isnan(x), nan, x)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)
