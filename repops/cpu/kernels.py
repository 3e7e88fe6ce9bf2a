"""Thin ctypes layer over the C kernels: contiguous float32 CPU tensors in, new tensors out.

Argument checking lives in `repops.api` (it names the public op); this layer only lays tensors
out the way each C function expects (reduced dim last, contiguous) and picks the thread count.
Thread count never changes a result (every output's chain runs on one thread).
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Callable, Sequence

import torch

from repops.cpu.build import load

_BINARY = {"add": 0, "sub": 1, "mul": 2, "div": 3, "maximum": 4, "minimum": 5}
_UNARY = {"neg": 0, "sqrt": 1, "exp": 2, "log": 3, "sigmoid": 4, "silu": 5}
_PAIRING = {"adjacent": 0, "half": 1}
_environ = os.environ


def threads() -> int:
    env = _environ.get("REPOPS_CPU_THREADS")
    return max(1, int(env)) if env else max(1, torch.get_num_threads())


def plan_threads() -> int:
    """Threads of the executor's C kernels: a decode step's plan (its weight linears take
    panel ranges from the pool, repops_pool.c) and a prefill's linear chains and attention
    products. REPOPS_CPU_THREADS, else the cores this process may run on. Not torch's count,
    which the CPU executor sets to 1 (torch's pool contended with these kernels): read here,
    it had kept every linear on one core of two (notes-runtime-perf; a 41-token prefill
    175 -> 151 ms)."""
    env = _environ.get("REPOPS_CPU_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def isa() -> str:
    return load().repops_isa().decode()


def gemm(a: torch.Tensor, b: torch.Tensor, b_transposed: bool) -> torch.Tensor:
    """C = A @ B for 2-D A[M,K]; B is [K,N] or, with b_transposed, W[N,K] (spec §3.2/§3.3)."""
    a = a.contiguous()
    b = b.contiguous()
    m, k = a.shape
    n = b.shape[0] if b_transposed else b.shape[1]
    rsb, csb = (1, k) if b_transposed else (n, 1)
    c = torch.empty((m, n), dtype=torch.float32)
    load().repops_gemm(m, n, k, _ptr(a), k, _ptr(b), rsb, csb, _ptr(c), n, threads())
    return c


def linear_packed(a: torch.Tensor, panels: torch.Tensor, n: int) -> torch.Tensor:
    """Y[M, N] = A[M, K] W^T from W's packed panels (spec §3.3; `repops.cpu.packed`)."""
    a = a.contiguous()
    m, k = a.shape
    c = torch.empty((m, n), dtype=torch.float32)
    load().repops_linear_packed(
        m, n, k, a.data_ptr(), k, panels.data_ptr(), c.data_ptr(), n, threads()
    )
    return c


def linear_q(a: torch.Tensor, panels: torch.Tensor, qcode: int, n: int) -> torch.Tensor:
    """Y[M, N] = A[M, K] W^T from quantized panels, dequantized exactly in-kernel (spec §3.3)."""
    a = a.contiguous()
    m, k = a.shape
    c = torch.empty((m, n), dtype=torch.float32)
    load().repops_linear_q(
        qcode, m, n, k, a.data_ptr(), k, panels.data_ptr(), c.data_ptr(), n, threads()
    )
    return c


_qseg: Callable[..., int] | None = None


def linear_q_segments_fn() -> Callable[..., int]:
    """`repops_linear_q_segments` with its argument types declared, for callers that run it
    every decode step with raw pointers (node/ree/linear_chain.py `QuantChain`)."""
    global _qseg
    if _qseg is None:
        fn = load().repops_linear_q_segments
        p, i64, n = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        fn.argtypes = [n, i64, i64, i64, p, i64, p, i64, p, p, n, n]
        fn.restype = ctypes.c_int
        _qseg = fn
    return _qseg


def linear_q_segments(a: torch.Tensor, panels: torch.Tensor, qcode: int, n: int,
                      ends: Sequence[int], portable: bool = False) -> torch.Tensor:
    """Every k-segment output of A[M, K] W^T at once, W as quantized panels: out[s] is the
    spec §3.1 chain over k < ends[s] (the §L5.3 segment chain, docs/trace-layout.md), [nseg,
    M, N]. `portable` runs the scalar path (the AVX-512 one's cross-check in tests)."""
    a = a.contiguous()
    m, k = a.shape
    e = torch.tensor(list(ends), dtype=torch.int64)
    c = torch.empty((len(e), m, n), dtype=torch.float32)
    rc = linear_q_segments_fn()(qcode, m, n, k, a.data_ptr(), k, panels.data_ptr(), len(e),
                                e.data_ptr(), c.data_ptr(), threads(), int(portable))
    if rc:
        raise ValueError(f"linear_q_segments: segment ends {list(ends)} are not "
                         f"non-decreasing within [0, {k}] (or K is not a multiple of 32)")
    return c


def cumsum_seq(x: torch.Tensor) -> torch.Tensor:
    """Spec §7.3 step 6: running binary32 sum in index order (1-D)."""
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.float32)
    load().repops_cumsum_seq(_ptr(x), _ptr(out), x.numel())
    return out


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy broadcasting of shapes (spec §6.1), or None if they do not broadcast. Plain Python:
    torch.broadcast_shapes costs tens of microseconds per call (symbolic-shape guards)."""
    first = tuple(shapes[0])
    if all(tuple(s) == first for s in shapes[1:]):
        return first
    nd = max(len(s) for s in shapes)
    out = [1] * nd
    for s in shapes:
        for i, d in enumerate(s, nd - len(s)):
            if d != 1:
                if out[i] not in (1, d):
                    return None
                out[i] = d
    return tuple(out)


def binary(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    shape = broadcast_shape(a.shape, b.shape)
    # a single value is passed with stride 0 instead of being materialized to the full shape
    sa, sb = int(a.numel() != 1), int(b.numel() != 1)
    if sa:
        a = (a if tuple(a.shape) == shape else a.expand(shape)).contiguous()
    else:
        a = a.reshape(1)
    if sb:
        b = (b if tuple(b.shape) == shape else b.expand(shape)).contiguous()
    else:
        b = b.reshape(1)
    out = torch.empty(shape, dtype=torch.float32)
    load().repops_binary(_BINARY[op], _ptr(a), _ptr(b), _ptr(out), out.numel(), sa, sb, threads())
    return out


def unary(op: str, x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.float32)
    load().repops_unary(_UNARY[op], _ptr(x), _ptr(out), x.numel(), threads())
    return out


def _rows(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, int, int]:
    xt = x.movedim(dim, -1).contiguous()
    return xt, math.prod(xt.shape[:-1]), xt.shape[-1]


def reduce(op: str, x: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:
    """sum (spec §4.1), max/min (§4.2), argmax (§6.11) along `dim`."""
    xt, rows, n = _rows(x, dim)
    if op == "argmax":
        out = torch.empty(xt.shape[:-1], dtype=torch.int64)
        load().repops_argmax_rows(_ptr(xt), _ptr(out), rows, n, threads())
    else:
        out = torch.empty(xt.shape[:-1], dtype=torch.float32)
        if op == "sum":
            load().repops_sum_rows(_ptr(xt), _ptr(out), rows, n, threads())
        else:
            load().repops_max_rows(_ptr(xt), _ptr(out), rows, n, int(op == "min"), threads())
    return out.unsqueeze(dim) if keepdim else out


def softmax(x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    xt, rows, n = _rows(x, dim)
    out = torch.empty(xt.shape, dtype=torch.float32)
    load().repops_softmax_rows(_ptr(xt), _ptr(out), rows, n, int(log), threads())
    return out.movedim(-1, dim).contiguous()


def _opt_ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else _ptr(t)


def rms_norm(x: torch.Tensor, w: torch.Tensor | None, eps: float) -> torch.Tensor:
    x = x.contiguous()
    w = None if w is None else w.contiguous()
    n = x.shape[-1]
    out = torch.empty(x.shape, dtype=torch.float32)
    load().repops_rms_norm_rows(
        _ptr(x), _opt_ptr(w), eps, _ptr(out), x.numel() // max(n, 1), n, threads()
    )
    return out


def layer_norm(
    x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, eps: float
) -> torch.Tensor:
    x = x.contiguous()
    w = None if w is None else w.contiguous()
    b = None if b is None else b.contiguous()
    n = x.shape[-1]
    out = torch.empty(x.shape, dtype=torch.float32)
    load().repops_layer_norm_rows(
        _ptr(x), _opt_ptr(w), _opt_ptr(b), eps, _ptr(out), x.numel() // max(n, 1), n, threads()
    )
    return out


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pairing: str) -> torch.Tensor:
    x = x.contiguous()
    cos = cos.contiguous()
    sin = sin.contiguous()
    t, d = x.shape[-2], x.shape[-1]
    outer = x.numel() // max(t * d, 1)
    out = torch.empty(x.shape, dtype=torch.float32)
    load().repops_rope(
        _ptr(x),
        _ptr(out),
        _ptr(cos),
        _ptr(sin),
        outer,
        t,
        d,
        cos.shape[-1],
        _PAIRING[pairing],
        threads(),
    )
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q[B,Hq,Tq,D], k/v[B,Hkv,Tk,D] (spec §6.10)."""
    q = q.contiguous()
    k = k.contiguous()
    v = v.contiguous()
    b, hq, tq, d = q.shape
    hkv, tk = k.shape[1], k.shape[2]
    out = torch.empty(q.shape, dtype=torch.float32)
    load().repops_attention(
        _ptr(q), _ptr(k), _ptr(v), _ptr(out), b, hq, hkv, tq, tk, d, scale, threads()
    )
    return out


def int_to_float(x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.int64).contiguous()
    out = torch.empty(x.shape, dtype=torch.float32)
    load().repops_i64_to_f32(_ptr(x), _ptr(out), x.numel())
    return out


def float_to_int(x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.int64)
    load().repops_f32_to_i64(_ptr(x), _ptr(out), x.numel())
    return out
