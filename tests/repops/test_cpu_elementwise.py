"""Elementwise ops (spec §1.3, §2, §4.2, §5, §6.1-§6.4, §6.14) against scalar oracles."""

from __future__ import annotations

import numpy as np
import pytest
import repops_oracle as O
import torch

import repops


def _inputs(seed: int, n_random: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            O.EDGE_VALUES,
            O.random_bits_f32(rng, n_random),
            O.random_f32(rng, n_random, 30.0),
            (rng.random(100) * 1e-38).astype(np.float32),  # subnormals
        ]
    )


def _check(got: torch.Tensor, want: list) -> None:
    g = O.bits(got.numpy()).ravel()
    w = O.bits(np.array(want, np.float32)).ravel()
    bad = np.flatnonzero(g != w)
    assert bad.size == 0, (
        f"{bad.size} mismatches, first at {bad[0]}: {g[bad[0]]:#x} != {w[bad[0]]:#x}"
    )


BINARY = {
    "add": (repops.add, O.add),
    "sub": (repops.sub, O.sub),
    "mul": (repops.mul, O.mul),
    "div": (repops.div, O.div),
    "maximum": (repops.maximum, O.max2),
    "minimum": (repops.minimum, O.min2),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary(name: str) -> None:
    fn, oracle = BINARY[name]
    e = O.EDGE_VALUES
    a, b = np.repeat(e, len(e)), np.tile(e, len(e))  # every edge pair
    rng = np.random.default_rng(1)
    a = np.concatenate([a, O.random_bits_f32(rng, 2000), O.random_f32(rng, 500)])
    b = np.concatenate([b, O.random_bits_f32(rng, 2000), O.random_f32(rng, 500)])
    got = fn(torch.from_numpy(a), torch.from_numpy(b))
    _check(got, [oracle(x, y) for x, y in zip(a, b, strict=True)])


def test_binary_broadcasting() -> None:
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = torch.tensor([0.5, -0.0, np.inf])
    got = repops.mul(a, b)
    assert got.shape == (2, 3)
    _check(
        got, [O.mul(x, y) for x, y in zip(a.numpy().ravel(), np.tile(b.numpy(), 2), strict=True)]
    )
    assert repops.add(torch.tensor(1.0), a).shape == (2, 3)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_single_value_operands(op: str) -> None:
    # a one-element operand is read with stride 0 by the kernel, never materialized
    fn, oracle = BINARY[op]
    rng = np.random.default_rng(31)
    x = np.concatenate([O.EDGE_VALUES, O.random_bits_f32(rng, 300)])
    for s in (np.float32(-0.0), np.float32(3.5), np.float32(np.nan), np.float32(-np.inf)):
        for sv in (torch.tensor(s), torch.tensor([s]), torch.tensor([[s]])):
            got = fn(torch.from_numpy(x), sv)
            _check(got.reshape(-1), [oracle(v, s) for v in x])
            got = fn(sv, torch.from_numpy(x))
            _check(got.reshape(-1), [oracle(s, v) for v in x])
    both = fn(torch.tensor(2.0), torch.tensor([[0.5]]))
    assert both.shape == (1, 1) and both.item() == oracle(np.float32(2.0), np.float32(0.5))


UNARY = {
    "neg": (repops.neg, O.neg),
    "sqrt": (repops.sqrt, O.sqrt),
    "exp": (repops.exp, O.exp),
    "log": (repops.log, O.log),
    "sigmoid": (repops.sigmoid, O.sigmoid),
    "silu": (repops.silu, O.silu),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name: str) -> None:
    fn, oracle = UNARY[name]
    x = _inputs(len(name), 400)
    _check(fn(torch.from_numpy(x)), [oracle(v) for v in x])


def test_nan_outputs_are_canonical() -> None:
    weird = O.from_bits(np.array([0x7FC00001, 0xFFC00000, 0x7F800001, 0xFFFFFFFF], np.uint32))
    t = torch.from_numpy(weird.copy())
    for fn in (repops.neg, repops.sqrt, repops.exp, repops.log, repops.sigmoid, repops.silu):
        assert (O.bits(fn(t).numpy()) == 0x7FC00000).all(), fn.__name__
    assert (O.bits(repops.add(t, t).numpy()) == 0x7FC00000).all()


def test_neg_is_a_sign_flip() -> None:
    got = repops.neg(torch.tensor([0.0, -0.0, 1.0, -np.inf]))
    assert O.bits(got.numpy()).tolist() == [0x80000000, 0, 0xBF800000, 0x7F800000]


def test_casts() -> None:
    ints = torch.tensor([0, 1, -1, 2**24 + 1, 2**24 + 3, -(2**31), 2**62 + 2**38 + 1, 2**63 - 1])
    got = repops.int_to_float(ints)
    from fractions import Fraction

    want = [O.rn32(Fraction(int(i))) for i in ints]
    _check(got, want)
    assert repops.int_to_float(torch.tensor([True, False])).tolist() == [1.0, 0.0]
    f = torch.tensor([1.9, -1.9, np.nan, np.inf, -np.inf, 3e19, -3e19, -0.0])
    assert repops.float_to_int(f).tolist() == [
        1,
        -1,
        0,
        2**63 - 1,
        -(2**63),
        2**63 - 1,
        -(2**63),
        0,
    ]


def test_where_copies_bits() -> None:
    a = torch.from_numpy(O.from_bits(np.array([0x80000000, 0x7FC00000, 1], np.uint32)).copy())
    b = torch.zeros(3)
    got = repops.where(torch.tensor([1, 1, 0], dtype=torch.uint8), a, b)
    assert O.bits(got.numpy()).tolist() == [0x80000000, 0x7FC00000, 0]
