"""Differential tests: contracts/float/Float32*.sol on the EVM vs exact oracles, bit for bit.

RepOps spec §1-§6.14: every primitive must return exactly RN of the exact result (canonical NaN,
signed zeros, subnormals). Each primitive gets >= 10^4 generated cases (tests/contracts/
float32_cases.py: uniform patterns plus ties, cancellation, underflow, overflow and alignment
edges) and the cross product of special values; exp/log also the published hard inputs
(tests/vectors/exp_log_hard.json) and the CPU reference (repops). One anvil + one harness
deployment serve the module; batches of 4096 cases per eth_call.
"""

from __future__ import annotations

import json
import struct
from itertools import product
from pathlib import Path

import float32_cases as cases
import float32_oracle as oracle
import numpy as np
import pytest
from eth_utils import function_signature_to_4byte_selector
from float32_harness import Float32Harness

pytestmark = pytest.mark.chain

N = 10_000
ROOT = Path(__file__).resolve().parents[2]
HARD = ROOT / "tests" / "vectors" / "exp_log_hard.json"


@pytest.fixture(scope="module")
def evm():
    with Float32Harness() as h:
        yield h


def _assert_bits_equal(name: str, got, want, *operands) -> None:
    got = np.asarray(got, dtype=np.uint64)
    want = np.asarray(want, dtype=np.uint64)
    assert got.shape == want.shape
    bad = np.nonzero(got != want)[0]
    if len(bad):
        lines = []
        for i in bad[:10]:
            ops = ", ".join(f"0x{int(o[i]):08X}" for o in operands)
            lines.append(f"{name}({ops}) = 0x{int(got[i]):08X}, want 0x{int(want[i]):08X}")
        pytest.fail(f"{len(bad)}/{len(got)} mismatches:\n" + "\n".join(lines))


def _special_pairs() -> tuple[np.ndarray, np.ndarray]:
    ab = np.array(list(product(cases.SPECIALS, repeat=2)), dtype=np.uint32)
    return ab[:, 0], ab[:, 1]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_arithmetic(evm, op):
    rng = np.random.default_rng({"add": 1, "sub": 2, "mul": 3, "div": 4}[op])
    gen = cases.pairs_add if op in ("add", "sub") else cases.pairs_mul
    a, b = gen(rng, N)
    sa, sb = _special_pairs()
    a = np.concatenate([a, sa])
    b = np.concatenate([b, sb])
    _assert_bits_equal(op, evm.batch(op, a, b), getattr(oracle, op)(a, b), a, b)


def test_add_commutes_and_sub_is_add_neg(evm):
    rng = np.random.default_rng(7)
    a, b = cases.pairs_add(rng, 4000)
    ab = evm.batch("add", a, b)
    _assert_bits_equal("add(b,a)", evm.batch("add", b, a), ab, a, b)
    nb = b ^ np.uint32(0x80000000)
    _assert_bits_equal("sub(a,-b)", evm.batch("sub", a, nb), ab, a, b)


def test_sqrt(evm):
    rng = np.random.default_rng(11)
    a = np.concatenate([cases.mixed(rng, N), cases.SPECIALS,
                        # exact squares and their neighbours, subnormal ones included
                        (np.arange(1, 3000, dtype=np.float32) ** 2).view(np.uint32),
                        np.arange(1, 2000, dtype=np.uint32)])
    _assert_bits_equal("sqrt", evm.batch("sqrt", a), oracle.sqrt(a), a)


def test_fma(evm):
    rng = np.random.default_rng(13)
    a, b, c = cases.triples_fma(rng, N)
    s = cases.SPECIALS[::2]  # 23^3 special triples
    t = np.array(list(product(s, repeat=3)), dtype=np.uint32)
    a = np.concatenate([a, t[:, 0]])
    b = np.concatenate([b, t[:, 1]])
    c = np.concatenate([c, t[:, 2]])
    _assert_bits_equal("fma", evm.batch("fma", a, b, c), oracle.fma(a, b, c), a, b, c)


def test_fma_is_mul_when_addend_is_zero(evm):
    rng = np.random.default_rng(17)
    a, b = cases.pairs_mul(rng, 4000)
    prod = evm.batch("mul", a, b)
    # fma(a, b, -0) = RN(a*b) for every a, b (a zero product keeps its sign with -0).
    got = evm.batch("fma", a, b, np.full_like(a, 0x80000000))
    _assert_bits_equal("fma(a,b,-0)", got, prod, a, b)


@pytest.mark.parametrize("op", ["max", "min", "cmp"])
def test_max_min_compare(evm, op):
    rng = np.random.default_rng(19 + len(op))
    a = cases.mixed(rng, N)
    b = np.where(rng.integers(0, 4, N) == 0, a, cases.mixed(rng, N))  # many equal pairs
    sa, sb = _special_pairs()
    a = np.concatenate([a, sa])
    b = np.concatenate([b, sb])
    want = {"max": oracle.max2, "min": oracle.min2, "cmp": oracle.cmp_flags}[op](a, b)
    _assert_bits_equal(op, evm.batch(op, a, b), want, a, b)


def test_neg(evm):
    rng = np.random.default_rng(23)
    a = np.concatenate([cases.mixed(rng, N), cases.SPECIALS])
    _assert_bits_equal("neg", evm.batch("neg", a), oracle.neg(a), a)


def test_from_int(evm):
    rng = np.random.default_rng(29)
    v = np.concatenate([cases.int64_inputs(rng, N),
                        np.array([0, 1, -1, 2**24, 2**24 + 1, 2**24 + 3, -(2**24) - 1,
                                  2**63 - 1, -(2**63), 2**31 - 1, -(2**31)], dtype=np.int64)])
    want = np.array([oracle.from_int(int(x)) for x in v], dtype=np.uint32)
    _assert_bits_equal("fromInt", evm.from_int64(v), want, v.view(np.uint64))
    big = [2**255 - 1, -(2**255), 2**200 + 1, 2**208, 2**208 - 1, -(2**130) - 2**106,
           2**127 + 2**103, 2**127 + 2**103 + 1, 3 * 2**200 + 1, 2**128 - 2**103]
    big += [int(x) << int(s) for x, s in zip(rng.integers(1, 2**62, 200), rng.integers(0, 190, 200),
                                             strict=True)]
    assert evm.from_int256(big) == [oracle.from_int(x) for x in big]


def test_to_int(evm):
    rng = np.random.default_rng(31)
    x = np.concatenate([cases.to_int_inputs(rng, N), cases.SPECIALS])
    want32 = np.array([oracle.to_int_sat(int(b), 32) & 0xFFFFFFFF for b in x], dtype=np.uint32)
    _assert_bits_equal("toInt32", evm.batch("toint32", x), want32, x)
    want64 = [oracle.to_int_sat(int(b), 64) for b in x]
    got64 = evm.to_int64(x)
    bad = [(hex(int(b)), g, w) for b, g, w in zip(x, got64, want64, strict=True) if g != w]
    assert not bad, bad[:10]


def _hard(fn: str) -> np.ndarray:
    data = json.loads(HARD.read_text())[fn]
    xs = [int(e["x"], 16) for group in data.values() if isinstance(group, list) for e in group]
    return np.array(xs, dtype=np.uint32)


def _hard_expected(fn: str) -> dict[int, int]:
    data = json.loads(HARD.read_text())[fn]
    return {int(e["x"], 16): int(e["y"], 16)
            for group in data.values() if isinstance(group, list) for e in group}


@pytest.mark.parametrize("fn", ["exp", "log"])
def test_exp_log(evm, fn):
    rng = np.random.default_rng(37 if fn == "exp" else 41)
    gen = cases.exp_inputs if fn == "exp" else cases.log_inputs
    x = np.concatenate([gen(rng, N), cases.SPECIALS, _hard(fn)])
    got = evm.batch(fn, x)
    _assert_bits_equal(fn, got, getattr(oracle, fn)(x), x)
    # The published hard cases carry their expected bits: check those directly as well.
    for xi, yi in _hard_expected(fn).items():
        assert int(got[list(x).index(xi)]) == yi, f"{fn}(0x{xi:08X})"


@pytest.mark.parametrize("fn", ["exp", "log"])
def test_exp_log_match_cpu_reference(evm, fn):
    """Spec §5: the same bits as the CPU reference (repops/cpu), on a fresh input set."""
    torch = pytest.importorskip("torch")
    from repops import api

    rng = np.random.default_rng(43 if fn == "exp" else 47)
    gen = cases.exp_inputs if fn == "exp" else cases.log_inputs
    x = np.concatenate([gen(rng, N), cases.SPECIALS, _hard(fn)])
    ref = getattr(api, fn)(torch.from_numpy(x.view(np.float32).copy())).numpy().view(np.uint32)
    _assert_bits_equal(fn, evm.batch(fn, x), ref, x)


# Custom error selector of Float32.Float32IndexOutOfRange(uint256,uint256).
OUT_OF_RANGE = "0x" + function_signature_to_4byte_selector(
    "Float32IndexOutOfRange(uint256,uint256)").hex()


def _le(bits: np.ndarray) -> bytes:
    return np.asarray(bits, dtype="<u4").tobytes()


def test_loads_little_endian(evm):
    rng = np.random.default_rng(53)
    chunk = rng.integers(0, 256, 1024, dtype=np.uint8).tobytes()
    idx = list(range(256))
    mem, cd = evm.loads(chunk, idx)
    want = list(struct.unpack("<256I", chunk))
    assert list(mem) == want and list(cd) == want
    with pytest.raises(Exception, match=OUT_OF_RANGE):
        evm.loads(chunk, [256])
    with pytest.raises(Exception, match=OUT_OF_RANGE):
        evm.loads(chunk[:1023], [255])  # a partial trailing element is out of range


@pytest.mark.parametrize("k", [1, 64, 576])
def test_fma_chain_matches_spec_chain(evm, k):
    """Spec §3.1 dot chain over little-endian rows, memory and calldata paths, from +0 and
    from a mid-chain accumulator (a bisected accumulation step)."""
    rng = np.random.default_rng(59 + k)
    x = rng.standard_normal(k + 8).astype(np.float32).view(np.uint32)
    w = (rng.standard_normal(k + 8) * 0.05).astype(np.float32).view(np.uint32)
    if k >= 64:  # a few specials inside a row: subnormals, signed zeros, tiny/huge values
        x[3], x[5], w[7], w[9] = 0x80000000, 0x00000007, 0x80000001, 0x00800000
    want = oracle.fma_chain(x[2 : 2 + k], w[5 : 5 + k], 0)
    for calldata in (False, True):
        got, _gas = evm.fma_chain(_le(x), 2, _le(w), 5, k, 0, calldata=calldata)
        assert got == want, (k, calldata, hex(got), hex(want))
    half = k // 2
    mid = oracle.fma_chain(x[:half], w[:half], 0)
    want2 = oracle.fma_chain(x[half:k], w[half:k], mid)
    got2, _ = evm.fma_chain(_le(x), half, _le(w), half, k - half, mid)
    assert got2 == want2


def test_fma_chain_step_matches_fma(evm):
    """Each step of the chain loop (inline fast path or fallback) equals fma bit for bit."""
    rng = np.random.default_rng(61)
    a, b, c = cases.triples_fma(rng, N)
    _assert_bits_equal("chain1", evm.chain_steps(a, b, c), oracle.fma(a, b, c), a, b, c)


def test_fma_chain_long_mixed(evm):
    """A 3000-step chain over mixed operands: the loop leaves and re-enters its fast path."""
    rng = np.random.default_rng(67)
    x = cases.mixed(rng, 3000)
    w = cases.mixed(rng, 3000)
    # Keep most steps finite so the accumulator stays informative, with specials sprinkled.
    finite = (x & 0x7F800000) != 0x7F800000
    x = np.where(finite | (rng.integers(0, 50, 3000) == 0), x, np.uint32(0x3F800000))
    finite = (w & 0x7F800000) != 0x7F800000
    w = np.where(finite, w, np.uint32(0xBF800000))
    for start, count in ((0, 3000), (1000, 1500), (2990, 10)):
        acc = np.uint32(0)
        want = oracle.fma_chain(x[start : start + count], w[start : start + count], 0)
        for calldata in (False, True):
            got, _ = evm.fma_chain(_le(x), start, _le(w), start, count, int(acc), calldata=calldata)
            assert got == want, (start, count, calldata, hex(got), hex(want))


def test_fma_chain_bounds(evm):
    row = _le(np.zeros(8, np.uint32))
    with pytest.raises(Exception, match=OUT_OF_RANGE):
        evm.fma_chain(row, 4, row, 0, 5, 0)
    got, _ = evm.fma_chain(row, 8, row, 8, 0, 0x3F800000)  # empty chain returns acc
    assert got == 0x3F800000
