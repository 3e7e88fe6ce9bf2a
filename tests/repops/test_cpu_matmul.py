"""matmul / linear against the spec §3 chain (oracle: binary64 round-to-odd fma and Fractions)."""

from __future__ import annotations

import numpy as np
import pytest
import repops_oracle as O
import torch

import repops


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _same_bits(got: torch.Tensor, want: np.ndarray) -> None:
    g = O.bits(got.numpy())
    w = O.bits(want)
    bad = np.argwhere(g != w)
    assert bad.size == 0, (
        f"{len(bad)} mismatches, first at {bad[0]}: {g[tuple(bad[0])]:#x} vs {w[tuple(bad[0])]:#x}"
    )


@pytest.mark.parametrize(
    "m,k,n",
    [
        (1, 1, 1),
        (1, 7, 33),
        (5, 3, 2),
        (13, 31, 47),
        (12, 256, 32),
        (25, 300, 70),
        (1, 576, 192),
        (3, 513, 65),
        (31, 17, 100),
    ],
)
def test_random_shapes(m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b = O.random_f32(rng, (m, k)), O.random_f32(rng, (k, n))
    _same_bits(repops.matmul(_t(a), _t(b)), O.matmul_chain(a, b))


def test_k4096_against_fractions() -> None:
    rng = np.random.default_rng(7)
    a, b = O.random_f32(rng, (3, 4096)), O.random_f32(rng, (4096, 19))
    got = repops.matmul(_t(a), _t(b))
    _same_bits(got, O.matmul_chain(a, b))
    for i, j in [(0, 0), (2, 18)]:  # the slow, independent Fraction chain on two outputs
        assert O.bits(got[i, j].numpy()) == O.bits(O.dot_chain(a[i], b[:, j]))


def test_wide_magnitudes_and_cancellation() -> None:
    rng = np.random.default_rng(3)
    m, k, n = 9, 200, 40
    a = (O.random_f32(rng, (m, k)) * np.exp2(rng.integers(-60, 60, (m, k)))).astype(np.float32)
    b = (O.random_f32(rng, (k, n)) * np.exp2(rng.integers(-60, 60, (k, n)))).astype(np.float32)
    b[::2] = -b[1::2] if k % 2 == 0 else b[::2]  # pairs of opposite products cancel
    a[:, ::2] = a[:, 1::2]
    _same_bits(repops.matmul(_t(a), _t(b)), O.matmul_chain(a, b))


def test_edge_values_and_random_bits() -> None:
    rng = np.random.default_rng(11)
    e = O.EDGE_VALUES
    a = rng.choice(e, size=(17, 40)).astype(np.float32)
    b = rng.choice(e, size=(40, 35)).astype(np.float32)
    _same_bits(repops.matmul(_t(a), _t(b)), O.matmul_chain(a, b))
    a = O.random_bits_f32(rng, (6, 30))
    b = O.random_bits_f32(rng, (30, 33))
    _same_bits(repops.matmul(_t(a), _t(b)), O.matmul_chain(a, b))
    sub = (rng.random((8, 64)) * 1e-38).astype(np.float32)  # subnormal-heavy, no FTZ
    _same_bits(
        repops.matmul(_t(sub), _t(sub.T.copy() * 1e30)),
        O.matmul_chain(sub, sub.T * np.float32(1e30)),
    )


def test_signed_zero_rules() -> None:
    # K = 0 and all-(-0) products give +0 (chain starts at +0.0)
    assert (
        O.bits(repops.matmul(torch.zeros(2, 0), torch.zeros(0, 3)).numpy()).tolist()
        == [[0] * 3] * 2
    )
    z = repops.matmul(torch.tensor([[-0.0, -1.0]]), torch.tensor([[1.0], [0.0]]))
    assert O.bits(z.numpy())[0, 0] == 0
    # an underflowing negative product rounds to -0 (sign of the exact result)
    u = repops.matmul(torch.tensor([[-1e-30]]), torch.tensor([[1e-30]]))
    assert O.bits(u.numpy())[0, 0] == 0x80000000
    n = repops.matmul(torch.tensor([[np.inf, 1.0]]), torch.tensor([[0.0], [1.0]]))
    assert O.bits(n.numpy())[0, 0] == 0x7FC00000


def test_linear_equals_matmul_of_transpose() -> None:
    rng = np.random.default_rng(5)
    x, w = O.random_f32(rng, (4, 3, 70)), O.random_f32(rng, (45, 70))
    got = repops.linear(_t(x), _t(w))
    assert got.shape == (4, 3, 45)
    _same_bits(got.reshape(12, 45), O.matmul_chain(x.reshape(12, 70), w.T.copy()))
    _same_bits(got, repops.matmul(_t(x), _t(w.T.copy())).numpy())


def test_batched_broadcast() -> None:
    rng = np.random.default_rng(9)
    a, b = O.random_f32(rng, (2, 3, 5, 20)), O.random_f32(rng, (3, 20, 6))
    got = repops.matmul(_t(a), _t(b))
    assert got.shape == (2, 3, 5, 6)
    for i in range(2):
        for j in range(3):
            _same_bits(got[i, j], O.matmul_chain(a[i, j], b[j]))
    got2 = repops.matmul(_t(a), _t(b[0]))  # 2-D weight: batch folded into M
    _same_bits(got2[1, 2], O.matmul_chain(a[1, 2], b[0]))


def test_batch_and_thread_invariance(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(21)
    a, w = _t(O.random_f32(rng, (37, 384))), _t(O.random_f32(rng, (130, 384)))
    full = repops.linear(a, w)
    for i in (0, 17, 36):  # decode (M = 1) rows equal prefill rows
        assert torch.equal(
            repops.linear(a[i : i + 1], w).view(torch.int32), full[i : i + 1].view(torch.int32)
        )
    assert torch.equal(repops.linear(a[5:29], w).view(torch.int32), full[5:29].view(torch.int32))
    monkeypatch.setenv("REPOPS_CPU_THREADS", "1")
    one = repops.linear(a, w)
    monkeypatch.setenv("REPOPS_CPU_THREADS", "2")
    assert torch.equal(one.view(torch.int32), full.view(torch.int32))
    assert torch.equal(repops.linear(a, w).view(torch.int32), full.view(torch.int32))


def test_non_contiguous_inputs() -> None:
    rng = np.random.default_rng(2)
    a = _t(O.random_f32(rng, (40, 30)))[:, ::2]  # strided view
    b = _t(O.random_f32(rng, (21, 15))).t()
    _same_bits(repops.matmul(a, b), O.matmul_chain(a.contiguous().numpy(), b.contiguous().numpy()))


@pytest.mark.parametrize("m", [1, 3, 4])
def test_linear_decode_path_against_oracle(m: int) -> None:
    # M <= 4 with a [N, K] weight takes the transposing matrix-vector kernel (AVX-512, AVX2)
    rng = np.random.default_rng(m)
    x, w = O.random_f32(rng, (m, 300)), O.random_f32(rng, (70, 300))
    w[5, 7] = np.inf
    x[0, 11] = -0.0
    _same_bits(repops.linear(_t(x), _t(w)), O.matmul_chain(x, w.T.copy()))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("n,k", [(16, 16), (17, 15), (32, 33), (33, 64), (5, 1), (48, 47),
                                 (8, 8), (7, 9), (31, 17), (40, 7), (65, 130)])
def test_linear_decode_tails_against_oracle(m: int, n: int, k: int) -> None:
    # the unpacked matrix-vector kernel transposes 16 x 16 tiles (AVX-512) or 8 x 8 tiles, four
    # row blocks at a time (AVX2): cover partial row blocks, row tiles and k tiles
    rng = np.random.default_rng(m * 100 + n + 7 * k)
    x, w = O.random_f32(rng, (m, k)), O.random_f32(rng, (n, k))
    w[n - 1, k - 1] = -0.0
    _same_bits(repops.linear(_t(x), _t(w)), O.matmul_chain(x, w.T.copy()))


def test_linear_decode_threaded_wide_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    # N*K >= 2^22: the unpacked decode product is split over pool threads; bits must not move
    rng = np.random.default_rng(12)
    x, w = _t(O.random_f32(rng, (2, 640))), _t(O.random_f32(rng, (6600, 640)))
    got = repops.linear(x, w).view(torch.int32)
    monkeypatch.setenv("REPOPS_CPU_THREADS", "1")
    assert torch.equal(repops.linear(x, w).view(torch.int32), got)
    want = O.matmul_chain(x.numpy(), w[[0, 15, 16, 6599]].numpy().T.copy())
    _same_bits(got[:, [0, 15, 16, 6599]].view(torch.float32), want)
