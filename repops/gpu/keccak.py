"""Commitments C2 + C3 chunk leaves on the GPU: keccak256(0x00 ‖ chunk) for many 1 KiB chunks
of one device buffer (docs/commitments.md C2, C3), so that a step's ~23 MB of leaf bytes stay on
the device and only their 32-byte leaves (~0.7 MB) cross to the host, where the C3 trees and C4
roots are built from them (`repops.commit.tensor_roots_raw` with every leaf known).

Why a kernel: with the decode step on the GPU at ~10 ms, copying 23 MB a token to the host and
hashing it there took longer than the step (29 % trace overhead, docs/reports/
notes-runtime-perf.md). Keccak is integer arithmetic, so the kernel's digests are the same bits
as the C and Python ones by construction; tests compare them under the interpreter (CI) and on
a GPU. One lane hashes one chunk: the Keccak-f[1600] state is 25 uint64 registers (FIPS 202).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from repops import commit

RATE = 136  # keccak256's rate in bytes (FIPS 202: 1600 - 2·256 bits)
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
def _word(DATA, start, ln, DATA2, start2, ln2, tag, last, p0, m):
    """Message word at byte p0 (8 bytes, little-endian) of each lane's padded message
    tag ‖ DATA[start : start + ln] ‖ DATA2[start2 : start2 + ln2] ‖ 0x01 0…0 0x80, `last`
    its final padding byte. Bytes outside the two pieces are masked, not read: the buffers
    hold other tensors there."""
    w = tl.zeros(start.shape, tl.uint64)
    for b in tl.static_range(8):
        p = p0 + b + tl.zeros_like(ln)  # a tensor even where p0 is a Python int
        one = (p >= 1) & (p <= ln) & m
        two = (p > ln) & (p <= ln + ln2) & m
        byte = tl.load(DATA + start + (p - 1), mask=one, other=0).to(tl.uint64)
        byte |= tl.load(DATA2 + start2 + (p - 1 - ln), mask=two, other=0).to(tl.uint64)
        byte = tl.where(p == 0, tag, byte)
        byte = tl.where(p == ln + ln2 + 1, byte | 0x01, byte)
        byte = tl.where(p == last, byte | 0x80, byte)
        w |= byte << (8 * b)
    return w


@triton.jit(do_not_specialize=["n", "tag"])
def keccak_kernel(DATA, DATA2, START, LEN, START2, LEN2, DST, RC, OUT, n, tag,
                  BLOCK: tl.constexpr):
    """Digest i = keccak256(tag ‖ DATA[START[i] : +LEN[i]] ‖ DATA2[START2[i] : +LEN2[i]]) as 4
    little-endian words at OUT + 4 DST[i] (one 32-byte slot per digest). Lanes of one
    program may absorb different numbers of blocks: each stores its digest after its own last
    block (the state of a lane past it is never read again). `n` and `tag` are not
    specialised on: one compiled kernel serves every level of every step."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    start = tl.load(START + i, mask=m, other=0)
    ln = tl.load(LEN + i, mask=m, other=0)
    start2 = tl.load(START2 + i, mask=m, other=0)
    ln2 = tl.load(LEN2 + i, mask=m, other=0)
    dst = tl.load(DST + i, mask=m, other=0)
    t = (tag + tl.zeros_like(ln)).to(tl.uint64)
    nb = (ln + ln2 + 1) // 136 + 1  # tag + pieces + at least one padding byte
    last = 136 * nb - 1
    nbmax = tl.max(tl.where(m, nb, 0), axis=0)
    z = tl.zeros([BLOCK], tl.uint64)
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12 = z, z, z, z, z, z, z, z, z, z, z, z, z
    a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24 = z, z, z, z, z, z, z, z, z, z, z, z
    for blk in range(0, nbmax):
        base = blk * 136
        a0 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 0, m)
        a1 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 8, m)
        a2 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 16, m)
        a3 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 24, m)
        a4 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 32, m)
        a5 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 40, m)
        a6 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 48, m)
        a7 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 56, m)
        a8 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 64, m)
        a9 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 72, m)
        a10 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 80, m)
        a11 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 88, m)
        a12 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 96, m)
        a13 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 104, m)
        a14 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 112, m)
        a15 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 120, m)
        a16 ^= _word(DATA, start, ln, DATA2, start2, ln2, t, last, base + 128, m)
        for r in range(24):
            rc = tl.load(RC + r).to(tl.uint64, bitcast=True)
            (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,
             a18, a19, a20, a21, a22, a23, a24) = _round(
                a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,
                a18, a19, a20, a21, a22, a23, a24, rc)
        done = m & (blk == nb - 1)  # a lane's digest is its state after its last block
        tl.store(OUT + 4 * dst, a0.to(tl.int64, bitcast=True), mask=done)
        tl.store(OUT + 4 * dst + 1, a1.to(tl.int64, bitcast=True), mask=done)
        tl.store(OUT + 4 * dst + 2, a2.to(tl.int64, bitcast=True), mask=done)
        tl.store(OUT + 4 * dst + 3, a3.to(tl.int64, bitcast=True), mask=done)


def _pad16(n: int) -> int:
    return -(-n // 16) * 16


@dataclass
class RootsPlan:
    """Every keccak message of the C4 roots of tensors in one buffer (docs/commitments.md C2
    leaves, C3 nodes level by level, C4 header ‖ data root), as index tables in one int32
    tensor `table` [5, R] (rows: start, length, second start, second length, destination
    slot), so that one host→device copy carries a step's tables. `levels` lists each kernel
    launch: (first column, messages, tag, what the first piece reads: "data", "nodes",
    "headers"). Trees are laid out as repops_keccak.c lays them: tensor i's padded leaves,
    then each level, root last, from node `base[i]` of one node buffer."""

    table: torch.Tensor
    levels: list[tuple[int, int, int, str]]
    n_nodes: int
    n: int


_LIMIT = 2**31 - 1  # the tables are int32


def roots_plan(offs: np.ndarray, nbytes: np.ndarray, hlen: np.ndarray, hwidth: int,
               pin: bool = False) -> RootsPlan:
    """Tables for the C4 roots of n tensors at byte `offs` of a buffer, `nbytes` long, whose
    headers are rows of `hwidth` bytes (row i: 0x02 ‖ dtype ‖ ndim ‖ dims, `hlen[i]` used),
    written by repops_roots_tables (repops_keccak.c) straight into a (`pin`: pinned) host
    tensor. A C loop: the NumPy version cost ~2.5 ms a SmolLM2 step on the executor's
    thread."""
    lib = commit.native()
    n = len(offs)
    o, b, h = (np.ascontiguousarray(a, dtype=np.int64) for a in (offs, nbytes, hlen))
    if not len(b) == len(h) == n:
        raise ValueError("roots_plan: one size and one header length per offset")
    if n and (int((o + b).max()) > _LIMIT or n * hwidth > _LIMIT):
        raise ValueError("roots_plan: buffers over 2 GiB need int64 tables")
    nl, nn = ctypes.c_int64(), ctypes.c_int64()
    cols = lib.repops_roots_tables(n, o.ctypes.data, b.ctypes.data, h.ctypes.data, hwidth,
                                   None, 0, None, ctypes.byref(nl), ctypes.byref(nn))
    if 32 * nn.value > _LIMIT:
        raise ValueError("roots_plan: node buffer over 2 GiB needs int64 tables")
    table = torch.empty((5, max(cols, 16)), dtype=torch.int32, pin_memory=pin)
    lv = np.empty((nl.value, 4), dtype=np.int64)
    lib.repops_roots_tables(n, o.ctypes.data, b.ctypes.data, h.ctypes.data, hwidth,
                            table.data_ptr(), table.shape[1], lv.ctypes.data,
                            ctypes.byref(nl), ctypes.byref(nn))
    levels = [(c0, cnt, tag, ("data", "nodes", "headers")[src])
              for c0, cnt, tag, src in lv.tolist()]
    return RootsPlan(table, levels, nn.value, n)


_RC: dict[torch.device, torch.Tensor] = {}


def _round_constants(dev: torch.device) -> torch.Tensor:
    rc = _RC.get(dev)
    if rc is None:
        rc = _RC[dev] = torch.tensor(np.array(ROUND_CONSTANTS, dtype=np.uint64).view(np.int64),
                                     device=dev)
    return rc


def _launch(data: torch.Tensor, data2: torch.Tensor, table: torch.Tensor, c0: int, cnt: int,
            out: torch.Tensor, tag: int) -> None:
    if cnt:
        t = table[:, c0:]
        keccak_kernel[(triton.cdiv(cnt, BLOCK),)](data, data2, t[0], t[1], t[2], t[3], t[4],
                                                  _round_constants(data.device),
                                                  out.view(torch.int64), cnt, tag, BLOCK=BLOCK)


def tensor_roots(data: torch.Tensor, headers: torch.Tensor, plan: RootsPlan,
                 table: torch.Tensor) -> torch.Tensor:
    """C4 roots ([n, 32] uint8, on data's device) of the tensors of `plan` in `data` (1-D
    uint8), `headers` their header rows flattened (uint8), `table` = plan.table on the
    device (int32); launched on the current stream, one launch per level."""
    nodes = torch.zeros((max(1, plan.n_nodes), 32), dtype=torch.uint8, device=data.device)
    roots = torch.empty((plan.n, 32), dtype=torch.uint8, device=data.device)
    for c0, cnt, tag, src in plan.levels:
        if src == "headers":
            _launch(headers, nodes.view(-1), table, c0, cnt, roots, tag)
        else:
            _launch(data if src == "data" else nodes.view(-1), data, table, c0, cnt, nodes, tag)
    return roots
