"""Differential tests: Solidity OneStepVerifier vs the Python mirror (referee.onestep), on real
traces of a toy Llama and of an edge-value program, plus the soundness cases of issue 6:
forged input proofs and wrong op definitions are refused, a correct-but-disputed claim is
decided for the executor, a cheater's element is decided against it.

Case counts: REFEREE_CASES per op kind (default 60 here, two claims each); the `slow` variant
runs 5000 elements × 2 claims = 10^4 cases per op kind.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict

import numpy as np
import pytest
from edge_program import special_program
from onestep_chain import OneStepChain
from toy_llama import toy_run

from referee import onestep
from referee.bisection import find_divergence
from referee.execute import run
from referee.layout import Code, Symbols
from referee.witness import Claim, WitnessBuilder, config_bytes, element_bits

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def chain():
    with OneStepChain() as oc:
        yield oc


@pytest.fixture(scope="module")
def toy():
    tr, store, _, _ = toy_run(prompt=(3, 7, 1), steps=3)
    return WitnessBuilder(tr, store, config_bytes(3))


@pytest.fixture(scope="module")
def special():
    prog, store = special_program()
    tr = run(prog, store, [2, 5], 3)
    return WitnessBuilder(tr, store, config_bytes(3))


def _bits(arr: np.ndarray, e: int) -> int:
    flat = arr.reshape(-1)
    v = flat.view(np.uint32)[e] if arr.dtype == np.float32 else flat[e]
    return element_bits(int(v), arr.dtype.name)


def _mirror(kind, ctx, wit) -> int:
    try:
        return 1 if onestep.verify(kind, ctx, wit) else 0
    except onestep.InvalidWitness:
        return 2


def element_cases(wb: WitnessBuilder, per_kind: int, seed: int):
    """Per op code: `per_kind` random (leaf, element) pairs, the honest claim and a bit flip."""
    rng = random.Random(seed)
    tr = wb.trace
    by_code = defaultdict(list)
    for leaf in range(tr.length):
        by_code[tr.program.ops[leaf % tr.program.n_ops].code].append(leaf)
    cases = []
    for code, leaves in sorted(by_code.items()):
        for _ in range(per_kind):
            leaf = rng.choice(leaves)
            out = tr.outputs[leaf]
            if out.size == 0:
                continue
            e = rng.randrange(out.size)
            bits = _bits(out, e)
            wit = wb.element(leaf, e)
            flip = bits ^ (1 << rng.randrange(32 if out.dtype.itemsize == 4 else 8))
            cases.append((code, Claim.ELEMENT, wb.context(leaf, e, bits), wit, 1))
            cases.append((code, Claim.ELEMENT, wb.context(leaf, e, flip), wit, 0))
    return cases


def _check(chain, cases):
    got, _ = chain.verify_many([(k, c, w) for _, k, c, w, _ in cases])
    for (code, kind, ctx, wit, want), g in zip(cases, got, strict=True):
        m = _mirror(kind, ctx, wit)
        assert g == m == want, (Code(code).name, ctx.leaf_index, ctx.element_index, g, m, want)
    return len(cases)


@pytest.mark.parametrize("which", ["toy", "special"])
def test_differential_fast(chain, request, which):
    wb = request.getfixturevalue(which)
    n = int(os.environ.get("REFEREE_CASES", "60"))
    cases = element_cases(wb, n, seed=11)
    assert {c[0] for c in cases} >= {Code.DOT, Code.EW, Code.FOLD, Code.ARGFOLD, Code.MOVE,
                                     Code.CONCAT, Code.GATHER, Code.TOKENS} | (
        {Code.ROPE} if which == "toy" else set())
    _check(chain, cases)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["toy", "special"])
def test_differential_full(chain, request, which):
    wb = request.getfixturevalue(which)
    cases = element_cases(wb, 5000, seed=12)
    for i in range(0, len(cases), 2000):
        _check(chain, cases[i:i + 2000])


def _verdict(chain, kind, ctx, wit):
    got, _ = chain.verify_many([(kind, ctx, wit)])
    assert got[0] == _mirror(kind, ctx, wit)
    return got[0]


def test_forged_input_proofs_revert(chain, toy):
    tr = toy.trace
    leaf = next(i for i in range(tr.program.n_ops, tr.length)
                if tr.program.ops[i % tr.program.n_ops].code == Code.DOT)
    bits = _bits(tr.outputs[leaf], 0)
    ctx = toy.context(leaf, 0, bits)
    wit = bytearray(toy.element(leaf, 0))
    assert _verdict(chain, Claim.ELEMENT, ctx, bytes(wit)) == 1
    # flip a byte of some chunk data near the end (the tensors are encoded last)
    for off in (len(wit) - 40, len(wit) - 700, len(wit) // 2 + 13):
        forged = bytearray(wit)
        forged[off] ^= 0x01
        assert _verdict(chain, Claim.ELEMENT, ctx, bytes(forged)) == 2
    # a different trace root: no input proof holds
    ctx_bad = toy.context(leaf, 0, bits)
    ctx_bad.trace_root = b"\x11" * 32
    assert _verdict(chain, Claim.ELEMENT, ctx_bad, bytes(wit)) == 2


def test_wrong_op_definition(chain, toy):
    tr = toy.trace
    n = tr.program.n_ops
    leaf = n + 5
    # the witness of another op (its record cannot be proven at this leaf's position)
    other = toy.element(leaf + 1, 0)
    assert _verdict(chain, Claim.ELEMENT, toy.context(leaf, 0, 0), other) == 2
    # the defender's leaf holds a foreign op hash: OpHash claim and Element claim go against it
    ctx = toy.context(leaf, 0, _bits(tr.outputs[leaf], 0))
    ctx.op_hash = tr.program.ops[(leaf + 1) % n].op_hash()
    assert _verdict(chain, Claim.OP_HASH, ctx, toy.header_only(leaf)) == 0
    assert _verdict(chain, Claim.ELEMENT, ctx, toy.element(leaf, 0)) == 0
    assert _verdict(chain, Claim.OP_HASH, toy.context(leaf), toy.header_only(leaf)) == 1


def test_output_header(chain, toy):
    tr = toy.trace
    for leaf in (0, 7, tr.program.n_ops + 9):
        sym = Symbols.for_step(3, leaf // tr.program.n_ops)
        good = tr.program.ops[leaf % tr.program.n_ops].header(sym)
        assert _verdict(chain, Claim.OUTPUT_HEADER, toy.context(leaf, claim=good),
                        toy.header_only(leaf)) == 1
        bad = good[:-1] + bytes([good[-1] ^ 1])
        assert _verdict(chain, Claim.OUTPUT_HEADER, toy.context(leaf, claim=bad),
                        toy.header_only(leaf)) == 0


def test_trace_end_and_output_tokens(chain, toy):
    tr = toy.trace
    n = tr.program.n_ops
    toks = tr.output_tokens()
    for s in range(tr.n_steps + 1):
        wit = toy.token_step(s - 1 if s >= 1 else None)
        for claimed in (0, 1):
            ctx = toy.context(s * n, claimed=claimed)
            want = int((claimed == 1) == (s == tr.n_steps))
            assert _verdict(chain, Claim.TRACE_END, ctx, wit) == want
    ctx = toy.context(n + 1, claimed=1)  # mid-step: the trace cannot end there
    assert _verdict(chain, Claim.TRACE_END, ctx, toy.token_step(0)) == 0
    for e in range(tr.n_steps):
        assert _verdict(chain, Claim.OUTPUT_TOKEN, toy.context(element=e, claimed=toks[e]),
                        toy.token_step(e)) == 1
        assert _verdict(chain, Claim.OUTPUT_TOKEN, toy.context(element=e, claimed=toks[e] ^ 1),
                        toy.token_step(e)) == 0
    none = 2**256 - 1
    assert _verdict(chain, Claim.OUTPUT_TOKEN, toy.context(element=tr.n_steps, claimed=none),
                    toy.token_step(None)) == 1


def test_cheater_is_caught_after_bisection(chain, toy):
    """A lying executor changes one element; bisection finds it; the one-step rules."""
    honest = toy.trace
    target = honest.program.n_ops + 20

    def cheat(leaf, out):
        if leaf == target:
            out = out.copy()
            out.reshape(-1).view(np.uint32)[3] ^= 0x10
        return out

    tr, store, _, _ = toy_run(prompt=(3, 7, 1), steps=3, override=cheat)
    liar = WitnessBuilder(tr, store, config_bytes(3))
    div = find_divergence(tr.leaves(), tr.outputs, honest.leaves(), honest.outputs)
    assert (div.leaf, div.element) == (target, 3)
    assert len(div.trace_rounds) <= 3
    claimed = _bits(tr.outputs[target], 3)
    assert _verdict(chain, Claim.ELEMENT, liar.context(target, 3, claimed),
                    liar.element(target, 3)) == 0
    # the honest executor, challenged on the same element by a liar, wins
    good = _bits(honest.outputs[target], 3)
    assert _verdict(chain, Claim.ELEMENT, toy.context(target, 3, good),
                    toy.element(target, 3)) == 1
