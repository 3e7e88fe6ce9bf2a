"""GGUF loading and ADR 0003 exact dequantization."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from node.runtime import gguf_loader as gl


def _q4_1_block(d: float, m: float, nibbles: list[int]) -> bytes:
    qs = bytes((nibbles[j] & 0xF) | ((nibbles[j + 16] & 0xF) << 4) for j in range(16))
    return struct.pack("<ee", d, m) + qs


def test_q4_1_nibble_order_and_formula():
    nib = list(range(16)) + [15 - i for i in range(16)]
    raw = np.frombuffer(_q4_1_block(0.5, -3.0, nib), dtype=np.uint8)
    out = gl.dequantize_q4_1(raw, 32)
    assert out.tolist() == [0.5 * q - 3.0 for q in nib]


def test_q4_1_rounds_once_at_the_add():
    # d*q exact (= 15 * 2^-10 * 1.5 ...), m chosen so the sum needs rounding in float32
    d, m = np.float16(1.0009765625), np.float16(2048.0)
    raw = np.frombuffer(_q4_1_block(float(d), float(m), [1] * 32), dtype=np.uint8)
    out = gl.dequantize_q4_1(raw, 32)
    assert out[0] == np.float32(np.float64(d) + np.float64(m))


def test_q8_0_signed_values():
    q = np.arange(-16, 16, dtype=np.int8)
    raw = np.frombuffer(struct.pack("<e", 0.25) + q.tobytes(), dtype=np.uint8)
    assert gl.dequantize_q8_0(raw, 32).tolist() == (0.25 * q.astype(np.float64)).tolist()


def test_subnormal_half_scale_is_exact():
    tiny = np.float16(2.0**-24)  # smallest half subnormal
    raw = np.frombuffer(_q4_1_block(float(tiny), 0.0, [15] * 32), dtype=np.uint8)
    assert gl.dequantize_q4_1(raw, 32)[0] == np.float32(15 * 2.0**-24)


def test_wrong_size_and_type_rejected():
    with pytest.raises(gl.GGUFError, match="Q4_1 data holds"):
        gl.dequantize_q4_1(np.zeros(20, np.uint8), 64)
    with pytest.raises(gl.GGUFError, match="Q5_K is not supported"):
        gl.dequantize("Q5_K", np.zeros(20, np.uint8), (32,))


def test_corrupt_file_rejected(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 20)
    with pytest.raises(gl.GGUFError, match="not a readable GGUF"):
        gl.open_reader(bad)
    with pytest.raises(gl.GGUFError, match="not found"):
        gl.open_reader(tmp_path / "missing.gguf")


def test_config_from_metadata(gguf_model):
    c = gguf_model.config
    assert (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.d_ff, c.vocab_size) == (
        30, 576, 9, 3, 1536, 49152
    )
    assert c.head_dim == 64 and c.rope_dim == 64 and c.rope_base == 100000.0
    assert np.float32(c.rms_eps) == np.float32(1e-5) and c.tied_embeddings


def test_equals_gguf_reference_and_single_rounding(gguf_model):
    """Bit-equal to gguf.quants on every tensor; Q4_1 = one rounding of the exact d*q+m."""
    import gguf

    reader = gl.open_reader(gguf_model.path)
    for t in reader.tensors:
        ours = gguf_model.weights[t.name]
        ref = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(ours.shape)
        assert np.array_equal(ref.view(np.uint32), ours.view(np.uint32)), t.name
        if t.tensor_type.name == "Q4_1":
            blocks = np.asarray(t.data).reshape(-1, gl.Q4_1_BLOCK_BYTES)
            d = blocks[:, 0:2].copy().view("<f2").astype(np.float64)
            m = blocks[:, 2:4].copy().view("<f2").astype(np.float64)
            qs = blocks[:, 4:]
            q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float64)
            exact_once = (d * q + m).astype(np.float32)  # float64 sum is exact here (ADR 0003)
            assert np.array_equal(exact_once.reshape(-1).view(np.uint32),
                                  ours.reshape(-1).view(np.uint32)), t.name
