"""`repops_linear_q_segments`: every k-segment output of a quantized linear in one call.

docs/trace-layout.md §L5.3 defines a linear as DOT segments, segment s continuing from
segment s−1's (canonical) output. The kernel runs each output's §3.1 chain once and stores
the running accumulator at every segment end, so each stored segment must equal, bit for bit
(signed zeros, canonical NaN, ±inf included), that segment-by-segment chain on the ADR 0003
dequantized weights. The oracle here is the binary64 round-to-odd fma of tests/repops
(`repops_oracle.fma_rto`), restarted per segment from the canonicalised previous output.
"""

from __future__ import annotations

import numpy as np
import pytest
import repops_oracle as O
import torch
from test_cpu_quantized_linear import _blocks, dequant_oracle

import repops
from repops.cpu import kernels
from repops.cpu.packed import QTYPES

HALF_INF, HALF_NEG_INF, HALF_NAN = 0x7C00, 0xFC00, 0x7E00


def segment_oracle(x: np.ndarray, w: np.ndarray, ends: list[int]) -> np.ndarray:
    """[nseg, M, N]: segment s = chain over [ends[s−1], ends[s]) from segment s−1's output."""
    m, n = x.shape[0], w.shape[0]
    acc = np.zeros((m, n), np.float32)
    out, k0 = [], 0
    for e in ends:
        for k in range(k0, e):
            acc = O.fma_rto(np.broadcast_to(x[:, k : k + 1], acc.shape),
                            np.broadcast_to(w[:, k], acc.shape), acc)  # fmt: skip
        acc = O.canon_array(acc)  # the segment's output (§1.2) is the next one's acc
        out.append(acc.copy())
        k0 = max(k0, e)
    return np.stack(out)


def _edge_blocks(raw: bytes, qtype: str, rng: np.random.Generator) -> bytes:
    """Overwrite some blocks' fp16 d (and Q4_1 m) with ±inf, NaN, ±0 and subnormals."""
    step = QTYPES[qtype][1]
    buf = np.frombuffer(raw, np.uint8).copy().reshape(-1, step)
    nb = buf.shape[0]
    special = np.array([HALF_INF, HALF_NEG_INF, HALF_NAN, 0x8000, 0x0000, 0x0001, 0x83FF],
                       np.uint16)  # fmt: skip
    pick = rng.choice(nb, size=max(1, nb // 9), replace=False)
    d = buf[:, 0:2].copy().view(np.uint16)
    d[pick, 0] = special[rng.integers(0, len(special), len(pick))]
    buf[:, 0:2] = d.view(np.uint8)
    if qtype == "q4_1":
        m = buf[:, 2:4].copy().view(np.uint16)
        pick = rng.choice(nb, size=max(1, nb // 11), replace=False)
        m[pick, 0] = special[rng.integers(0, len(special), len(pick))]
        buf[:, 2:4] = m.view(np.uint8)
    return buf.tobytes()


def _run(x: np.ndarray, packed: repops.PackedLinear, ends: list[int], portable: bool = False
         ) -> np.ndarray:
    code = QTYPES[packed.qtype][0]
    return kernels.linear_q_segments(torch.from_numpy(x), packed.panels, code, packed.n, ends,
                                     portable).numpy()  # fmt: skip


def _ends(k: int, seg: int, extra: int = 0) -> list[int]:
    """Lowering-shaped segment ends (§L8: ⌈K/seg⌉ segments, more past K copy the acc)."""
    return [min((s + 1) * seg, k) for s in range(-(-k // seg) + extra)]


CASES = [  # (rows, N, K, segment, segments past K)
    (1, 1, 32, 64, 0), (1, 70, 64, 64, 0), (1, 33, 96, 64, 1), (2, 97, 160, 64, 0),
    (1, 64, 576, 64, 0), (3, 40, 96, 16, 0), (4, 65, 224, 64, 2), (5, 31, 128, 48, 0),
    (9, 130, 96, 32, 0), (2, 64, 32, 7, 0),
]  # fmt: skip


@pytest.mark.parametrize("qtype", ["q4_1", "q8_0"])
@pytest.mark.parametrize("edge", [False, True])
@pytest.mark.parametrize("m,n,k,seg,extra", CASES)
def test_segments_equal_the_segment_chain(qtype: str, edge: bool, m: int, n: int, k: int,
                                          seg: int, extra: int) -> None:
    rng = np.random.default_rng(m * 7919 + n * 31 + k + seg + 2 * edge + len(qtype))
    raw = _blocks(rng, qtype, n, k, special=True)
    if edge:
        raw = _edge_blocks(raw, qtype, rng)
    with np.errstate(all="ignore"):  # inf·0 in edge blocks
        w = dequant_oracle(raw, qtype, n, k)
    packed = repops.pack_linear_quantized(raw, qtype, n, k)
    # a NaN weight (inf·0, NaN d) has no fixed payload in ADR 0003; the outputs' NaN is canonical
    assert np.array_equal(O.bits(O.canon_array(packed.dequantize().numpy())),
                          O.bits(O.canon_array(w)))  # fmt: skip
    x = O.random_f32(rng, (m, k))
    x[0, 0] = -0.0
    if edge:  # inf/NaN activations and products that underflow to a signed zero
        x[-1, min(3, k - 1)] = np.inf
        x[0, k // 2] = 1e-30
    ends = _ends(k, seg, extra)
    want = segment_oracle(x, w, ends)
    got = _run(x, packed, ends)
    assert got.shape == (len(ends), m, n)
    assert np.array_equal(O.bits(got), O.bits(want))
    assert np.array_equal(O.bits(_run(x, packed, ends, portable=True)), O.bits(want))
    # the last segment is the whole §3.3 linear on the fp32 weights
    full = repops.linear(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    assert np.array_equal(O.bits(got[-1]), O.bits(full))


def test_signed_zero_accumulator_survives_segment_ends() -> None:
    """acc = −0.0 at segment ends (an underflowed product, then −0 products): the spec keeps
    −0.0 in every later segment (PanelChain's fma(1, acc, +0) restart gives +0.0 there)."""
    tiny = np.uint16(0x0001).tobytes()  # fp16 d = 2^-24 (subnormal), q[0] = 1, other q = 0
    raw = tiny + bytes([1]) + bytes(31) + np.float16(-0.5).tobytes() + bytes(32)  # then w = −0
    packed = repops.pack_linear_quantized(raw, "q8_0", 1, 64)
    w = packed.dequantize().numpy()
    x = np.ones((1, 64), np.float32)
    x[0, 0] = -1e-40  # fma(−1e-40, 2^-24, +0) rounds to −0.0
    x[0, 1:32] = -1.0  # (−1)·(+0) = −0: −0 + −0 stays −0
    ends = [16, 32, 48, 64]
    got = _run(x, packed, ends)
    assert O.bits(got).reshape(-1).tolist() == [0x80000000] * 4
    assert np.array_equal(O.bits(got), O.bits(segment_oracle(x, w, ends)))
    x[0, 0] = 0.0  # +0 from the start: −0 products leave it +0
    got = _run(x, packed, ends)
    assert O.bits(got).reshape(-1).tolist() == [0] * 4
    assert np.array_equal(O.bits(got), O.bits(segment_oracle(x, w, ends)))


@pytest.mark.parametrize("qtype", ["q4_1", "q8_0"])
def test_threads_do_not_change_bits(qtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    n, k = 8000, 576  # N*K above the threading threshold
    raw = _blocks(rng, qtype, n, k)
    packed = repops.pack_linear_quantized(raw, qtype, n, k)
    x = O.random_f32(rng, (2, k))
    ends = _ends(k, 64)
    monkeypatch.setenv("REPOPS_CPU_THREADS", "1")
    one = _run(x, packed, ends)
    monkeypatch.setenv("REPOPS_CPU_THREADS", "2")
    two = _run(x, packed, ends)
    assert np.array_equal(O.bits(one), O.bits(two))
    assert np.array_equal(O.bits(two[:, :1]), O.bits(_run(x[:1], packed, ends)))
    w = packed.dequantize()
    for s, e in enumerate(ends):  # segment s is the chain over [0, e) from +0 (§L5.3)
        want = repops.linear(torch.from_numpy(x[:, :e].copy()), w[:, :e].contiguous())
        assert np.array_equal(O.bits(two[s]), O.bits(want.numpy()))


def test_bad_segment_ends_are_refused() -> None:
    raw = _blocks(np.random.default_rng(1), "q4_1", 4, 64)
    packed = repops.pack_linear_quantized(raw, "q4_1", 4, 64)
    x = np.ones((1, 64), np.float32)
    for ends in ([32, 16], [65], [-1, 64], []):
        with pytest.raises(ValueError, match="segment ends"):
            _run(x, packed, ends)
    assert _run(x, packed, [0, 64]).shape == (2, 1, 4)
