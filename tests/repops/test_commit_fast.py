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
