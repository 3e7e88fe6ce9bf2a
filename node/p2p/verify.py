"""Check every datum received over p2p against a root the chain holds (PROTOCOL.md §5).

p2p only moves data; the chain is the source of truth. A trace root and a trace length come
from the executor's on-chain commitment, a tensor root from a trace leaf that was itself
checked. Responses carry a *range proof*: the siblings needed to hash a contiguous run of
nodes up to the root of a commitments C3 tree, so a run of n nodes costs about 2·log2(P)
hashes of proof instead of n·log2(P).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from repops.commit import CHUNK_BYTES, chunk_leaves, header, keccak256, merkle_levels, trace_leaf

from .messages import (
    OpRootsResponse,
    TensorChunksResponse,
    TensorNodeResponse,
    TraceNodeResponse,
)


class VerificationError(Exception):
    """Data from a peer does not hash to the committed root: the peer is wrong or lying."""


def padded_size(n_leaves: int) -> int:
    """commitments C3: leaves padded with ZERO up to the next power of two (at least 1)."""
    p = 1
    while p < n_leaves:
        p *= 2
    return p


def depth_of(n_leaves: int) -> int:
    return padded_size(n_leaves).bit_length() - 1


def real_nodes_at(n_leaves: int, level: int) -> int:
    """How many nodes at `level` cover at least one real (unpadded) leaf."""
    return max(1, -(-max(n_leaves, 1) // (1 << level)))


def range_proof(levels: Sequence[Sequence[bytes]], level: int, lo: int, hi: int) -> list[bytes]:
    """Siblings that, with nodes [lo, hi) of `level`, rebuild the root (commitments C3).

    Walking up, a run that starts on a right child needs its left sibling and a run that ends
    on a left child needs its right sibling; the proof lists them level by level, left first.
    """
    if not 0 <= lo < hi <= len(levels[level]):
        raise IndexError(f"range [{lo}, {hi}) outside level {level} of {len(levels[level])}")
    proof: list[bytes] = []
    for nodes in levels[level:-1]:
        if lo & 1:
            proof.append(nodes[lo - 1])
            lo -= 1
        if hi & 1:
            proof.append(nodes[hi])
            hi += 1
        lo //= 2
        hi //= 2
    return proof


def root_from_range(
    nodes: Sequence[bytes], level: int, lo: int, depth: int, proof: Sequence[bytes]
) -> bytes:
    """Inverse of `range_proof`: hash nodes [lo, lo+len) of `level` up to the root."""
    if not nodes:
        raise VerificationError("empty range")
    if not 0 <= level <= depth:
        raise VerificationError(f"level {level} outside a tree of depth {depth}")
    cur = list(nodes)
    hi = lo + len(cur)
    if hi > 1 << (depth - level):
        raise VerificationError(f"range [{lo}, {hi}) outside level {level}")
    siblings = iter(proof)
    try:
        for _ in range(level, depth):
            if lo & 1:
                cur.insert(0, next(siblings))
                lo -= 1
            if hi & 1:
                cur.append(next(siblings))
                hi += 1
            cur = [keccak256(b"\x01" + cur[i] + cur[i + 1]) for i in range(0, len(cur), 2)]
            lo //= 2
            hi //= 2
    except StopIteration:
        raise VerificationError("range proof too short") from None
    if next(siblings, None) is not None:
        raise VerificationError("range proof too long")
    return cur[0]


def _check_range(start: int, count: int, available: int, what: str) -> None:
    if start + count > available:
        raise VerificationError(f"{what} [{start}, {start + count}) beyond the {available}")


def verify_op_roots(resp: OpRootsResponse, trace_root: bytes, trace_length: int) -> None:
    """commitments C5: the (op_hash, output_root) pairs are leaves of the committed trace."""
    if resp.length != trace_length:
        raise VerificationError(f"peer claims {resp.length} ops, the chain says {trace_length}")
    _check_range(resp.start, len(resp.op_hashes), trace_length, "ops")
    leaves = [
        trace_leaf(resp.start + k, h, r)
        for k, (h, r) in enumerate(zip(resp.op_hashes, resp.output_roots, strict=True))
    ]
    if root_from_range(leaves, 0, resp.start, depth_of(trace_length), resp.proof) != trace_root:
        raise VerificationError("op roots do not hash to the committed trace root")


def verify_trace_nodes(resp: TraceNodeResponse, trace_root: bytes, trace_length: int) -> None:
    """commitments C3/C5: nodes of the committed trace tree at one level."""
    if resp.length != trace_length:
        raise VerificationError(f"peer claims {resp.length} ops, the chain says {trace_length}")
    _check_range(resp.start, len(resp.nodes), real_nodes_at(trace_length, resp.level), "nodes")
    depth = depth_of(trace_length)
    if root_from_range(resp.nodes, resp.level, resp.start, depth, resp.proof) != trace_root:
        raise VerificationError("trace nodes do not hash to the committed trace root")


def _n_chunks(dtype: str, shape: Sequence[int]) -> tuple[int, int]:
    """commitments C1/C2: byte length of the canonical bytes and the chunk count."""
    n_bytes = np.dtype(dtype).itemsize
    for d in shape:
        n_bytes *= d
    return max(1, -(-n_bytes // CHUNK_BYTES)), n_bytes


def _tensor_root(dtype: str, shape: Sequence[int], data_root: bytes) -> bytes:
    """commitments C4: the header binds dtype and shape to the chunk tree's root."""
    return keccak256(header(dtype, shape) + data_root)


def verify_tensor_chunks(resp: TensorChunksResponse, tensor_root: bytes) -> None:
    """commitments C2-C4: chunks have the right sizes and hash to the tensor root."""
    n_chunks, n_bytes = _n_chunks(resp.dtype, resp.shape)
    _check_range(resp.start, len(resp.chunks), n_chunks, "chunks")
    for k, chunk in enumerate(resp.chunks):
        i = resp.start + k
        want = min(CHUNK_BYTES, n_bytes - i * CHUNK_BYTES)
        if len(chunk) != want:
            raise VerificationError(f"chunk {i} has {len(chunk)} bytes, C2 says {want}")
    leaves = [chunk_leaves(c)[0] for c in resp.chunks]
    data_root = root_from_range(leaves, 0, resp.start, depth_of(n_chunks), resp.proof)
    if _tensor_root(resp.dtype, resp.shape, data_root) != tensor_root:
        raise VerificationError("chunks do not hash to the committed tensor root")


def verify_tensor_nodes(resp: TensorNodeResponse, tensor_root: bytes) -> None:
    """commitments C3/C4: nodes of a tensor's chunk tree at one level."""
    n_chunks, _ = _n_chunks(resp.dtype, resp.shape)
    _check_range(resp.start, len(resp.nodes), real_nodes_at(n_chunks, resp.level), "nodes")
    data_root = root_from_range(resp.nodes, resp.level, resp.start, depth_of(n_chunks), resp.proof)
    if _tensor_root(resp.dtype, resp.shape, data_root) != tensor_root:
        raise VerificationError("tensor nodes do not hash to the committed tensor root")


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The full C3 tree, re-exported so servers and tests use the one implementation."""
    return merkle_levels(leaves)
