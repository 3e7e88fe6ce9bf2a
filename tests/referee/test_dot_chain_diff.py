"""Level 3 of the game (docs/trace-layout.md §L9) differentially: OneStepVerifier.chainLength
and its link claims on anvil vs the Python mirror (`referee.onestep.chain_length`, `verify`
with a non-empty `ctx.claim`), on a real trace of the wide toy (tests/referee/chain_program.py):
every DOT op at the prefill and the decode step, elements with 0, 2, 8 and 16 links (causal-1
P·V rows clipped by `past`, a segment with an acc input), honest links, wrong ends, wrong
starts, link indices past the chain, malformed claims, and a chained element asked whole.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from chain_program import op_leaf, wide_run
from eth_abi import decode
from mirror_pool import verdict
from onestep_chain import OneStepChain

from referee import onestep
from referee.layout import Claim, Code
from referee.witness import WITNESS_ABI, WitnessBuilder, config_bytes, link_claim

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def chain():
    with OneStepChain() as oc:
        yield oc


@pytest.fixture(scope="module")
def wide():
    tr, store = wide_run()
    return WitnessBuilder(tr, store, config_bytes(2))


def _mirror_length(ctx, wit) -> int | None:
    try:
        return onestep.chain_length(ctx, wit)
    except onestep.InvalidWitness:
        return None


def _bits(wb: WitnessBuilder, leaf: int, e: int) -> int:
    return int(wb.trace.outputs[leaf].reshape(-1).view(np.uint32)[e])


def _dot_elements(wb: WitnessBuilder, rng: random.Random, per_leaf: int):
    """(leaf, element) pairs: every DOT op at steps 0 and 1, the last element and random
    ones (prefill P·V rows ≥ 63 are the chained ones of that op)."""
    tr = wb.trace
    prog = tr.program
    for leaf in range(tr.length):
        if prog.ops[leaf % prog.n_ops].code != Code.DOT:
            continue
        n = tr.outputs[leaf].size
        picks = {n - 1} | {rng.randrange(n) for _ in range(per_leaf)}
        yield from ((leaf, e) for e in sorted(picks))


def test_chain_length_and_link_verdicts_equal_the_mirror(chain, wide):
    wb = wide
    rng = random.Random(5)
    cases = []
    seen_links: set[int] = set()
    lengths = 0
    for leaf, e in _dot_elements(wb, rng, 3):
        whole = wb.element(leaf, e)
        ctx = wb.context(leaf, e, _bits(wb, leaf, e))
        links = chain.chain_length(ctx, whole)
        assert links == _mirror_length(ctx, whole), (leaf, e)
        lengths += 1
        seen_links.add(links)
        if links == 0:
            cases.append((Claim.ELEMENT, ctx, whole, 1))
            cases.append((Claim.ELEMENT, wb.context(leaf, e, 0, link_claim(0, 0)), whole, 2))
            continue
        cases.append((Claim.ELEMENT, ctx, whole, 2))  # ChainRequired
        accs = wb.chain(leaf, e)
        assert len(accs) == links and accs[-1] == _bits(wb, leaf, e)
        for j in sorted({0, 1, links - 1, rng.randrange(links)}):
            wit = wb.element(leaf, e, link=j)
            start = accs[j - 1] if j else 0
            if j == 0:
                assert chain.chain_length(ctx, wit) == links
            cases.append((Claim.ELEMENT, wb.context(leaf, e, accs[j], link_claim(j, start)),
                          wit, 1))
            cases.append((Claim.ELEMENT, wb.context(leaf, e, accs[j] ^ 1, link_claim(j, start)),
                          wit, 0))
            # a wrong start (j > 0; link 0 ignores it), upper bits ignored (uint32(start))
            cases.append((Claim.ELEMENT, wb.context(leaf, e, accs[j], link_claim(
                j, start ^ (1 << 23))), wit, None if j else 1))
            cases.append((Claim.ELEMENT, wb.context(leaf, e, accs[j], link_claim(
                j, start | (1 << 40))), wit, 1))
        wit = wb.element(leaf, e, link=links - 1)
        cases.append((Claim.ELEMENT, wb.context(leaf, e, accs[-1], link_claim(links, accs[-1])),
                      wit, 2))  # BadLink
        bad = wb.context(leaf, e, accs[-1], link_claim(links - 1, accs[-2]) + b"\x00" * 32)
        cases.append((Claim.ELEMENT, bad, wit, 2))  # a claim of three words
    assert seen_links >= {0, 2, 8, 16}, seen_links
    got, gas = chain.verify_many([(k, c, w) for k, c, w, _ in cases])
    for (kind, ctx, wit, want), g in zip(cases, got, strict=True):
        m = verdict(kind, ctx, wit)
        assert g == m and want in (None, g), (ctx.leaf_index, ctx.element_index, ctx.claim.hex(),
                                              g, m, want)
    print(f"{lengths} chain lengths, {len(cases)} verdicts equal; worst link gas "
          f"{max(x for x, (_, c, _, w) in zip(gas, cases, strict=True) if c.claim and w == 1)}")


def test_refusals_name_the_spec_errors(chain, wide):
    """ChainRequired(links) for a chained element asked whole, BadLink for a link past the
    chain or on an element checked whole — on both sides."""
    wb = wide
    leaf = op_leaf(wb.trace, "L0/down[0:")
    accs = wb.chain(leaf, 3)
    whole = wb.element(leaf, 3)
    assert chain.revert_of(Claim.ELEMENT, wb.context(leaf, 3, accs[-1]), whole) == \
        "ChainRequired(uint256)"
    wit = wb.element(leaf, 3, link=15)
    past = wb.context(leaf, 3, accs[-1], link_claim(16, accs[-1]))
    assert chain.revert_of(Claim.ELEMENT, past, wit) == "BadLink()"
    with pytest.raises(onestep.InvalidWitness, match="BadLink"):
        onestep.verify(Claim.ELEMENT, past, wit)
    qk = op_leaf(wb.trace, "L0/attn/qk")
    ctx = wb.context(qk, 0, 0, link_claim(0, 0))
    assert chain.revert_of(Claim.ELEMENT, ctx, wb.element(qk, 0)) == "BadLink()"
    # a non-DOT op: no chain, on both sides
    ew = next(i for i in range(wb.trace.length)
              if wb.trace.program.ops[i % wb.trace.program.n_ops].code == Code.EW)
    ctx = wb.context(ew, 0, _bits(wb, ew, 0))
    assert chain.chain_length(ctx, wb.element(ew, 0)) == 0 == onestep.chain_length(
        ctx, wb.element(ew, 0))


def test_link_witness_of_a_long_element_is_small_and_cheap(chain, wide):
    """A link of a K = 1024 element: the witness carries one chunk per operand (the link's
    64 values), and the verifier accepts it within the one-step gas target."""
    wb = wide
    leaf = op_leaf(wb.trace, "L0/down[0:")
    e = wb.trace.outputs[leaf].size - 1
    accs = wb.chain(leaf, e)
    j = len(accs) - 1
    wit = wb.element(leaf, e, link=j)
    (w,) = decode([WITNESS_ABI], wit)
    assert [len(t[4]) for t in w[8]] == [1, 1], "one chunk of each operand row"
    ctx = wb.context(leaf, e, accs[j], link_claim(j, accs[j - 1]))
    gas = chain.estimate(Claim.ELEMENT, ctx, wit)
    print(f"K = 1024 link {j}: witness {len(wit)} B, gas {gas}")
    assert gas < 1_000_000
