"""The C commitment path (repops/cpu/csrc/repops_keccak.c) against pycryptodome and the vectors.

Both paths must give the bytes of docs/commitments.md (C2-C5) for every input; the published
vectors pin them for the Solidity side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from repops import commit

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "commitments.json").read_text())

# keccak256 (Ethereum padding), not SHA3-256
KNOWN = {
    b"": "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
    b"abc": "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45",
    b"a" * 200: "96ea54061def936c4be90b518992fdc6f12f535068a256229aca54267b4d084d",
    b"The quick brown fox jumps over the lazy dog": (
        "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15"
    ),
}

SIZES = [0, 1, 7, 135, 136, 137, 1023, 1024, 1025, 2048, 3 * 1024 + 5, 17 * 1024,
         256 * 1024 + 3]


@pytest.fixture
def backend():
    """Switch paths inside one test; always restores the previous choice."""
    previous = commit.set_backend("auto")
    if commit.backend() != "c":
        pytest.skip(f"C commitment library unavailable: {commit._lib_error}")

    def use(name: str) -> None:
        commit.set_backend(name)

    yield use
    commit.set_backend(previous)


def both(backend, fn, *args):  # noqa: ANN001, ANN201
    backend("c")
    fast = fn(*args)
    backend("python")
    slow = fn(*args)
    backend("c")
    return fast, slow


@pytest.mark.parametrize("name", ["c", "python"])
def test_keccak256_known_digests(backend, name):
    backend("c")
    commit.merkle_root([b"\0" * 32, b"\1" * 32])  # make sure the C library is loaded
    backend(name)
    for msg, digest in KNOWN.items():
        assert commit.keccak256(msg).hex() == digest


def test_keccak256_rate_boundaries(backend):
    rng = np.random.default_rng(1)
    for n in [*range(0, 300), 1000, 1024, 1025, 4096, 100_003]:
        msg = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        fast, slow = both(backend, commit.keccak256, msg)
        assert fast == slow, n


def test_vectors_on_c_path(backend):
    backend("c")
    for t in VECTORS["tensors"]:
        data = bytes.fromhex(t["data_hex"])
        leaves = commit.chunk_leaves(data)
        assert ["0x" + x.hex() for x in leaves] == t["chunk_leaves"]
        assert "0x" + commit.merkle_root(leaves).hex() == t["data_root"]
        root = commit.tensor_root_from_bytes(data, t["dtype"], t["shape"])
        assert "0x" + root.hex() == t["tensor_root"]
    tr = VECTORS["trace"]
    ops = [bytes.fromhex(x[2:]) for x in tr["op_hashes"]]
    roots = [bytes.fromhex(x[2:]) for x in tr["output_roots"]]
    leaves = commit.trace_leaves(ops, roots)
    assert ["0x" + x.hex() for x in leaves] == tr["leaves"]
    assert "0x" + commit.trace_root(ops, roots).hex() == tr["root"]
    for i, proof in enumerate(tr["proofs"]):
        assert ["0x" + s.hex() for s in commit.merkle_proof(leaves, i)] == proof
        assert commit.verify_proof(leaves[i], i, commit.merkle_proof(leaves, i),
                                   bytes.fromhex(tr["root"][2:]))


def test_build_vectors_identical_on_both_paths(backend):
    fast, slow = both(backend, commit.build_vectors)
    assert fast == slow == VECTORS


@pytest.mark.parametrize("size", SIZES)
def test_tensor_bytes_against_pycryptodome(backend, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    fast_leaves, slow_leaves = both(backend, commit.chunk_leaves, data)
    assert fast_leaves == slow_leaves
    assert len(fast_leaves) == max(1, -(-size // 1024))
    fast, slow = both(backend, commit.tensor_root_from_bytes, data, "uint8", [size])
    assert fast == slow


@pytest.mark.parametrize("shape", [(576,), (49152,), (256, 192), (3, 0, 4), (1, 1, 1, 257)])
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64", "uint8"])
def test_tensor_root_np_against_pycryptodome(backend, shape, dtype):
    rng = np.random.default_rng(7)
    arr = (rng.standard_normal(shape) * 1000).astype(dtype)
    fast, slow = both(backend, commit.tensor_root_np, arr)
    assert fast == slow
    # non-contiguous and big-endian inputs go through C1's canonical bytes first
    if arr.ndim >= 2:
        assert commit.tensor_root_np(np.asfortranarray(arr)) == fast
    assert commit.tensor_root_np(arr.astype(arr.dtype.newbyteorder(">"))) == fast


@pytest.mark.parametrize("n", [*range(1, 40), 63, 64, 65, 127, 128, 129, 1000])
def test_merkle_levels_against_pycryptodome(backend, n):
    rng = np.random.default_rng(n)
    leaves = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(n)]
    fast, slow = both(backend, commit.merkle_levels, leaves)
    assert fast == slow
    assert both(backend, commit.merkle_root, leaves) == (fast[-1][0], fast[-1][0])
    ops = [commit.keccak256(x) for x in leaves]
    f_leaves, s_leaves = both(backend, commit.trace_leaves, ops, leaves)
    assert f_leaves == s_leaves == [commit.trace_leaf(i, o, r)
                                    for i, (o, r) in enumerate(zip(ops, leaves, strict=True))]
    fast_root, slow_root = both(backend, commit.trace_root, ops, leaves)
    assert fast_root == slow_root == commit.merkle_root(s_leaves)


def test_threads_do_not_change_roots(backend, monkeypatch):
    backend("c")
    # past the C file's threading threshold (1024 hashes per level)
    data = np.random.default_rng(3).integers(0, 256, 2100 * 1024 + 11, dtype=np.uint8).tobytes()
    leaves = commit.chunk_leaves(data)[:2059]
    results = []
    for threads in ["1", "2", "3"]:
        monkeypatch.setenv("REPOPS_CPU_THREADS", threads)
        results.append((commit.tensor_root_from_bytes(data, "uint8", [len(data)]),
                        commit.chunk_leaves(data), commit.merkle_levels(leaves),
                        commit.trace_root(leaves, leaves)))
    assert results[0] == results[1] == results[2]
    backend("python")
    assert commit.tensor_root_from_bytes(data, "uint8", [len(data)]) == results[0][0]
    assert commit.trace_root(leaves, leaves) == results[0][3]


def test_errors_match_the_python_path(backend):
    for name in ["c", "python"]:
        backend(name)
        with pytest.raises(ValueError):
            commit.trace_root([b"\0" * 32], [b"\0" * 31])
        with pytest.raises(ValueError):
            commit.trace_root([b"\0" * 32], [])
        with pytest.raises(ValueError):
            commit.trace_root([], [])
        with pytest.raises(ValueError):
            commit.merkle_root([])
        with pytest.raises(TypeError):
            commit.tensor_root_np(np.zeros(3, dtype=np.float16))
    with pytest.raises(ValueError):
        commit.set_backend("gpu")


def _run(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_does_not_load_the_library():
    out = _run("import repops.commit as c; print(c._lib is None, c._lib_error is None)", {})
    assert out == "True True"


def test_fallback_when_no_compiler(tmp_path):
    """No C compiler: the pycryptodome path answers with the same published roots."""
    code = ("import json, repops.commit as c; v = c.build_vectors(); "
            "print(c.backend(), v == json.load(open('tests/vectors/commitments.json')))")
    out = _run(code, {"CC": str(tmp_path / "no-such-cc"), "JUDGE_CACHE_DIR": str(tmp_path)})
    assert out == "python True"


def test_standalone_module_without_torch():
    """commit.py needs neither torch nor the package: loaded alone with torch blocked."""
    code = (
        "import sys, importlib.util; sys.modules['torch'] = None; "
        "spec = importlib.util.spec_from_file_location('commit_alone', 'repops/commit.py'); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "import numpy as np; print(m.tensor_root_np(np.array([1.0], np.float32)).hex())"
    )
    out = _run(code, {})
    expected = next(t for t in VECTORS["tensors"] if t["shape"] == [1])["tensor_root"]
    assert "0x" + out == expected


def test_module_main_reproduces_vectors():
    proc = subprocess.run([sys.executable, "-m", "repops.commit"], capture_output=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "tests" / "vectors" / "commitments.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# The batched paths: one call for many tensors (repops_tensor_roots), eight messages per
# keccak-f1600 (AVX-512 lanes), threads. Every case is held to the pycryptodome bytes.

# lengths around the keccak rate, the chunk size and the 8-lane batch (8 chunks)
BATCH_SIZES = [0, 1, 7, 8, 135, 136, 137, 1023, 1024, 1025, 2047, 2048, 2304, 6144,
               8 * 1024 - 1, 8 * 1024, 8 * 1024 + 1, 17 * 1024 + 5, 100_003, 256 * 1024 + 3,
               1_000_000]


def _python_roots(views: list[np.ndarray], heads: list[bytes]) -> list[bytes]:
    """The reference: pycryptodome over the same bytes, one tensor at a time (C4)."""
    saved = commit.set_backend("python")
    try:
        return [commit.keccak256(h + commit.merkle_root(commit.chunk_leaves(v.tobytes())))
                for v, h in zip(views, heads, strict=True)]
    finally:
        commit.set_backend(saved)


def _buffers(sizes: list[int], seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random bytes for each size, packed into one buffer at odd offsets (unaligned)."""
    rng = np.random.default_rng(seed)
    buf = rng.integers(0, 256, sum(sizes) + 3 * len(sizes) + 1, dtype=np.uint8)
    views, off = [], 1
    for n in sizes:
        views.append(buf[off:off + n])
        off += n + 1 + (off % 3)  # varying misalignment
    return buf, views


def _roots_at(views: list[np.ndarray], heads: list[bytes], threads: int) -> list[bytes]:
    return commit.tensor_roots_at([v.ctypes.data for v in views], [v.nbytes for v in views],
                                  heads, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_tensor_roots_at_every_size_unaligned(backend, threads):
    backend("c")
    sizes = BATCH_SIZES + BATCH_SIZES[::-1]
    _buf, views = _buffers(sizes, 11)
    heads = [commit.header("uint8", [n]) for n in sizes]
    expected = _python_roots(views, heads)
    assert _roots_at(views, heads, threads) == expected
    # one tensor per call (repops_tensor_root) is the same computation
    assert [commit.tensor_root_from_bytes(v.tobytes(), "uint8", [v.nbytes]) for v in views] \
        == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tensor_roots_at_random_step_mix(backend, seed):
    """A step-like mix: many equal small tensors (full lanes), odd tails, a few big ones, in
    random order; past the threading threshold so 2 threads really split the work."""
    backend("c")
    rng = np.random.default_rng(seed)
    base = [2304] * 40 + [6144] * 12 + [768] * 9 + [4] * 7 + [32256] * 3 + [196_608] * 7 + [0]
    sizes = [int(x) for x in rng.permutation(base + list(rng.integers(0, 5000, 60)))]
    _buf, views = _buffers(sizes, seed)
    heads = [commit.header("uint8", [n]) for n in sizes]
    expected = _python_roots(views, heads)
    one, two = _roots_at(views, heads, 1), _roots_at(views, heads, 2)
    assert one == two == expected


@pytest.mark.parametrize("threads", [1, 2])
def test_constant_chunks_take_the_memo_leaf(backend, threads):
    """Full chunks of one repeated 32-bit word reuse the first such chunk's leaf
    (repops_keccak.c `const_chunks`): more distinct words than the memo holds, words that
    repeat only in 32 of 64 bits, a constant short last chunk, unaligned tensors, and chunks
    equal but for the last byte, all against the pycryptodome reference."""
    backend("c")
    words = [0x80000000, 0, 0xFF800000, 0x7FC00000, 0x3F800000, 0x12345678, 0x80000000]
    pieces = []
    for w in words:
        pieces.append(np.full(256 * 3 + 17, w, dtype=np.uint32).view(np.uint8))
    alt = np.tile(np.array([0x80000000, 0], dtype=np.uint32), 256 * 2).view(np.uint8)
    almost = np.full(256 * 2, 0x80000000, dtype=np.uint32).view(np.uint8).copy()
    almost[1023] ^= 1  # the first chunk differs in its last byte
    pieces += [alt, almost, np.full(100, 7, dtype=np.uint32).view(np.uint8)]
    buf = np.zeros(sum(p.nbytes + 3 for p in pieces) + 8, dtype=np.uint8)
    views, off = [], 1
    for p in pieces:
        buf[off:off + p.nbytes] = p
        views.append(buf[off:off + p.nbytes])
        off += p.nbytes + 1 + off % 3
    heads = [commit.header("uint8", [v.nbytes]) for v in views]
    assert _roots_at(views, heads, threads) == _python_roots(views, heads)


@pytest.mark.parametrize("threads", [1, 2])
def test_known_leaves_are_used_and_copied_out(backend, threads):
    """`tensor_roots_raw(known=...)`: a tensor's leading leaves given by the caller are not
    hashed (given wrong ones, the root follows them: that is how a skip shows), all its leaves
    come back where asked, and counts past the tensor's chunks are clamped."""
    backend("c")
    rng = np.random.default_rng(7)
    sizes = [5000, 1024, 3000, 0, 70_000, 2048]
    _buf, views = _buffers(sizes, 3)
    for v in views:
        v[:] = rng.integers(0, 256, v.nbytes, dtype=np.uint8)
    heads = [commit.header("uint8", [n]) for n in sizes]
    hbuf, hptr, hlen = commit.header_arrays(heads)
    ptrs = np.array([v.ctypes.data for v in views], dtype=np.uint64)
    lens = np.array(sizes, dtype=np.int64)
    leaves = [b"".join(commit.chunk_leaves(v.tobytes())) for v in views]
    have = [np.frombuffer(lv, dtype=np.uint8).copy() for lv in leaves]
    got = [np.zeros(len(lv), dtype=np.uint8) for lv in leaves]
    nknown = np.array([4, 1, 0, 1, 60, 99], dtype=np.int64)
    known = (np.array([h.ctypes.data for h in have], dtype=np.uint64), nknown,
             np.array([g.ctypes.data for g in got], dtype=np.uint64))
    want = commit.tensor_roots_raw(ptrs, lens, hptr, hlen, threads)
    assert commit.tensor_roots_raw(ptrs, lens, hptr, hlen, threads, known) == want
    assert [g.tobytes() for g in got] == leaves
    have[4][32 * 7] ^= 1  # a wrong known leaf is taken as given
    bad = commit.tensor_roots_raw(ptrs, lens, hptr, hlen, threads, known)
    assert bad[32 * 4:32 * 5] != want[32 * 4:32 * 5] and bad[:32 * 4] == want[:32 * 4]
    del hbuf


def test_tensor_roots_mixed_dtypes_and_shapes(backend):
    rng = np.random.default_rng(5)
    arrays = []
    for shape in [(576,), (1, 576), (3, 0, 4), (49152,), (256, 192), (1, 1, 1, 257), (), (2, 3)]:
        for dtype in ["float32", "int32", "int64", "uint8"]:
            arrays.append((rng.standard_normal(shape) * 1000).astype(dtype))
    arrays.append(np.asfortranarray(rng.standard_normal((37, 41)).astype(np.float32)))
    arrays.append(np.arange(300, dtype=np.int64)[::3])  # strided
    arrays.append(np.arange(300, dtype=np.dtype(">i4")))  # big-endian
    backend("python")
    expected = [commit.tensor_root_np(a) for a in arrays]
    assert commit.tensor_roots(arrays) == expected
    backend("c")
    assert commit.tensor_roots(arrays, threads=1) == expected
    assert commit.tensor_roots(arrays, threads=2) == expected
    assert [commit.tensor_root_np(a) for a in arrays] == expected
    assert commit.tensor_roots([]) == []
    with pytest.raises(TypeError):
        commit.tensor_roots([np.zeros(3, dtype=np.float16)])


def test_tensor_roots_at_python_fallback_reads_the_same_memory(backend):
    sizes = [0, 5, 1025, 3000]
    _buf, views = _buffers(sizes, 3)
    heads = [commit.header("uint8", [n]) for n in sizes]
    fast, slow = both(backend, _roots_at, views, heads, 1)
    assert fast == slow == _python_roots(views, heads)
    with pytest.raises(ValueError):
        commit.tensor_roots_at([views[0].ctypes.data], [1, 2], heads[:1])


def test_trees_past_the_threading_threshold(backend, monkeypatch):
    """C3/C5 over 20,000 leaves (levels of ≥ 8192 hashes are split over threads): same bytes
    at 1 and 2 threads and on pycryptodome."""
    rng = np.random.default_rng(9)
    n = 20_001
    raw = rng.integers(0, 256, 32 * n, dtype=np.uint8).tobytes()
    leaves = [raw[32 * i:32 * i + 32] for i in range(n)]
    ops = leaves[::-1]
    backend("c")
    results = []
    for threads in ["1", "2"]:
        monkeypatch.setenv("REPOPS_CPU_THREADS", threads)
        results.append((commit.merkle_levels(leaves), commit.merkle_root(leaves),
                        commit.trace_leaves(ops, leaves), commit.trace_root(ops, leaves)))
    assert results[0] == results[1]
    levels, root, tleaves, troot = results[0]
    assert levels[-1][0] == root
    backend("python")
    assert commit.merkle_root(leaves) == root
    assert commit.trace_root(ops, leaves) == troot
    assert commit.trace_leaves(ops[:300], leaves[:300]) == tleaves[:300]


def _compile_variant(tmp_path: Path, name: str, flags: list[str]):  # noqa: ANN202 - ctypes lib
    import ctypes
    import shutil

    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler {cc!r}")
    src = ROOT / "repops" / "cpu" / "csrc" / "repops_keccak.c"
    out = tmp_path / f"keccak-{name}.so"
    proc = subprocess.run([cc, "-O2", "-fPIC", "-shared", "-fopenmp", "-std=gnu11", *flags,
                           str(src), "-o", str(out)], capture_output=True, text=True)
    if proc.returncode != 0 and "-march" in " ".join(flags):
        pytest.skip(f"{cc} cannot target {flags}: {proc.stderr[-200:]}")
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(out))
    P, I64, N = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.repops_tensor_roots.argtypes = [I64, P, P, P, P, P, N]
    lib.repops_trace_root.argtypes = [P, P, I64, P, N]
    return lib


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}


_X86 = os.uname().machine == "x86_64"


@pytest.mark.parametrize("name,flags,needs", [
    ("scalar-batches", ["-march=native", "-DREPOPS_KECCAK_NO_VECTOR"], None),
    ("baseline-isa", ["-march=x86-64"] if _X86 else [], None),
    ("avx2-4-lanes", ["-march=haswell"], "avx2"),
    ("avx512-8-lanes", ["-march=skylake-avx512"], "avx512f"),
])
def test_digests_do_not_depend_on_isa_or_lanes(tmp_path, name, flags, needs):
    """The same source built with the 4-lane AVX2 permutation, the 8-lane AVX-512 one or none
    (scalar sponge per message) gives the bytes of the Python reference: each lane is one
    message's own sponge, so lane count and ISA must not show in a digest."""
    import ctypes

    if needs and not (_X86 and needs in _cpu_flags()):
        pytest.skip(f"this CPU has no {needs}")
    lib = _compile_variant(tmp_path, name, flags)
    sizes = BATCH_SIZES + [2304] * 17 + [6144] * 9
    _buf, views = _buffers(sizes, 21)
    heads = [commit.header("uint8", [n]) for n in sizes]
    n = len(sizes)
    ptrs = np.array([v.ctypes.data for v in views], dtype=np.uint64)
    lens = np.array(sizes, dtype=np.int64)
    hb = np.frombuffer(b"".join(heads), dtype=np.uint8)
    hl = np.array([len(h) for h in heads], dtype=np.int64)
    hp = (np.cumsum(hl) - hl).astype(np.uint64) + np.uint64(hb.ctypes.data)
    for threads in (1, 2):
        out = ctypes.create_string_buffer(32 * n)
        lib.repops_tensor_roots(n, ptrs.ctypes.data, lens.ctypes.data, hp.ctypes.data,
                                hl.ctypes.data, out, threads)
        assert [out.raw[32 * i:32 * i + 32] for i in range(n)] == _python_roots(views, heads)
    roots = b"".join(_python_roots(views, heads))
    out = ctypes.create_string_buffer(32)
    lib.repops_trace_root(roots, roots, n, out, 1)
    saved = commit.set_backend("python")
    try:
        expected = commit.trace_root(commit._split32(roots), commit._split32(roots))
    finally:
        commit.set_backend(saved)
    assert out.raw == expected


@pytest.mark.parametrize("n", [1, 2, 5, 4095, 4096, 4097, 8192, 3 * 4096 + 17, 5 * 5569])
@pytest.mark.parametrize("path", ["c", "python"])
def test_trace_root_accumulator_equals_trace_root(backend, n, path):
    """C5 root of leaves fed step by step (blocks hashed as they complete, the partial block
    and the levels above padded with ZERO subtrees) equals the one-call root, for every
    leaf count around the block size and for steps that straddle blocks."""
    rng = np.random.default_rng(n)
    p = 5569 if n > 5569 else max(1, n // 2)
    ops = [rng.bytes(32) for _ in range(p)]
    roots = [rng.bytes(32) for _ in range(n)]
    backend(path)
    acc = commit.TraceRootAccumulator(ops)
    for a in range(0, n, p):
        acc.extend(b"".join(roots[a:a + p]))
    assert len(acc) == n
    got = acc.root()
    backend("c")
    assert got == commit.trace_root([ops[i % p] for i in range(n)], roots)
