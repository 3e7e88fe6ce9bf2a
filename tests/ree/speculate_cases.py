"""Cases for speculate_cuda.NextTable, shared by its interpreter run (a child process:
TRITON_INTERPRET=1 must be set before triton is imported) and its GPU test
(test_speculate_cuda.py)."""

from __future__ import annotations

import sys

import numpy as np
import torch

from node.ree.fastsample import argmax_token


def rows(v: int) -> list[tuple[str, np.ndarray]]:
    """Logits rows of v values whose greedy token is decided by an edge of the order."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal(v).astype(np.float32)
    out = [("random", base)]
    tie = base.copy()
    tie[[v - 3, 100, v // 2]] = 9.0  # equal maxima in three programs' blocks: the first
    out.append(("tie across blocks", tie))
    zeros = -np.abs(base) - 1.0
    zeros[v - 1], zeros[v // 3] = 0.0, -0.0  # −0 = +0: the first of them
    out.append(("signed zeros", zeros))
    nan = base.copy()
    nan[v // 2] = np.inf
    bits = nan.view(np.uint32)
    bits[v - 2], bits[v // 4 + 1] = 0x7FC00000, 0xFFC00001  # the first NaN, whatever its sign
    out.append(("NaN above inf", nan))
    out.append(("all -inf", np.full(v, -np.inf, dtype=np.float32)))
    last = base.copy()
    last[v - 1] = 50.0  # in the last, partial block
    out.append(("last element", last))
    return out


def check(device: torch.device) -> list[str]:
    """Every case's guess against argmax_token's and its table against numpy's; the
    failures, named."""
    from node.ree.speculate_cuda import NextTable

    bad = []
    rng = np.random.default_rng(11)
    n = (94, 32)  # a graph's table: launches × row words; spans three table programs
    c0 = rng.integers(-2**40, 2**40, n, dtype=np.int64)
    kp = rng.integers(-8, 9, n, dtype=np.int64)
    kt = rng.integers(-3, 4, n, dtype=np.int64)
    nt = NextTable(*(torch.from_numpy(t).to(device) for t in (c0, kp, kt)))
    for v in (49152, 5000, 2048):
        for name, row in rows(v):
            z = torch.from_numpy(row).to(device)
            args = torch.zeros(n, dtype=torch.int64, device=device)
            past = 77 + v % 13
            tok = nt.queue(z, past, args)
            want = int(argmax_token(z)[0])
            got = int(tok[0])
            if got != want:
                bad.append(f"v={v} {name}: token {got}, argmax_token {want}")
            elif not np.array_equal(args.cpu().numpy(), c0 + kp * past + kt * want):
                bad.append(f"v={v} {name}: table differs")
    return bad


if __name__ == "__main__":
    failures = check(torch.device("cpu"))
    print("\n".join(failures) or "all equal")
    sys.exit(1 if failures else 0)
