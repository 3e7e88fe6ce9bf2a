"""Folding-tree sum, max/min and argmax (spec §4.1, §4.2, §6.11) against the literal spec."""

from __future__ import annotations

import numpy as np
import pytest
import repops_oracle as O
import torch

import repops


def _bits(t: torch.Tensor) -> list:
    return O.bits(t.numpy()).ravel().tolist()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 9, 31, 33, 64, 100, 257])
def test_fold_sum_rows(n: int) -> None:
    rng = np.random.default_rng(n)
    x = (O.random_f32(rng, (4, n)) * np.exp2(rng.integers(-20, 20, (4, n)))).astype(np.float32)
    if n:
        x[1] = rng.choice(O.EDGE_VALUES, n)
        x[2, : n // 2] = -0.0
    want = [O.fold_sum(row) for row in x]
    assert _bits(repops.sum(torch.from_numpy(x), dim=-1)) == O.bits(np.array(want)).tolist()


def test_fold_sum_other_dims_and_keepdim() -> None:
    rng = np.random.default_rng(4)
    x = O.random_f32(rng, (7, 5, 3))
    got = repops.sum(torch.from_numpy(x), dim=0, keepdim=True)
    assert got.shape == (1, 5, 3)
    want = [[O.fold_sum(x[:, i, j]) for j in range(3)] for i in range(5)]
    assert _bits(got) == O.bits(np.array(want, np.float32)).ravel().tolist()


def test_fold_sum_signed_zeros_and_padding_invariance() -> None:
    assert _bits(repops.sum(torch.tensor([-0.0, -0.0, -0.0]))) == [0x80000000]
    assert _bits(repops.sum(torch.zeros(0))) == [0x80000000]  # empty sum = -0.0
    assert _bits(repops.sum(torch.tensor([-0.0]))) == [0x80000000]
    # the same 5 values padded to 8 implicitly, or sitting in a longer zero-free context:
    # the fold over them is the spec's, whatever the tensor width (prefill/decode agree)
    rng = np.random.default_rng(8)
    row = O.random_f32(rng, 5)
    assert _bits(repops.sum(torch.from_numpy(row))) == [int(O.bits(O.fold_sum(row)))]
    explicit = np.concatenate([row, np.full(3, -0.0, np.float32)])
    assert _bits(repops.sum(torch.from_numpy(explicit))) == _bits(repops.sum(torch.from_numpy(row)))


def test_fold_is_not_sequential() -> None:
    # 1 + 2^-24 + 2^-24 + 2^-24 ... : sequential sum stays 1, the fold pairs the small ones
    x = np.array([1.0] + [2.0**-24] * 3, np.float32)
    assert repops.sum(torch.from_numpy(x)).item() == float(O.fold_sum(x))
    assert float(O.fold_sum(x)) != 1.0


def test_max_min() -> None:
    rng = np.random.default_rng(2)
    x = rng.choice(O.EDGE_VALUES[O.EDGE_VALUES == O.EDGE_VALUES], (50, 9)).astype(np.float32)
    x[3, 4] = np.nan
    t = torch.from_numpy(x)
    assert _bits(repops.max(t)) == O.bits(np.array([O.row_max(r) for r in x])).tolist()
    mins = []
    for r in x:
        m = np.float32(np.inf)
        for v in r:
            m = O.min2(m, v)
        mins.append(m)
    assert _bits(repops.min(t)) == O.bits(np.array(mins)).tolist()
    assert _bits(repops.max(torch.tensor([-0.0, 0.0]))) == [0]
    assert _bits(repops.max(torch.tensor([0.0, -0.0]))) == [0]
    assert _bits(repops.min(torch.tensor([0.0, -0.0]))) == [0x80000000]
    assert _bits(repops.max(torch.zeros(2, 0))) == [0xFF800000] * 2  # empty max = -inf


def test_argmax() -> None:
    assert repops.argmax(torch.tensor([1.0, 3.0, 3.0, 2.0])).item() == 1
    assert repops.argmax(torch.tensor([-0.0, 0.0])).item() == 0  # -0 == +0: lowest index
    assert repops.argmax(torch.tensor([1.0, np.nan, 5.0, np.nan])).item() == 1
    assert repops.argmax(torch.tensor([-np.inf, -np.inf])).item() == 0
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 3, (20, 30)).astype(np.float32)
    got = repops.argmax(torch.from_numpy(x), dim=-1)
    assert got.dtype == torch.int64
    assert got.tolist() == [O.argmax_row(r) for r in x]
    assert repops.argmax(torch.from_numpy(x), dim=0).tolist() == [O.argmax_row(c) for c in x.T]
