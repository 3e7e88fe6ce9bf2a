"""Exact oracle for the Solidity binary32 library, on bit patterns (RepOps spec §1-§6.14).

Independent of the Solidity algorithms: add/sub/mul/div/sqrt come from numpy float32 arrays
(single IEEE instructions on x86: correctly rounded, no FTZ/DAZ), fma and conversions from
exact rationals rounded by `round_fraction`, exp/log from mpmath with a Ziv check (two
precisions must round alike). Every function takes and returns uint32 bit patterns (numpy
uint32 arrays or Python ints) and outputs the canonical NaN 0x7FC00000 (spec §1.2).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np

NAN = 0x7FC00000
POS_INF = 0x7F800000
NEG_INF = 0xFF800000
SIGN = 0x80000000


def as_u32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.uint32)


def canon(bits: np.ndarray) -> np.ndarray:
    """Spec §1.2: every NaN output becomes 0x7FC00000."""
    bits = np.array(bits, dtype=np.uint32)
    bits[(bits & 0x7FFFFFFF) > POS_INF] = NAN
    return bits


def is_nan(b: int) -> bool:
    return (b & 0x7FFFFFFF) > POS_INF


def to_fraction(b: int) -> Fraction:
    """Exact value of a finite binary32 bit pattern."""
    e = (b >> 23) & 0xFF
    m = b & 0x7FFFFF
    if e == 0:
        v = Fraction(m, 2**149)
    else:
        v = Fraction(m | 0x800000) * Fraction(2) ** (e - 150)
    return -v if b >> 31 else v


def round_fraction(q: Fraction, negative_zero: bool = False) -> int:
    """RN(q) to binary32 bits: ties to even, gradual underflow, overflow to inf (spec notation
    RN). `negative_zero` picks the sign when q == 0 exactly."""
    if q == 0:
        return SIGN if negative_zero else 0
    sign = SIGN if q < 0 else 0
    a = -q if q < 0 else q
    # floor(log2 a)
    n = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** n > a:
        n -= 1
    q_exp = max(n - 23, -149)  # quantum exponent
    scaled = a / Fraction(2) ** q_exp
    m = scaled.numerator // scaled.denominator
    rem = scaled - m
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and m & 1):
        m += 1
    bits = ((q_exp + 149) << 23) + m
    if bits >= POS_INF:
        bits = POS_INF
    return sign | bits


# ---------------------------------------------------------------- primitives (spec §2)


def _np_binary(op, a, b) -> np.ndarray:
    fa = as_u32(a).view(np.float32)
    fb = as_u32(b).view(np.float32)
    with np.errstate(all="ignore"):
        return canon(op(fa, fb).astype(np.float32).view(np.uint32))


def add(a, b) -> np.ndarray:
    return _np_binary(np.add, a, b)


def sub(a, b) -> np.ndarray:
    return _np_binary(np.subtract, a, b)


def mul(a, b) -> np.ndarray:
    return _np_binary(np.multiply, a, b)


def div(a, b) -> np.ndarray:
    return _np_binary(np.divide, a, b)


def sqrt(a) -> np.ndarray:
    with np.errstate(all="ignore"):
        return canon(np.sqrt(as_u32(a).view(np.float32)).view(np.uint32))


def neg(a) -> np.ndarray:
    """Spec §1.3: sign flip, NaN -> canonical NaN."""
    return canon(as_u32(a) ^ np.uint32(SIGN))


def fma1(a: int, b: int, c: int) -> int:
    """IEEE fusedMultiplyAdd, one rounding (spec §2), exact via Fractions."""
    if is_nan(a) or is_nan(b) or is_nan(c):
        return NAN
    fa, fb, fc = (np.array([x], np.uint32).view(np.float32)[0] for x in (a, b, c))
    if not (np.isfinite(fa) and np.isfinite(fb) and np.isfinite(fc)):
        # Specials follow the same rules in binary64 (the product of two binary32 is exact
        # there, so no spurious overflow changes an infinity's sign).
        with np.errstate(all="ignore"):
            r = np.float64(fa) * np.float64(fb) + np.float64(fc)
        return int(canon(np.array([r], np.float64).astype(np.float32).view(np.uint32))[0])
    p = to_fraction(a) * to_fraction(b)
    s = p + to_fraction(c)
    if s == 0:
        # Exact zero: -0 only for (-0 product) + (-0); any other exact zero sum is +0.
        p_neg = ((a ^ b) >> 31) == 1
        return SIGN if (p == 0 and p_neg and c == SIGN) else 0
    return round_fraction(s)


def fma(a, b, c) -> np.ndarray:
    return as_u32([fma1(int(x), int(y), int(z)) for x, y, z in zip(a, b, c, strict=True)])


def fma_chain(xs, ys, acc: int = 0) -> int:
    """Spec §3.1: acc <- fma(x[k], y[k], acc) in ascending k."""
    for x, y in zip(xs, ys, strict=True):
        acc = fma1(int(x), int(y), acc)
    return acc


# ---------------------------------------------------------------- comparison (spec §1.4, §4.2)


def _key(b: int) -> int:
    mag = b & 0x7FFFFFFF
    return -mag if b >> 31 else mag


def lt1(a: int, b: int) -> bool:
    return not (is_nan(a) or is_nan(b)) and _key(a) < _key(b)


def le1(a: int, b: int) -> bool:
    return not (is_nan(a) or is_nan(b)) and _key(a) <= _key(b)


def eq1(a: int, b: int) -> bool:
    return not (is_nan(a) or is_nan(b)) and _key(a) == _key(b)


def cmp_flags(a, b) -> np.ndarray:
    """bit 0: a < b, bit 1: a <= b, bit 2: a == b (the harness's OP_CMP encoding)."""
    return as_u32([
        lt1(int(x), int(y)) | (le1(int(x), int(y)) << 1) | (eq1(int(x), int(y)) << 2)
        for x, y in zip(a, b, strict=True)
    ])


def max1(a: int, b: int) -> int:
    """Spec §4.2 max2."""
    if is_nan(a) or is_nan(b):
        return NAN
    ka, kb = _key(a), _key(b)
    if ka > kb:
        return a
    if kb > ka:
        return b
    if (a & 0x7FFFFFFF) == 0:
        return 0 if (a == 0 or b == 0) else SIGN
    return a


def min1(a: int, b: int) -> int:
    """Spec §4.2 min2."""
    if is_nan(a) or is_nan(b):
        return NAN
    ka, kb = _key(a), _key(b)
    if ka < kb:
        return a
    if kb < ka:
        return b
    if (a & 0x7FFFFFFF) == 0:
        return SIGN if (a == SIGN or b == SIGN) else 0
    return a


def max2(a, b) -> np.ndarray:
    return as_u32([max1(int(x), int(y)) for x, y in zip(a, b, strict=True)])


def min2(a, b) -> np.ndarray:
    return as_u32([min1(int(x), int(y)) for x, y in zip(a, b, strict=True)])


# ---------------------------------------------------------------- casts (spec §6.14)


def from_int(v: int) -> int:
    return round_fraction(Fraction(v))


def to_int_sat(b: int, width: int) -> int:
    """Truncation toward zero, NaN -> 0, saturation (Rust `as`)."""
    if is_nan(b):
        return 0
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    if (b & 0x7FFFFFFF) == POS_INF:
        return lo if b >> 31 else hi
    q = to_fraction(b)
    t = int(q)  # int() of a Fraction truncates toward zero
    return min(max(t, lo), hi)


# ---------------------------------------------------------------- exp / log (spec §5)


def _mpf_fraction(v: mpmath.mpf) -> Fraction:
    sign, man, e, _ = v._mpf_  # man_exp drops the sign
    q = Fraction(int(man)) * Fraction(2) ** e
    return -q if sign else q


def _ziv(fn, x: Fraction) -> int:
    """RN(fn(x)) from mpmath at 160 and 320 bits; both must agree (no binary32 input of exp or
    log is within 2^-150 relative of a rounding boundary, so they always do)."""
    results = set()
    for prec in (160, 320):
        with mpmath.workprec(prec):
            xm = mpmath.mpf(x.numerator) / x.denominator  # exact: x is dyadic, prec suffices
            results.add(round_fraction(_mpf_fraction(fn(xm))))
    if len(results) != 1:
        raise AssertionError(f"oracle could not decide the rounding of {fn.__name__}({x})")
    return results.pop()


def exp1(b: int) -> int:
    if is_nan(b):
        return NAN
    if b == POS_INF:
        return POS_INF
    if b == NEG_INF:
        return 0
    if (b & 0x7FFFFFFF) == 0:
        return 0x3F800000
    x = to_fraction(b)
    if x > 100:
        return POS_INF
    if x < -110:
        return 0
    return _ziv(mpmath.exp, x)


def log1(b: int) -> int:
    if is_nan(b) or (b >> 31 and (b & 0x7FFFFFFF) != 0):
        return NAN
    if (b & 0x7FFFFFFF) == 0:
        return NEG_INF
    if b == POS_INF:
        return POS_INF
    if b == 0x3F800000:
        return 0
    return _ziv(mpmath.log, to_fraction(b))


def exp(a) -> np.ndarray:
    return as_u32([exp1(int(x)) for x in a])


def log(a) -> np.ndarray:
    return as_u32([log1(int(x)) for x in a])
