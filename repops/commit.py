"""Tensor roots and trace roots: the byte-exact commitments of docs/commitments.md.

These bytes are what the contracts check, so every rule here cites its section (C1..C5) and
nothing else in the code base may re-derive them.

Two paths compute the same bytes. The bulk work (chunk leaves, tensor data roots, Merkle levels,
trace roots) goes to the C keccak of `repops/cpu/csrc/repops_keccak.c` in one call per tensor or
tree, because one Python keccak call per 1 KiB chunk made committing a trace cost more than
computing it; the C side hashes eight equal-length messages at once (AVX-512), and
`tensor_roots` / `tensor_roots_at` commit a whole step's tensors in one call so that the eight
lanes fill across tensors (a decode step is ~4,600 tensors of mostly 2-6 KiB). pycryptodome's
keccak is the fallback where the C library cannot be built (no C compiler) and the reference
the tests hold the C path to. The library is loaded on the first bulk call, never at import:
importing this module stays cheap and needs neither torch nor a compiler.
`REPOPS_COMMIT_BACKEND=python` forces the fallback.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from Crypto.Hash import keccak as _keccak

CHUNK_BYTES = 1024  # C2
_LITTLE = sys.byteorder == "little"
ZERO = b"\x00" * 32  # C3 padding

# C1: dtype codes
DTYPE_CODES: dict[str, int] = {"float32": 1, "int32": 2, "int64": 3, "uint8": 4}


# ---------------------------------------------------------------------------------------------
# Backend selection: the C library (loaded lazily) or pycryptodome.

_BACKENDS = ("auto", "c", "python")
_backend_lock = threading.Lock()
_backend = os.environ.get("REPOPS_COMMIT_BACKEND", "auto")
_lib: ctypes.CDLL | None = None  # set once the C library is loaded and declared
_lib_error: str | None = None  # why the C library is unavailable, once that is known


def _declare(lib: ctypes.CDLL) -> None:
    P, I64, N = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    sig = {
        "repops_keccak256": [P, I64, P],
        "repops_chunk_leaves": [P, I64, P, N],
        "repops_merkle_root": [P, I64, P, N],
        "repops_merkle_levels": [P, I64, P, N],
        "repops_tensor_data_root": [P, I64, P],
        "repops_tensor_root": [P, I64, P, I64, P, N],
        "repops_tensor_roots": [I64, P, P, P, P, P, N],
        "repops_tensor_roots_known": [I64, P, P, P, P, P, P, P, P, N],
        "repops_trace_leaves": [P, P, I64, P, N],
        "repops_trace_leaves_at": [I64, P, P, I64, P, N],
        "repops_trace_root": [P, P, I64, P, N],
    }
    for name, args in sig.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = None


def _native() -> ctypes.CDLL | None:
    """The C library, built and loaded on first use; None on the pycryptodome path."""
    global _lib, _lib_error
    if _lib is not None or _backend == "python":
        return None if _backend == "python" else _lib
    with _backend_lock:
        if _lib is None and _lib_error is None:
            try:
                from repops.cpu.build import load  # stdlib only, no torch

                lib = load()
                _declare(lib)
                _lib = lib
            except (ImportError, OSError, AttributeError, RuntimeError) as e:  # BuildError too
                _lib_error = str(e)
                if _backend == "c":
                    raise
    return _lib


def set_backend(name: str) -> str:
    """Pick "c", "python" or "auto" (C when it builds); returns the previous choice. For tests
    and benchmarks: both paths give the same bytes."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"commit backend must be one of {_BACKENDS}, not {name!r}")
    previous, _backend = _backend, name
    if name == "c" and _native() is None:
        _backend = previous
        raise RuntimeError(f"commit backend 'c' unavailable: {_lib_error}")
    return previous


def backend() -> str:
    """The path bulk hashing takes now: "c" or "python"."""
    return "c" if _native() is not None else "python"


def _threads() -> int:
    env = os.environ.get("REPOPS_CPU_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _split32(raw: bytes) -> list[bytes]:
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def _joined32(nodes: Sequence[bytes]) -> bytes | None:
    """The nodes back to back, or None if one is not 32 bytes (the Python path then handles
    them exactly as before)."""
    if all(len(x) == 32 for x in nodes):
        return b"".join(nodes)
    return None


# ---------------------------------------------------------------------------------------------


def keccak256(data: bytes) -> bytes:
    """Ethereum keccak256. Single small hashes stay on pycryptodome until the C library is
    loaded by a bulk call: a one-off hash must not wait for a compiler."""
    lib = _lib if _backend != "python" else None
    if lib is not None and isinstance(data, bytes):
        out = ctypes.create_string_buffer(32)
        lib.repops_keccak256(data, len(data), out)
        return out.raw
    h = _keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def canonical_bytes(array: np.ndarray) -> bytes:
    """C1: row-major little-endian bytes; refuses dtypes that have no code."""
    name = array.dtype.name
    if name not in DTYPE_CODES:
        raise TypeError(f"tensor_root: dtype {name} has no commitment code (C1)")
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def chunk_leaves(data: bytes) -> list[bytes]:
    """C2 + C3 leaf hashing: 1 KiB chunks, the last one short, at least one chunk."""
    n = max(1, -(-len(data) // CHUNK_BYTES))
    lib = _native()
    if lib is not None:
        data = bytes(data)
        out = ctypes.create_string_buffer(32 * n)
        lib.repops_chunk_leaves(data, len(data), out, _threads())
        return _split32(out.raw)
    return [keccak256(b"\x00" + data[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES]) for i in range(n)]


def _padded(leaves: Sequence[bytes]) -> list[bytes]:
    if not leaves:
        raise ValueError("merkle tree needs at least one leaf")
    p = 1
    while p < len(leaves):
        p *= 2
    return list(leaves) + [ZERO] * (p - len(leaves))


def merkle_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """All levels of the C3 tree, bottom (padded leaves) first, root last.

    Kept whole because the dispute game asks for nodes at arbitrary depths.
    """
    lib = _native() if len(leaves) > 1 else None
    joined = _joined32(leaves) if lib is not None else None
    if joined is not None:
        p = 1 << (len(leaves) - 1).bit_length()
        out = ctypes.create_string_buffer(32 * (2 * p - 1))
        lib.repops_merkle_levels(joined, len(leaves), out, _threads())
        nodes = _split32(out.raw)
        levels, start = [], 0
        while p >= 1:
            levels.append(nodes[start : start + p])
            start += p
            p //= 2
        return levels
    level = _padded(leaves)
    levels = [level]
    while len(level) > 1:
        level = [
            keccak256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level), 2)
        ]
        levels.append(level)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """C3 root."""
    lib = _native() if len(leaves) > 1 else None
    joined = _joined32(leaves) if lib is not None else None
    if joined is not None:
        return merkle_root_joined(joined)
    return merkle_levels(leaves)[-1][0]


def merkle_root_joined(joined: bytes) -> bytes:
    """C3 root of leaves given back to back, 32 bytes each: no object per leaf (the trace's
    4,096-leaf blocks, `TraceRootAccumulator`)."""
    n = len(joined) // 32
    lib = _native() if n > 1 else None
    if lib is None or len(joined) % 32:
        return merkle_root(_split32(joined))
    out = ctypes.create_string_buffer(32)
    lib.repops_merkle_root(joined, n, out, _threads())
    return out.raw


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Siblings bottom-up for leaf `index` (C3)."""
    levels = merkle_levels(leaves)
    if not 0 <= index < len(levels[0]):
        raise IndexError(f"leaf {index} outside tree of {len(levels[0])}")
    proof = []
    for level in levels[:-1]:
        proof.append(level[index ^ 1])
        index //= 2
    return proof


def verify_proof(leaf: bytes, index: int, proof: Sequence[bytes], root: bytes) -> bool:
    node = leaf
    for sibling in proof:
        pair = sibling + node if index & 1 else node + sibling
        node = keccak256(b"\x01" + pair)
        index //= 2
    return node == root


def header(dtype: str, shape: Sequence[int]) -> bytes:
    """C4 header bytes: tag, dtype code, ndim, big-endian uint32 dims."""
    if len(shape) > 255:
        raise ValueError("tensor_root: more than 255 dimensions")
    out = bytes([0x02, DTYPE_CODES[dtype], len(shape)])
    for d in shape:
        if not 0 <= d < 2**32:
            raise ValueError(f"tensor_root: dimension {d} does not fit uint32")
        out += int(d).to_bytes(4, "big")
    return out


def tensor_root_from_bytes(data: bytes, dtype: str, shape: Sequence[int]) -> bytes:
    """C4 from canonical bytes (C1): one C call for chunks, tree and header when available."""
    head = header(dtype, shape)
    lib = _native()
    if lib is not None:
        data = bytes(data)
        out = ctypes.create_string_buffer(32)
        lib.repops_tensor_root(head, len(head), data, len(data), out, _threads())
        return out.raw
    return keccak256(head + merkle_root(chunk_leaves(data)))


def tensor_root_np(array: np.ndarray) -> bytes:
    """C4 for a NumPy array."""
    return tensor_root_from_bytes(canonical_bytes(array), array.dtype.name, array.shape)


def tensor_root(t) -> bytes:  # noqa: ANN001 - accepts torch tensors and numpy arrays
    """C4 for a torch tensor (any device) or a NumPy array."""
    if isinstance(t, np.ndarray):
        return tensor_root_np(t)
    return tensor_root_np(t.detach().to("cpu").contiguous().numpy())


def tensor_roots_at(ptrs: Sequence[int], nbytes: Sequence[int], headers: Sequence[bytes],
                    threads: int | None = None) -> list[bytes]:
    """C4 roots of tensors already in host memory as their C1 bytes: tensor i is the `nbytes[i]`
    bytes at address `ptrs[i]` (little-endian, row-major) and `headers[i]` its `header(dtype,
    shape)`. One C call for all of them, because a decode step's ~4,600 small tensors committed
    one call each cost ~90 ms of mostly per-call and half-empty-batch overhead. The caller keeps
    the memory alive and unchanged for the call; `threads` defaults to REPOPS_CPU_THREADS or the
    CPUs this process may use (the C side only splits work worth it)."""
    n = len(ptrs)
    if len(nbytes) != n or len(headers) != n:
        raise ValueError("tensor_roots_at: one length and one header per pointer")
    if n == 0:
        return []
    lib = _native()
    if lib is None:
        return [keccak256(h + merkle_root(chunk_leaves(ctypes.string_at(p, m) if m else b"")))
                for p, m, h in zip(ptrs, nbytes, headers, strict=True)]
    _h_buf, h_ptr, h_len = header_arrays(headers)  # _h_buf holds the bytes for the call
    return _split32(tensor_roots_raw(np.array(ptrs, dtype=np.uint64),
                                     np.array(nbytes, dtype=np.int64), h_ptr, h_len, threads))


def header_arrays(headers: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Headers as (one buffer, each header's address in it, each length) for
    `tensor_roots_raw`; the caller keeps the buffer alive for the call."""
    h_len = np.fromiter(map(len, headers), dtype=np.int64, count=len(headers))
    h_buf = np.frombuffer(b"".join(headers) + b"\0", dtype=np.uint8)  # + 1: never empty
    h_ptr = (np.cumsum(h_len) - h_len).astype(np.uint64) + np.uint64(h_buf.ctypes.data)
    return h_buf, h_ptr, h_len


def tensor_roots_raw(ptrs: np.ndarray, nbytes: np.ndarray, hptrs: np.ndarray,
                     hlens: np.ndarray, threads: int | None = None,
                     known: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> bytes:
    """`tensor_roots_at` on arrays (addresses, sizes, header addresses, header lengths), the
    32-byte roots back to back: a step plan's arena gives all four without a Python object
    per tensor (node/ree/step_plan.py). Needs the native library.

    `known`: per tensor the address of C2 leaves the caller already has (0: none), how many
    leading chunks they cover, and an address to copy all the tensor's leaves to (0: none):
    a KV cache grown by appending keeps its full chunks, so their leaves need no hashing."""
    lib = _native()
    if lib is None:
        raise RuntimeError("tensor_roots_raw needs the native keccak library")
    n = len(ptrs)
    p = np.ascontiguousarray(ptrs, dtype=np.uint64)
    m = np.ascontiguousarray(nbytes, dtype=np.int64)
    hp = np.ascontiguousarray(hptrs, dtype=np.uint64)
    hl = np.ascontiguousarray(hlens, dtype=np.int64)
    if not len(m) == len(hp) == len(hl) == n:
        raise ValueError("tensor_roots_raw: one size and one header per address")
    out = ctypes.create_string_buffer(32 * n)
    th = _threads() if threads is None else threads
    if n and known is None:
        lib.repops_tensor_roots(n, p.ctypes.data, m.ctypes.data, hp.ctypes.data, hl.ctypes.data,
                                out, th)
    elif n:
        kp, kn, ko = (np.ascontiguousarray(a, dtype=t) for a, t in
                      zip(known, (np.uint64, np.int64, np.uint64), strict=True))
        if not len(kp) == len(kn) == len(ko) == n:
            raise ValueError("tensor_roots_raw: one known-leaves entry per address")
        lib.repops_tensor_roots_known(n, p.ctypes.data, m.ctypes.data, hp.ctypes.data,
                                      hl.ctypes.data, kp.ctypes.data, kn.ctypes.data,
                                      ko.ctypes.data, out, th)
    return out.raw


def tensor_roots(arrays: Sequence[np.ndarray], threads: int | None = None) -> list[bytes]:
    """C4 roots of many NumPy arrays in one C call (see `tensor_roots_at`): arrays that are not
    already their C1 bytes (non-contiguous, big-endian) are copied to them first."""
    if _native() is None:
        return [tensor_root_np(a) for a in arrays]
    arrays = [np.asarray(a) for a in arrays]  # NumPy scalars too, as tensor_root_np takes them
    keep = [canonical_bytes(a) if _needs_copy(a) else a for a in arrays]  # alive for the call
    ptrs = [np.frombuffer(k, np.uint8).ctypes.data if isinstance(k, bytes) else k.ctypes.data
            for k in keep]
    sizes = [len(k) if isinstance(k, bytes) else k.nbytes for k in keep]
    heads = [header(a.dtype.name, a.shape) for a in arrays]
    return tensor_roots_at(ptrs, sizes, heads, threads)


def _needs_copy(array: np.ndarray) -> bool:
    """Whether the array's memory differs from its C1 bytes (raises for dtypes without a code,
    like `canonical_bytes`)."""
    if array.dtype.name not in DTYPE_CODES:
        raise TypeError(f"tensor_root: dtype {array.dtype.name} has no commitment code (C1)")
    little = array.dtype.byteorder == "<" or (array.dtype.byteorder == "=" and _LITTLE) \
        or array.dtype.itemsize == 1
    return not (little and array.flags.c_contiguous)


def tokens_bytes(tokens: Sequence[int]) -> bytes:
    """C6: uint32 big-endian per token (the job input/output bytes the contracts hash)."""
    out = bytearray()
    for t in tokens:
        if not 0 <= int(t) < 2**32:
            raise ValueError(f"token id {t} does not fit uint32 (C6)")
        out += int(t).to_bytes(4, "big")
    return bytes(out)


def tokens_hash(tokens: Sequence[int]) -> bytes:
    """C6: input_hash / output_hash."""
    return keccak256(tokens_bytes(tokens))


def trace_leaf(index: int, op_hash: bytes, output_root: bytes) -> bytes:
    """C5."""
    if len(op_hash) != 32 or len(output_root) != 32:
        raise ValueError("trace_leaf: op_hash and output_root must be 32 bytes")
    return keccak256(b"\x03" + int(index).to_bytes(4, "big") + op_hash + output_root)


def trace_leaves(op_hashes: Sequence[bytes], output_roots: Sequence[bytes]) -> list[bytes]:
    """C5 leaves 0..n-1 in one call (what the dispute game and p2p proofs tree up)."""
    if len(op_hashes) != len(output_roots):
        raise ValueError("trace_leaves: one op hash per output root")
    lib = _native() if op_hashes else None
    if lib is not None:
        ops, roots = _joined32(op_hashes), _joined32(output_roots)
        if ops is None or roots is None:
            raise ValueError("trace_leaf: op_hash and output_root must be 32 bytes")
        out = ctypes.create_string_buffer(32 * len(op_hashes))
        lib.repops_trace_leaves(ops, roots, len(op_hashes), out, _threads())
        return _split32(out.raw)
    pairs = zip(op_hashes, output_roots, strict=True)
    return [trace_leaf(i, o, r) for i, (o, r) in enumerate(pairs)]


class TraceRootAccumulator:
    """The C5 root of a trace whose leaves arrive in order, step by step, hashed as they come:
    the C5 leaves at once, and every complete aligned block of BLOCK leaves to its subtree root
    (C3 pads the leaf list with ZERO to a power of two, so an aligned block is a subtree of the
    final tree, and an all-padding subtree of height h is `zero_subtree(h)`). `root()` then only
    finishes the last partial block and the ~log2(n / BLOCK) levels above the blocks.

    Why: a 33-step SmolLM2 trace has ~184,000 leaves; its root in one call at the end cost
    ~45 ms on this 2-core machine and ~50 ms on the H200's host, ~1.5 ms a token of trace
    overhead, serial after the last step. Fed from the recorder's hashing thread, the same
    work overlaps the steps. Equal to `trace_root` for every n
    (tests/repops/test_commit_fast.py)."""

    BLOCK = 4096

    def __init__(self, op_hashes: Sequence[bytes]) -> None:
        self._ops = b"".join(op_hashes)
        if not self._ops or len(self._ops) != 32 * len(op_hashes):
            raise ValueError("TraceRootAccumulator: one or more 32-byte op hashes")
        self._p = len(op_hashes)
        self._n = 0  # leaves so far
        self._pending = bytearray()  # C5 leaves of the unfinished block
        self._blocks: list[bytes] = []  # roots of the complete blocks

    def __len__(self) -> int:
        return self._n

    def _op_bytes(self, first: int, n: int) -> bytes:
        """Op hashes of leaves first .. first + n - 1 (leaf i is op i mod P)."""
        a = first % self._p
        ops = self._ops[32 * a:] + self._ops * ((n + a) // self._p + 1)
        return ops[:32 * n]

    def extend(self, roots: bytes) -> None:
        """The next output roots (32 bytes each, joined), in leaf order."""
        n = len(roots) // 32
        if len(roots) % 32:
            raise ValueError("TraceRootAccumulator: output roots are 32 bytes each")
        if not n:
            return
        lib = _native()
        ops = self._op_bytes(self._n, n)
        if lib is None:
            leaves = b"".join(trace_leaf(self._n + i, ops[32 * i:32 * i + 32],
                                         roots[32 * i:32 * i + 32]) for i in range(n))
        else:
            out = ctypes.create_string_buffer(32 * n)
            lib.repops_trace_leaves_at(self._n, ops, roots, n, out, 1)
            leaves = out.raw
        self._n += n
        self._pending += leaves
        full = 32 * self.BLOCK
        while len(self._pending) >= full:
            self._blocks.append(merkle_root_joined(bytes(self._pending[:full])))
            del self._pending[:full]

    def root(self) -> bytes:
        """C5: the Merkle root over every leaf so far."""
        if self._n == 0:
            raise ValueError("merkle tree needs at least one leaf")
        rest = _split32(bytes(self._pending))
        if not self._blocks:  # fewer than BLOCK leaves: the tree is below one block
            return merkle_root(rest)
        nodes = list(self._blocks)
        if rest:  # the partial block, padded to a whole block's subtree
            sub, h = merkle_root(rest), (len(rest) - 1).bit_length()
            while (1 << h) < self.BLOCK:
                sub = keccak256(b"\x01" + sub + zero_subtree(h))
                h += 1
            nodes.append(sub)
        h = self.BLOCK.bit_length() - 1
        while len(nodes) > 1:
            if len(nodes) % 2:
                nodes.append(zero_subtree(h))
            nodes = [keccak256(b"\x01" + nodes[i] + nodes[i + 1])
                     for i in range(0, len(nodes), 2)]
            h += 1
        return nodes[0]


_ZERO_SUBTREES = [ZERO]


def zero_subtree(height: int) -> bytes:
    """C3 root of 2^height ZERO padding leaves."""
    while len(_ZERO_SUBTREES) <= height:
        z = _ZERO_SUBTREES[-1]
        _ZERO_SUBTREES.append(keccak256(b"\x01" + z + z))
    return _ZERO_SUBTREES[height]


def trace_root(op_hashes: Sequence[bytes], output_roots: Sequence[bytes]) -> bytes:
    """C5: Merkle root over the trace leaves in execution order."""
    if len(op_hashes) != len(output_roots):
        raise ValueError("trace_root: one op hash per output root")
    lib = _native() if op_hashes else None
    if lib is not None:
        ops, roots = _joined32(op_hashes), _joined32(output_roots)
        if ops is None or roots is None:
            raise ValueError("trace_leaf: op_hash and output_root must be 32 bytes")
        out = ctypes.create_string_buffer(32)
        lib.repops_trace_root(ops, roots, len(op_hashes), out, _threads())
        return out.raw
    pairs = zip(op_hashes, output_roots, strict=True)
    return merkle_root([trace_leaf(i, o, r) for i, (o, r) in enumerate(pairs)])


# ---------------------------------------------------------------------------------------------
# Published test vectors (tests/vectors/commitments.json) for the Solidity side.


def _vector_tensors() -> list[np.ndarray]:
    rng = np.random.default_rng(20261122)
    return [
        np.zeros((0,), dtype=np.float32),
        np.array([1.0], dtype=np.float32),
        np.array([-0.0, np.inf, -np.inf, np.float32(1e-45)], dtype=np.float32),
        rng.standard_normal((3, 5), dtype=np.float32),
        rng.standard_normal((256,), dtype=np.float32),  # exactly one chunk
        rng.standard_normal((257,), dtype=np.float32),  # two chunks, second short
        rng.standard_normal((4, 576), dtype=np.float32),  # 9 chunks -> padded to 16
        np.arange(7, dtype=np.int32),
        np.arange(-3, 3, dtype=np.int64).reshape(2, 3),
        np.arange(5, dtype=np.uint8),
    ]


def build_vectors() -> dict:
    tensors = []
    for arr in _vector_tensors():
        data = canonical_bytes(arr)
        leaves = chunk_leaves(data)
        tensors.append(
            {
                "dtype": arr.dtype.name,
                "shape": list(arr.shape),
                "data_hex": data.hex(),
                "chunk_leaves": ["0x" + x.hex() for x in leaves],
                "data_root": "0x" + merkle_root(leaves).hex(),
                "tensor_root": "0x" + tensor_root_np(arr).hex(),
            }
        )
    op_hashes = [keccak256(f"op{i}".encode()) for i in range(5)]
    out_roots = [tensor_root_np(a) for a in _vector_tensors()[:5]]
    pairs = zip(op_hashes, out_roots, strict=True)
    leaves = [trace_leaf(i, o, r) for i, (o, r) in enumerate(pairs)]
    proofs = [["0x" + s.hex() for s in merkle_proof(leaves, i)] for i in range(len(leaves))]
    return {
        "spec": "docs/commitments.md v1",
        "chunk_bytes": CHUNK_BYTES,
        "tensors": tensors,
        "trace": {
            "op_hashes": ["0x" + x.hex() for x in op_hashes],
            "output_roots": ["0x" + x.hex() for x in out_roots],
            "leaves": ["0x" + x.hex() for x in leaves],
            "proofs": proofs,
            "root": "0x" + trace_root(op_hashes, out_roots).hex(),
        },
    }


VECTORS_PATH = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "commitments.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Commitment test vectors (docs/commitments.md)")
    parser.add_argument("--write-vectors", action="store_true", help=f"write {VECTORS_PATH}")
    args = parser.parse_args(argv)
    vectors = build_vectors()
    if args.write_vectors:
        VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
        VECTORS_PATH.write_text(json.dumps(vectors, indent=1) + "\n")
        print(f"wrote {VECTORS_PATH}")
    else:
        print(json.dumps(vectors, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
