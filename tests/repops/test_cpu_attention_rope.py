"""RoPE (spec §6.9) and causal attention (spec §6.10) against oracles; prefill/decode
invariance of attention with a KV prefix."""

from __future__ import annotations

import mpmath
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


def test_rope_tables_correctly_rounded() -> None:
    cos, sin = repops.rope_tables(40, 16, 100000.0)
    assert cos.shape == (40, 8) and cos.dtype == torch.float32
    assert cos[0].tolist() == [1.0] * 8 and O.bits(sin[0].numpy()).tolist() == [0] * 8
    for p in (1, 7, 39):
        for i in (0, 3, 7):
            with mpmath.workprec(300):
                theta = p * mpmath.power(mpmath.mpf(100000), mpmath.mpf(-2 * i) / 16)
                c, s = O._mpf_to_frac(mpmath.cos(theta)), O._mpf_to_frac(mpmath.sin(theta))
            assert O.bits(cos[p, i].numpy()) == O.bits(O.rn32(c))
            assert O.bits(sin[p, i].numpy()) == O.bits(O.rn32(s))


@pytest.mark.parametrize("pairing", ["adjacent", "half"])
def test_rope_application(pairing: str) -> None:
    rng = np.random.default_rng(1)
    cos, sin = repops.rope_tables(12, 8, 10000.0)  # R = 8 rotated dims of D = 10
    x = O.random_f32(rng, (2, 3, 12, 10))
    x[0, 0, 0, :3] = [np.inf, -0.0, np.nan]
    got = repops.rope(torch.from_numpy(x), cos, sin, pairing)
    c, s = cos.numpy(), sin.numpy()
    want = np.stack(
        [
            O.rope_row(x[a, h, t], c[t], s[t], pairing)
            for a in range(2)
            for h in range(3)
            for t in range(12)
        ]
    )
    _same(got, want.reshape(x.shape))


def test_rope_position_slicing_matches_full() -> None:
    rng = np.random.default_rng(2)
    cos, sin = repops.rope_tables(20, 8, 10000.0)
    x = torch.from_numpy(O.random_f32(rng, (3, 20, 8)))
    full = repops.rope(x, cos, sin)
    one = repops.rope(x[:, 13:14], cos[13:14], sin[13:14])  # decode step at position 13
    assert torch.equal(one.view(torch.int32), full[:, 13:14].view(torch.int32))


@pytest.mark.parametrize("hq,hkv,tq,tk,d", [(2, 1, 3, 3, 8), (4, 2, 2, 5, 20), (3, 3, 1, 6, 64)])
def test_attention_against_oracle(hq: int, hkv: int, tq: int, tk: int, d: int) -> None:
    rng = np.random.default_rng(hq * 100 + tk)
    q, k, v = (
        O.random_f32(rng, (hq, tq, d)),
        O.random_f32(rng, (hkv, tk, d)),
        O.random_f32(rng, (hkv, tk, d)),
    )
    scale = np.float32(repops.default_scale(d))
    got = repops.attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v))
    rep = hq // hkv
    want = np.stack([O.attention_head(q[h], k[h // rep], v[h // rep], scale) for h in range(hq)])
    _same(got, want)


def test_masked_keys_are_excluded_not_zeroed() -> None:
    # future keys/values full of inf/NaN must not touch earlier rows (they are excluded)
    rng = np.random.default_rng(4)
    q, k, v = (O.random_f32(rng, (1, 4, 8)) for _ in range(3))
    k2, v2 = k.copy(), v.copy()
    k2[0, 3] = np.nan
    v2[0, 2:] = np.inf
    a = repops.attention(*(torch.from_numpy(t) for t in (q, k, v)))
    b = repops.attention(*(torch.from_numpy(t) for t in (q, k2, v2)))
    assert torch.equal(a[0, :2].view(torch.int32), b[0, :2].view(torch.int32))
    # a -0 accumulator stays -0: one visible key with a value that underflows against p=1
    out = repops.attention(
        torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.tensor([[[-0.0] * 4, [np.inf] * 4]])
    )
    assert O.bits(out[0, 0].numpy()).tolist() == [0] * 4  # fma(1, -0, +0) = +0


def test_prefill_decode_invariance() -> None:
    rng = np.random.default_rng(6)
    hq, hkv, t, d = 9, 3, 21, 64
    q = torch.from_numpy(O.random_f32(rng, (2, hq, t, d)))
    k = torch.from_numpy(O.random_f32(rng, (2, hkv, t, d)))
    v = torch.from_numpy(O.random_f32(rng, (2, hkv, t, d)))
    full = repops.attention(q, k, v, scale=0.125)
    for n in (1, 5, 20):  # decode step at position n with a KV prefix of n keys
        step = repops.attention(q[:, :, n : n + 1], k[:, :, : n + 1], v[:, :, : n + 1], scale=0.125)
        assert torch.equal(step.view(torch.int32), full[:, :, n : n + 1].view(torch.int32))
    chunk = repops.attention(q[:, :, 10:], k, v, scale=0.125)  # chunked prefill after 10 cached
    assert torch.equal(chunk.view(torch.int32), full[:, :, 10:].view(torch.int32))
    one = repops.attention(q[1:], k[1:], v[1:], scale=0.125)  # batch invariance
    assert torch.equal(one.view(torch.int32), full[1:].view(torch.int32))


def test_long_context_block_boundary() -> None:
    # more than one 64-row query block in the C kernel
    rng = np.random.default_rng(7)
    q, k, v = (torch.from_numpy(O.random_f32(rng, (1, 130, 16))) for _ in range(3))
    full = repops.attention(q, k, v)
    for n in (63, 64, 129):
        step = repops.attention(q[:, n : n + 1], k[:, : n + 1], v[:, : n + 1])
        assert torch.equal(step.view(torch.int32), full[:, n : n + 1].view(torch.int32))
    scale = np.float32(repops.default_scale(16))
    qn, kn, vn = q.numpy(), k.numpy(), v.numpy()
    _same(full[:, 129:130], O.attention_head(qn[0, 129:130], kn[0], vn[0], scale)[None])
