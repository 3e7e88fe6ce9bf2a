"""Accumulation chains of DOT elements (docs/trace-layout.md §L9), pure Python.

`referee.ops.dot_chain` cuts the §L5.3 fma chain of one element into links of LINK = 64 steps;
its last accumulator must be the element itself, every link must hold from the true start and
fail for a wrong claim, and the one-step must refuse (as the contract reverts) to decide a
chained element whole or a link that does not exist. Checked on hand-built DOT ops (K = 256
without and with an acc input, a segment starting at k0 > 0, a causal-1 DOT clipped by `past`,
a causal-2 DOT, an EW op) and through the witness builder and the mirror on the wide toy
Llama of chain_program.py (linears of 2 links, a down projection of 16 + 8 links, P·V over
71 keys).
"""

from __future__ import annotations

import numpy as np
import pytest
from chain_program import op_leaf, wide_run
from eth_abi import decode

from referee import onestep
from referee.execute import ArrayView
from referee.layout import Claim, Code, Dim, Fn, Symbols, TraceOp, weight_input
from referee.ops import (
    LINK,
    BadLink,
    ChainRequired,
    EvalContext,
    dot_chain,
    dot_links,
    elements,
    holds,
)
from referee.witness import WITNESS_ABI, WitnessBuilder, config_bytes, link_claim

RNG = np.random.default_rng(7)


def _root(i: int) -> bytes:
    return bytes([i]) * 32


def _mat(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.5).astype(np.float32)


def _dot(out: tuple[int, ...], k0: int, k1: int, group: int = 1, causal: int = 0,
         acc: bool = False) -> TraceOp:
    ins = (weight_input(_root(1)), weight_input(_root(2))) + (
        (weight_input(_root(3)),) if acc else ())
    return TraceOp(Code.DOT, "float32", tuple(Dim(d) for d in out), ins,
                   (k0, k1, group, causal), "dot")


def _cx(seq: int = 1, past: int = 0) -> EvalContext:
    return EvalContext(Symbols(seq, past), 1 if past else 0, [0] * max(1, past + seq))


def _bits(op: TraceOp, views: list, e: int, cx: EvalContext) -> int:
    return int(elements(op, views, np.array([e]), cx)[0])


def _link(chain: list[int], j: int) -> tuple[int, int]:
    return j, (chain[j - 1] if j else 0)


CASES = {
    # name: (op, operand shapes, cx) — K = 256: four links
    "plain": (_dot((2, 3, 5), 0, 256, group=2), [(2, 3, 256), (1, 5, 256)], _cx(), 4),
    "acc": (_dot((2, 3, 5), 0, 256, group=2, acc=True),
            [(2, 3, 256), (1, 5, 256), (2, 3, 5)], _cx(), 4),
    "batched": (_dot((2, 1, 3), 0, 256), [(2, 1, 256), (2, 3, 256)], _cx(), 4),
    # a segment [64, 256) of a longer chain: three links from k0 = 64
    "segment": (_dot((3, 4), 64, 256, acc=True), [(3, 300), (4, 300), (3, 4)], _cx(), 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_chain_ends_at_the_element_and_every_link_holds(name):
    op, shapes, cx, links = CASES[name]
    views = [ArrayView(_mat(*s)) for s in shapes]
    out = op.shape(cx.sym)
    for e in range(int(np.prod(out))):
        chain = dot_chain(op, views, e, cx)
        assert dot_links(op, views, e, cx) == len(chain) == links
        assert chain[-1] == _bits(op, views, e, cx), "the last accumulator is the element"
        for j in range(links):
            assert holds(op, views, None, e, chain[j], cx, link=_link(chain, j))
            assert not holds(op, views, None, e, chain[j] ^ 1, cx, link=_link(chain, j))
            if j:  # a wrong start gives another end (these values are far from zero)
                wrong = (j, chain[j - 1] ^ (1 << 22))
                assert not holds(op, views, None, e, chain[j], cx, link=wrong)
        with pytest.raises(ChainRequired) as exc:
            holds(op, views, None, e, chain[-1], cx)
        assert exc.value.links == links
        with pytest.raises(BadLink):
            holds(op, views, None, e, chain[-1], cx, link=(links, chain[-1]))


def test_link_zero_starts_from_the_acc_input_and_ignores_the_start():
    op, shapes, cx, _ = CASES["acc"]
    views = [ArrayView(_mat(*s)) for s in shapes]
    chain = dot_chain(op, views, 4, cx)
    assert holds(op, views, None, 4, chain[0], cx, link=(0, 0x3F800000))
    other = [views[0], views[1], ArrayView(_mat(*shapes[2]))]
    assert dot_chain(op, other, 4, cx)[0] != chain[0], "link 0 reads acc_in[e]"


def test_causal_one_is_clipped_by_past():
    """P·V over keys (causal 1): kend = min(k1, past + r + 1), so the links follow `past`."""
    op = _dot((2, 3, 4), 0, 256, causal=1)
    views = [ArrayView(_mat(2, 3, 256)), ArrayView(_mat(2, 4, 256))]
    for past, rows_links in [(97, [2, 2, 2]), (62, [0, 0, 2]), (10, [0, 0, 0]),
                             (200, [4, 4, 4]), (191, [3, 4, 4])]:
        cx = _cx(seq=3, past=past)
        for r, want in enumerate(rows_links):
            for e in (r * 4, 12 + r * 4 + 3):
                assert dot_links(op, views, e, cx) == want, (past, r)
                chain = dot_chain(op, views, e, cx)
                assert len(chain) == want
                value = _bits(op, views, e, cx)
                if want:
                    assert chain[-1] == value
                    for j in range(want):
                        assert holds(op, views, None, e, chain[j], cx, link=_link(chain, j))
                    with pytest.raises(ChainRequired):
                        holds(op, views, None, e, value, cx)
                else:
                    assert holds(op, views, None, e, value, cx)
                    with pytest.raises(BadLink):
                        holds(op, views, None, e, value, cx, link=(0, 0))


def test_link_boundaries_and_elements_checked_whole():
    """len ≤ LINK: checked whole (0 links); LINK + 1: two links, the last of one step;
    causal 2 (scores, masked to −inf): never chained; any other op: no links."""
    for k, want in [(LINK, 0), (LINK + 1, 2), (2 * LINK, 2), (2 * LINK + 1, 3)]:
        op = _dot((1, 2), 0, k)
        views = [ArrayView(_mat(1, k)), ArrayView(_mat(2, k))]
        assert dot_links(op, views, 1, _cx()) == want
        chain = dot_chain(op, views, 1, _cx())
        assert len(chain) == want and (not want or chain[-1] == _bits(op, views, 1, _cx()))
    op = _dot((1, 3, 3), 0, 256, causal=2)
    views = [ArrayView(_mat(1, 3, 256)), ArrayView(_mat(1, 3, 256))]
    cx = _cx(seq=3, past=0)
    assert dot_links(op, views, 8, cx) == 0 and dot_chain(op, views, 8, cx) == []
    assert holds(op, views, None, 8, _bits(op, views, 8, cx), cx)
    with pytest.raises(BadLink):
        holds(op, views, None, 8, 0, cx, link=(0, 0))
    ew = TraceOp(Code.EW, "float32", (Dim(4),), (weight_input(_root(1)),),
                 (int(Fn.NEG), 0, 0, 0), "neg")
    x = [ArrayView(_mat(4))]
    assert dot_links(ew, x, 0, _cx()) == 0 and dot_chain(ew, x, 0, _cx()) == []
    with pytest.raises(BadLink):
        holds(ew, x, None, 0, 0, _cx(), link=(0, 0))


# ---- through the witness builder and the mirror (a lowered program) -------------------------

@pytest.fixture(scope="module")
def wide():
    tr, store = wide_run()
    return WitnessBuilder(tr, store, config_bytes(2))


def _leaf(wb: WitnessBuilder, name: str, step: int = 1) -> int:
    return op_leaf(wb.trace, name, step)


def _element_bits(wb: WitnessBuilder, leaf: int, e: int) -> int:
    return int(wb.trace.outputs[leaf].reshape(-1).view(np.uint32)[e])


def test_mirror_decides_links_of_a_lowered_program(wide):
    wb = wide
    for name, e, links in [("L0/down[0:", 77, 16), ("L0/down[1024:", 9, 8), ("L0/q", 5, 2),
                           ("L0/attn/pv", 100, 2)]:
        leaf = _leaf(wb, name)
        chain = wb.chain(leaf, e)
        assert len(chain) == links and chain[-1] == _element_bits(wb, leaf, e)
        whole = wb.element(leaf, e)
        ctx = wb.context(leaf, e, chain[-1])
        assert onestep.chain_length(ctx, whole) == links
        with pytest.raises(onestep.InvalidWitness) as exc:
            onestep.verify(Claim.ELEMENT, ctx, whole)
        assert isinstance(exc.value.__cause__, ChainRequired)
        for j in sorted({0, 1, links - 1}):
            wit = wb.element(leaf, e, link=j)
            start = chain[j - 1] if j else 0
            assert onestep.chain_length(wb.context(leaf, e, chain[j]), wit) == links
            ok = wb.context(leaf, e, chain[j], link_claim(j, start))
            assert onestep.verify(Claim.ELEMENT, ok, wit)
            bad = wb.context(leaf, e, chain[j] ^ 0x10, link_claim(j, start))
            assert not onestep.verify(Claim.ELEMENT, bad, wit)
        with pytest.raises(onestep.InvalidWitness) as exc:
            onestep.verify(Claim.ELEMENT, wb.context(leaf, e, 0, link_claim(links, 0)),
                           wb.element(leaf, e, link=links - 1))
        assert isinstance(exc.value.__cause__, BadLink)
    # an element checked whole: chainLength 0, a link claim on it is refused
    leaf = _leaf(wb, "L0/attn/qk")
    wit = wb.element(leaf, 3)
    assert wb.chain(leaf, 3) == []
    assert onestep.chain_length(wb.context(leaf, 3), wit) == 0
    assert onestep.verify(Claim.ELEMENT, wb.context(leaf, 3, _element_bits(wb, leaf, 3)), wit)
    with pytest.raises(onestep.InvalidWitness):
        onestep.verify(Claim.ELEMENT, wb.context(leaf, 3, 0, link_claim(0, 0)), wit)


def test_link_witness_carries_only_its_links_chunks(wide):
    """K = 1536 (6 KiB an operand row), segment [1024, 1536): the whole element would open two
    chunks of each row and its acc, a link the one chunk of 64 values it reads (and the acc
    for link 0 only); the chain-length witness opens none."""
    wb = wide
    leaf = _leaf(wb, "L0/down[1024:")
    e = 77
    for j, want in {0: [[4], [77 * 6 + 4], [0]], 5: [[5], [77 * 6 + 5], []],
                    7: [[5], [77 * 6 + 5], []]}.items():
        (w,) = decode([WITNESS_ABI], wb.element(leaf, e, link=j))
        assert [[c[0] for c in t[4]] for t in w[8]] == want
    (w,) = decode([WITNESS_ABI], wb.element(leaf, e))
    assert all(t[4] == () or t[4] == [] for t in w[8])
