"""Correctly rounded binary32 values of transcendental functions for compile-time constants
(RepOps spec §5, §6.15): the compiler folds e.g. Cos/Exp of constant tensors, and the folded
values are model constants, so they must be RN(f(x)) of the exact real — not libm's result.
"""

from __future__ import annotations

import numpy as np

_PRECS = (96, 160, 320, 640)


def mp_to_f32(x) -> np.float32:  # noqa: ANN001 - an mpmath mpf
    """RN (ties to even) of an mpf to binary32, subnormals and overflow included."""
    import mpmath

    if mpmath.isnan(x):
        return np.float32(np.nan)
    if mpmath.isinf(x) or x == 0:
        return np.float32(float(x))
    _, e = mpmath.frexp(x)  # |x| = m·2^e, 0.5 ≤ m < 1
    q = max(int(e) - 24, -149)  # quantum of the binary32 grid around x
    n = int(mpmath.nint(mpmath.ldexp(x, -q)))  # nint: half to even
    return np.float32(np.ldexp(np.float64(n), q))  # exact in float64; overflow -> inf


def _mp_eval(fn: str, x: float):  # noqa: ANN202
    import mpmath

    v = mpmath.mpf(float(x))
    if fn == "exp":
        return mpmath.exp(v)
    if fn == "log":
        return mpmath.log(v) if v > 0 else (mpmath.ninf if v == 0 else mpmath.nan)
    if fn == "cos":
        return mpmath.cos(v)
    if fn == "sin":
        return mpmath.sin(v)
    raise ValueError(f"no correctly rounded {fn}")


def cr_scalar(fn: str, x: float) -> np.float32:
    """Ziv loop: the same binary32 at two growing precisions, else go higher."""
    import mpmath

    if np.isnan(x):
        return np.float32(np.nan)
    if np.isinf(x):
        table = {"exp": (np.inf, 0.0), "log": (np.inf, np.nan), "cos": (np.nan,) * 2,
                 "sin": (np.nan,) * 2}
        return np.float32(table[fn][0 if x > 0 else 1])
    prev = None
    for prec in _PRECS:
        with mpmath.workprec(prec):
            r = mp_to_f32(_mp_eval(fn, x))
        if prev is not None and r.tobytes() == prev.tobytes():
            return r
        prev = r
    return prev  # exact or tie-free values converge long before; last is the most precise


def cr_unary(fn: str, v: np.ndarray) -> np.ndarray:
    """Elementwise fold. sigmoid follows its spec sequence (§6.3), not a CR sigmoid."""
    x = np.asarray(v, dtype=np.float32)
    if fn == "sigmoid":
        t = cr_unary("exp", -x)
        return (np.float32(1) / (np.float32(1) + t)).astype(np.float32)
    out = np.array([cr_scalar(fn, float(e)) for e in x.flat], dtype=np.float32).reshape(x.shape)
    nan = np.isnan(out)
    out[nan] = np.frombuffer(np.uint32(0x7FC00000).tobytes(), np.float32)[0]
    return out
