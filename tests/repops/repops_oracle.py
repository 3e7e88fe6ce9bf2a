"""Independent oracles for the RepOps v1 spec (docs/repops-spec.md), written from the spec text.

Nothing here calls the C reference. Primitive roundings come from exact rationals (Fraction),
numpy float32 *scalar* add/mul/div/sqrt (single IEEE instructions on x86, correctly rounded) and
mpmath for exp/log; fma is checked two independent ways (Fractions, and binary64 with a
round-to-odd correction that vectorizes for long chains).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np

F32 = np.float32
QNAN = np.array([0x7FC00000], np.uint32).view(np.float32)[0]
MAX_F32 = Fraction((2**24 - 1) * 2**104)


def bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def from_bits(u) -> np.ndarray:
    return np.asarray(u, dtype=np.uint32).view(np.float32)


def canon(x: np.float32) -> np.float32:
    """Spec §1.2."""
    return QNAN if np.isnan(x) else F32(x)


def canon_array(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float32)
    a[np.isnan(a)] = QNAN
    return a


def rn32(q: Fraction, zero_negative: bool = False) -> np.float32:
    """RN of an exact rational to binary32 (ties to even, gradual underflow, overflow to inf).
    `zero_negative` gives the sign of a result that rounds to zero when q == 0."""
    if q == 0:
        return F32(-0.0) if zero_negative else F32(0.0)
    neg = q < 0
    a = -q if neg else q
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    elif Fraction(2) ** (e + 1) <= a:
        e += 1
    e = max(e, -126)
    quantum = Fraction(2) ** (e - 23)
    n = round(a / quantum)  # half-to-even
    v = n * quantum
    r = F32(np.inf) if v > MAX_F32 else F32(float(v))
    return -r if neg else r


def frac(x) -> Fraction:
    return Fraction(float(x))


def fma_exact(a, b, c) -> np.float32:
    """IEEE fma (spec §2) via Fractions; specials through binary64 which has the same rules."""
    a, b, c = F32(a), F32(b), F32(c)
    if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)):
        return canon(F32(float(a) * float(b) + float(c)))
    p = frac(a) * frac(b)
    s = p + frac(c)
    if s == 0:
        p_neg = (math.copysign(1, a) * math.copysign(1, b)) < 0
        both_neg = (p == 0) and p_neg and math.copysign(1, c) < 0
        return rn32(s, zero_negative=both_neg)
    return rn32(s)


def fma_rto(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Vectorized binary32 fma: exact product in binary64, sum rounded to odd (TwoSum +
    nudge), then one RN to binary32. Round-to-odd at 53 bits makes the second rounding to 24
    bits exact."""
    with np.errstate(invalid="ignore", over="ignore"):
        p = a.astype(np.float64) * b.astype(np.float64)
        cc = c.astype(np.float64)
        s = p + cc
        bb = s - p
        err = (p - (s - bb)) + (cc - bb)
        fin = np.isfinite(s) & np.isfinite(err)
        even = (s.view(np.int64) & 1) == 0
        fix = fin & (err != 0) & even
        s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
        return canon_array(s.astype(np.float32))


def dot_chain(a: np.ndarray, b: np.ndarray) -> np.float32:
    """Spec §3.1 for one output with Fraction fma."""
    acc = F32(0.0)
    for x, y in zip(a, b, strict=True):
        acc = fma_exact(x, y, acc)
    return canon(acc)


def matmul_chain(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spec §3.2 for 2-D a[M,K] @ b[K,N], vectorized over outputs with fma_rto."""
    m, k = a.shape
    acc = np.zeros((m, b.shape[1]), np.float32)
    for i in range(k):
        acc = fma_rto(
            np.broadcast_to(a[:, i : i + 1], acc.shape), np.broadcast_to(b[i], acc.shape), acc
        )
    return canon_array(acc)


def _ieee(op, *args) -> np.float32:
    with np.errstate(all="ignore"):
        return canon(op(*[F32(x) for x in args]))


def add(a, b):
    return _ieee(lambda x, y: x + y, a, b)


def sub(a, b):
    return _ieee(lambda x, y: x - y, a, b)


def mul(a, b):
    return _ieee(lambda x, y: x * y, a, b)


def div(a, b):
    return _ieee(lambda x, y: x / y, a, b)


def sqrt(a):
    return _ieee(np.sqrt, a)


def neg(a):
    a = F32(a)
    return QNAN if np.isnan(a) else from_bits(bits(a) ^ np.uint32(0x80000000))[()]


def _mpf_to_frac(v: mpmath.mpf) -> Fraction:
    man, exp = v.man_exp  # man is unsigned in mpmath
    q = Fraction(man) * Fraction(2) ** exp
    return -q if v < 0 else q


def exp(x) -> np.float32:
    """Spec §5: RN(e^x) from 120-bit mpmath (no binary32 input is that close to a tie)."""
    x = F32(x)
    if np.isnan(x):
        return QNAN
    if np.isinf(x):
        return F32(np.inf) if x > 0 else F32(0.0)
    if x == 0:
        return F32(1.0)
    if x > 100:
        return F32(np.inf)
    if x < -110:
        return F32(0.0)
    with mpmath.workprec(120):
        return rn32(_mpf_to_frac(mpmath.exp(mpmath.mpf(float(x)))))


def log(x) -> np.float32:
    x = F32(x)
    if np.isnan(x) or x < 0:
        return QNAN
    if x == 0:
        return F32(-np.inf)
    if np.isinf(x):
        return F32(np.inf)
    if x == 1:
        return F32(0.0)
    with mpmath.workprec(120):
        return rn32(_mpf_to_frac(mpmath.log(mpmath.mpf(float(x)))))


def max2(a, b):
    """Spec §4.2."""
    a, b = F32(a), F32(b)
    if np.isnan(a) or np.isnan(b):
        return QNAN
    if a > b:
        return a
    if b > a:
        return b
    if a == 0 and (not np.signbit(a) or not np.signbit(b)):
        return F32(0.0)
    return a


def min2(a, b):
    a, b = F32(a), F32(b)
    if np.isnan(a) or np.isnan(b):
        return QNAN
    if a < b:
        return a
    if b < a:
        return b
    if a == 0 and (np.signbit(a) or np.signbit(b)):
        return F32(-0.0)
    return a


def row_max(x) -> np.float32:
    m = F32(-np.inf)
    for v in x:
        m = max2(m, v)
    return m


def fold_sum(x) -> np.float32:
    """Spec §4.1 literally: pad with -0.0 to a power of two, fold halves."""
    n = len(x)
    if n == 0:
        return F32(-0.0)
    p = 1
    while p < n:
        p *= 2
    y = [F32(v) for v in x] + [F32(-0.0)] * (p - n)
    while p > 1:
        h = p // 2
        y = [add(y[i], y[i + h]) for i in range(h)]
        p = h
    return canon(y[0])


def sigmoid(x):
    """Spec §6.3."""
    return div(F32(1.0), add(F32(1.0), exp(neg(x))))


def silu(x):
    """Spec §6.4."""
    return mul(x, sigmoid(x))


def softmax_row(x) -> np.ndarray:
    """Spec §6.5."""
    m = row_max(x)
    e = [exp(sub(v, m)) for v in x]
    s = fold_sum(e)
    return np.array([div(v, s) for v in e], np.float32)


def log_softmax_row(x) -> np.ndarray:
    """Spec §6.6."""
    m = row_max(x)
    d = [sub(v, m) for v in x]
    s = fold_sum([exp(v) for v in d])
    lg = log(s)
    return np.array([sub(v, lg) for v in d], np.float32)


def rms_norm_row(x, w, eps) -> np.ndarray:
    """Spec §6.7."""
    ss = fold_sum([mul(v, v) for v in x])
    r = sqrt(add(div(ss, F32(len(x))), F32(eps)))
    out = [div(v, r) for v in x]
    if w is not None:
        out = [mul(o, wi) for o, wi in zip(out, w, strict=True)]
    return np.array(out, np.float32)


def layer_norm_row(x, w, b, eps) -> np.ndarray:
    """Spec §6.8."""
    n = F32(len(x))
    mu = div(fold_sum(x), n)
    c = [sub(v, mu) for v in x]
    var = div(fold_sum([mul(v, v) for v in c]), n)
    r = sqrt(add(var, F32(eps)))
    out = []
    for i, ci in enumerate(c):
        z = div(ci, r)
        if w is not None:
            z = mul(z, w[i])
        if b is not None:
            z = add(z, b[i])
        out.append(z)
    return np.array(out, np.float32)


def rope_row(x, cos, sin, pairing: str) -> np.ndarray:
    """Spec §6.9 application for one vector."""
    y = [canon(v) for v in x]
    half = len(cos)
    for i in range(half):
        ia, ib = (2 * i, 2 * i + 1) if pairing == "adjacent" else (i, i + half)
        a, b = F32(x[ia]), F32(x[ib])
        y[ia] = sub(mul(a, cos[i]), mul(b, sin[i]))
        y[ib] = add(mul(a, sin[i]), mul(b, cos[i]))
    return np.array(y, np.float32)


def attention_head(q, k, v, scale) -> np.ndarray:
    """Spec §6.10 for one head: q[Tq, D], k/v[Tk, D] (already the head's KV group)."""
    tq, tk = q.shape[0], k.shape[0]
    out = np.zeros(q.shape, np.float32)
    for t in range(tq):
        pos = tk - tq + t
        s = [mul(dot_chain(q[t], k[j]), scale) for j in range(pos + 1)]
        p = softmax_row(s)
        for d in range(q.shape[1]):
            acc = F32(0.0)
            for j in range(pos + 1):
                acc = fma_exact(p[j], v[j, d], acc)
            out[t, d] = canon(acc)
    return out


def argmax_row(x) -> int:
    """Spec §6.11."""
    for i, v in enumerate(x):
        if np.isnan(v):
            return i
    best = 0
    for i, v in enumerate(x):
        if v > x[best]:
            best = i
    return best


EDGE_VALUES = np.array(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        np.inf,
        -np.inf,
        np.nan,
        1.401298464324817e-45,
        -1.401298464324817e-45,  # smallest subnormal
        1.1754942106924411e-38,
        1.1754943508222875e-38,  # largest subnormal, smallest normal
        3.4028234663852886e38,
        -3.4028234663852886e38,  # max
        1e-30,
        1e30,
        0.5,
        2.0,
        3.0,
        1e-7,
        88.0,
        -88.0,
        89.0,
        -104.0,
        0.1,
    ],
    np.float32,
)


def random_f32(rng: np.random.Generator, shape, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def random_bits_f32(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniform over all bit patterns (many NaNs with odd payloads, subnormals, huge values)."""
    return rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32).view(np.float32)
