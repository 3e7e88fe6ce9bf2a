"""`repops.pack_linear` + `repops.linear(x, packed)`: the spec §3.3 chain from pre-packed weights.

The packed layout is storage only; every result must equal the binary64 round-to-odd chain
oracle and the unpacked `linear` bit for bit, at every M (decode kernel for M <= 4, the blocked
GEMM above), at N not a multiple of the panel width, and at any thread count.
"""

from __future__ import annotations

import numpy as np
import pytest
import repops_oracle as O
import torch

import repops


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _bits_equal(got: torch.Tensor, want: np.ndarray) -> None:
    g, w = O.bits(got.numpy()), O.bits(want)
    bad = np.argwhere(g != w)
    assert bad.size == 0, f"{len(bad)} mismatches, first at {bad[0]}"


@pytest.mark.parametrize(
    "m,k,n",
    [
        (1, 1, 1),
        (1, 7, 33),
        (2, 300, 70),
        (3, 64, 130),
        (4, 513, 97),
        (5, 40, 65),
        (13, 31, 47),
        (33, 260, 200),
        (1, 576, 192),
    ],
)
def test_packed_linear_against_oracle(m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 7919 + k * 31 + n)
    x, w = O.random_f32(rng, (m, k)), O.random_f32(rng, (n, k))
    packed = repops.pack_linear(_t(w))
    got = repops.linear(_t(x), packed)
    _bits_equal(got, O.matmul_chain(x, w.T.copy()))
    assert torch.equal(got.view(torch.int32), repops.linear(_t(x), _t(w)).view(torch.int32))


def test_packed_edge_values_and_signed_zeros() -> None:
    rng = np.random.default_rng(17)
    x = rng.choice(O.EDGE_VALUES, size=(4, 45)).astype(np.float32)
    w = rng.choice(O.EDGE_VALUES, size=(37, 45)).astype(np.float32)
    for m in (1, 2, 4):
        _bits_equal(repops.linear(_t(x[:m]), repops.pack_linear(_t(w))), O.matmul_chain(x[:m], w.T))
    xb, wb = O.random_bits_f32(rng, (3, 50)), O.random_bits_f32(rng, (40, 50))
    _bits_equal(repops.linear(_t(xb), repops.pack_linear(_t(wb))), O.matmul_chain(xb, wb.T))
    # every product -0: the chain starts at +0.0, so the result is +0 (spec §3.1)
    z = repops.linear(torch.tensor([[-0.0, 1.0]]), repops.pack_linear(torch.tensor([[1.0, -0.0]])))
    assert O.bits(z.numpy()).tolist() == [[0]]
    nan = repops.linear(torch.tensor([[np.inf]]), repops.pack_linear(torch.tensor([[0.0]])))
    assert O.bits(nan.numpy()).tolist() == [[0x7FC00000]]


def test_packed_k_zero_and_batch_dims() -> None:
    out = repops.linear(torch.zeros(2, 0), repops.pack_linear(torch.zeros(5, 0)))
    assert O.bits(out.numpy()).tolist() == [[0] * 5] * 2
    rng = np.random.default_rng(3)
    x, w = O.random_f32(rng, (2, 3, 24)), O.random_f32(rng, (19, 24))
    got = repops.linear(_t(x), repops.pack_linear(_t(w)))
    assert got.shape == (2, 3, 19)
    _bits_equal(got.reshape(6, 19), O.matmul_chain(x.reshape(6, 24), w.T.copy()))


def test_packed_decode_rows_equal_prefill_rows_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # N*K >= 2^20 so the decode kernel splits the panels over two threads
    rng = np.random.default_rng(23)
    x, w = _t(O.random_f32(rng, (9, 1024))), _t(O.random_f32(rng, (1100, 1024)))
    packed = repops.pack_linear(w)
    full = repops.linear(x, packed).view(torch.int32)
    for i in (0, 4, 8):
        assert torch.equal(repops.linear(x[i : i + 1], packed).view(torch.int32), full[i : i + 1])
    assert torch.equal(repops.linear(x[2:6], packed).view(torch.int32), full[2:6])
    monkeypatch.setenv("REPOPS_CPU_THREADS", "1")
    assert torch.equal(repops.linear(x[:1], packed).view(torch.int32), full[:1])
    assert torch.equal(repops.linear(x, packed).view(torch.int32), full)
    want = O.matmul_chain(x[:1].numpy(), w[[0, 31, 32, 1099]].numpy().T.copy())
    _bits_equal(full[:1, [0, 31, 32, 1099]].view(torch.float32), want)


def test_packed_non_contiguous_input_and_handle() -> None:
    rng = np.random.default_rng(5)
    w = _t(O.random_f32(rng, (30, 40))).t()  # a non-contiguous [40, 30] view
    x = _t(O.random_f32(rng, (3, 60)))[:, ::2]
    packed = repops.pack_linear(w)
    assert packed.shape == (40, 30) and packed.dtype == torch.float32
    assert "PackedLinear" in repr(packed)
    _bits_equal(
        repops.linear(x, packed), O.matmul_chain(x.contiguous().numpy(), w.numpy().T.copy())
    )


def test_packed_errors_name_the_op() -> None:
    with pytest.raises(ValueError, match=r"repops\.pack_linear: need w\[N, K\]"):
        repops.pack_linear(torch.zeros(3))
    with pytest.raises(TypeError, match=r"repops\.pack_linear: w must be float32"):
        repops.pack_linear(torch.zeros(3, 4, dtype=torch.float64))
    packed = repops.pack_linear(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"repops\.linear.*\(2, 5\).*\(3, 4\)"):
        repops.linear(torch.zeros(2, 5), packed)
    with pytest.raises(TypeError, match=r"repops\.linear: x must be float32"):
        repops.linear(torch.zeros(2, 4, dtype=torch.float64), packed)
