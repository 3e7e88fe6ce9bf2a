"""Fast path of the SAMPLE trace op (docs/trace-layout.md §L5.10) on torch tensors, CPU or
CUDA, bit-identical to `referee.ops.sample` leaf by leaf.

Why a module of its own: the sampling tail runs every step (greedy jobs too), so it must cost
little next to the model, and the reference's per-block Python merge (the definition) would
cost ~1 s per step at V = 49152. Both paths below rest on one fact:

* SORT and every MERGE level come from ONE sort of the row per step: the global order by
  `prec`, cached for the step. A level of block width w lists, block by block, the block's
  tokens in global order (a merge of sorted runs under a strict total order is the sorted
  run), i.e. a stable partition of the global order by `token div w`; MERGE's `t` is the
  exclusive count of first-half tokens within the block.

CPU tensors go to repops/cpu/csrc/repops_sample.c. Through torch and NumPy (a sort per
MERGE level, ~15 µs of argument checks per `repops` call, int64 index copies) the tail cost
~10 ms a SmolLM2 CPU decode step, one of the largest items of the step; in C it is ~1 ms:
a radix sort for the global order; SORT's list and all MERGE outputs in one call, each level
a linear pass from the next wider one; one pass per SCALE, EXP, SCAN, TOPP, DRAW (their float
steps the RepOps ops: div, sub, the correctly rounded exp, add, mul); JSTAR, PICK and DRAW's
J read single elements on the host.

CUDA tensors take the torch path (`_torch_run`): the global order is a torch.sort of unique
int64 keys `(0x7FFFFFFF − key) << 31 | token` (no stability needed), each level a stable sort
by block, the float steps `repops` calls (the same bits on CPU and CUDA), the rest IEEE
comparisons and index selections. SCAN runs the sequential CPU kernel (§7.3 step 6).
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Generic, TypeVar

import numpy as np
import torch

import repops
from referee.layout import F32_ONE, JobConfig, Stage, TraceOp
from referee.ops import keff, prng_u_bits

_LOW31 = (1 << 31) - 1
_LOW32 = (1 << 32) - 1
_GREEDY = JobConfig()
_T = TypeVar("_T")


class _OrderCache(Generic[_T]):
    """The step's global order of z' (one sort serves SORT and all MERGE levels). The entry
    is one (weakref, order) tuple, replaced whole, so a reader never pairs a row with
    another row's order."""

    def __init__(self, compute: Callable[[torch.Tensor], _T]) -> None:
        self._compute = compute
        self._entry: tuple[weakref.ref, _T] | None = None

    def order(self, zp: torch.Tensor) -> _T:
        entry = self._entry
        if entry is not None and entry[0]() is zp:
            return entry[1]
        order = self._compute(zp)
        self._entry = (weakref.ref(zp), order)
        return order


def sort_keys(zp: torch.Tensor) -> torch.Tensor:
    """§L5.10 key as int64 (NaN −2^31 < −inf; −0 = +0; else IEEE order), from the bits."""
    u = zp.reshape(-1).view(torch.int32).to(torch.int64) & _LOW32
    mag = u & 0x7FFFFFFF
    key = torch.where(u >> 31 == 1, -mag, mag)
    return torch.where(mag > 0x7F800000, torch.full_like(key, -(1 << 31)), key)


def global_order(zp: torch.Tensor) -> torch.Tensor:
    """Tokens of the row in `prec` order (§L5.10): key descending, then token ascending.
    Sorted as unique int64 `(0x7FFFFFFF − key) << 31 | token` (key − 0x7FFFFFFF < 2^32,
    token < 2^31)."""
    key = sort_keys(zp)
    tok = torch.arange(key.numel(), device=zp.device, dtype=torch.int64)
    return torch.sort(((_LOW31 - key) << 31) | tok).values & _LOW31


_CACHE = _OrderCache(global_order)


def argmax_token(z: torch.Tensor) -> torch.Tensor:
    """The greedy token of each row of z ([..., V]; §L5.10 PICK at T = ±0: the ARGFOLD
    tree's winner over the row, §L5.5, RepOps spec §6.11) as int64 [rows] on z's device, in
    a few launches and no host round trip: the first NaN, else the first index of the
    greatest value (−0 = +0).

    Why: a CUDA decode step can then feed the next step's token on the device
    (step_plan_cuda `_Graphs.speculate`, step_lanes_cuda `LaneStack.speculate`) while the
    host's tail is still on its way; the host's own tail remains the token's definition, and
    a step it disagrees with is run again. Keyed as an int32 a value (NaN above +inf, −x
    below +x, −0 as +0), so `torch.argmax`'s first-of-equal-maxima rule is the tree's
    lowest-index rule."""
    b = z.reshape(-1, z.shape[-1]).view(torch.int32)
    mag = b & 0x7FFFFFFF
    key = torch.where(b < 0, -mag, mag).masked_fill_(mag > 0x7F800000, 0x7FFFFFFF)
    return torch.argmax(key, dim=-1)


def level(order: torch.Tensor, width: int) -> torch.Tensor:
    """The row with every block of `width` tokens sorted: a stable partition by block."""
    blk = torch.div(order, width, rounding_mode="floor")
    return order[torch.sort(blk, stable=True).indices]


def merge_level(order: torch.Tensor, half: int) -> torch.Tensor:
    """MERGE output (§L5.10): t · 2^32 + token, t = first-half tokens before the offset."""
    w = 2 * half
    lv = level(order, w)
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
    cfg = config if config is not None else _GREEDY
    if ins[0].is_cpu:
        fn = _CPU_STAGES.get(op.attrs[0])
        if fn is None or ins[0].numel() == 0:
            raise ValueError(f"SAMPLE stage {op.attrs[0]}: no fast path, or an empty row")
        return fn(op, ins, cfg, step)
    return _torch_run(op, ins, cfg, step, device)


def _torch_run(op: TraceOp, ins: list[torch.Tensor | None], cfg: JobConfig, step: int,
               device: torch.device) -> torch.Tensor:
    """The torch path (CUDA; valid on the CPU too, where the C path is the faster one)."""
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


# ------------------------------------------------------------------ CPU: repops_sample.c

_lib: SimpleNamespace | None = None


def _c() -> SimpleNamespace:
    """The C functions of repops_sample.c, argument types declared once."""
    global _lib
    if _lib is None:
        from repops.cpu.build import load  # compiles the CPU kernels on first use

        lib = load()
        p, i64, u32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32
        sig = {"order": ([p, i64, p], i64), "levels": ([p, i64, i64, i64, p, p], i64),
               "merge": ([p, i64, i64, p], None), "scale": ([p, i64, u32, p], None),
               "exp": ([p, p, i64, i64, i64, p], i64), "scan": ([p, p, i64], None),
               "topp": ([p, i64, i64, u32, p], None), "draw": ([p, i64, i64, u32, p], None)}
        fns = {}
        for name, (args, res) in sig.items():
            fn = getattr(lib, "repops_sample_" + name)
            fn.argtypes, fn.restype = args, res
            fns[name] = fn
        _lib = SimpleNamespace(**fns)
    return _lib


def _row(t: torch.Tensor | None, v: int, dtype: torch.dtype, what: str) -> torch.Tensor:
    """A row input the C code reads: contiguous, of `dtype`, with the op's V elements (the
    reference's shape rule, and what keeps the C reads inside the tensor)."""
    if t is None or t.dtype != dtype or t.numel() != v:
        raise ValueError(f"SAMPLE {what}: expected {v} elements of {dtype}")
    return t.contiguous()


def _order_row(t: torch.Tensor | None, v: int, what: str) -> tuple[torch.Tensor, int]:
    """An order input (SORT int32 or MERGE int64) and the stride of its low 32-bit words."""
    if t is not None and t.dtype == torch.int64:
        return _row(t, v, torch.int64, what), 2
    return _row(t, v, torch.int32, what), 1


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, x.numel()) if x.dim() < 2 else tuple(x.shape)


def _index(t: torch.Tensor | None, v: int, what: str) -> int:
    """An index input's element 0 (J0, j0, A, j*), in [0, v) (§L5.10)."""
    if t is None or t.numel() < 1:
        raise ValueError(f"SAMPLE {what}: index input absent")
    got = int(t.item() if t.numel() == 1 else t.reshape(-1)[0].item())
    if not 0 <= got < v:
        raise ValueError(f"SAMPLE {what}: index {got} outside the row of {v}")
    return got


def _bits_at(t: torch.Tensor, i: int) -> int:
    """Element i of a 4-byte row (float32 or int32) as its unsigned 32-bit pattern."""
    return int(t.contiguous().numpy().ravel().view(np.uint32)[i])


def _cpu_big_j(f: torch.Tensor | None, j0: torch.Tensor | None, v: int, k: int) -> int:
    """J of RepOps spec §7.3 step 6: J0 when f[J0] is 1.0, else K − 1."""
    at = _index(j0, v, "J0")
    return at if _bits_at(_row(f, v, torch.float32, "f"), at) == F32_ONE else k - 1


class _CpuRow:
    """One z' row's sort (§L5.10): its global order and the MERGE outputs. A block list L_w
    lists every block of w tokens in global order: SORT's output for w = B, MERGE's tokens for
    w = 2h. SORT's list comes with the outputs of the MERGE levels h = B, 2B, … below V (the
    levels the lowering emits) from one C call; a MERGE asked for otherwise is computed on its
    own."""

    def __init__(self, zp: torch.Tensor) -> None:
        zp = _row(zp, zp.numel(), torch.float32, "z'")
        self.v = zp.numel()
        self.order = torch.empty(self.v, dtype=torch.int32)
        if _c().order(zp.data_ptr(), self.v, self.order.data_ptr()):
            raise MemoryError("SAMPLE: no memory for the sort")
        self._merges: dict[int, torch.Tensor] = {}

    def _levels(self, w: int, merges: bool) -> torch.Tensor:
        """L_w, and with `merges` the outputs of the MERGE levels w, 2w, … below V."""
        if w >= self.v:
            return self.order
        n = 1
        while w << n < self.v:
            n += 1
        out = torch.empty(self.v, dtype=torch.int32)
        m = torch.empty((n, self.v), dtype=torch.int64) if merges else None
        if _c().levels(self.order.data_ptr(), self.v, w, n, out.data_ptr(),
                       None if m is None else m.data_ptr()):
            raise MemoryError("SAMPLE: no memory for the levels")
        if m is not None:
            for i in range(n):
                self._merges.setdefault(w << i, m[i])
        return out

    def sort(self, block: int) -> torch.Tensor:
        """SORT's output L_B (int32, V elements), with the MERGE levels above it."""
        return self._levels(block, merges=True)

    def merge(self, half: int) -> torch.Tensor:
        """The MERGE output of `half` (int64, V elements)."""
        got = self._merges.get(half)
        if got is None:
            got = torch.empty(self.v, dtype=torch.int64)
            runs = self._levels(2 * half, merges=False)  # held: C reads it
            _c().merge(runs.data_ptr(), self.v, half, got.data_ptr())
        return got


_CPU_CACHE = _OrderCache(_CpuRow)


def _block_attr(op: TraceOp) -> int:
    if len(op.attrs) != 2 or op.attrs[1] < 1:
        raise ValueError("SAMPLE: block size")
    return op.attrs[1]


def _cpu_scale(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    x = _row(ins[0], ins[0].numel(), torch.float32, "SCALE z")
    out = torch.empty(x.shape, dtype=torch.float32)
    _c().scale(x.data_ptr(), x.numel(), cfg.temperature, out.data_ptr())
    return out


def _cpu_sort(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    x = ins[0]
    return _CPU_CACHE.order(x).sort(_block_attr(op)).reshape(_shape(x))


def _cpu_merge(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    x, v, half = ins[0], ins[0].numel(), _block_attr(op)
    row = _CPU_CACHE.order(_row(ins[1], v, torch.float32, "MERGE z'"))
    return row.merge(half).reshape(_shape(x))


def _cpu_exp(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    v = ins[0].numel()
    zp = _row(ins[0], v, torch.float32, "EXP z'")
    order, stride = _order_row(ins[1], v, "EXP order")
    e = torch.empty(_shape(zp), dtype=torch.float32)
    if _c().exp(zp.data_ptr(), order.data_ptr(), stride, v, keff(v, cfg), e.data_ptr()):
        raise ValueError("SAMPLE EXP order: index outside the row")
    return e


def _cpu_scan(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    p = _row(ins[0], ins[0].numel(), torch.float32, "SCAN p")
    c = torch.empty(_shape(p), dtype=torch.float32)
    _c().scan(p.data_ptr(), c.data_ptr(), p.numel())
    return c


def _cpu_topp(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    v = ins[0].numel()
    c = _row(ins[0], v, torch.float32, "TOPP c")
    f = torch.empty(_shape(c), dtype=torch.float32)
    _c().topp(c.data_ptr(), v, keff(v, cfg), cfg.top_p, f.data_ptr())
    return f


_U_AHEAD = 64


class _UBits:
    """u of RepOps spec §7.2 (binary32 bits) of a job's steps, 64 steps at a time per seed:
    one keccak through Python costs ~100 µs, the next 63 steps' values about as much together.
    Keyed by seed, so a batch of jobs with different seeds does not evict one another; each
    entry is replaced whole (thread-safe without a lock)."""

    def __init__(self, seeds: int = 256) -> None:
        self._by_seed: dict[int, tuple[int, tuple[int, ...]]] = {}
        self._seeds = seeds

    def get(self, cfg: JobConfig, step: int) -> int:
        first, values = self._by_seed.get(cfg.seed, (-1, ()))
        if not first <= step < first + len(values):
            values = tuple(prng_u_bits(cfg, s) for s in range(step, min(step + _U_AHEAD, 1 << 64)))
            if len(self._by_seed) >= self._seeds:
                self._by_seed.clear()
            first = step
            self._by_seed[cfg.seed] = (first, values)
        return values[step - first]


U_BITS = _UBits()


def _cpu_draw(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    v = ins[0].numel()
    c = _row(ins[0], v, torch.float32, "DRAW c")
    big_j = _cpu_big_j(ins[1], ins[2], v, keff(v, cfg))
    g = torch.empty(_shape(c), dtype=torch.float32)
    _c().draw(c.data_ptr(), v, big_j, U_BITS.get(cfg, step), g.data_ptr())
    return g


def _cpu_jstar(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    v = ins[0].numel()
    big_j = _cpu_big_j(ins[2], ins[3], v, keff(v, cfg))
    j0 = _index(ins[1], v, "j0")
    hit = _bits_at(_row(ins[0], v, torch.float32, "JSTAR g"), j0) == F32_ONE
    return torch.full((1, 1), j0 if hit else big_j, dtype=torch.int32)


def _cpu_pick(op: TraceOp, ins: list, cfg: JobConfig, step: int) -> torch.Tensor:
    v = ins[0].numel()
    a = _index(ins[1], v, "A")
    za = _bits_at(_row(ins[0], v, torch.float32, "PICK z"), a)
    if cfg.greedy or za & 0x7FFFFFFF > 0x7F800000:  # T = ±0, or z[A] is NaN
        return torch.full((1, 1), a, dtype=torch.int32)
    js = _index(ins[3], v, "j*")
    order, _ = _order_row(ins[2], v, "PICK order")
    tok = int(order.numpy().ravel()[js]) & _LOW32
    if tok >= v:
        raise ValueError("SAMPLE PICK: index outside the row")
    return torch.full((1, 1), tok, dtype=torch.int32)


_CPU_STAGES = {Stage.SCALE: _cpu_scale, Stage.SORT: _cpu_sort, Stage.MERGE: _cpu_merge,
               Stage.EXP: _cpu_exp, Stage.SCAN: _cpu_scan, Stage.TOPP: _cpu_topp,
               Stage.DRAW: _cpu_draw, Stage.JSTAR: _cpu_jstar, Stage.PICK: _cpu_pick}
