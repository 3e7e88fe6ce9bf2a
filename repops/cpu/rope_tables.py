"""RoPE cos/sin tables, RepOps spec §6.9: RN(cos θ), RN(sin θ) of the exact angle
θ(p, i) = p · β^(−2i/R), computed with mpmath (compile-time constants, spec §6.15).

Fast path: binary64 cos/sin with a generous absolute error bound (|θ|·2^-49 + 2^-50, covering
the rounding of β^(-2i/R), the product and a ≤ 2-ulp libm); a value is taken from it only
where that whole interval rounds to one binary32. Every other value takes the reference path,
a Ziv check in mpmath: evaluated at `prec` bits, where its absolute error is far below
2^-(prec-18) (|θ| < 2^17), accepted only if value ± 2^-(prec-18) rounds to one binary32,
else re-evaluated at a higher precision (θ is transcendental for p > 0: no exact ties).
Tables are cached on disk under the build cache, keyed by the parameters, because evaluating
~10^5 values takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import mpmath
import numpy as np

from repops.cpu.build import cache_dir

_PRECS = (128, 256, 512)


def round_f32(x: mpmath.mpf) -> np.float32:
    """RN to binary32 of an mpf that is exact at the current precision (normal range only;
    cos/sin values are 0 or above 2^-126 in magnitude for these angles)."""
    if x == 0:
        return np.float32(0.0)
    if abs(x) < mpmath.ldexp(1, -126):
        raise ValueError("rope_tables: value below the normal range")
    with mpmath.workprec(24):
        r = +x  # mpmath rounds to nearest, ties to even, at 24 bits
    return np.float32(float(r))  # exact: r has 24 significant bits and a normal exponent


def _ziv_round(x: mpmath.mpf, slack: mpmath.mpf) -> np.float32 | None:
    lo, hi = round_f32(x - slack), round_f32(x + slack)
    return lo if lo.tobytes() == hi.tobytes() else None


def _cos_sin(p: int, i: int, rot_dims: int, base: float) -> tuple[np.float32, np.float32]:
    if p == 0:
        return np.float32(1.0), np.float32(0.0)
    for prec in _PRECS:
        with mpmath.workprec(prec):
            theta = mpmath.mpf(p) * mpmath.power(mpmath.mpf(base), mpmath.mpf(-2 * i) / rot_dims)
            slack = mpmath.ldexp(1, 18 - prec)
            c = _ziv_round(mpmath.cos(theta), slack)
            s = _ziv_round(mpmath.sin(theta), slack)
        if c is not None and s is not None:
            return c, s
    raise ArithmeticError(f"rope_tables: Ziv loop failed at p={p}, i={i}")


_F64_SLACK = 2.0**-49


def _certain(y: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """True where every real in [y - bound, y + bound] rounds to the same binary32."""
    return (y - bound).astype(np.float32).view(np.uint32) == \
        (y + bound).astype(np.float32).view(np.uint32)


def compute_tables(n_pos: int, rot_dims: int, base: float,
                   reference_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin as float32 arrays [n_pos, rot_dims/2] (spec §6.9).

    `reference_only` evaluates every entry with mpmath (for tests of the fast path).
    """
    if rot_dims <= 0 or rot_dims % 2:
        raise ValueError(f"rope_tables: rot_dims must be even and positive, got {rot_dims}")
    if n_pos >= 1 << 17:
        raise ValueError("rope_tables: n_pos must be below 2^17 (the Ziv error bound)")
    base = float(np.float32(base))  # β is a binary32 attribute
    half = rot_dims // 2
    p = np.arange(n_pos, dtype=np.float64)[:, None]
    theta = p * np.power(base, -2.0 * np.arange(half, dtype=np.float64) / rot_dims)[None, :]
    bound = p * _F64_SLACK + _F64_SLACK / 2
    yc, ys = np.cos(theta), np.sin(theta)
    cos, sin = yc.astype(np.float32), ys.astype(np.float32)
    ok = _certain(yc, bound) & _certain(ys, bound)
    if reference_only:
        ok[:] = False
    for pi, ii in zip(*np.nonzero(~ok), strict=True):
        cos[pi, ii], sin[pi, ii] = _cos_sin(int(pi), int(ii), rot_dims, base)
    cos[0, :], sin[0, :] = 1.0, 0.0  # θ = 0 exactly
    return cos, sin


def rope_tables(n_pos: int, rot_dims: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """Cached `compute_tables`; a longer cached table serves shorter requests (row p only
    depends on p)."""
    base32 = np.float32(base)
    tag = hashlib.sha256(f"rope-v1:{rot_dims}:{base32.tobytes().hex()}".encode()).hexdigest()[:16]
    d = cache_dir() / "rope"
    for path in sorted(d.glob(f"{tag}-*.npz")) if d.exists() else []:
        have = int(path.stem.split("-")[1])
        if have >= n_pos:
            with np.load(path) as z:
                return z["cos"][:n_pos].copy(), z["sin"][:n_pos].copy()
    cos, sin = compute_tables(n_pos, rot_dims, base32)
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, cos=cos, sin=sin)
    os.replace(tmp, Path(d) / f"{tag}-{n_pos}.npz")
    return cos, sin
