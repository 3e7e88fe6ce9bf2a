"""The device's greedy guess of a decode step's token and the next step's table row from it,
in two Triton launches (`_Graphs.speculate` with step_plan_cuda.FUSED_SPECULATE).

Why: a speculated step (ADR 0015's loop: the next graph queued before the host knows the
token) needs the token's argmax and the next graph's integer table, C + K·past + T·token.
As torch ops that was ~10 launches a step beside the graph (the int32 keys, `torch.argmax`'s
10.7 µs reduction, a pinned copy of C + K·past, T·token and the add): ~35 µs of device time
and a gap before each on the H100 (profile_cuda_step.py --loop, thirty-first session), on
the path of every b=1 step. Here: one launch of partial maxima over blocks of the row, one
that reduces them and writes the whole table, with `past` a launch argument.

The guess is not the token's definition: the host's tail computes the token from the same
logits (§L5.10 PICK at T = ±0, fastexec `_HostTail`) and a step whose guess differs is run
again. It follows `fastsample.argmax_token`'s order all the same (the first NaN, else the
first index of the greatest value, −0 = +0), so that a guess is only wrong where the host
is."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ROW_BLOCK = 2048  # logits a program of the partial maxima
TABLE_BLOCK = 1024  # table integers a program of the second launch
MAX_PARTS = 64  # partial maxima the second launch reduces (a row of ≤ 131,072 logits)


@triton.jit
def _key(bits):
    """The int32 order of `fastsample.argmax_token`: NaN above +inf, −x below +x, −0 = +0."""
    mag = bits & 0x7FFFFFFF
    key = tl.where(bits < 0, -mag, mag)
    return tl.where(mag > 0x7F800000, 0x7FFFFFFF, key)


@triton.jit
def _part_kernel(Z, V, PKEY, PIDX, BLOCK: tl.constexpr):
    """Program p: the greatest key of logits [p·BLOCK, (p+1)·BLOCK) and its first index."""
    p = tl.program_id(0)
    i = p * BLOCK + tl.arange(0, BLOCK)
    bits = tl.load(Z + i, mask=i < V, other=0).to(tl.int32)
    key = tl.where(i < V, _key(bits), -0x7FFFFFFF - 1)  # below every logit's key
    best = tl.max(key, axis=0)
    first = tl.min(tl.where(key == best, i, 2147483647), axis=0)
    tl.store(PKEY + p, best)
    tl.store(PIDX + p, first)


@triton.jit
def _table_kernel(PKEY, PIDX, NPART, C0, KP, KT, N, past, ARGS, TOK,
                  PB: tl.constexpr, BLOCK: tl.constexpr):
    """Every program: the row's first greatest key from the partial maxima (parts are in
    index order, so the lowest part holding the greatest key holds the first index), then
    its block of the table C0 + KP·past + KT·token; program 0 stores the token."""
    j = tl.arange(0, PB)
    key = tl.load(PKEY + j, mask=j < NPART, other=-0x7FFFFFFF - 1)
    best = tl.max(key, axis=0)
    part = tl.min(tl.where(key == best, j, PB), axis=0)
    tok = tl.load(PIDX + part).to(tl.int64)
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    c0 = tl.load(C0 + i, mask=m, other=0)
    kp = tl.load(KP + i, mask=m, other=0)
    kt = tl.load(KT + i, mask=m, other=0)
    tl.store(ARGS + i, c0 + kp * past + kt * tok, mask=m)
    if tl.program_id(0) == 0:
        tl.store(TOK, tok)


class NextTable:
    """One job's device buffers for `queue`: the table's three terms (int64, of one shape,
    as `_Graphs.tables`: [launches, row words]; kept flat), the partial maxima and the
    guess (`token`, int64 [1])."""

    def __init__(self, c0: torch.Tensor, kp: torch.Tensor, kt: torch.Tensor) -> None:
        if not (c0.shape == kp.shape == kt.shape
                and c0.dtype == kp.dtype == kt.dtype == torch.int64):
            raise ValueError("the table's terms: three int64 tensors of one shape")
        self.shape = c0.shape
        self.c0, self.kp, self.kt = (t.contiguous().reshape(-1) for t in (c0, kp, kt))
        self.pkey = torch.empty(MAX_PARTS, dtype=torch.int32, device=c0.device)
        self.pidx = torch.empty(MAX_PARTS, dtype=torch.int32, device=c0.device)
        self.token = torch.zeros(1, dtype=torch.int64, device=c0.device)

    def queue(self, logits: torch.Tensor, past: int, args: torch.Tensor) -> torch.Tensor:
        """Queue on the current stream: `token` the greedy guess of `logits` (float32, one
        row, contiguous) and `args` the table at (`past`, that token); returns `token`."""
        z = logits.reshape(-1)
        v, n = z.numel(), self.c0.numel()
        parts = triton.cdiv(v, ROW_BLOCK)
        if parts > MAX_PARTS or z.dtype != torch.float32 or not z.is_contiguous():
            raise ValueError("logits: one contiguous float32 row of at most "
                             f"{MAX_PARTS * ROW_BLOCK} values")
        if args.shape != self.shape or args.dtype != torch.int64 or not args.is_contiguous():
            raise ValueError("args: the table's shape, int64, contiguous")
        args = args.view(-1)
        _part_kernel[(parts,)](z.view(torch.int32), v, self.pkey, self.pidx, BLOCK=ROW_BLOCK)
        _table_kernel[(triton.cdiv(n, TABLE_BLOCK),)](
            self.pkey, self.pidx, parts, self.c0, self.kp, self.kt, n, past, args, self.token,
            PB=MAX_PARTS, BLOCK=TABLE_BLOCK)
        return self.token
