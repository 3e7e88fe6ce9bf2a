"""Correctly rounded binary32 exp and log as Triton device functions (RepOps spec §5).

`exp_cr(x)` / `log_cr(x)` take fp32 blocks and return the round-to-nearest-even binary32 value
of the exact result for every input; the algorithms, constants and error analysis are in
docs/spec-exp-log.md and are the same binary64 operation sequence as the C reference
(repops/cpu/csrc/crmath.c), so both produce the same bits, hard-case table included.

Why it is written this way (Triton traps, docs/spec-exp-log.md §5):
- binary64 constants are built from bit patterns: a Python float literal in a kernel is
  typed fp32 and would be rounded;
- every product that feeds an addition is an explicit `tl.fma`, so the result does not depend
  on the caller's `enable_fp_fusion` (on by default);
- exponent manipulation is done on bits, no libdevice transcendental is used; fp64 add, mul,
  fma and div are IEEE round-to-nearest on NVIDIA GPUs and in the interpreter (numpy).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["exp_cr", "log_cr", "exp_f32", "log_f32"]

_CANON_NAN = 0x7FC00000
_NEG_INF_I32 = -8388608  # 0xFF800000 as int32
_POS_INF = 0x7F800000


@triton.jit
def _f64(bits: tl.constexpr):
    """binary64 constant from its bit pattern (positive values only)."""
    return tl.cast(tl.cast(bits, tl.int64), tl.float64, bitcast=True)


@triton.jit
def _exp_core(x):
    """spec-exp-log §3.1: 2^k * p(r), r = x - k ln2; x is fp64 within [-104, 89]."""
    shift = _f64(0x4338000000000000)  # 1.5 * 2^52
    t = tl.fma(x, _f64(0x3FF71547652B82FE), shift)  # x * log2(e), rounded to an integer
    kd = t - shift
    k = t.to(tl.int64, bitcast=True) - 0x4338000000000000
    r = tl.fma(-kd, _f64(0x3FE62E42FEFA3A00), x)  # LN2_HI, 44 bits: exact
    r = tl.fma(kd, _f64(0x3CE0CA86C3898D00), r)  # -LN2_LO
    q = tl.fma(_f64(0x3E21F72FC83BCBC7), r, _f64(0x3E5AF4DDDA1C08CD))
    q = tl.fma(q, r, _f64(0x3E927E4DB67AC2B0))
    q = tl.fma(q, r, _f64(0x3EC71DE0237484CD))
    q = tl.fma(q, r, _f64(0x3EFA01A01A6D7831))
    q = tl.fma(q, r, _f64(0x3F2A01A01ABE6323))
    q = tl.fma(q, r, _f64(0x3F56C16C16C162D6))
    q = tl.fma(q, r, _f64(0x3F811111111100DF))
    q = tl.fma(q, r, _f64(0x3FA5555555555556))
    q = tl.fma(q, r, _f64(0x3FC5555555555557))
    q = tl.fma(q, r, _f64(0x3FE0000000000000))
    one = _f64(0x3FF0000000000000)
    u = tl.fma(q, r, one)
    p = tl.fma(u, r, one)
    return p * ((k + 1023) << 52).to(tl.float64, bitcast=True)


@triton.jit
def _log_core(x):
    """spec-exp-log §3.2: e ln2 + log1p(f), fdlibm arrangement; x is fp64, positive finite."""
    b = x.to(tl.int64, bitcast=True)
    mb = b & 0x000FFFFFFFFFFFFF
    big = (mb > 0x6A09E667F3BCD).to(tl.int64)  # mantissa above sqrt(2): halve it
    eb = (b >> 52) + big
    m = (mb | ((1023 - big) << 52)).to(tl.float64, bitcast=True)
    shift = _f64(0x4338000000000000)
    ed = (eb + (0x4338000000000000 - 1023)).to(tl.float64, bitcast=True) - shift
    one = _f64(0x3FF0000000000000)
    f = m - one
    s = f / (f + _f64(0x4000000000000000))  # fp64 division: IEEE (div.rn.f64)
    z = s * s
    pz = tl.fma(_f64(0x3FC0C05F222F1AC5), z, _f64(0x3FC0FBE5CA9FD6F9))
    pz = tl.fma(pz, z, _f64(0x3FC3B1C377D3240F))
    pz = tl.fma(pz, z, _f64(0x3FC745CF8FA80A6E))
    pz = tl.fma(pz, z, _f64(0x3FCC71C7201712D2))
    pz = tl.fma(pz, z, _f64(0x3FD2492492476BF2))
    pz = tl.fma(pz, z, _f64(0x3FD9999999999A38))
    pz = tl.fma(pz, z, _f64(0x3FE5555555555555))
    hfsq = _f64(0x3FE0000000000000) * (f * f)  # exact
    t = tl.fma(z, pz, hfsq)
    w = tl.fma(s, t, -(ed * _f64(0x3CE0CA86C3898D00)))  # + e * LN2_LO
    v = hfsq - w
    g = v - f
    return tl.fma(ed, _f64(0x3FE62E42FEFA3A00), -g)


@triton.jit
def exp_cr(x):
    """Correctly rounded exp of an fp32 tensor (RepOps spec §5, spec-exp-log §3.1, §4)."""
    ux = x.to(tl.int32, bitcast=True)
    ax = ux & 0x7FFFFFFF
    isnan = ax > 0x7F800000
    uc = tl.where((ux < 0) & (ax > 0x42D00000), -1026555904, ux)  # below -104 -> -104.0f
    uc = tl.where((ux >= 0) & (ax > 0x42B20000), 0x42B20000, uc)  # above 89 -> 89.0f
    uc = tl.where(isnan, 0, uc)
    y = _exp_core(uc.to(tl.float32, bitcast=True).to(tl.float64))
    r = y.to(tl.float32).to(tl.int32, bitcast=True)
    r = tl.where(isnan, 0x7FC00000, r)
    # BEGIN HARD TABLE exp
    r = tl.where(ux == -1159667108, 1065324455, r)
    r = tl.where(ux == -1141838351, 1065230313, r)
    r = tl.where(ux == -1050078515, 889008923, r)
    # END HARD TABLE exp
    return r.to(tl.float32, bitcast=True)


@triton.jit
def log_cr(x):
    """Correctly rounded log of an fp32 tensor (RepOps spec §5, spec-exp-log §3.2, §4)."""
    ux = x.to(tl.int32, bitcast=True)
    ok = (ux > 0) & (ux < 0x7F800000)  # +subnormal .. +FLT_MAX
    xs = tl.where(ok, ux, 0x3F800000).to(tl.float32, bitcast=True).to(tl.float64)
    y = _log_core(xs)
    r = y.to(tl.float32).to(tl.int32, bitcast=True)
    special = tl.where((ux & 0x7FFFFFFF) == 0, -8388608, 0x7FC00000)  # log(+-0) = -inf
    special = tl.where(ux == 0x7F800000, 0x7F800000, special)  # log(+inf) = +inf
    r = tl.where(ok, r, special)
    # BEGIN HARD TABLE log
    r = tl.where(ux == 231259044, -1031161148, r)
    r = tl.where(ux == 287082488, -1031764513, r)
    r = tl.where(ux == 341620436, -1032910545, r)
    r = tl.where(ux == 444876491, -1035138491, r)
    r = tl.where(ux == 521235128, -1036798658, r)
    r = tl.where(ux == 686029350, -1040550432, r)
    r = tl.where(ux == 702943851, -1041282046, r)
    r = tl.where(ux == 704455416, -1041332135, r)
    r = tl.where(ux == 743187639, -1043036400, r)
    r = tl.where(ux == 776546692, -1044482322, r)
    r = tl.where(ux == 953990712, -1055749212, r)
    r = tl.where(ux == 969085768, -1057181851, r)
    r = tl.where(ux == 1006137072, -1063503458, r)
    r = tl.where(ux == 1010908474, -1064430193, r)
    r = tl.where(ux == 1092063211, 1074783719, r)
    r = tl.where(ux == 1179474731, 1092074737, r)
    r = tl.where(ux == 1181067686, 1092192037, r)
    r = tl.where(ux == 1281189285, 1099891531, r)
    r = tl.where(ux == 1298157246, 1100625196, r)
    r = tl.where(ux == 1317401618, 1101445137, r)
    r = tl.where(ux == 1420794013, 1105947964, r)
    r = tl.where(ux == 1592301646, 1110329889, r)
    r = tl.where(ux == 1708691667, 1112855033, r)
    r = tl.where(ux == 1722337376, 1113153094, r)
    r = tl.where(ux == 1722531171, 1113157646, r)
    r = tl.where(ux == 1830757355, 1115499829, r)
    r = tl.where(ux == 1865525484, 1115970185, r)
    r = tl.where(ux == 2045242423, 1117913015, r)
    # END HARD TABLE log
    return r.to(tl.float32, bitcast=True)


@triton.jit
def _exp_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(y_ptr + offs, exp_cr(x), mask=mask)


@triton.jit
def _log_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=1.0)
    tl.store(y_ptr + offs, log_cr(x), mask=mask)


_BLOCK = 1024


def _check(name: str, t: torch.Tensor) -> None:
    if t.dtype != torch.float32:
        raise TypeError(
            f"{name}: expected a float32 tensor, got {t.dtype} of shape {tuple(t.shape)}")
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    if t.device.type != "cuda" and not interpreting:
        raise ValueError(f"{name}: expected a CUDA tensor, got device {t.device}")


def _launch(kernel, name: str, t: torch.Tensor) -> torch.Tensor:
    _check(name, t)
    x = t.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        kernel[(triton.cdiv(n, _BLOCK),)](x, y, n, BLOCK=_BLOCK)
    return y


def exp_f32(t: torch.Tensor) -> torch.Tensor:
    """Elementwise correctly rounded exp of a float32 CUDA tensor (RepOps spec §5)."""
    return _launch(_exp_kernel, "exp_f32", t)


def log_f32(t: torch.Tensor) -> torch.Tensor:
    """Elementwise correctly rounded log of a float32 CUDA tensor (RepOps spec §5)."""
    return _launch(_log_kernel, "log_f32", t)
