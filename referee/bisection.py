"""Off-chain k-ary dissection for both parties (DESIGN §6, commitments C3): over two trace trees
to the first differing leaf, then over the two output tensors' chunk trees to the first
differing chunk, then to the first differing element.

Both sides run the same descent: at a node whose subtree has `height` levels below it, the
defender reveals its 2^b descendants b levels down (b = min(bits, height)); the challenger
compares with its own and descends into the first child that differs, so every node left of it
is agreed. The functions return every round's reveal so a node can replay them as moves, and
the first differing index, which is what the one-step then disputes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from repops.commit import CHUNK_BYTES, ZERO, canonical_bytes, chunk_leaves, keccak256, merkle_levels

DEFAULT_BITS = 4  # DisputeGame.BITS: k = 16


@dataclass
class Round:
    """One dissection round: the node position and height it started from, both sides' children
    and the index of the first differing child."""

    height: int
    pos: int
    ours: list[bytes]
    theirs: list[bytes]
    pick: int


def lift(levels: list[list[bytes]], depth: int) -> list[list[bytes]]:
    """C3 ZERO-padding of a tree to `depth` levels (Merkle.lift): same leaves, wider tree."""
    out = [list(lv) for lv in levels]
    zero = ZERO
    for h in range(len(out) - 1):
        width = 2 ** (depth - h)
        out[h] += [zero] * (width - len(out[h]))
        zero = keccak256(b"\x01" + zero + zero)
    while len(out) - 1 < depth:
        h = len(out) - 1
        top = out[h]
        top += [zero] * (2 ** (depth - h) - len(top))
        out.append([keccak256(b"\x01" + top[i] + top[i + 1]) for i in range(0, len(top), 2)])
        zero = keccak256(b"\x01" + zero + zero)
    return out


def dissect(a_levels: list[list[bytes]], b_levels: list[list[bytes]],
            bits: int = DEFAULT_BITS) -> tuple[int, list[Round]]:
    """First leaf where tree A (the defender's) and tree B differ, and the rounds to get there.

    Raises ValueError when the roots are equal (nothing to dispute).
    """
    depth = max(len(a_levels), len(b_levels)) - 1
    a, b = lift(a_levels, depth), lift(b_levels, depth)
    if a[-1][0] == b[-1][0]:
        raise ValueError("the two trees are equal")
    height, pos, rounds = depth, 0, []
    while height > 0:
        step = min(bits, height)
        lvl = height - step
        lo, hi = pos << step, (pos + 1) << step
        ours, theirs = a[lvl][lo:hi], b[lvl][lo:hi]
        pick = next(i for i in range(len(ours)) if ours[i] != theirs[i])
        rounds.append(Round(height, pos, ours, theirs, pick))
        height, pos = lvl, lo + pick
    return pos, rounds


def trace_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    return merkle_levels(leaves)


def tensor_levels(array: np.ndarray) -> list[list[bytes]]:
    return merkle_levels(chunk_leaves(canonical_bytes(array)))


def first_element(a: np.ndarray, b: np.ndarray, chunk: int) -> int:
    """First element inside chunk `chunk` whose C1 bytes differ (level 2 → the one-step)."""
    size = a.dtype.itemsize
    da, db = canonical_bytes(a), canonical_bytes(b)
    lo = chunk * CHUNK_BYTES
    for e in range(lo // size, min(len(da), lo + CHUNK_BYTES) // size):
        if da[e * size:(e + 1) * size] != db[e * size:(e + 1) * size]:
            return e
    raise ValueError(f"chunk {chunk} holds no differing element")


@dataclass
class Divergence:
    """Where two executions of the same job first disagree."""

    leaf: int
    chunk: int | None
    element: int | None
    trace_rounds: list[Round]
    tensor_rounds: list[Round]


def find_divergence(a_leaves: Sequence[bytes], a_outputs: Sequence[np.ndarray],
                    b_leaves: Sequence[bytes], b_outputs: Sequence[np.ndarray],
                    bits: int = DEFAULT_BITS) -> Divergence:
    """Level 1 then level 2 then the element (DESIGN §6 checklist 2: levels linked by roots).

    `chunk`/`element` are None when the leaves differ in op hash or header rather than data,
    or when one trace has no leaf there (a length dispute).
    """
    leaf, trounds = dissect(trace_levels(a_leaves), trace_levels(b_leaves), bits)
    if leaf >= len(a_outputs) or leaf >= len(b_outputs):
        return Divergence(leaf, None, None, trounds, [])
    xa, xb = a_outputs[leaf], b_outputs[leaf]
    if xa.dtype != xb.dtype or xa.shape != xb.shape:
        return Divergence(leaf, None, None, trounds, [])
    la, lb = tensor_levels(xa), tensor_levels(xb)
    if la[-1][0] == lb[-1][0]:
        return Divergence(leaf, None, None, trounds, [])
    chunk, crounds = dissect(la, lb, bits)
    return Divergence(leaf, chunk, first_element(xa, xb, chunk), trounds, crounds)
