"""Correctly rounded exp/log (RepOps spec §5, docs/spec-exp-log.md) against mpmath.

Fast checks only: special values, a random sample over all bit patterns and over the ranges
where results are finite and non-trivial, every hard case, the error bound of the binary64
approximation, table consistency between C, Triton and the published vectors, and the Triton
kernels under the interpreter (bit-equal to the C library). The exhaustive proof is
scripts/check_exp_log_exhaustive.py (docs/reports/exp-log-exhaustive.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mpmath
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "exp_log_hard.json"
CANON_NAN = 0x7FC00000


def _load_checker():
    spec = importlib.util.spec_from_file_location(
        "check_exp_log_exhaustive", ROOT / "scripts" / "check_exp_log_exhaustive.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CHECKER = _load_checker()


@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    return CHECKER.CLib(CHECKER.build_clib(tmp_path_factory.mktemp("crmath")))


# ------------------------------------------------------------------ independent mpmath oracle


def f32_bits(v: float) -> int:
    return int(np.array([v], np.float32).view(np.uint32)[0])


def bits_f32(b: int) -> float:
    return float(np.array([b], np.uint32).view(np.float32)[0])


def cr_binary32(v: mpmath.mpf) -> int:
    """RNE binary32 of a 200-bit value: 24 significant bits, or a multiple of 2^-149 below
    2^-126, +-inf from 2^128 (1 - 2^-25) up (IEEE 754 §4.3.1, §7.4)."""
    if v == 0:
        return 0
    sign = 0x80000000 if v < 0 else 0
    a = abs(v)
    if a < mpmath.mpf(2) ** -126:
        n = int(mpmath.nint(a * mpmath.mpf(2) ** 149))  # never a tie: results are irrational
        return sign | n  # n == 2^23 gives the smallest normal, as it should
    e = int(mpmath.floor(mpmath.log(a, 2)))
    while a >= mpmath.mpf(2) ** (e + 1):  # exact comparisons fix a log2 rounded across
        e += 1
    while a < mpmath.mpf(2) ** e:
        e -= 1
    m = int(mpmath.nint(a / mpmath.mpf(2) ** (e - 23)))
    if m == 1 << 24:
        m, e = 1 << 23, e + 1
    if e > 127:
        return sign | 0x7F800000
    return sign | ((e + 127) << 23) | (m - (1 << 23))


def oracle(func: str, xb: int) -> int:
    """Spec §5 result bits, special values included."""
    x = bits_f32(xb)
    if x != x:
        return CANON_NAN
    with mpmath.workprec(200):
        if func == "exp":
            if x == float("inf"):
                return 0x7F800000
            if x == float("-inf"):
                return 0
            return cr_binary32(mpmath.exp(mpmath.mpf(x)))
        if x < 0:
            return CANON_NAN
        if x == 0:
            return 0xFF800000
        if x == float("inf"):
            return 0x7F800000
        return cr_binary32(mpmath.log(mpmath.mpf(x)))


# ------------------------------------------------------------------ inputs

SPECIAL_BITS = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000,  # +-0, +-inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FBFFFFF,  # NaNs (quiet, signalling)
    0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x80800000,  # subnormals, smallest normal
    0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0xBF800000,  # +-FLT_MAX, +-1
    0x3F7FFFFF, 0x3F800001, 0x33000000, 0xB3000000, 0x33800000, 0xB3800000,  # 1-ulp, 2^-25...
    f32_bits(88.72283), f32_bits(88.72284), 0x42B17217, 0x42B17218,  # exp overflow threshold
    f32_bits(-87.33655), f32_bits(-103.97208), f32_bits(-103.97209), 0xC2CFF1B4, 0xC2CFF1B5,
    f32_bits(-104.0), f32_bits(89.0), f32_bits(-1e30), f32_bits(1e30),
    f32_bits(0.6931472), f32_bits(2.0), f32_bits(0.5), f32_bits(1.4142135), f32_bits(0.70710677),
]


def sample_bits(n: int, seed: int) -> np.ndarray:
    """Uniform bit patterns plus uniform values over exp's finite range and log's domain."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    e = rng.uniform(-104, 89, n).astype(np.float32).view(np.uint32)
    small = (rng.uniform(-1, 1, n) * 2.0 ** rng.integers(-30, 0, n)).astype(np.float32)
    return np.concatenate([a, e, small.view(np.uint32)])


def hard_vectors() -> dict:
    return json.loads(VECTORS.read_text())


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("func", ["exp", "log"])
def test_special_values(clib, func):
    bits = np.array(SPECIAL_BITS, np.uint32)
    got = clib.apply(func, bits)
    for xb, g in zip(bits, got, strict=True):
        assert int(g) == oracle(func, int(xb)), f"{func}({int(xb):#010x})"
        assert clib.scalar(func, int(xb)) == int(g)


def test_spec_examples(clib):
    """The spec's named special values (RepOps spec §5)."""
    assert clib.scalar("exp", 0x7FC00001) == CANON_NAN
    assert clib.scalar("exp", 0xFF800000) == 0  # +0
    assert clib.scalar("exp", 0x7F800000) == 0x7F800000
    assert clib.scalar("exp", f32_bits(100.0)) == 0x7F800000
    assert clib.scalar("exp", f32_bits(-103.9)) == 1  # smallest subnormal
    assert clib.scalar("log", f32_bits(-1.0)) == CANON_NAN
    assert clib.scalar("log", 0x80000000) == 0xFF800000
    assert clib.scalar("log", 0) == 0xFF800000
    assert clib.scalar("log", 0x3F800000) == 0  # +0
    assert clib.scalar("log", 1) == f32_bits(-103.27893)  # subnormal input honoured


@pytest.mark.parametrize("func", ["exp", "log"])
def test_random_sample_against_mpmath(clib, func):
    bits = sample_bits(1500, seed=11 if func == "exp" else 12)
    got = clib.apply(func, bits)
    bad = [(hex(int(x)), hex(int(g)), hex(oracle(func, int(x))))
           for x, g in zip(bits, got, strict=True) if int(g) != oracle(func, int(x))]
    assert not bad, bad[:5]


@pytest.mark.parametrize("func", ["exp", "log"])
def test_hard_vectors(clib, func):
    """Every published hard input (table and closest-to-boundary ones) against mpmath."""
    doc = hard_vectors()[func]
    rows = doc.get("table", []) + doc.get("closest", [])
    assert doc.get("table"), "the vectors file lists the hard-case table"
    xs = np.array([int(r["x"], 16) for r in rows], np.uint32)
    got = clib.apply(func, xs)
    for r, g in zip(rows, got, strict=True):
        want = oracle(func, int(r["x"], 16))
        assert int(r["y"], 16) == want, f"vector {r} disagrees with mpmath"
        assert int(g) == want, f"{func}({r['x']})"


def test_tables_agree_everywhere(clib):
    """C table == published vectors == Triton where-chain (docs/spec-exp-log.md §4)."""
    vec = hard_vectors()
    py_src = (ROOT / "repops" / "gpu" / "crmath.py").read_text()
    for func in ("exp", "log"):
        c_rows = clib.table(func)
        assert c_rows == sorted(c_rows)
        v_rows = [(int(r["x"], 16), int(r["y"], 16)) for r in vec[func]["table"]]
        assert c_rows == v_rows
        block = py_src.split(f"# BEGIN HARD TABLE {func}")[1].split("# END HARD TABLE")[0]
        py_rows = [(int(a) % 2**32, int(b) % 2**32)
                   for a, b in re.findall(r"ux == (-?\d+), (-?\d+), r\)", block)]
        assert py_rows == c_rows


@pytest.mark.parametrize("func", ["exp", "log"])
def test_table_is_exactly_the_hard_set(clib, func):
    """The table holds exactly the inputs failing the rounding test (sampled ranges here,
    all 2^32 in the exhaustive script): a stale table would miss or keep entries."""
    rows = clib.table(func)
    for xb, _ in rows:
        assert xb in set(clib.find_hard(func, xb - 50, 100).tolist())
    found = clib.find_hard(func, 0x3F000000, 1 << 20)
    assert set(found.tolist()) <= {a for a, _ in rows}


@pytest.mark.parametrize("func", ["exp", "log"])
def test_approximation_error_bound(clib, func):
    """Measured relative error of the binary64 approximation stays below the proven bound
    used by the rounding test (docs/spec-exp-log.md §3), with the worst reduction points."""
    rng = np.random.default_rng(5)
    if func == "exp":
        ln2 = np.log(2.0)
        k = rng.integers(-149, 128, 2000)
        edge = (k + rng.choice([-0.5, 0.5], 2000) * (1 - rng.uniform(0, 1e-6, 2000))) * ln2
        x = np.concatenate([edge, rng.uniform(-104, 89, 2000), rng.uniform(-0.35, 0.35, 1000)])
    else:
        m = np.concatenate([rng.uniform(0.7071, 0.7072, 1500), rng.uniform(1.4141, 1.41422, 1500),
                            rng.uniform(0.5, 2.0, 2000)])
        x = m * 2.0 ** rng.integers(-149, 128, m.size)
        x = x[(x > 0) & np.isfinite(x.astype(np.float32))]
    xb = x.astype(np.float32).view(np.uint32)
    xb = xb[(xb & 0x7FFFFFFF) != 0]
    y = clib.approx(func, xb)
    worst = 0.0
    with mpmath.workprec(200):
        for b, v in zip(xb, y, strict=True):
            t = mpmath.mpf(bits_f32(int(b)))
            exact = mpmath.exp(t) if func == "exp" else mpmath.log(t)
            if exact != 0:
                worst = max(worst, float(abs((mpmath.mpf(v) - exact) / exact)))
    bound = {"exp": 2.0**-51.9, "log": 2.0**-51.7}[func]
    assert worst < bound and xb.size > 3000, f"{func}: {np.log2(worst):.2f}, {xb.size} inputs"


def test_in_place_and_lengths(clib):
    """x == y works (the array API copies each block first) and no length is special."""
    bits = sample_bits(700, seed=3)
    for func in ("exp", "log"):
        want = clib.apply(func, bits)
        for n in (0, 1, 7, 255, 256, 257, 513, bits.size):
            buf = bits[:n].view(np.float32).copy()
            getattr(clib.lib, f"repops_{func}_f32")(buf.ctypes.data, buf.ctypes.data, n)
            assert np.array_equal(buf.view(np.uint32), want[:n])


_TRITON_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    import triton
    import triton.language as tl
    sys.path.insert(0, sys.argv[1])
    from repops.gpu import crmath

    @triton.jit
    def approx_kernel(x_ptr, y_ptr, n, WHICH: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m, other=1.0).to(tl.float64)
        if WHICH == 0:
            y = crmath._exp_core(x)
        else:
            y = crmath._log_core(x)
        tl.store(y_ptr + offs, y, mask=m)

    data = np.load(sys.argv[2])
    out = {}
    for func, fn in (("exp", crmath.exp_f32), ("log", crmath.log_f32)):
        x = torch.from_numpy(data["bits"].view(np.float32).copy())
        out[func] = fn(x).numpy().view(np.uint32)
        ax = torch.from_numpy(data[func + "_core"].view(np.float32).copy())
        y = torch.empty(ax.numel(), dtype=torch.float64)
        approx_kernel[(triton.cdiv(ax.numel(), 1024),)](
            ax, y, ax.numel(), WHICH=0 if func == "exp" else 1, BLOCK=1024)
        out[func + "_approx"] = y.numpy()
    np.savez(sys.argv[3], **out)
""")


def test_triton_interpreter_matches_c(clib, tmp_path):
    """The Triton kernels under TRITON_INTERPRET=1 (numpy fp64, real fma) give the same bits as
    the C library, for the results and for the binary64 approximations themselves."""
    pytest.importorskip("triton")
    vec = hard_vectors()
    hard = [int(r["x"], 16) for f in ("exp", "log") for s in ("table", "closest")
            for r in vec[f].get(s, [])]
    bits = np.concatenate([sample_bits(1 << 13, seed=21), np.array(SPECIAL_BITS + hard,
                                                                     np.uint32)])
    f = bits.view(np.float32)
    with np.errstate(invalid="ignore"):
        exp_core = np.clip(np.nan_to_num(f, nan=0.0), -104, 89).astype(np.float32)
        log_core = np.abs(f[np.isfinite(f) & (f != 0)])
    np.savez(tmp_path / "in.npz", bits=bits, exp_core=exp_core.view(np.uint32),
             log_core=log_core.view(np.uint32))
    script = tmp_path / "run.py"
    script.write_text(_TRITON_SCRIPT)
    env = dict(os.environ, TRITON_INTERPRET="1")
    subprocess.run([sys.executable, str(script), str(ROOT), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], check=True, env=env, timeout=600)
    out = np.load(tmp_path / "out.npz")
    for func, core in (("exp", exp_core), ("log", log_core)):
        assert np.array_equal(out[func], clib.apply(func, bits)), func
        want = clib.approx(func, core.view(np.uint32))
        assert np.array_equal(out[func + "_approx"].view(np.uint64), want.view(np.uint64)), func
