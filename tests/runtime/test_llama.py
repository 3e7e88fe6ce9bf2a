"""The plain Llama module: sensible answer, KV-cache consistency, float64 oracle agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from node.runtime.llama import from_gguf, greedy_generate
from node.runtime.tokenizer import Tokenizer
from repops.cpu.rope_tables import _cos_sin, compute_tables, rope_tables


@pytest.fixture(scope="module")
def nets(gguf_model):
    return (from_gguf(gguf_model, max_pos=256, all_logits=True),
            from_gguf(gguf_model, torch.float64, max_pos=256, all_logits=True))


def test_rope_tables_correctly_rounded_sample():
    cos, sin = rope_tables(4096, 64, 100000.0)
    assert cos.dtype == np.float32 and cos.shape == (4096, 32)
    rng = np.random.default_rng(7)
    for p, i in zip(rng.integers(0, 4096, 60), rng.integers(0, 32, 60), strict=True):
        c, s = _cos_sin(int(p), int(i), 64, float(np.float32(100000.0)))
        assert cos[p, i] == c and sin[p, i] == s, (p, i)
    assert (cos[0] == 1).all() and (sin[0].view(np.uint32) == 0).all()


def test_capital_of_france(gguf_model, nets):
    tok = Tokenizer.from_metadata(gguf_model.metadata)
    out = greedy_generate(nets[0], tok.encode_chat("What is the capital of France?"), 12,
                          tok.eos_id)
    assert "Paris" in tok.decode(out)


def test_float32_close_to_float64_oracle_and_cache_consistent(nets):
    f32, f64 = nets
    ids = torch.tensor([[1, 9690, 198, 2683, 314, 253, 5356, 30, 2]])
    with torch.no_grad():
        l32, _ = f32(ids, f32.empty_cache())
        l64, _ = f64(ids, f64.empty_cache())
        # incremental: prefill 5 then decode one token at a time
        lp, past = f32(ids[:, :5], f32.empty_cache())
        rows = [lp]
        for j in range(5, ids.shape[1]):
            lj, past = f32(ids[:, j : j + 1], past)
            rows.append(lj)
    err = (l32.double() - l64).abs().max().item()
    assert err < 2e-2 * l64.abs().max().item()
    inc = torch.cat(rows, dim=1)
    assert torch.allclose(inc, l32, atol=1e-3, rtol=1e-4)
    assert torch.equal(l32.argmax(-1), l64.argmax(-1))


def test_rope_tables_fast_path_equals_reference():
    """The binary64 fast path with its error bound gives the mpmath reference's bits (§6.9)."""
    cos_r, sin_r = compute_tables(96, 64, 100000.0, reference_only=True)
    cos, sin = compute_tables(96, 64, 100000.0)
    assert np.array_equal(cos.view(np.uint32), cos_r.view(np.uint32))
    assert np.array_equal(sin.view(np.uint32), sin_r.view(np.uint32))
