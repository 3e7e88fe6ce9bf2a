"""Input generators for cross-backend conformance (CPU reference vs Triton, RepOps spec §8).

Shared by `scripts/gpu_conformance.py` (>= 10^6 elements per op) and the GPU tests (small
sizes). Values mix ordinary magnitudes with the spec's edge cases: ±0, subnormals, ±inf, NaN
with odd payloads and signs, huge/tiny normals, exp/log thresholds and raw random bit patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

EDGE_BITS = [
    0x00000000, 0x80000000,  # ±0
    0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000,  # subnormals
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,  # min normal, max finite
    0x7F800000, 0xFF800000,  # ±inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF, 0xFFC12345,  # NaNs
    0x3F800000, 0xBF800000, 0x3F800001, 0x3F7FFFFF,  # ±1 and neighbours
    0x42B17218, 0x42B17217, 0xC2CFF1B5, 0xC2CFF1B4, 0xC2AEAC50,  # exp over/underflow edges
    0x4B000000, 0x4B800000, 0x5F000000, 0xDF000000,  # 2^23, 2^24, ±2^63
]


def edge_values() -> torch.Tensor:
    return torch.tensor(np.array(EDGE_BITS, dtype=np.uint32).view(np.int32)).view(torch.float32)


def mixed(rng: np.random.Generator, n: int, edge_rate: float = 0.05,
          bits_rate: float = 0.05) -> torch.Tensor:
    """n float32 values: scaled normals, plus edge values and raw bit patterns at given rates."""
    scale = 10.0 ** rng.uniform(-3, 3, n)
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    u = rng.random(n)
    raw = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.where(u < bits_rate, raw, x)
    edges = np.array(EDGE_BITS, dtype=np.uint32).view(np.float32)
    pick = edges[rng.integers(0, len(edges), n)]
    x = np.where((u >= bits_rate) & (u < bits_rate + edge_rate), pick, x)
    return torch.from_numpy(x.astype(np.float32).copy())


def normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy((rng.standard_normal(shape) * scale).astype(np.float32))


def sprinkle(rng: np.random.Generator, x: torch.Tensor, rate: float) -> torch.Tensor:
    """Replace a fraction of x by edge values (for rows: a few rows get NaN/inf/±0)."""
    flat = x.reshape(-1).clone()
    k = int(flat.numel() * rate)
    if k:
        idx = torch.from_numpy(rng.choice(flat.numel(), k, replace=False))
        ev = edge_values()
        flat[idx] = ev[torch.from_numpy(rng.integers(0, len(ev), k))]
    return flat.reshape(x.shape)


def signed_zeros(rng: np.random.Generator, rows: int, width: int) -> torch.Tensor:
    """Rows of ±0 only; every other row all -0.0 (whose sum must stay -0.0)."""
    neg = rng.random((rows, width)) < 0.5
    neg[::2] = True
    return torch.from_numpy(np.where(neg, np.float32(-0.0), np.float32(0.0)))


@dataclass
class Case:
    op: str  # name of the repops.api function
    label: str
    args: tuple
    kwargs: dict


def _pair(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.cat([mixed(rng, n), edge_values().repeat_interleave(len(EDGE_BITS))])
    b = torch.cat([mixed(rng, n), edge_values().repeat(len(EDGE_BITS))])
    return a, b


def cases(scale: int, seed: int = 0) -> Iterator[Case]:
    """All conformance cases. scale=1: the full report (>= 10^6 elements per op); larger
    scale divides the sizes (tests use scale ~ 256)."""
    rng = np.random.default_rng(seed)

    def n(x: int) -> int:
        return max(1, x // scale)

    for op in ("add", "sub", "mul", "div", "maximum", "minimum"):
        a, b = _pair(rng, n(1 << 20))
        yield Case(op, f"{a.numel()} pairs (mixed + all edge x edge)", (a, b), {})
        yield Case(op, "broadcast [64,1]x[1,257]", (mixed(rng, 64).reshape(64, 1),
                                                  mixed(rng, 257).reshape(1, 257)), {})
    for op in ("neg", "sqrt", "exp", "log", "sigmoid", "silu"):
        x = torch.cat([mixed(rng, n(1 << 20), 0.05, 0.3), edge_values(),
                       torch.linspace(-110, 100, n(1 << 16))])
        yield Case(op, f"{x.numel()} values (mixed, raw bits, edges, ramp)", (x,), {})
    for op in ("sum", "max", "min", "argmax"):
        for shape, rate in (((n(1024), 1024), 0.001), ((n(3000), 333), 0.0005),
                            ((max(2, n(16)), 70001), 0.00001), ((n(4096), 1), 0.01)):
            x = sprinkle(rng, normal(rng, *shape, scale=100.0), rate)
            yield Case(op, f"{list(shape)} rows, edge rate {rate}", (x,), {"dim": -1})
        x = sprinkle(rng, normal(rng, n(512), 64, 3), 0.001)
        yield Case(op, "dim=1 of [.,64,3]", (x,), {"dim": 1})
        for width in (1, 3, 16, 37, 5000):  # signed zeros only: the -0.0 padding matters here
            z = signed_zeros(rng, max(4, n(4096) // width), width)
            yield Case(op, f"±0 rows of {width}", (z,), {"dim": -1})
    for op in ("softmax", "log_softmax"):
        for shape, rate, sc in (((n(2048), 576), 0.0002, 8.0), ((max(2, n(24)), 49152), 0.0, 5.0),
                                ((n(1000), 1000), 0.0001, 30.0), ((n(4096), 7), 0.0, 100.0)):
            x = sprinkle(rng, normal(rng, *shape, scale=sc), rate)
            yield Case(op, f"{list(shape)} scale {sc}", (x,), {"dim": -1})
    x = sprinkle(rng, normal(rng, n(2048), 576, scale=3.0), 0.0002)
    w = normal(rng, 576)
    yield Case("rms_norm", "[.,576] eps 1e-5 with weight", (x, w, 1e-5), {})
    yield Case("rms_norm", "[.,576] eps 1e-6 no weight", (x, None, 1e-6), {})
    xs = normal(rng, n(64), 6000, scale=2.0)
    yield Case("rms_norm", "[.,6000] (long rows)", (xs, normal(rng, 6000), 1e-5), {})
    yield Case("layer_norm", "[.,576] w, b", (x, w, normal(rng, 576), 1e-5), {})
    yield Case("layer_norm", "[.,6000] no w/b", (xs, None, None, 1e-5), {})

    for (m, k, nn) in ((n(1024), 1024, 1024), (1, 576, 1536), (32, 1536, 576),
                       (n(512), 576, 192), (3, 49152, 64), (n(64), 100, 333)):
        a = sprinkle(rng, normal(rng, m, k), 0.0001)
        b = sprinkle(rng, normal(rng, k, nn), 0.0001)
        yield Case("matmul", f"[{m},{k}]x[{k},{nn}]", (a, b), {})
    yield Case("matmul", "batched broadcast [4,1,64,96]x[3,96,80]",
               (normal(rng, 4, 1, 64, 96), normal(rng, 3, 96, 80)), {})
    yield Case("matmul", "underflow to -0 chains", (normal(rng, 64, 64, scale=1e-25),
                                                    normal(rng, 64, 64, scale=-1e-25)), {})
    for (m, k, nn) in ((64, 17, 64), (1, 100, 576), (5, 1, 7), (40, 333, 24)):  # K tails
        a = normal(rng, m, k, scale=1e-25).abs()
        yield Case("matmul", f"-0 chains with a K tail [{m},{k}]x[{k},{nn}]",
                   (a, -normal(rng, k, nn, scale=1e-25).abs()), {})
    yield Case("linear", "[.,576]x[1536,576]^T", (normal(rng, n(512), 576),
                                                   normal(rng, 1536, 576)), {})
    yield Case("linear", "decode [1,576]x[49152,576]^T", (normal(rng, 1, 576),
                                                          normal(rng, 49152, 576)), {})
    for pairing in ("adjacent", "half"):
        t = n(1024)
        x = normal(rng, 9, t, 64, scale=3.0)
        ang = rng.uniform(0, 100, (t, 32))
        cos = torch.from_numpy(np.cos(ang).astype(np.float32))
        sin = torch.from_numpy(np.sin(ang).astype(np.float32))
        yield Case("rope", f"[9,{t},64] {pairing}", (x, cos, sin, pairing), {})
        yield Case("rope", f"[2,{t},80] R=64 {pairing}", (normal(rng, 2, t, 80), cos, sin,
                                                          pairing), {})
    for (b, hq, hkv, tq, tk, d) in ((2, 9, 3, n(512), n(512), 64), (1, 9, 3, 1, n(700), 64),
                                    (1, 9, 3, n(100), n(300), 64), (1, 4, 4, 5, 5000, 16)):
        q = normal(rng, b, hq, tq, d)
        k = normal(rng, b, hkv, tk, d)
        v = sprinkle(rng, normal(rng, b, hkv, tk, d), 0.0001)
        yield Case("attention", f"q[{b},{hq},{tq},{d}] kv[{b},{hkv},{tk},{d}]",
                   (q, k, v, 0.125), {})
    table = mixed(rng, 49152 * 64).reshape(49152, 64)
    ids = torch.from_numpy(rng.integers(0, 49152, n(1 << 15)))
    yield Case("embedding", f"{ids.numel()} ids of a [49152,64] table", (ids, table), {})
    yield Case("where", "mixed", (torch.from_numpy(rng.integers(0, 3, n(1 << 20)).astype(np.uint8)),
                                  mixed(rng, n(1 << 20)), mixed(rng, n(1 << 20))), {})
    ints = torch.from_numpy(rng.integers(-2**62, 2**62, n(1 << 20)) >> rng.integers(0, 62,
                                                                                    n(1 << 20)))
    yield Case("int_to_float", "int64 of all magnitudes", (ints,), {})
    yield Case("float_to_int", "mixed", (torch.cat([mixed(rng, n(1 << 20)), edge_values()]),), {})


def to_device(v: object, device: str) -> object:
    return v.to(device) if isinstance(v, torch.Tensor) else v


def run_case(fn: Callable, case: Case, device: str) -> torch.Tensor:
    args = tuple(to_device(a, device) for a in case.args)
    return fn(*args, **case.kwargs)


def first_mismatch(ref: torch.Tensor, got: torch.Tensor) -> dict | None:
    """None when the bits agree; else the first differing flat index and both bit patterns."""
    if ref.shape != got.shape or ref.dtype != got.dtype:
        return {"shape_ref": list(ref.shape), "shape_gpu": list(got.shape),
                "dtype_ref": str(ref.dtype), "dtype_gpu": str(got.dtype)}
    r = ref.contiguous().reshape(-1)
    g = got.contiguous().reshape(-1).cpu()
    if r.dtype == torch.float32:
        r, g = r.view(torch.int32), g.view(torch.int32)
    diff = (r != g).nonzero()
    if diff.numel() == 0:
        return None
    i = int(diff[0])
    fmt = (lambda v: f"0x{int(v) & 0xFFFFFFFF:08X}") if r.dtype == torch.int32 else int
    return {"index": i, "count": int(diff.numel()), "ref": fmt(r[i]), "gpu": fmt(g[i])}
