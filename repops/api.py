"""RepOps v1 public API (docs/repops-spec.md): functions on torch tensors, dispatched on device.

CPU tensors run the C reference (`repops.cpu`), CUDA tensors the Triton backend (`repops.gpu`,
imported lazily). Both must give the same bits (spec §8). Arguments are checked here, before any
computation, with errors that name the op, the shapes, dtypes and devices.

Stable signatures (float tensors are float32; results are new contiguous tensors):

    matmul(a[..., M, K], b[..., K, N]) -> [..., M, N]          spec §3.2 (batch dims broadcast)
    linear(x[..., K], w[N, K] | PackedLinear) -> [..., N]      spec §3.3 (= x @ w.T)
    pack_linear(w[N, K]) -> PackedLinear                       spec §3.3, w stored for decode
    pack_linear_quantized(raw, "q4_1"|"q8_0", N, K)            spec §3.3/§6.15, GGUF blocks
    add/sub/mul/div/maximum/minimum(a, b)                      spec §6.1 (broadcasting)
    neg/sqrt/exp/log/sigmoid/silu(x)                           spec §1.3, §2, §5, §6.3, §6.4
    sum/max/min(x, dim=-1, keepdim=False)                      spec §4.1, §4.2
    argmax(x, dim=-1, keepdim=False) -> int64                  spec §6.11
    softmax/log_softmax(x, dim=-1)                             spec §6.5, §6.6
    rms_norm(x, weight=None, eps=1e-5)                         spec §6.7 (last dim)
    layer_norm(x, weight=None, bias=None, eps=1e-5)            spec §6.8 (last dim)
    rope_tables(n_pos, rot_dims, base) -> (cos, sin) [n_pos, rot_dims/2], CPU   spec §6.9
    rope(x[..., T, D], cos[T, R/2], sin[T, R/2], pairing="adjacent"|"half")    spec §6.9
    attention(q[..., Hq, Tq, D], k[..., Hkv, Tk, D], v[..., Hkv, Tk, D], scale=None)  §6.10
    embedding(ids[...], table[V, D]) -> [..., D]               spec §6.12
    where(cond, a, b)                                          spec §6.13
    int_to_float(x) / float_to_int(x)                          spec §6.14
    tensor_root(t) -> bytes                                    docs/commitments.md C4

`eps` and `scale` are Python floats rounded once to binary32 (spec §6.7); `scale=None` means
RN(1/sqrt(D)). Sampling (spec §7) is in `repops.sample`.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch

from repops.commit import tensor_root  # noqa: F401  (re-export, commitments C4)
from repops.cpu import kernels as _kernels
from repops.cpu.packed import QTYPES, PackedLinear

_F32 = torch.float32
_INT = (torch.int32, torch.int64)
_QCODES = {name: code for name, (code, _) in QTYPES.items()}


# ---------------------------------------------------------------- argument checking


def _desc(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')} on {t.device}"


def _tensor(op: str, name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"repops.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def _float(op: str, **tensors: torch.Tensor | None) -> None:
    for name, t in tensors.items():
        if t is None:
            continue
        _tensor(op, name, t)
        if t.dtype != _F32:
            raise TypeError(f"repops.{op}: {name} must be float32, got {_desc(t)}")


def _same_device(op: str, **tensors: torch.Tensor | None) -> torch.device:
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {v.device for v in present.values()}
    if len(devices) != 1:
        detail = ", ".join(f"{k}={_desc(v)}" for k, v in present.items())
        raise ValueError(f"repops.{op}: tensors are on different devices: {detail}")
    return devices.pop()


def _dim(op: str, x: torch.Tensor, dim: int) -> int:
    nd = builtins.max(x.dim(), 1)
    if not -nd <= dim < nd:
        raise ValueError(f"repops.{op}: dim {dim} out of range for x {_desc(x)}")
    return dim % nd


def _broadcast(op: str, *tensors: torch.Tensor) -> None:
    if _kernels.broadcast_shape(*(t.shape for t in tensors)) is None:
        shapes = " and ".join(str(tuple(t.shape)) for t in tensors)
        raise ValueError(f"repops.{op}: shapes {shapes} do not broadcast")


def _f32(x: float) -> float:
    """A Python float rounded once to binary32 (RN), as the spec's constants are."""
    return float(np.float32(x))


def _backend(op: str, device: torch.device) -> ModuleType | None:
    """None for the CPU reference; the Triton module for CUDA tensors."""
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        raise ValueError(f"repops.{op}: unsupported device {device} (cpu or cuda)")
    try:
        import repops.gpu as gpu
    except ImportError as e:
        raise RuntimeError(
            f"repops.{op}: tensors are on {device} but the GPU backend repops.gpu is "
            f"unavailable ({e})"
        ) from e
    return gpu


def _gpu_fn(op: str, gpu: ModuleType) -> Callable:
    fn = getattr(gpu, op, None)
    if fn is None:
        raise NotImplementedError(f"repops.{op}: the GPU backend repops.gpu has no {op}")
    return fn


def _cpu():
    from repops.cpu import kernels

    return kernels


# ---------------------------------------------------------------- matmul


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §3.2: C[..., m, n] = ascending-k fma chain from +0.0; batch dims broadcast."""
    _float("matmul", a=a, b=b)
    dev = _same_device("matmul", a=a, b=b)
    if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"repops.matmul: need a[..., M, K] and b[..., K, N], got a {_desc(a)}, b {_desc(b)}"
        )
    try:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"repops.matmul: batch dims of a {_desc(a)} and b {_desc(b)} do not broadcast"
        ) from None
    gpu = _backend("matmul", dev)
    if gpu is not None:
        return _gpu_fn("matmul", gpu)(a, b)
    k = _cpu()
    m, n = a.shape[-2], b.shape[-1]
    if b.dim() == 2:  # one weight for every batch entry: fold the batch into M
        out = k.gemm(a.reshape(math.prod(a.shape[:-1]), a.shape[-1]), b, b_transposed=False)
        return out.reshape(*a.shape[:-2], m, n)
    a3 = a.expand(*batch, *a.shape[-2:]).reshape(math.prod(batch), m, a.shape[-1])
    b3 = b.expand(*batch, *b.shape[-2:]).reshape(math.prod(batch), b.shape[-2], n)
    outs = [k.gemm(a3[i], b3[i], b_transposed=False) for i in range(a3.shape[0])]
    out = torch.stack(outs) if outs else torch.empty((0, m, n), dtype=_F32)
    return out.reshape(*batch, m, n)


def pack_linear(w: torch.Tensor) -> PackedLinear:
    """Spec §3.3 weights stored for fast repeated `linear` (decode): pack once at load time.

    The handle replaces `w` in `linear(x, handle)` with bit-identical results; on the CPU it
    holds w in the decode kernel's panel layout (an extra copy of the weight), elsewhere it
    only carries w.
    """
    _float("pack_linear", w=w)
    if w.dim() != 2:
        raise ValueError(f"repops.pack_linear: need w[N, K], got w {_desc(w)}")
    if w.device.type not in ("cpu", "cuda"):
        _backend("pack_linear", w.device)  # raises for an unsupported device
    return PackedLinear.from_weight(w)


def pack_linear_quantized(raw: np.ndarray | bytes, qtype: str, n: int, k: int) -> PackedLinear:
    """Spec §3.3/§6.15: a linear weight W[N, K] kept as its GGUF Q4_1/Q8_0 blocks (CPU).

    `raw` is the tensor's GGUF data (N rows of K/32 blocks; GGUF shape [K, N]); `linear` on the
    handle dequantizes in-kernel by docs/decisions/0003-dequantization.md and gives the bits of
    `linear(x, W)` on the dequantized fp32 W.
    """
    from repops.cpu.packed import QBLOCK, QTYPES

    if qtype not in QTYPES:
        raise ValueError(
            f"repops.pack_linear_quantized: qtype must be one of {list(QTYPES)}, got {qtype!r}"
        )
    if n <= 0 or k <= 0 or k % QBLOCK:
        raise ValueError(
            f"repops.pack_linear_quantized: need N > 0 and K a positive multiple of "
            f"{QBLOCK}, got N={n}, K={k}"
        )
    buf = np.frombuffer(raw, np.uint8) if isinstance(raw, (bytes, bytearray)) else raw
    want = n * (k // QBLOCK) * QTYPES[qtype][1]
    if buf.dtype != np.uint8 or buf.size != want:
        raise ValueError(
            f"repops.pack_linear_quantized: {qtype} [{n}, {k}] needs {want} bytes of "
            f"uint8 blocks, got {buf.size} {buf.dtype}"
        )
    return PackedLinear.from_gguf_blocks(buf, qtype, n, k)


def linear(x: torch.Tensor, w: torch.Tensor | PackedLinear) -> torch.Tensor:
    """Spec §3.3: y[..., n] = chain_k fma(x[..., k], w[n, k]); w stored [N, K] (or packed)."""
    if isinstance(w, PackedLinear):
        return _linear_packed(x, w)
    _float("linear", x=x, w=w)
    dev = _same_device("linear", x=x, w=w)
    if x.dim() < 1 or w.dim() != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"repops.linear: need x[..., K] and w[N, K], got x {_desc(x)}, w {_desc(w)}"
        )
    gpu = _backend("linear", dev)
    if gpu is not None:
        fn = getattr(gpu, "linear", None)
        return fn(x, w) if fn is not None else _gpu_fn("matmul", gpu)(x, w.t())
    out = _cpu().gemm(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]), w, b_transposed=True)
    return out.reshape(*x.shape[:-1], w.shape[0])


def _linear_packed(x: torch.Tensor, w: PackedLinear) -> torch.Tensor:
    """`linear` on a PackedLinear; the CPU fast path first (its per-call overhead is comparable
    to a small decode layer's kernel time)."""
    panels = w.panels
    if (
        panels is not None
        and type(x) is torch.Tensor
        and x.dtype is _F32
        and x.device.type == "cpu"
        and x.dim() == 2
        and x.shape[1] == w.k
    ):
        if w.qtype is None:
            return _kernels.linear_packed(x, panels, w.n)
        return _kernels.linear_q(x, panels, _QCODES[w.qtype], w.n)
    _float("linear", x=x)
    if x.dim() < 1 or x.shape[-1] != w.k:
        raise ValueError(
            f"repops.linear: need x[..., K] and w[N, K], got x {_desc(x)}, w {(w.n, w.k)} ({w!r})"
        )
    if panels is None:  # a weight on another device: plain linear there
        return linear(x, w.weight)
    if x.device.type != "cpu":
        raise ValueError(f"repops.linear: x {_desc(x)} and {w!r} are on different devices")
    return linear(x.reshape(math.prod(x.shape[:-1]), w.k), w).reshape(*x.shape[:-1], w.n)


# ---------------------------------------------------------------- elementwise


def _binary(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    _float(op, a=a, b=b)
    dev = _same_device(op, a=a, b=b)
    _broadcast(op, a, b)
    gpu = _backend(op, dev)
    if gpu is not None:
        return _gpu_fn(op, gpu)(a, b)
    return _cpu().binary(op, a, b)


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §2/§6.1: RN(a + b), broadcasting."""
    return _binary("add", a, b)


def sub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §2/§6.1: RN(a - b), broadcasting."""
    return _binary("sub", a, b)


def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §2/§6.1: RN(a * b), broadcasting."""
    return _binary("mul", a, b)


def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §2/§6.1: RN(a / b), broadcasting."""
    return _binary("div", a, b)


def maximum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §4.2 max2 elementwise."""
    return _binary("maximum", a, b)


def minimum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §4.2 min2 elementwise."""
    return _binary("minimum", a, b)


def _unary(op: str, x: torch.Tensor) -> torch.Tensor:
    _float(op, x=x)
    gpu = _backend(op, x.device)
    if gpu is not None:
        return _gpu_fn(op, gpu)(x)
    return _cpu().unary(op, x)


def neg(x: torch.Tensor) -> torch.Tensor:
    """Spec §1.3: sign-bit flip (NaN -> canonical NaN)."""
    return _unary("neg", x)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Spec §2: RN(sqrt x)."""
    return _unary("sqrt", x)


def exp(x: torch.Tensor) -> torch.Tensor:
    """Spec §5: correctly rounded e^x."""
    return _unary("exp", x)


def log(x: torch.Tensor) -> torch.Tensor:
    """Spec §5: correctly rounded ln x."""
    return _unary("log", x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Spec §6.3: div(1, add(1, exp(neg x)))."""
    return _unary("sigmoid", x)


def silu(x: torch.Tensor) -> torch.Tensor:
    """Spec §6.4: mul(x, sigmoid(x))."""
    return _unary("silu", x)


# ---------------------------------------------------------------- reductions


def _reduce(op: str, x: torch.Tensor, dim: int, keepdim: bool) -> torch.Tensor:
    _float(op, x=x)
    d = _dim(op, x, dim)
    if x.dim() == 0:
        x = x.reshape(1)
    if op in ("max", "min", "argmax") and x.shape[d] == 0 and op == "argmax":
        raise ValueError(f"repops.argmax: empty reduction dim {d} in x {_desc(x)}")
    gpu = _backend(op, x.device)
    if gpu is not None:
        return _gpu_fn(op, gpu)(x, dim=d, keepdim=keepdim)
    return _cpu().reduce(op, x, d, keepdim)


def sum(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:  # noqa: A001
    """Spec §4.1: folding-tree sum of each row along `dim` (empty -> -0.0)."""
    return _reduce("sum", x, dim, keepdim)


def max(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:  # noqa: A001
    """Spec §4.2: row maximum (NaN propagates, max(-0,+0)=+0, empty -> -inf); values only."""
    return _reduce("max", x, dim, keepdim)


def min(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:  # noqa: A001
    """Spec §4.2: row minimum (NaN propagates, min(-0,+0)=-0, empty -> +inf); values only."""
    return _reduce("min", x, dim, keepdim)


def argmax(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """Spec §6.11: first NaN, else the lowest index of the maximum (int64)."""
    return _reduce("argmax", x, dim, keepdim)


def _softmax(op: str, x: torch.Tensor, dim: int) -> torch.Tensor:
    _float(op, x=x)
    d = _dim(op, x, dim)
    if x.dim() == 0:
        raise ValueError(f"repops.{op}: x must have at least one dim, got {_desc(x)}")
    if x.shape[d] == 0:
        raise ValueError(f"repops.{op}: empty dim {d} in x {_desc(x)}")
    gpu = _backend(op, x.device)
    if gpu is not None:
        return _gpu_fn(op, gpu)(x, dim=d)
    return _cpu().softmax(x, d, log=op == "log_softmax")


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Spec §6.5: max, sub, exp, fold-sum, div."""
    return _softmax("softmax", x, dim)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Spec §6.6: max, sub, exp, fold-sum, log, sub."""
    return _softmax("log_softmax", x, dim)


# ---------------------------------------------------------------- normalization


def _norm_params(op: str, x: torch.Tensor, **params: torch.Tensor | None) -> None:
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"repops.{op}: x needs a non-empty last dim, got {_desc(x)}")
    for name, p in params.items():
        if p is not None and tuple(p.shape) != (x.shape[-1],):
            raise ValueError(
                f"repops.{op}: {name} must have shape ({x.shape[-1]},) to match x {_desc(x)}, "
                f"got {_desc(p)}"
            )


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """Spec §6.7 over the last dim; eps is rounded once to binary32."""
    _float("rms_norm", x=x, weight=weight)
    dev = _same_device("rms_norm", x=x, weight=weight)
    _norm_params("rms_norm", x, weight=weight)
    gpu = _backend("rms_norm", dev)
    if gpu is not None:
        return _gpu_fn("rms_norm", gpu)(x, weight, _f32(eps))
    return _cpu().rms_norm(x, weight, _f32(eps))


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Spec §6.8 over the last dim; eps is rounded once to binary32."""
    _float("layer_norm", x=x, weight=weight, bias=bias)
    dev = _same_device("layer_norm", x=x, weight=weight, bias=bias)
    _norm_params("layer_norm", x, weight=weight, bias=bias)
    gpu = _backend("layer_norm", dev)
    if gpu is not None:
        return _gpu_fn("layer_norm", gpu)(x, weight, bias, _f32(eps))
    return _cpu().layer_norm(x, weight, bias, _f32(eps))


# ---------------------------------------------------------------- RoPE and attention


def rope_tables(n_pos: int, rot_dims: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec §6.9 compile-time tables cos/sin[n_pos, rot_dims/2] (correctly rounded, CPU)."""
    from repops.cpu.rope_tables import rope_tables as _tables

    cos, sin = _tables(n_pos, rot_dims, base)
    return torch.from_numpy(cos), torch.from_numpy(sin)


def rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pairing: str = "adjacent"
) -> torch.Tensor:
    """Spec §6.9: rotate pairs of x[..., T, D] by the rows cos/sin[T, R/2] of each position."""
    _float("rope", x=x, cos=cos, sin=sin)
    dev = _same_device("rope", x=x, cos=cos, sin=sin)
    if pairing not in ("adjacent", "half"):
        raise ValueError(f"repops.rope: pairing must be 'adjacent' or 'half', got {pairing!r}")
    if x.dim() < 2 or cos.dim() != 2 or cos.shape != sin.shape:
        raise ValueError(
            f"repops.rope: need x[..., T, D], cos/sin[T, R/2]; got x {_desc(x)}, "
            f"cos {_desc(cos)}, sin {_desc(sin)}"
        )
    t, d = x.shape[-2], x.shape[-1]
    if cos.shape[0] != t or 2 * cos.shape[1] > d or d % 2:
        raise ValueError(
            f"repops.rope: cos/sin {tuple(cos.shape)} do not fit x {_desc(x)} "
            "(need T rows and 2*R/2 <= D, D even)"
        )
    gpu = _backend("rope", dev)
    if gpu is not None:
        return _gpu_fn("rope", gpu)(x, cos, sin, pairing)
    return _cpu().rope(x, cos, sin, pairing)


def default_scale(d: int) -> float:
    """RN(1/sqrt(D)) (spec §6.10), rounded once from 200 bits: 1/sqrt in binary64 and then
    to binary32 would round twice."""
    import mpmath

    from repops.cpu.rope_tables import round_f32

    with mpmath.workprec(200):
        return float(round_f32(1 / mpmath.sqrt(d)))


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Spec §6.10: causal GQA attention; the first Tk - Tq keys are a KV-cache prefix."""
    _float("attention", q=q, k=k, v=v)
    dev = _same_device("attention", q=q, k=k, v=v)
    bad = (
        q.dim() < 3
        or k.shape != v.shape
        or k.dim() != q.dim()
        or q.shape[:-3] != k.shape[:-3]
        or q.shape[-1] != k.shape[-1]
        or k.shape[-3] == 0
        or q.shape[-3] % k.shape[-3]
        or k.shape[-2] < q.shape[-2]
    )
    if bad:
        raise ValueError(
            "repops.attention: need q[..., Hq, Tq, D], k/v[..., Hkv, Tk, D] with Hq % Hkv == 0 "
            f"and Tk >= Tq; got q {_desc(q)}, k {_desc(k)}, v {_desc(v)}"
        )
    s = _f32(scale) if scale is not None else default_scale(q.shape[-1])
    gpu = _backend("attention", dev)
    if gpu is not None:
        return _gpu_fn("attention", gpu)(q, k, v, s)
    lead = q.shape[:-3]
    q4 = q.reshape(-1, *q.shape[-3:])
    k4 = k.reshape(-1, *k.shape[-3:])
    v4 = v.reshape(-1, *v.shape[-3:])
    return _cpu().attention(q4, k4, v4, s).reshape(*lead, *q.shape[-3:])


# ---------------------------------------------------------------- data movement and casts


def embedding(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Spec §6.12: rows of table[V, D] gathered by ids, bits copied; ids must be in [0, V)."""
    _tensor("embedding", "ids", ids)
    _float("embedding", table=table)
    _same_device("embedding", ids=ids, table=table)
    if ids.dtype not in _INT:
        raise TypeError(f"repops.embedding: ids must be int32/int64, got {_desc(ids)}")
    if table.dim() != 2:
        raise ValueError(f"repops.embedding: table must be [V, D], got {_desc(table)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]):
        raise ValueError(
            f"repops.embedding: ids outside [0, {table.shape[0]}) "
            f"(min {int(ids.min())}, max {int(ids.max())}) for table {_desc(table)}"
        )
    return table.index_select(0, ids.reshape(-1).to(torch.int64)).reshape(*ids.shape, -1)


def where(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spec §6.13: bits of a where cond != 0, else bits of b (broadcasting)."""
    _tensor("where", "cond", cond)
    _float("where", a=a, b=b)
    _same_device("where", cond=cond, a=a, b=b)
    _broadcast("where", cond, a, b)
    return torch.where(cond != 0, a, b).contiguous()


def int_to_float(x: torch.Tensor) -> torch.Tensor:
    """Spec §6.14: int32/int64/uint8/bool -> float32 by RN."""
    _tensor("int_to_float", "x", x)
    if x.dtype not in (*_INT, torch.uint8, torch.bool):
        raise TypeError(f"repops.int_to_float: x must be an integer tensor, got {_desc(x)}")
    if x.device.type != "cpu":
        gpu = _backend("int_to_float", x.device)
        return _gpu_fn("int_to_float", gpu)(x)
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    if x.dtype == torch.uint8:
        x = (x != 0).to(torch.int64)
    return _cpu().int_to_float(x)


def float_to_int(x: torch.Tensor) -> torch.Tensor:
    """Spec §6.14: float32 -> int64, truncation toward zero, NaN -> 0, saturating."""
    _float("float_to_int", x=x)
    if x.device.type != "cpu":
        gpu = _backend("float_to_int", x.device)
        return _gpu_fn("float_to_int", gpu)(x)
    return _cpu().float_to_int(x)
