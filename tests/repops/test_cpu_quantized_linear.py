"""`repops.pack_linear_quantized`: GGUF Q4_1/Q8_0 weights dequantized exactly inside the kernel.

ADR 0003 fixes the weight values (Q4_1: RN(d*q + m), Q8_0: d*q, fp16 d/m converted exactly);
spec §3.3 fixes the chain. The oracle dequantizes the raw blocks independently here (numpy
float16 -> float32, then float32 scalar ops) and runs the binary64 round-to-odd chain oracle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import repops_oracle as O
import torch

import repops


def _blocks(rng: np.random.Generator, qtype: str, n: int, k: int, special: bool = False) -> bytes:
    """Random GGUF rows: fp16 d (and m) from a wide range incl. subnormals and negative d."""
    nb = n * (k // 32)
    d = (rng.standard_normal(nb) * np.exp2(rng.integers(-20, 4, nb))).astype(np.float16)
    if special:  # fp16 subnormal scales, zero and negative zero scales
        d[::7] = np.float16(6e-8)
        d[1::11] = np.float16(-0.0)
        d[2::13] = np.float16(0.0)
    if qtype == "q8_0":
        q = rng.integers(-128, 128, (nb, 32)).astype(np.int8)
        return b"".join(d[i].tobytes() + q[i].tobytes() for i in range(nb))
    m = (rng.standard_normal(nb) * np.exp2(rng.integers(-20, 4, nb))).astype(np.float16)
    if special:
        m[3::5] = np.float16(-0.0)
    q = rng.integers(0, 16, (nb, 32)).astype(np.uint8)
    qs = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    return b"".join(d[i].tobytes() + m[i].tobytes() + qs[i].tobytes() for i in range(nb))


def dequant_oracle(raw: bytes, qtype: str, n: int, k: int) -> np.ndarray:
    """ADR 0003 with numpy scalars: Q4_1 t = f32(d)*q, x = t + f32(m); Q8_0 x = f32(d)*q."""
    step = 20 if qtype == "q4_1" else 34
    buf = np.frombuffer(raw, np.uint8).reshape(-1, step)
    d = buf[:, :2].copy().view(np.float16).astype(np.float32)[:, 0]
    if qtype == "q8_0":
        q = buf[:, 2:].view(np.int8).astype(np.float32)
        w = d[:, None] * q
    else:
        m = buf[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]
        qs = buf[:, 4:]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float32)
        w = (d[:, None] * q) + m[:, None]  # float32 arrays: two IEEE roundings, d*q exact
    return w.astype(np.float32).reshape(n, k)


SHAPES = [(1, 1, 32), (1, 70, 64), (2, 33, 96), (3, 64, 32), (4, 100, 160), (5, 40, 64),
          (13, 130, 96), (33, 97, 64)]  # fmt: skip


@pytest.mark.parametrize("qtype", ["q4_1", "q8_0"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_quantized_linear_against_oracle(qtype: str, m: int, n: int, k: int) -> None:
    rng = np.random.default_rng(m * 1000 + n * 10 + k + len(qtype))
    raw = _blocks(rng, qtype, n, k, special=True)
    w = dequant_oracle(raw, qtype, n, k)
    packed = repops.pack_linear_quantized(raw, qtype, n, k)
    assert np.array_equal(O.bits(packed.dequantize().numpy()), O.bits(w))
    x = O.random_f32(rng, (m, k))
    x[0, 0] = -0.0
    got = repops.linear(torch.from_numpy(x), packed)
    want = O.matmul_chain(x, w.T.copy())
    assert np.array_equal(O.bits(got.numpy()), O.bits(want))
    fp32 = repops.linear(torch.from_numpy(x), torch.from_numpy(w))
    assert torch.equal(got.view(torch.int32), fp32.view(torch.int32))


def test_zero_weight_signs_are_kept() -> None:
    # Q8_0 with a negative d and q = 0 is the weight -0; after a chain at -0 that decides the
    # sign of the result (spec §2 signed zeros), so the kernel must not add a +0 min.
    d = np.float16(-0.5).tobytes()
    raw = d + bytes(32)  # one row, one block, all q = 0: w = -0
    packed = repops.pack_linear_quantized(raw, "q8_0", 1, 32)
    assert O.bits(packed.dequantize().numpy()).tolist() == [[0x80000000] * 32]
    x = torch.zeros(1, 32)
    x[0, 0] = -1e-30  # x*w = +0 exactly... then an underflowing product below makes acc -0
    x[0, 1] = 1e-30
    got = repops.linear(x, packed)
    want = O.matmul_chain(x.numpy(), packed.dequantize().numpy().T.copy())
    assert O.bits(got.numpy()).tolist() == O.bits(want).tolist()


@pytest.mark.parametrize("qtype", ["q4_1", "q8_0"])
def test_decode_rows_equal_prefill_rows_and_threads(
    qtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(41)
    n, k = 1100, 576  # N*K above the threading threshold
    raw = _blocks(rng, qtype, n, k)
    packed = repops.pack_linear_quantized(raw, qtype, n, k)
    x = torch.from_numpy(O.random_f32(rng, (9, k)))
    full = repops.linear(x, packed).view(torch.int32)
    ref = repops.linear(x, packed.dequantize()).view(torch.int32)
    assert torch.equal(full, ref)
    for i in (0, 5, 8):
        assert torch.equal(repops.linear(x[i : i + 1], packed).view(torch.int32), full[i : i + 1])
    assert torch.equal(repops.linear(x[1:5], packed).view(torch.int32), full[1:5])
    monkeypatch.setenv("REPOPS_CPU_THREADS", "1")
    assert torch.equal(repops.linear(x[:1], packed).view(torch.int32), full[:1])
    assert torch.equal(repops.linear(x, packed).view(torch.int32), full)
    monkeypatch.setenv("REPOPS_CPU_THREADS", "3")
    assert torch.equal(repops.linear(x, packed).view(torch.int32), full)


def test_batch_dims_and_errors() -> None:
    rng = np.random.default_rng(2)
    raw = _blocks(rng, "q4_1", 10, 64)
    packed = repops.pack_linear_quantized(np.frombuffer(raw, np.uint8), "q4_1", 10, 64)
    x = torch.from_numpy(O.random_f32(rng, (2, 3, 64)))
    got = repops.linear(x, packed)
    assert got.shape == (2, 3, 10)
    assert torch.equal(got, repops.linear(x, packed.dequantize()))
    assert "q4_1" in repr(packed) and packed.shape == (10, 64)
    with pytest.raises(ValueError, match=r"repops\.pack_linear_quantized: qtype"):
        repops.pack_linear_quantized(raw, "q4_0", 10, 64)
    with pytest.raises(ValueError, match=r"multiple of 32"):
        repops.pack_linear_quantized(raw, "q4_1", 10, 60)
    with pytest.raises(ValueError, match=r"needs 400 bytes"):
        repops.pack_linear_quantized(raw[:-1], "q4_1", 10, 64)
    with pytest.raises(ValueError, match=r"repops\.linear: need x\[\.\.\., K\]"):
        repops.linear(torch.zeros(2, 32), packed)
    with pytest.raises(TypeError, match=r"repops\.linear: x must be float32"):
        repops.linear(torch.zeros(2, 64, dtype=torch.float64), packed)


GGUF = Path.home() / ".cache" / "judge-ree" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.skipif(not GGUF.exists(), reason="SmolLM2 GGUF not in the model cache")
def test_smollm2_gguf_tensors_bit_identical_to_dequantized() -> None:
    # the real model's blocks: in-kernel dequantization == gguf's dequantize (ADR 0003)
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize

    tensors = {t.name: t for t in gguf.GGUFReader(str(GGUF)).tensors}
    rng = np.random.default_rng(0)
    for name in ("blk.0.attn_q.weight", "blk.7.ffn_down.weight", "token_embd.weight"):
        t = tensors[name]
        k, n = int(t.shape[0]), int(t.shape[1])
        qtype = t.tensor_type.name.lower()
        w = dequantize(t.data, t.tensor_type).reshape(n, k).astype(np.float32)
        packed = repops.pack_linear_quantized(np.asarray(t.data).reshape(-1).view(np.uint8),
                                              qtype, n, k)  # fmt: skip
        assert np.array_equal(O.bits(packed.dequantize().numpy()), O.bits(w)), name
        x = torch.from_numpy(O.random_f32(rng, (2, k)))
        got = repops.linear(x, packed).view(torch.int32)
        assert torch.equal(got, repops.linear(x, torch.from_numpy(w)).view(torch.int32)), name
