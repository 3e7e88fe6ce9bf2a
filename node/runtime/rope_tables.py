"""Correctly rounded RoPE cos/sin tables (RepOps spec §6.9, §6.15).

Why not plain `np.cos`: the tables are model constants bound by the model hash, so they must be
RN(cos θ) of the exact real θ on every machine; libm results differ across platforms. We use a
fast float64 path with a rigorous error bound and fall back to mpmath (Ziv loop at 128/192 bits,
as the spec's reference does) for every value whose float64 approximation lies too close to a
binary32 rounding boundary to decide.
"""

from __future__ import annotations

import numpy as np

# float64 error budget: β^(-2i/R) (np.power, ≤ 2 ulp) times p (1 rounding), then cos/sin
# (≤ 2 ulp in any decent libm) — an absolute bound of p·2^-49 + 2^-50 is generous.
_F64_SLACK = 2.0**-49


def _f32_rounding_is_certain(y: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """True where every real in [y - bound, y + bound] rounds to the same binary32."""
    lo = (y - bound).astype(np.float32)
    hi = (y + bound).astype(np.float32)
    return lo.view(np.uint32) == hi.view(np.uint32)


def _mp_cos_sin(p: int, i: int, rot_dims: int, base: float) -> tuple[np.float32, np.float32]:
    """Ziv loop: evaluate at growing precision until both precisions round identically."""
    import mpmath

    prev = None
    for bits in (128, 192, 320, 640):
        with mpmath.workprec(bits):
            theta = mpmath.mpf(p) * mpmath.power(mpmath.mpf(base), mpmath.mpf(-2 * i) / rot_dims)
            pair = (_mp_to_f32(mpmath.cos(theta)), _mp_to_f32(mpmath.sin(theta)))
        if prev is not None and all(a.view(np.uint32) == b.view(np.uint32)
                                    for a, b in zip(pair, prev, strict=True)):
            return pair
        prev = pair
    raise ArithmeticError(f"RoPE table entry ({p}, {i}) did not converge")  # pragma: no cover


def _mp_to_f32(x) -> np.float32:  # noqa: ANN001 - an mpmath mpf
    """RN to binary32 of an mpf (normal range: the table values are in [-1, 1])."""
    import mpmath

    if x == 0:
        return np.float32(0.0)
    m, e = mpmath.frexp(x)  # x = m·2^e, 0.5 ≤ |m| < 1
    e = int(e)
    if e - 1 < -126:  # subnormal binary32: fixed exponent -149
        scaled = x * mpmath.mpf(2) ** 149
    else:
        scaled = m * mpmath.mpf(2) ** 24
    n = int(mpmath.nint(scaled))  # nint rounds half to even
    if e - 1 < -126:
        return np.float32(np.ldexp(np.float64(n), -149))
    return np.float32(np.ldexp(np.float64(n), e - 24))


def rope_tables(max_pos: int, rot_dims: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos_tab, sin_tab of shape [max_pos, rot_dims/2]: RN(cos/sin(p · base^(-2i/rot_dims)))."""
    if rot_dims % 2:
        raise ValueError(f"RoPE rotated dims must be even, got {rot_dims}")
    base = float(np.float32(base))  # the binary32 attribute's exact value (§6.9)
    half = rot_dims // 2
    p = np.arange(max_pos, dtype=np.float64)[:, None]
    inv = np.power(base, -2.0 * np.arange(half, dtype=np.float64) / rot_dims)[None, :]
    theta = p * inv
    bound = p * _F64_SLACK + _F64_SLACK / 2
    tables = []
    for fn in (np.cos, np.sin):
        y = fn(theta)
        tables.append((y.astype(np.float32), _f32_rounding_is_certain(y, bound)))
    (cos_t, cos_ok), (sin_t, sin_ok) = tables
    for pi, ii in zip(*np.nonzero(~(cos_ok & sin_ok)), strict=True):
        c, s = _mp_cos_sin(int(pi), int(ii), rot_dims, base)
        cos_t[pi, ii], sin_t[pi, ii] = c, s
    cos_t[0, :], sin_t[0, :] = 1.0, 0.0  # θ = 0 exactly: cos 1, sin +0
    return cos_t, sin_t
