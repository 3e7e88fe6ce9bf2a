"""Commitments C2-C4 on the GPU (docs/commitments.md; ADR 0006): the C4 root of every
tensor of one device buffer (a decode step's arena) — its 1 KiB chunk leaves, its C3 tree
level by level, keccak256(header ‖ root) — so that 32 bytes a tensor cross to the host instead
of a SmolLM2 step's ~23 MB of leaf bytes.

Why a kernel: with the decode step on an H200 at ~10-13 ms, copying 23 MB a token to the host
and hashing it there took longer than the step (29 % trace overhead, docs/reports/
notes-runtime-perf.md). Keccak is integer arithmetic, so the kernel's digests are the C and
Python ones' bits by construction; tests compare them under the interpreter (CI) and on a GPU.
One lane hashes one message: the Keccak-f[1600] state is 25 uint64 registers (FIPS 202).
`slot_leaves_kernel` and `tree_kernel` have grids that do not depend on the tensors' sizes, so
node/ree/step_plan_cuda.py captures them in a CUDA graph per arena; `device_roots` launches
them once for other steps.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

BLOCK = 128  # chunks per program: one per thread of 4 warps

# Keccak-f[1600] round constants ι (FIPS 202 §3.2.5)
ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)


@triton.jit
def _rol(x, n: tl.constexpr):
    return (x << n) | (x >> (64 - n))


@triton.jit
def _round(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16,
           a17, a18, a19, a20, a21, a22, a23, a24, rc):
    """One Keccak-f[1600] round (FIPS 202 §3.3: θ, ρ and π, χ, ι) on 25 lanes; lane i is
    A[x, y] with i = x + 5y."""
    c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
    c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
    c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
    c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
    c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
    d0 = c4 ^ _rol(c1, 1)
    d1 = c0 ^ _rol(c2, 1)
    d2 = c1 ^ _rol(c3, 1)
    d3 = c2 ^ _rol(c4, 1)
    d4 = c3 ^ _rol(c0, 1)
    b0 = (a0 ^ d0)
    b1 = _rol((a6 ^ d1), 44)
    b2 = _rol((a12 ^ d2), 43)
    b3 = _rol((a18 ^ d3), 21)
    b4 = _rol((a24 ^ d4), 14)
    b5 = _rol((a3 ^ d3), 28)
    b6 = _rol((a9 ^ d4), 20)
    b7 = _rol((a10 ^ d0), 3)
    b8 = _rol((a16 ^ d1), 45)
    b9 = _rol((a22 ^ d2), 61)
    b10 = _rol((a1 ^ d1), 1)
    b11 = _rol((a7 ^ d2), 6)
    b12 = _rol((a13 ^ d3), 25)
    b13 = _rol((a19 ^ d4), 8)
    b14 = _rol((a20 ^ d0), 18)
    b15 = _rol((a4 ^ d4), 27)
    b16 = _rol((a5 ^ d0), 36)
    b17 = _rol((a11 ^ d1), 10)
    b18 = _rol((a17 ^ d2), 15)
    b19 = _rol((a23 ^ d3), 56)
    b20 = _rol((a2 ^ d2), 62)
    b21 = _rol((a8 ^ d3), 55)
    b22 = _rol((a14 ^ d4), 39)
    b23 = _rol((a15 ^ d0), 41)
    b24 = _rol((a21 ^ d1), 2)
    return (b0 ^ (~b1 & b2) ^ rc,
            b1 ^ (~b2 & b3),
            b2 ^ (~b3 & b4),
            b3 ^ (~b4 & b0),
            b4 ^ (~b0 & b1),
            b5 ^ (~b6 & b7),
            b6 ^ (~b7 & b8),
            b7 ^ (~b8 & b9),
            b8 ^ (~b9 & b5),
            b9 ^ (~b5 & b6),
            b10 ^ (~b11 & b12),
            b11 ^ (~b12 & b13),
            b12 ^ (~b13 & b14),
            b13 ^ (~b14 & b10),
            b14 ^ (~b10 & b11),
            b15 ^ (~b16 & b17),
            b16 ^ (~b17 & b18),
            b17 ^ (~b18 & b19),
            b18 ^ (~b19 & b15),
            b19 ^ (~b15 & b16),
            b20 ^ (~b21 & b22),
            b21 ^ (~b22 & b23),
            b22 ^ (~b23 & b24),
            b23 ^ (~b24 & b20),
            b24 ^ (~b20 & b21))



@triton.jit
def _word(DATA, start, ln, DATA2, start2, ln2, tag, end, last, p0, m):
    """Message word at byte p0 (8 bytes, little-endian) of each lane's padded message
    tag ‖ DATA[start : start + ln] ‖ DATA2[start2 : start2 + ln2] ‖ zeros up to `end` bytes
    after the tag ‖ 0x01 0…0 0x80, `last` its final padding byte. Bytes outside the two pieces
    are masked, not read: the buffers hold other tensors (or stale tree nodes) there."""
    w = tl.zeros(start.shape, tl.uint64)
    for b in tl.static_range(8):
        p = p0 + b + tl.zeros_like(ln)  # a tensor even where p0 is a Python int
        one = (p >= 1) & (p <= ln) & m
        two = (p > ln) & (p <= ln + ln2) & m
        byte = tl.load(DATA + start + (p - 1), mask=one, other=0).to(tl.uint64)
        byte |= tl.load(DATA2 + start2 + (p - 1 - ln), mask=two, other=0).to(tl.uint64)
        byte = tl.where(p == 0, tag, byte)
        byte = tl.where(p == end + 1, byte | 0x01, byte)
        byte = tl.where(p == last, byte | 0x80, byte)
        w |= byte << (8 * b)
    return w


@triton.jit
def _sponge(DATA, start, ln, DATA2, start2, ln2, tag, end, OUT, dst, m, RC):
    """keccak256(tag ‖ DATA[start : +ln] ‖ DATA2[start2 : +ln2] ‖ zeros to `end` bytes) per
    lane m, stored as 4 little-endian words at OUT + 4 dst. Lanes may absorb different
    numbers of blocks: each stores its digest after its own last block (the state of a lane
    past it is never read again)."""
    t = (tag + tl.zeros_like(ln)).to(tl.uint64)
    # 136: keccak256's rate in bytes (FIPS 202: 1600 - 2·256 bits)
    nb = (end + 1) // 136 + 1  # tag + message + at least one padding byte
    last = 136 * nb - 1
    nbmax = tl.max(tl.where(m, nb, 0), axis=0)
    z = tl.zeros(start.shape, tl.uint64)
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12 = z, z, z, z, z, z, z, z, z, z, z, z, z
    a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24 = z, z, z, z, z, z, z, z, z, z, z, z
    for blk in range(0, nbmax):
        base = blk * 136
        a0 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 0, m)
        a1 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 8, m)
        a2 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 16, m)
        a3 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 24, m)
        a4 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 32, m)
        a5 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 40, m)
        a6 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 48, m)
        a7 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 56, m)
        a8 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 64, m)
        a9 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 72, m)
        a10 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 80, m)
        a11 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 88, m)
        a12 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 96, m)
        a13 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 104, m)
        a14 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 112, m)
        a15 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 120, m)
        a16 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, end, last, base + 128, m)
        for r in range(24):
            rc = tl.load(RC + r).to(tl.uint64, bitcast=True)
            (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,
             a18, a19, a20, a21, a22, a23, a24) = _round(
                a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,
                a18, a19, a20, a21, a22, a23, a24, rc)
        # (as a product: the interpreter types `m & (scalar == scalar)` as int32, not a mask)
        done = (m.to(tl.int32) * (blk == nb - 1).to(tl.int32)) != 0
        tl.store(OUT + 4 * dst, a0.to(tl.int64, bitcast=True), mask=done)
        tl.store(OUT + 4 * dst + 1, a1.to(tl.int64, bitcast=True), mask=done)
        tl.store(OUT + 4 * dst + 2, a2.to(tl.int64, bitcast=True), mask=done)
        tl.store(OUT + 4 * dst + 3, a3.to(tl.int64, bitcast=True), mask=done)


# Per-tensor rows of the graph kernels below (int32): byte offset, byte size, first node of its
# tree's region, dtype code, ndim, dims (MAXD of them, unused ones 0).
T_OFF, T_NBYTES, T_BASE, T_DCODE, T_NDIM, T_DIMS = 0, 1, 2, 3, 4, 5
_OFF, _NBYTES, _BASE = tl.constexpr(T_OFF), tl.constexpr(T_NBYTES), tl.constexpr(T_BASE)
_DCODE, _NDIM, _DIMS = tl.constexpr(T_DCODE), tl.constexpr(T_NDIM), tl.constexpr(T_DIMS)


@triton.jit
def slot_leaves_kernel(DATA, TENS, SLOTS, NODES, RC, n_slots, F: tl.constexpr,
                       BLOCK: tl.constexpr):
    """C2 leaves for fixed chunk slots: slot s is chunk SLOTS[2s+1] of tensor SLOTS[2s], and
    hashes it only if the tensor has that chunk now (TENS's byte size: sizes change with the
    position, slots cover the largest), into node base + chunk of NODES. A CUDA graph
    replays this for every decode step, so its grid cannot depend on the sizes."""
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = s < n_slots
    t = tl.load(SLOTS + 2 * s, mask=m, other=0)
    k = tl.load(SLOTS + 2 * s + 1, mask=m, other=0)
    nb = tl.load(TENS + F * t + _NBYTES, mask=m, other=0)
    m = m & ((k == 0) | (k * 1024 < nb))  # an empty tensor has one empty chunk
    ln = tl.minimum(tl.maximum(nb - k * 1024, 0), 1024)
    start = tl.load(TENS + F * t + _OFF, mask=m, other=0) + k * 1024
    dst = tl.load(TENS + F * t + _BASE, mask=m, other=0) + k
    _sponge(DATA, start, ln, DATA, start, ln * 0, 0, ln, NODES, dst, m, RC)


@triton.jit
def tree_kernel(TENS, NODES, ROOTS, RC, F: tl.constexpr, BLOCK: tl.constexpr):
    """One tensor per program: the C3 levels over its leaves (slot_leaves_kernel's; leaves
    past its chunk count are ZERO, never read: the region holds other steps' nodes), bottom
    up with a barrier between levels, laid out as repops_keccak.c lays a tree (padded
    leaves, each level, root last, from node `base`), then C4 = keccak256(header ‖ root),
    the header bytes (0x02, dtype code, ndim, big-endian u32 dims) written first to the node
    after the root's, the digest to the one after that and then to 32-byte slot t of ROOTS.
    One sponge call site for levels and header: each call site is ~40 s of compile."""
    t = tl.program_id(0)
    lane = tl.arange(0, BLOCK)
    nb = tl.load(TENS + F * t + _NBYTES)
    base = tl.load(TENS + F * t + _BASE)
    c = tl.maximum((nb + 1023) // 1024, 1)
    p = c * 0 + 1
    while p < c:
        p = p * 2
    nodes8 = NODES.to(tl.pointer_type(tl.uint8), bitcast=True)
    root = base + 2 * p - 2
    ndim = tl.load(TENS + F * t + _NDIM)
    j = tl.maximum(lane - 3, 0)
    dim = tl.load(TENS + F * t + _DIMS + j // 4, mask=(lane >= 3) & (j < 4 * ndim), other=0)
    byte = (dim >> (8 * (3 - j % 4))) & 255
    byte = tl.where(lane == 0, 2, tl.where(lane == 1, tl.load(TENS + F * t + _DCODE),
                                           tl.where(lane == 2, ndim, byte)))
    hlen = 3 + 4 * ndim
    tl.store(nodes8 + 32 * (root + 1) + lane, byte.to(tl.uint8), mask=lane < hlen)
    first = base  # the level being read
    n_in = p  # its nodes
    real = c  # nodes of it that are not ZERO padding (level 0 only: all above are hashed)
    head = n_in * 0
    while head == 0:
        tl.debug_barrier()  # the level below (or the header bytes) written
        head = (n_in == 1).to(tl.int32)
        count = tl.where(head == 1, 1, n_in // 2)
        for q0 in range(0, count, BLOCK):
            q = q0 + lane
            ln = tl.where(head == 1, hlen - 1, tl.minimum(tl.maximum(real - 2 * q, 0), 2) * 32)
            _sponge(nodes8, tl.where(head == 1, 32 * (root + 1) + 1, 32 * (first + 2 * q)), ln,
                    nodes8, 32 * root + q * 0, tl.where(head == 1, 32, 0), 1 + head,
                    tl.where(head == 1, hlen - 1 + 32, 64), NODES,
                    tl.where(head == 1, root + 2, first + n_in + q), q < count, RC)
        first += n_in
        real = n_in // 2
        n_in = n_in // 2
    tl.debug_barrier()
    w = tl.load(NODES + 4 * (root + 2) + lane, mask=lane < 4)
    tl.store(ROOTS + 4 * t + lane, w, mask=lane < 4)


_RC: dict[torch.device, torch.Tensor] = {}


def _round_constants(dev: torch.device) -> torch.Tensor:
    rc = _RC.get(dev)
    if rc is None:
        rc = _RC[dev] = torch.tensor(np.array(ROUND_CONSTANTS, dtype=np.uint64).view(np.int64),
                                     device=dev)
    return rc


def slot_layout(max_nbytes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Fixed chunk slots and tree regions for tensors of at most `max_nbytes` bytes each (the
    graph kernels): (slots [S, 2] int32 of (tensor, chunk), each tensor's first node, the
    node count). A tensor of c chunks at most gets c slots and 2 P + 1 nodes, P = the power
    of two ≥ c: its tree, its header bytes and its C4 digest (tree_kernel)."""
    mx = np.asarray(max_nbytes, dtype=np.int64)
    c = np.maximum(1, -(-mx // 1024))
    p = np.left_shift(1, np.ceil(np.log2(c)).astype(np.int64))
    base = np.cumsum(2 * p + 1) - (2 * p + 1)
    t = np.repeat(np.arange(len(c)), c)
    k = np.arange(len(t)) - np.repeat(np.cumsum(c) - c, c)
    return np.stack([t, k], axis=1).astype(np.int32), base, int((2 * p + 1).sum())


def graph_roots(data: torch.Tensor, tens: torch.Tensor, slots: torch.Tensor,
                nodes: torch.Tensor, roots: torch.Tensor) -> None:
    """C4 roots of the tensors of `tens` (int32 rows T_OFF… with up to 6 dims; sizes at most
    those `slots` was laid out for) in `data`, into `roots` [n, 32] uint8: two launches whose
    grids depend only on the slot and tensor counts, so a CUDA graph can replay them for
    every decode step. `nodes` (int64 [n_nodes, 4]) is scratch."""
    n, f = tens.shape
    rc = _round_constants(data.device)
    s = slots.shape[0]
    slot_leaves_kernel[(triton.cdiv(s, BLOCK),)](data, tens, slots, nodes, rc, s, F=f,
                                                 BLOCK=BLOCK)
    if f > T_DIMS + 6:
        raise ValueError("graph_roots: a header of more than 6 dims does not fit a node")
    tree_kernel[(n,)](tens, nodes, roots.view(torch.int64), rc, F=f, BLOCK=32, num_warps=1)


def tensor_rows(offs: np.ndarray, nbytes: np.ndarray, dcode: np.ndarray, ndim: np.ndarray,
                dims: np.ndarray) -> np.ndarray:
    """The graph kernels' rows (int64 here; int32 on the device) of tensors at byte `offs` of
    a buffer: sizes, dtype codes, ndims and dims ([n, ≤ 6], unused ones 0); T_BASE is left 0
    for `slot_layout`'s regions."""
    n = len(offs)
    if dims.shape[1] > 6:
        raise ValueError("tensor_rows: a header of more than 6 dims does not fit a node")
    r = np.zeros((n, T_DIMS + 6), dtype=np.int64)
    r[:, T_OFF], r[:, T_NBYTES], r[:, T_DCODE], r[:, T_NDIM] = offs, nbytes, dcode, ndim
    r[:, T_DIMS:T_DIMS + dims.shape[1]] = dims
    return r


def _to(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """`t` on `dev`, through pinned memory (an asynchronous copy) when that is a GPU."""
    return t.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else t.to(dev)


def device_roots(data: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """C4 roots ([n, 32] uint8 on data's device, queued on the current stream) of the tensors
    of `rows` (`tensor_rows`) in `data`, by the graph kernels launched once with slots and
    regions laid out for these sizes: for steps that are not replayed as a graph."""
    if len(rows) and int((rows[:, T_OFF] + rows[:, T_NBYTES]).max()) >= 2**31:
        raise ValueError("device_roots: a buffer over 2 GiB (the rows are int32)")
    slots, base, n_nodes = slot_layout(rows[:, T_NBYTES])
    r = rows.copy()
    r[:, T_BASE] = base
    dev = data.device
    tens, slots_d = (_to(torch.from_numpy(a), dev) for a in (r.astype(np.int32), slots))
    nodes = torch.empty((max(1, n_nodes), 4), dtype=torch.int64, device=dev)
    out = torch.empty((len(rows), 32), dtype=torch.uint8, device=dev)
    graph_roots(data, tens, slots_d, nodes, out)
    return out
