"""binary32 arithmetic on bit patterns for the referee, delegating to the RepOps reference.

Everything here works on NumPy arrays of uint32 bit patterns, because commitments and the
contract speak bits. The arithmetic is the RepOps CPU reference (`repops` API) — the mirror must
not re-implement ops. The one exception is `fma`, which the public API does not expose (it is
only inside `matmul`); it is computed exactly here via binary64 round-to-odd, the method RepOps
spec §2 names for an fma through binary64.
"""

from __future__ import annotations

import numpy as np
import torch

from repops import api

NAN = 0x7FC00000
NEG_INF = 0xFF800000
POS_ZERO = 0
NEG_ZERO = 0x80000000


def _t(bits: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bits, dtype=np.uint32).view(np.float32))


def _b(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().numpy().view(np.uint32).copy()


def isnan(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.uint32) & 0x7FFFFFFF) > 0x7F800000


def canon(x: np.ndarray) -> np.ndarray:
    """RepOps spec §1.2."""
    x = np.asarray(x, dtype=np.uint32)
    return np.where(isnan(x), np.uint32(NAN), x).astype(np.uint32)


_BINARY = {"add": api.add, "sub": api.sub, "mul": api.mul, "div": api.div,
           "max": api.maximum, "min": api.minimum}
_UNARY = {"neg": api.neg, "sqrt": api.sqrt, "exp": api.exp, "log": api.log,
          "sigmoid": api.sigmoid, "silu": api.silu}


def binary(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RepOps spec §6.1 on bit arrays (broadcasting)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.uint32), np.asarray(b, np.uint32))
    if a.size == 0:
        return np.zeros(a.shape, np.uint32)
    return _b(_BINARY[name](_t(a), _t(b)))


def unary(name: str, x: np.ndarray) -> np.ndarray:
    """RepOps spec §6.2 on bit arrays."""
    x = np.asarray(x, np.uint32)
    if name == "copy":
        return canon(x)
    if x.size == 0:
        return x.copy()
    return _b(_UNARY[name](_t(x)))


def fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """RepOps spec §2 fma: RN(a·b + c), one rounding, canonical NaN.

    a·b is exact in binary64 (48-bit significands); the sum is rounded to odd in binary64
    (53 ≥ 24 + 2 bits), which makes the final rounding to binary32 a single correct rounding.
    """
    fa = np.asarray(a, np.uint32).view(np.float32).astype(np.float64)
    fb = np.asarray(b, np.uint32).view(np.float32).astype(np.float64)
    fc = np.asarray(c, np.uint32).view(np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        p = fa * fb
        s = p + fc
        bv = s - p
        err = (p - (s - bv)) + (fc - bv)  # TwoSum: exact error of s
        finite = np.isfinite(s)
        even = (s.view(np.uint64) & np.uint64(1)) == 0
        fix = finite & (err != 0) & even
        toward = np.where(err > 0, np.inf, -np.inf)
        s = np.where(fix, np.nextafter(s, toward), s)
        r = s.astype(np.float32).view(np.uint32)
    return canon(r)


def gt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IEEE a > b (RepOps spec §1.4): false with a NaN, -0 == +0."""
    return np.asarray(a, np.uint32).view(np.float32) > np.asarray(b, np.uint32).view(np.float32)


def f32_bits(v: float) -> int:
    return int(np.array(v, dtype=np.float32).view(np.uint32))
