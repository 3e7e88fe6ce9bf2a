"""Elementwise ops on the GPU: RepOps spec §6.1 (binary, NumPy broadcasting), §6.2 (unary),
§6.3 sigmoid, §6.4 SiLU, §1.3 neg, §6.13 where.

Division and square root use `tl.math.div_rn` / `tl.math.sqrt_rn` (IEEE RN; Triton's `/` and
`tl.sqrt` are approximate); exp/log are the correctly rounded `exp_cr`/`log_cr` of
`repops.gpu.crmath` (spec §5). All launches pass FP_FLAGS (no mul+add contraction).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from repops.gpu.crmath import exp_cr, log_cr
from repops.gpu.launch import FP_FLAGS, check_cuda, check_f32_cuda, interpreting
from repops.gpu.primitives import canon_nan, key_to_float, order_key

BLOCK = 1024

# op codes (constexpr selectors shared by the kernels below)
ADD, SUB, MUL, DIV, MAX2, MIN2 = range(6)
NEG, SQRT, EXP, LOG, SIGMOID, SILU = range(6)


@triton.jit
def neg_f(x):
    """RepOps spec §1.3: flip the sign bit (NaN canonicalized by the caller)."""
    return (x.to(tl.int32, bitcast=True) ^ (-2147483647 - 1)).to(tl.float32, bitcast=True)


@triton.jit
def sigmoid_f(x):
    """RepOps spec §6.3: div(1, add(1, exp(neg(x))))."""
    t = exp_cr(neg_f(x))
    d = 1.0 + t
    return tl.math.div_rn(tl.full(x.shape, 1.0, tl.float32), d)


@triton.jit
def silu_f(x):
    """RepOps spec §6.4: mul(x, sigmoid(x))."""
    return x * sigmoid_f(x)


@triton.jit
def max2_f(a, b):
    """RepOps spec §4.2 max2 (NaN propagates; equal zeros -> +0 if either is +0)."""
    ka = order_key(a)
    kb = order_key(b)
    return key_to_float(tl.maximum(ka, kb))


@triton.jit
def min2_f(a, b):
    """RepOps spec §4.2 min2 (NaN propagates; equal zeros -> -0 if either is -0)."""
    ka = order_key(a)
    kb = order_key(b)
    nan = (a != a) | (b != b)
    r = key_to_float(tl.minimum(ka, kb))
    return tl.where(nan, a + b, r)


@triton.jit
def binary_f(a, b, OP: tl.constexpr):
    """RepOps spec §6.1 binary op OP (ADD … MIN2), before NaN canonicalization."""
    if OP == 0:
        c = a + b
    elif OP == 1:
        c = a - b
    elif OP == 2:
        c = a * b
    elif OP == 3:
        c = tl.math.div_rn(a, b)
    elif OP == 4:
        c = max2_f(a, b)
    else:
        c = min2_f(a, b)
    return c


@triton.jit
def unary_f(x, OP: tl.constexpr):
    """RepOps spec §6.2-6.4 unary op OP (NEG … SILU), before NaN canonicalization."""
    if OP == 0:
        y = neg_f(x)
    elif OP == 1:
        y = tl.math.sqrt_rn(x)
    elif OP == 2:
        y = exp_cr(x)
    elif OP == 3:
        y = log_cr(x)
    elif OP == 4:
        y = sigmoid_f(x)
    else:
        y = silu_f(x)
    return y


@triton.jit
def _binary_kernel(A, B, C, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(A + offs, mask=m, other=1.0)
    b = tl.load(B + offs, mask=m, other=1.0)
    tl.store(C + offs, canon_nan(binary_f(a, b, OP)), mask=m)


@triton.jit
def _unary_kernel(X, Y, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(X + offs, mask=m, other=1.0)
    tl.store(Y + offs, canon_nan(unary_f(x, OP)), mask=m)


@triton.jit
def _where_kernel(Cn, A, B, Y, n, BLOCK: tl.constexpr):
    """RepOps spec §6.13: bits of a where c != 0, else bits of b (copied as integers)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    c = tl.load(Cn + offs, mask=m, other=0)
    a = tl.load(A + offs, mask=m, other=0)
    b = tl.load(B + offs, mask=m, other=0)
    tl.store(Y + offs, tl.where(c != 0, a, b), mask=m)


def _block() -> int:
    return 64 if interpreting() else BLOCK


def _binary(op: str, code: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    check_f32_cuda(op, a, b)
    try:
        a, b = torch.broadcast_tensors(a, b)
    except RuntimeError as e:
        raise ValueError(f"repops.{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not "
                         "broadcast") from e
    a, b = a.contiguous(), b.contiguous()
    out = torch.empty_like(a)
    n = a.numel()
    if n:
        blk = _block()
        _binary_kernel[(triton.cdiv(n, blk),)](a, b, out, n, OP=code, BLOCK=blk, **FP_FLAGS)
    return out


def _unary(op: str, code: int, x: torch.Tensor) -> torch.Tensor:
    check_f32_cuda(op, x)
    x = x.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n:
        blk = _block()
        _unary_kernel[(triton.cdiv(n, blk),)](x, out, n, OP=code, BLOCK=blk, **FP_FLAGS)
    return out


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.1 add."""
    return _binary("add", ADD, a, b)


def sub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.1 sub."""
    return _binary("sub", SUB, a, b)


def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.1 mul."""
    return _binary("mul", MUL, a, b)


def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.1 div (IEEE RN)."""
    return _binary("div", DIV, a, b)


def maximum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.1 max2, elementwise."""
    return _binary("maximum", MAX2, a, b)


def minimum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.1 min2, elementwise."""
    return _binary("minimum", MIN2, a, b)


def neg(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §1.3 neg."""
    return _unary("neg", NEG, x)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §2 sqrt (IEEE RN)."""
    return _unary("sqrt", SQRT, x)


def exp(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §5 exp, correctly rounded."""
    return _unary("exp", EXP, x)


def log(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §5 log, correctly rounded."""
    return _unary("log", LOG, x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.3 sigmoid."""
    return _unary("sigmoid", SIGMOID, x)


def silu(x: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.4 SiLU."""
    return _unary("silu", SILU, x)


def where(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RepOps spec §6.13 where (broadcasting), a bit copy."""
    check_cuda("where", c, (torch.uint8, torch.bool))
    check_f32_cuda("where", a, b)
    try:
        c, a, b = torch.broadcast_tensors(c, a, b)
    except RuntimeError as e:
        raise ValueError(f"repops.where: shapes {tuple(c.shape)}, {tuple(a.shape)}, "
                         f"{tuple(b.shape)} do not broadcast") from e
    c = c.to(torch.uint8).contiguous()
    a32, b32 = a.contiguous().view(torch.int32), b.contiguous().view(torch.int32)
    out = torch.empty_like(a32)
    n = out.numel()
    if n:
        blk = _block()
        _where_kernel[(triton.cdiv(n, blk),)](c, a32, b32, out, n, BLOCK=blk)
    return out.view(torch.float32)
