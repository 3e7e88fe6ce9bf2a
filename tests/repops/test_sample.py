"""Greedy and seeded sampling (RepOps spec §7) against an oracle written from the spec text.

The oracle below follows §7.2/§7.3 line by line with scalar binary32 steps (numpy float32
scalars, mpmath for exp via `repops_oracle`), Python's own sort, and an independent keccak
(eth_utils, not the pycryptodome one `repops.commit` uses).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import repops_oracle as O
import torch
from eth_utils import keccak

import repops
from repops.sample import SamplingConfig, prng_r24, prng_u, sample_token, seed_bytes

F32 = np.float32


def oracle_u(seed: bytes, step: int) -> np.float32:
    """§7.2: the first 24 bits of keccak256(seed ‖ uint64_be(step)), times 2^-24."""
    h = keccak(seed + step.to_bytes(8, "big"))
    r24 = (h[0] << 16) | (h[1] << 8) | h[2]
    return F32(float(Fraction(r24, 1 << 24)))


def oracle_token(z: np.ndarray, t: float, top_k: int, top_p: float, seed: bytes, step: int) -> int:
    """§7.3 steps 1-8, literally."""
    z = [F32(v) for v in z]
    v = len(z)
    if F32(t) == 0 or any(np.isnan(x) for x in z):  # step 1
        return O.argmax_row(np.array(z, np.float32))
    zp = [O.div(x, F32(t)) for x in z]  # step 2
    order = sorted(range(v), key=lambda i: (-float(zp[i]), i))  # step 3 (-0.0 == 0.0 in Python)
    k = v if top_k == 0 or top_k >= v else top_k  # step 4
    order = order[:k]
    m = zp[order[0]]  # step 5
    e = [O.exp(O.sub(zp[order[j]], m)) for j in range(k)]
    s = O.fold_sum(e)
    p = [O.div(ej, s) for ej in e]
    c = [p[0]]  # step 6
    for j in range(1, k):
        c.append(O.add(c[j - 1], p[j]))
    if F32(top_p) < 1:
        hits = [j for j in range(k) if c[j] >= F32(top_p)]
        big_j = hits[0] if hits else k - 1
    else:
        big_j = k - 1
    r = O.mul(oracle_u(seed, step), c[big_j])  # step 7
    for j in range(big_j + 1):  # step 8
        if c[j] > r:
            return order[j]
    return order[big_j]


def _check(z: np.ndarray, t: float, top_k: int, top_p: float, seed: int, steps) -> None:
    cfg = SamplingConfig(temperature=t, top_k=top_k, top_p=top_p, seed=seed)
    zt = torch.from_numpy(np.ascontiguousarray(z, np.float32))
    sb = seed.to_bytes(32, "big")
    for step in steps:
        want = oracle_token(z, t, top_k, top_p, sb, step)
        got = sample_token(zt, cfg, step)
        assert got == want, (t, top_k, top_p, seed, step)


def test_prng_matches_independent_keccak_and_range() -> None:
    for seed in (0, 1, 7, 2**64 - 1, 2**256 - 1):
        for step in (0, 1, 2, 255, 2**32, 2**64 - 1):
            sb = seed.to_bytes(32, "big")
            assert F32(prng_u(seed, step)) == oracle_u(sb, step)
            assert prng_u(sb, step) == prng_u(seed, step)
            assert 0 <= prng_r24(seed, step) < 1 << 24
    # a published vector for the Solidity side: keccak256(abi.encodePacked(bytes32(0), uint64(0)))
    assert keccak(bytes(40)).hex().startswith(f"{prng_r24(0, 0):06x}")


def test_prng_rejects_bad_seed_and_step() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seed_bytes(b"\x01" * 31)
    with pytest.raises(ValueError, match=r"2\^256"):
        seed_bytes(1 << 256)
    with pytest.raises(ValueError, match=r"2\^256"):
        seed_bytes(-1)
    with pytest.raises(TypeError):
        seed_bytes(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uint64"):
        prng_u(0, 1 << 64)
    with pytest.raises(ValueError, match="uint64"):
        prng_u(0, -1)


@pytest.mark.parametrize(
    "t,top_k,top_p",
    [(1.0, 0, 1.0), (0.7, 0, 0.9), (1.3, 5, 1.0), (0.5, 40, 0.5), (2.0, 3, 0.3), (0.9, 1, 1.0)],
)
def test_random_rows_against_oracle(t: float, top_k: int, top_p: float) -> None:
    rng = np.random.default_rng(int(t * 100) + top_k * 7 + int(top_p * 1000))
    for trial in range(3):
        v = int(rng.integers(2, 120))
        z = O.random_f32(rng, v, scale=3.0)
        _check(z, t, top_k, top_p, seed=int(rng.integers(0, 2**63)), steps=range(trial, 40, 3))


def test_ties_and_signed_zeros_order_by_index() -> None:
    rng = np.random.default_rng(4)
    z = rng.choice(np.array([0.0, -0.0, 1.0, -1.0, 2.5], np.float32), size=64)
    _check(z, 1.0, 0, 1.0, seed=11, steps=range(60))
    _check(z, 0.25, 7, 0.8, seed=12, steps=range(60))
    # all equal: uniform over the kept prefix, which is the lowest indices
    flat = np.zeros(16, np.float32)
    flat[::2] = -0.0
    cfg = SamplingConfig(temperature=1.0, top_k=4, seed=3)
    seen = {sample_token(torch.from_numpy(flat), cfg, s) for s in range(200)}
    assert seen == {0, 1, 2, 3}


def test_greedy_cases() -> None:
    z = torch.tensor([1.0, 3.0, -2.0, 3.0, 0.5])
    for t in (0.0, -0.0):
        cfg = SamplingConfig(temperature=t, top_k=2, top_p=0.5, seed=5)
        assert [sample_token(z, cfg, s) for s in range(5)] == [1] * 5
    assert repops.greedy_token(z) == 1
    assert repops.greedy_token(torch.tensor([-0.0, 0.0])) == 0
    nan = torch.tensor([1.0, 9.0, float("nan"), 2.0, float("nan")])
    assert repops.greedy_token(nan) == 2
    # a NaN logit makes even a sampled step return the first NaN index (step 1)
    assert sample_token(nan, SamplingConfig(temperature=1.0, seed=1), 0) == 2
    # top_k = 1 and a tiny top_p keep only the best token (lowest index among ties)
    for cfg in (SamplingConfig(1.0, top_k=1, seed=9), SamplingConfig(1.0, top_p=1e-9, seed=9)):
        assert {sample_token(z, cfg, s) for s in range(30)} == {1}


def test_top_k_at_least_vocab_equals_disabled() -> None:
    rng = np.random.default_rng(8)
    z = torch.from_numpy(O.random_f32(rng, 37, scale=2.0))
    for k in (37, 38, 1000):
        a = SamplingConfig(0.8, top_k=k, top_p=0.95, seed=4)
        b = SamplingConfig(0.8, top_k=0, top_p=0.95, seed=4)
        assert [sample_token(z, a, s) for s in range(50)] == [
            sample_token(z, b, s) for s in range(50)
        ]


def test_infinities_and_overflowing_temperature() -> None:
    # -inf logits get probability +0 and are never drawn while a finite one is kept
    z = np.array([-np.inf, 0.5, -np.inf, 1.0, 0.25], np.float32)
    _check(z, 1.0, 0, 1.0, seed=21, steps=range(40))
    assert 0 not in {sample_token(torch.from_numpy(z), SamplingConfig(1.0, seed=2), s)
                     for s in range(100)}  # fmt: skip
    # a +inf maximum makes p NaN (inf - inf): no c[j] > r holds, so j* = J (the defined result)
    _check(np.array([1.0, np.inf, 2.0, -3.0], np.float32), 1.0, 0, 1.0, seed=5, steps=range(8))
    _check(np.array([1.0, np.inf, 2.0, -3.0], np.float32), 1.0, 2, 0.5, seed=5, steps=range(8))
    _check(np.full(5, -np.inf, np.float32), 0.5, 3, 0.9, seed=5, steps=range(4))  # -> order[K-1]
    # z / T overflows to +inf for a subnormal temperature; the oracle and the API agree
    _check(np.array([3.0, 1.0, 2.0], np.float32), 1e-40, 0, 1.0, seed=6, steps=range(8))
    _check(np.array([3e-39, 1e-39, -2e-39], np.float32), 1e-39, 0, 1.0, seed=6, steps=range(20))


def test_edge_value_rows() -> None:
    rng = np.random.default_rng(13)
    finite = O.EDGE_VALUES[np.isfinite(O.EDGE_VALUES)]
    for trial in range(4):
        z = rng.choice(finite, size=int(rng.integers(3, 25))).astype(np.float32)
        _check(z, [1.0, 0.3, 7.0, 1e-3][trial], trial * 2, [1.0, 0.6, 0.99, 0.2][trial],
               seed=trial, steps=range(20))  # fmt: skip


def test_vocab_sized_row_with_top_k() -> None:
    rng = np.random.default_rng(17)
    z = O.random_f32(rng, 49152, scale=4.0)
    _check(z, 0.8, 50, 0.9, seed=123456789, steps=range(2))


def test_frequencies_follow_softmax() -> None:
    z = np.array([2.0, 1.0, 0.0, -1.0], np.float32)
    cfg = SamplingConfig(temperature=1.0, seed=77)
    zt = torch.from_numpy(z)
    counts = np.bincount([sample_token(zt, cfg, s) for s in range(2000)], minlength=4)
    expect = np.exp(z - z.max()) / np.exp(z - z.max()).sum() * 2000
    chi2 = float(((counts - expect) ** 2 / expect).sum())
    assert chi2 < 30, (counts, expect)  # 3 dof: p < 1e-5 for a correct sampler


def test_invalid_configs_and_inputs() -> None:
    for bad in (
        dict(temperature=-1.0),
        dict(temperature=float("nan")),
        dict(temperature=float("inf")),
        dict(temperature=1e39),  # rounds to +inf in binary32
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_p=float("nan")),
        dict(top_k=-1),
        dict(seed=1 << 256),
    ):
        with pytest.raises(ValueError, match=r"repops\.sample"):
            SamplingConfig(**bad)
    with pytest.raises(TypeError, match="top_k"):
        SamplingConfig(top_k=1.5)  # type: ignore[arg-type]
    cfg = SamplingConfig(1.0)
    with pytest.raises(ValueError, match=r"repops\.sample_token: logits must be one non-empty"):
        sample_token(torch.zeros(2, 3), cfg, 0)
    with pytest.raises(ValueError, match=r"non-empty"):
        sample_token(torch.zeros(0), cfg, 0)
    with pytest.raises(TypeError, match="float32"):
        sample_token(torch.zeros(3, dtype=torch.float64), cfg, 0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        repops.greedy_token([1.0, 2.0])  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_logits_give_the_cpu_token() -> None:
    rng = np.random.default_rng(99)
    for t, k, p in ((1.0, 0, 1.0), (0.7, 50, 0.9), (1.5, 0, 0.95)):
        z = torch.from_numpy(O.random_f32(rng, 49152, scale=4.0))
        z[::97] = 0.0
        z[1::97] = -0.0
        cfg = SamplingConfig(t, top_k=k, top_p=p, seed=2024)
        cpu = [sample_token(z, cfg, s) for s in range(20)]
        gpu = [sample_token(z.cuda(), cfg, s) for s in range(20)]
        assert cpu == gpu
