"""Fast path of the SAMPLE trace op (docs/trace-layout.md §L5.10) on torch tensors, CPU or
CUDA, bit-identical to `referee.ops.sample` leaf by leaf.

Why a module of its own: the sampling tail runs every step (greedy jobs too), so it must cost
little next to the model, and the reference's per-block Python merge (the definition) would
cost ~1 s per step at V = 49152. Here:

* SORT and every MERGE level come from ONE sort of the row per step: the global order by
  `prec` (a sort of unique int64 keys `(0x7FFFFFFF − key) << 31 | token`, so no stability is
  needed), cached for the step. A level of block width w lists, block by block, the block's
  tokens in global order (a merge of sorted runs under a strict total order is the sorted
  run), i.e. a stable partition of the global order by `token div w`; MERGE's `t` is the
  exclusive count of first-half tokens within the block.
* SCAN is the sequential CPU kernel `repops.cpu.kernels.cumsum_seq` (§7.3 step 6).
* The float steps (div, sub, exp, mul) are `repops` calls, which give the same bits on CPU
  and CUDA; the rest are IEEE comparisons and index selections.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

import repops
from referee.layout import F32_ONE, JobConfig, Stage, TraceOp
from referee.ops import keff, prng_u_bits

_LOW31 = (1 << 31) - 1
_LOW32 = (1 << 32) - 1


class _OrderCache:
    """The step's global order of z' (one sort serves SORT and all MERGE levels)."""

    def __init__(self) -> None:
        self._ref: weakref.ref | None = None
        self._order: torch.Tensor | None = None

    def order(self, zp: torch.Tensor) -> torch.Tensor:
        if self._ref is not None and self._ref() is zp and self._order is not None:
            return self._order
        self._order = global_order(zp)
        self._ref = weakref.ref(zp)
        return self._order


_CACHE = _OrderCache()


def sort_keys(zp: torch.Tensor) -> torch.Tensor:
    """§L5.10 key as int64 (NaN −2^31 < −inf; −0 = +0; else IEEE order), from the bits."""
    u = zp.reshape(-1).view(torch.int32).to(torch.int64) & _LOW32
    mag = u & 0x7FFFFFFF
    key = torch.where(u >> 31 == 1, -mag, mag)
    return torch.where(mag > 0x7F800000, torch.full_like(key, -(1 << 31)), key)


def global_order(zp: torch.Tensor) -> torch.Tensor:
    """Tokens of the row in `prec` order (§L5.10): key descending, then token ascending.
    Sorted as unique int64 `(0x7FFFFFFF − key) << 31 | token` (key − 0x7FFFFFFF < 2^32,
    token < 2^31). On the CPU through NumPy: torch's CPU sort is ~40x slower here."""
    key = sort_keys(zp)
    if zp.device.type == "cpu":
        k = key.numpy()
        packed = ((_LOW31 - k) << 31) | np.arange(k.size, dtype=np.int64)
        return torch.from_numpy(np.sort(packed) & _LOW31)
    tok = torch.arange(key.numel(), device=zp.device, dtype=torch.int64)
    return torch.sort(((_LOW31 - key) << 31) | tok).values & _LOW31


def _block_ids(order: np.ndarray, width: int) -> np.ndarray:
    """Block of each token, in the narrowest unsigned type: NumPy's stable sort of 8- and
    16-bit integers is a radix sort (linear), of wider ones a merge sort."""
    blk = order // width
    n = int(blk.max()) + 1 if blk.size else 1
    return blk.astype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.int64)


def level(order: torch.Tensor, width: int) -> torch.Tensor:
    """The row with every block of `width` tokens sorted: a stable partition by block."""
    if order.device.type == "cpu":
        o = order.numpy()
        return torch.from_numpy(o[np.argsort(_block_ids(o, width), kind="stable")])
    blk = torch.div(order, width, rounding_mode="floor")
    return order[torch.sort(blk, stable=True).indices]


def merge_level(order: torch.Tensor, half: int) -> torch.Tensor:
    """MERGE output (§L5.10): t · 2^32 + token, t = first-half tokens before the offset."""
    w = 2 * half
    lv = level(order, w)
    if lv.device.type == "cpu":
        x = lv.numpy()
        is_a = ((x // half) % 2 == 0).astype(np.int64)
        excl = np.cumsum(is_a) - is_a
        t = excl - excl[(np.arange(x.size) // w) * w]
        return torch.from_numpy((t << 32) | x)
    is_a = (torch.div(lv, half, rounding_mode="floor") % 2 == 0).to(torch.int64)
    excl = torch.cumsum(is_a, 0) - is_a
    start = torch.div(torch.arange(lv.numel(), device=lv.device), w, rounding_mode="floor") * w
    t = excl - excl[start]
    return (t << 32) | lv


def _f32(bits: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array([bits], dtype=np.uint32).view(np.float32)).to(device)


def run(op: TraceOp, ins: list[torch.Tensor | None], config: JobConfig | None, step: int,
        device: torch.device) -> torch.Tensor:
    """All elements of a SAMPLE op at `step` of a job with `config` (None: greedy)."""
    cfg = config if config is not None else JobConfig()
    st = Stage(op.attrs[0])
    x = ins[0]
    v = x.numel()
    shape = (1, v) if x.dim() < 2 else tuple(x.shape)
    k = keff(v, cfg)
    if st == Stage.SCALE:
        return repops.div(x, _f32(cfg.temperature, device))
    if st == Stage.SORT:
        return level(_CACHE.order(x), op.attrs[1]).to(torch.int32).reshape(shape)
    if st == Stage.MERGE:
        return merge_level(_CACHE.order(ins[1]), op.attrs[1]).reshape(shape)
    j = torch.arange(v, device=device)
    if st == Stage.EXP:
        o = ins[1].reshape(-1)[:k].to(torch.int64) & _LOW32
        zs = x.reshape(-1).index_select(0, o)
        e = torch.full((v,), -0.0, dtype=torch.float32, device=device)
        e[:k] = repops.exp(repops.sub(zs, zs[:1]))
        return e.reshape(shape)
    if st == Stage.SCAN:
        from repops.cpu import kernels

        return kernels.cumsum_seq(x.reshape(-1).cpu()).to(device).reshape(shape)
    one = torch.ones((), dtype=torch.float32, device=device)
    zero = torch.zeros((), dtype=torch.float32, device=device)
    if st == Stage.TOPP:
        if not np.array(cfg.top_p, np.uint32).view(np.float32) < 1:
            return torch.zeros(shape, dtype=torch.float32, device=device)
        hit = (j < k) & (x.reshape(-1) >= _f32(cfg.top_p, device))
        return torch.where(hit, one, zero).reshape(shape)
    if st == Stage.DRAW:
        big_j = _big_j(ins[1], ins[2], k)
        cj = x.reshape(-1).index_select(0, big_j)
        r = repops.mul(_f32(prng_u_bits(cfg, step), device), cj)
        hit = (j <= big_j) & (x.reshape(-1) > r)
        return torch.where(hit, one, zero).reshape(shape)
    if st == Stage.JSTAR:
        big_j = _big_j(ins[2], ins[3], k)
        j0 = ins[1].reshape(-1)[:1].to(torch.int64)
        hit = x.reshape(-1).index_select(0, j0).view(torch.int32) == F32_ONE
        return torch.where(hit, j0, big_j).to(torch.int32).reshape(1, 1)
    if st == Stage.PICK:
        a = ins[1].reshape(-1)[:1].to(torch.int64)
        js = ins[3].reshape(-1)[:1].to(torch.int64)
        tok = ins[2].reshape(-1).index_select(0, js).to(torch.int64) & _LOW32
        greedy = torch.isnan(x.reshape(-1).index_select(0, a)) | cfg.greedy
        return torch.where(greedy, a, tok).to(torch.int32).reshape(1, 1)
    raise ValueError(f"SAMPLE stage {st} has no fast path")


def _big_j(f: torch.Tensor, j0: torch.Tensor, k: int) -> torch.Tensor:
    """J of RepOps spec §7.3 step 6 (one element, on the device: no host sync)."""
    at = j0.reshape(-1)[:1].to(torch.int64)
    hit = f.reshape(-1).index_select(0, at).view(torch.int32) == F32_ONE
    return torch.where(hit, at, torch.full_like(at, k - 1))
