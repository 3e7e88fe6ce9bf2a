"""softmax, log_softmax, RMSNorm, LayerNorm (spec §6.5-§6.8) as sequences of oracle primitives."""

from __future__ import annotations

import numpy as np
import pytest
import repops_oracle as O
import torch

import repops


def _same(got: torch.Tensor, want: np.ndarray) -> None:
    g, w = O.bits(got.numpy()).ravel(), O.bits(np.asarray(want, np.float32)).ravel()
    bad = np.flatnonzero(g != w)
    assert bad.size == 0, (
        f"{bad.size} mismatches, first at {bad[0]}: {g[bad[0]]:#x} != {w[bad[0]]:#x}"
    )


def _rows(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = O.random_f32(rng, (4, n), 5.0)
    x[1] *= np.float32(30.0)  # many exps underflow to subnormals or zero
    x[2, : (n + 1) // 2] = -np.inf
    x[3] = rng.choice(np.array([0.0, -0.0, 1.0, -1e-30, 88.0], np.float32), n)
    return x


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 130])
def test_softmax(n: int) -> None:
    x = _rows(n, n)
    _same(repops.softmax(torch.from_numpy(x)), np.stack([O.softmax_row(r) for r in x]))


@pytest.mark.parametrize("n", [1, 5, 64])
def test_log_softmax(n: int) -> None:
    x = _rows(n + 100, n)
    _same(repops.log_softmax(torch.from_numpy(x)), np.stack([O.log_softmax_row(r) for r in x]))


def test_softmax_specials_and_dim() -> None:
    x = np.array([[np.inf, 1.0], [np.nan, 0.0], [-np.inf, -np.inf]], np.float32)
    got = repops.softmax(torch.from_numpy(x))
    assert (O.bits(got.numpy()) == 0x7FC00000).all()
    rng = np.random.default_rng(0)
    y = O.random_f32(rng, (6, 3))
    got = repops.softmax(torch.from_numpy(y), dim=0)
    _same(got, np.stack([O.softmax_row(c) for c in y.T]).T)


@pytest.mark.parametrize("n,with_w", [(1, True), (7, False), (64, True), (576, True)])
def test_rms_norm(n: int, with_w: bool) -> None:
    rng = np.random.default_rng(n)
    x = O.random_f32(rng, (3, n), 3.0)
    x[1] *= np.float32(1e-22)  # eps dominates
    x[2, 0] = 0.0
    w = O.random_f32(rng, n) if with_w else None
    got = repops.rms_norm(torch.from_numpy(x), None if w is None else torch.from_numpy(w), 1e-5)
    _same(got, np.stack([O.rms_norm_row(r, w, np.float32(1e-5)) for r in x]))


def test_layer_norm() -> None:
    rng = np.random.default_rng(5)
    x = O.random_f32(rng, (3, 40), 2.0) + np.float32(7.0)
    w, b = O.random_f32(rng, 40), O.random_f32(rng, 40)
    t = torch.from_numpy(x)
    _same(
        repops.layer_norm(t, torch.from_numpy(w), torch.from_numpy(b), 1e-6),
        np.stack([O.layer_norm_row(r, w, b, np.float32(1e-6)) for r in x]),
    )
    _same(
        repops.layer_norm(t, eps=1e-6),
        np.stack([O.layer_norm_row(r, None, None, np.float32(1e-6)) for r in x]),
    )


def test_row_length_invariance() -> None:
    # one row alone (decode) and inside a batch (prefill) give the same bits
    rng = np.random.default_rng(9)
    x = torch.from_numpy(O.random_f32(rng, (16, 576)))
    w = torch.from_numpy(O.random_f32(rng, 576))
    full = repops.rms_norm(x, w)
    assert torch.equal(repops.rms_norm(x[7:8], w).view(torch.int32), full[7:8].view(torch.int32))
    sm = repops.softmax(x)
    assert torch.equal(repops.softmax(x[3]).view(torch.int32), sm[3].view(torch.int32))
