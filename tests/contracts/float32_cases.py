"""Input generators for the binary32 differential tests and gas benchmark.

Uniform random bit patterns almost never hit the cases where soft-float code goes wrong
(ties, cancellation, underflow to subnormals, overflow, alignment shifts at the sticky cut-off),
so every generator mixes uniform patterns with operands built to land on those cases.
All values are uint32 bit patterns (numpy arrays).
"""

from __future__ import annotations

import numpy as np

SPECIALS = np.array([
    0x00000000, 0x80000000,  # +-0
    0x00000001, 0x80000001, 0x00000002, 0x00000003,  # least subnormals
    0x007FFFFF, 0x807FFFFF, 0x00400000, 0x00400001,  # largest / middle subnormals
    0x00800000, 0x80800000, 0x00800001, 0x00FFFFFF,  # least normals
    0x3F800000, 0xBF800000, 0x3F800001, 0x3F7FFFFF,  # 1, -1, 1 +- ulp
    0x3F000000, 0x40000000, 0x40400000, 0xC0400000,  # 0.5, 2, 3, -3
    0x33800000, 0x34000000, 0x4B800000, 0x4B800001,  # 2^-24, 2^-23, 2^24, 2^24+2
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F000000, 0x7F7FFFFE,  # largest finite
    0x7F800000, 0xFF800000,  # +-inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FA00000,  # NaNs
    0x3EAAAAAB, 0x3DCCCCCD, 0x42B17218, 0x42B17217, 0xC2CFF1B5, 0xC2CE8ED0,  # 1/3, 0.1, ...
], dtype=np.uint32)


def _pack(sign, exp, man) -> np.ndarray:
    return ((np.asarray(sign, np.uint64) << 31) | (np.asarray(exp, np.uint64) << 23)
            | np.asarray(man, np.uint64)).astype(np.uint32)


def mixed(rng: np.random.Generator, n: int) -> np.ndarray:
    """A mixture: uniform patterns, normals, subnormals, mid-range values, short significands
    (exact and tie-prone results) and specials."""
    kind = rng.integers(0, 6, n)
    sign = rng.integers(0, 2, n)
    man = rng.integers(0, 1 << 23, n)
    exp = rng.integers(1, 255, n)
    out = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    out = np.where(kind == 1, _pack(sign, exp, man), out)
    out = np.where(kind == 2, _pack(sign, 0, man), out)
    out = np.where(kind == 3, _pack(sign, rng.integers(100, 155, n), man), out)
    short = man & ~((1 << rng.integers(10, 23, n)) - 1)
    out = np.where(kind == 4, _pack(sign, rng.integers(90, 165, n), short), out)
    out = np.where(kind == 5, rng.choice(SPECIALS, n), out)
    return out


def pairs_add(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Operand pairs for add/sub: independent, exponent gaps 0..50 (alignment, the sticky
    cut-off at 40), exact cancellation, near-cancellation and exact half-ulp ties."""
    a = mixed(rng, n)
    b = mixed(rng, n)
    k = rng.integers(0, 5, n)
    ea = (a >> 23) & 0xFF
    gap = rng.integers(0, 51, n)
    eb = np.clip(ea.astype(np.int64) - gap, 0, 254)
    near = _pack(rng.integers(0, 2, n), eb, rng.integers(0, 1 << 23, n))
    b = np.where(k == 1, near, b)
    b = np.where(k == 2, a ^ np.uint32(0x80000000), b)  # x + (-x)
    tweak = (a ^ np.uint32(0x80000000)) + rng.integers(-3, 4, n).astype(np.uint32)
    b = np.where(k == 3, tweak, b)  # massive cancellation
    # Ties: b = odd multiple of half an ulp of a (exponent 24 below a's), few significant bits.
    tie_e = np.clip(ea.astype(np.int64) - 24 - rng.integers(0, 3, n), 0, 254)
    tie = _pack(rng.integers(0, 2, n), tie_e, (rng.integers(0, 8, n) << 20))
    b = np.where(k == 4, tie, b)
    return a, b


def pairs_mul(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs for mul/div: independent, products/quotients near underflow (subnormal results,
    rounding into the least normal) and overflow, and exact ties (1.5 * odd significand)."""
    a = mixed(rng, n)
    b = mixed(rng, n)
    k = rng.integers(0, 4, n)
    ea = rng.integers(1, 255, n)
    # |a * b| ~ 2^(ea + eb - 254): choose eb to land in [2^-160, 2^-120] or near 2^128.
    under = np.clip(254 - ea - rng.integers(20, 60, n) + 127 - 127, 1, 254)
    over = np.clip(254 - ea + rng.integers(125, 131, n) - 127, 1, 254)
    a2 = _pack(rng.integers(0, 2, n), ea, rng.integers(0, 1 << 23, n))
    a = np.where(k >= 1, a2, a)
    b = np.where(k == 1, _pack(rng.integers(0, 2, n), under, rng.integers(0, 1 << 23, n)), b)
    b = np.where(k == 2, _pack(rng.integers(0, 2, n), over, rng.integers(0, 1 << 23, n)), b)
    # 1.5 * m with m odd and 3m < 2^25: the exact product needs 25 bits ending in 1, a tie.
    odd = (rng.integers(1 << 22, (1 << 25) // 3, n) | 1) - (1 << 23)
    odd = np.where(odd < 0, odd + (1 << 22), odd) & 0x7FFFFF
    a = np.where(k == 3, _pack(rng.integers(0, 2, n), rng.integers(30, 220, n), 1 << 22), a)
    b = np.where(k == 3, _pack(rng.integers(0, 2, n), rng.integers(30, 220, n), odd), b)
    return a, b


def triples_fma(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triples for fma: independent, c = -RN(a*b) (cancellation down to the exact error),
    c at exponent gaps around the sticky cut-off (80), c = 0, tiny products, and ties."""
    a = mixed(rng, n)
    b = mixed(rng, n)
    c = mixed(rng, n)
    k = rng.integers(0, 6, n)
    fa = a.view(np.float32)
    fb = b.view(np.float32)
    with np.errstate(all="ignore"):
        prod = (fa * fb).view(np.uint32)
    c = np.where(k == 1, prod ^ np.uint32(0x80000000), c)
    wiggle = rng.integers(-2, 3, n).astype(np.uint32)
    c = np.where(k == 2, (prod ^ np.uint32(0x80000000)) + wiggle, c)
    ep = ((a >> 23) & 0xFF).astype(np.int64) + ((b >> 23) & 0xFF) - 127
    gap = rng.integers(-100, 101, n)
    ec = np.clip(ep - gap, 0, 254)
    c = np.where(k == 3, _pack(rng.integers(0, 2, n), ec, rng.integers(0, 1 << 23, n)), c)
    c = np.where(k == 4, rng.choice(np.array([0, 0x80000000], np.uint32), n), c)
    # Products of normals whose exact value is a tie after adding a short c.
    a = np.where(k == 5, _pack(rng.integers(0, 2, n), rng.integers(60, 190, n), 1 << 22), a)
    b = np.where(k == 5, _pack(rng.integers(0, 2, n), rng.integers(60, 190, n),
                               rng.integers(0, 1 << 23, n) | 1), b)
    return a, b, c


def exp_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """exp: the whole finite domain that matters ([-104, 89], uniform in value), around the
    overflow/underflow thresholds and the |x| < 2^-26 shortcut, plus uniform patterns."""
    k = rng.integers(0, 5, n)
    x = rng.uniform(-104.0, 89.0, n).astype(np.float32).view(np.uint32)
    x = np.where(k == 1, rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32), x)
    edge = rng.choice(np.array([0x42B17218, 0xC2CFF1B5, 0xC2AEAC50, 0x32800000, 0xB2800000,
                                0x42B20000, 0xC2D00000], np.uint32), n)
    x = np.where(k == 2, edge + rng.integers(-300, 300, n).astype(np.uint32), x)
    # subnormal results: x in [-103.98, -87.33]
    x = np.where(k == 3, rng.uniform(-104.0, -87.0, n).astype(np.float32).view(np.uint32), x)
    small = _pack(rng.integers(0, 2, n), rng.integers(90, 127, n), rng.integers(0, 1 << 23, n))
    x = np.where(k == 4, small, x)
    return x


def log_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """log: uniform positive patterns (every binade, subnormals included), values next to 1
    (tiny results), and uniform patterns (negatives, NaNs, infinities)."""
    k = rng.integers(0, 4, n)
    x = rng.integers(0, 0x7F800000, n).astype(np.uint32)
    near1 = (0x3F800000 + rng.integers(-40000, 40000, n)).astype(np.uint32)
    x = np.where(k == 1, near1, x)
    x = np.where(k == 2, rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32), x)
    x = np.where(k == 3, rng.integers(0, 0x00800000, n).astype(np.uint32), x)
    return x


def int64_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """int64 values of every magnitude, plus 25-bit-and-longer values that are exact ties."""
    width = rng.integers(1, 64, n)
    raw = rng.integers(0, 1 << 62, n, dtype=np.int64)
    mag = (raw >> (62 - np.minimum(width, 62))).astype(np.int64)
    k = rng.integers(0, 3, n)
    # ties: (2^24 + odd) * 2^s has 25 significant bits ending in 1 before the shift.
    s = rng.integers(0, 38, n)
    tie = (np.int64(1 << 24) + (rng.integers(0, 1 << 23, n) * 2 + 1)) << s
    mag = np.where(k == 1, tie, mag)
    mag = np.where(k == 2, rng.integers(-(1 << 31), 1 << 31, n), mag)
    neg = rng.integers(0, 2, n).astype(bool)
    return np.where(neg, -mag, mag).astype(np.int64)


def to_int_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """f32 -> int: uniform patterns, values around +-2^31 and +-2^63 (saturation edges)."""
    x = mixed(rng, n)
    k = rng.integers(0, 3, n)
    edge = rng.choice(np.array([0x4F000000, 0xCF000000, 0x5F000000, 0xDF000000, 0x3F800000,
                                0xBF800000, 0x4B000000], np.uint32), n)
    x = np.where(k == 1, edge + rng.integers(-5, 6, n).astype(np.uint32), x)
    x = np.where(k == 2, _pack(rng.integers(0, 2, n), rng.integers(120, 200, n),
                               rng.integers(0, 1 << 23, n)), x)
    return x
