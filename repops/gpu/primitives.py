"""Triton device functions shared by the RepOps kernels: NaN canonicalization, the fold tree,
and a total-order key for max/argmax.

These are the only places where the rules of RepOps spec §1 (canonical NaN) and §4 (fold-sum
tree, order-free max) are written for the GPU, so every kernel gets them identically.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def canon_nan(x):
    """RepOps spec §1: every output NaN becomes 0x7FC00000.

    Done on the integer bits: a float select `isnan(x) ? NaN : x` may be folded to `x` by the
    compiler (NaN payloads are not preserved by its float semantics), an integer select may not.
    """
    bits = x.to(tl.int32, bitcast=True)
    is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
    bits = tl.where(is_nan, 0x7FC00000, bits)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def fold_rows(x, R: tl.constexpr, P: tl.constexpr, LOG_P: tl.constexpr):
    """RepOps spec §4 fold tree along axis 1 of an [R, P] block (P = 2**LOG_P, padded by the
    caller with -0.0): while P > 1, x[i] = x[i] + x[i + P/2] for i < P/2.

    Written with reshape/permute/split so the pairing is explicit; tl.sum's order depends on
    the layout and the number of warps.
    """
    for i in tl.static_range(LOG_P):
        y = tl.reshape(x, [R, 2, P >> (i + 1)])
        y = tl.permute(y, [0, 2, 1])
        lo, hi = tl.split(y)
        x = lo + hi
    return tl.reshape(x, [R])


@triton.jit
def order_key(x):
    """Signed-int key whose order is the float order with -0 < +0 and (canonical) NaN above
    +inf: max over keys gives RepOps spec §4 max (NaN propagates, max(-0, +0) = +0)."""
    bits = canon_nan(x).to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@triton.jit
def key_to_float(k):
    """Inverse of order_key."""
    bits = k ^ ((k >> 31) & 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True)
