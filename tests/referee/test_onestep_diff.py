"""Differential tests: Solidity OneStepVerifier vs the Python mirror (referee.onestep), on real
traces of a toy Llama and of an edge-value program, plus the soundness cases of issue 6:
forged input proofs and wrong op definitions are refused, a correct-but-disputed claim is
decided for the executor, a cheater's element is decided against it.

SAMPLE (docs/trace-layout.md §L5.10) is held to the mirror per stage, on sampled traces of
edge-value logits rows (ties, ±0, ±inf, NaN; V = 300, SORT blocks of 64 and three MERGE
levels) and of the toy Llama (blocks of 8), under configs from greedy to tiny temperatures,
top_k in {0, 1, 5, V, > V} and top_p in {1, 0.9, 0.5, 1e-6}: honest claims, wrong claims
(a bit flip, a neighbour's value, one more), and cheating defenders whose SORT/MERGE/SCAN
leaf differs from the honest one (their own output is what SCAN and MERGE read).

Case counts: REFEREE_CASES per op kind and per SAMPLE stage (default 60 here, two claims
each); the `slow` variants run 5000 elements × 2 claims = 10^4 cases per op kind and per stage.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict

import numpy as np
import pytest
from edge_program import special_program
from eth_abi import decode, encode
from mirror_pool import MirrorPool, verdict
from onestep_chain import OneStepChain
from sample_program import edge_rows, table_program
from toy_llama import MAX_CTX, SEGMENT, TOY, toy_run, toy_weights

from referee.bisection import find_divergence
from referee.execute import Trace, run
from referee.layout import Claim, Code, JobConfig, Stage, Symbols
from referee.lowering import llama_program
from referee.witness import WITNESS_ABI, WitnessBuilder, config_bytes, element_bits
from repops.commit import tensor_root_np

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def chain():
    with OneStepChain() as oc:
        yield oc


@pytest.fixture(scope="module")
def mirrors():
    with MirrorPool() as pool:
        yield pool


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


def _check(chain, mirrors, cases):
    """Chain and mirror decide every case alike, and as expected where `want` is not None.
    The mirror's workers run while anvil answers the eth_calls."""
    calls = [(k, c, w) for _, k, c, w, _ in cases]
    pending = mirrors.submit(calls)
    got, _ = chain.verify_many(calls)
    mirrored = pending()
    for (code, _, ctx, _, want), g, m in zip(cases, got, mirrored, strict=True):
        name = code if isinstance(code, str) else Code(code).name
        assert g == m and want in (None, g), (name, ctx.leaf_index, ctx.element_index, g, m, want)
    return len(cases)


@pytest.mark.parametrize("which", ["toy", "special"])
def test_differential_fast(chain, mirrors, request, which):
    wb = request.getfixturevalue(which)
    n = int(os.environ.get("REFEREE_CASES", "60"))
    cases = element_cases(wb, n, seed=11)
    assert {c[0] for c in cases} >= {Code.DOT, Code.EW, Code.FOLD, Code.ARGFOLD, Code.MOVE,
                                     Code.CONCAT, Code.GATHER, Code.TOKENS} | (
        {Code.ROPE} if which == "toy" else set())
    _check(chain, mirrors, cases)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["toy", "special"])
def test_differential_full(chain, mirrors, request, which):
    wb = request.getfixturevalue(which)
    _check(chain, mirrors, element_cases(wb, 5000, seed=12))


def _verdict(chain, kind, ctx, wit):
    got, _ = chain.verify_many([(kind, ctx, wit)])
    assert got[0] == verdict(kind, ctx, wit)
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


# ------------------------------------------------------------------------------ SAMPLE (§L5.10)

SAMPLE_V = 300  # two float32 / three int64 chunks per row
SAMPLE_BLOCK = 64  # SORT blocks of 64, MERGE h = 64, 128, 256
TEMPS = [0.0, -0.0, 1e-30, 1e-3, 0.7, 1.0, 2.0]
TOPPS = [1.0, 0.9, 0.5, 1e-6]
SELF_STAGES = ("SAMPLE SORT", "SAMPLE MERGE", "SAMPLE SCAN")


def sample_configs(v: int, n: int, seed: int) -> list[JobConfig]:
    """Greedy (±0), tiny and ordinary temperatures; top_k off, 1, 5, V and past V; top_p off,
    0.9, 0.5 and tiny (RepOps spec §7.3)."""
    rng = random.Random(seed)
    return [JobConfig.of(8, rng.choice(TEMPS), rng.choice([0, 1, 5, v, v + 7]), rng.choice(TOPPS),
                         rng.randrange(1 << 64)) for _ in range(n)]


def sampled_builders(n_configs: int, steps: int, seed: int) -> list[WitnessBuilder]:
    """Sampled traces in which every SAMPLE stage has leaves: edge-value logits rows (each
    step's row is the previous token's row of the table) and the toy Llama with MERGE levels."""
    rng = np.random.default_rng(seed)
    prog, weights, _ = table_program(edge_rows(rng, SAMPLE_V, SAMPLE_V), SAMPLE_BLOCK)
    out = []
    for cfg in sample_configs(SAMPLE_V, n_configs, seed):
        tr = run(prog, weights, [int(rng.integers(SAMPLE_V))], steps, config=cfg)
        out.append(WitnessBuilder(tr, weights, cfg.encode()))
    w, store, _, _ = toy_weights(0)
    toy_prog = llama_program(TOY, w, MAX_CTX, segment=SEGMENT, sort_block=8)
    for cfg in sample_configs(TOY.vocab, 2, seed + 1):
        tr = run(toy_prog, store, [3, 7, 1], 2, config=cfg)
        out.append(WitnessBuilder(tr, store, cfg.encode()))
    return out


@pytest.fixture(scope="module")
def sampled():
    return sampled_builders(n_configs=6, steps=3, seed=21)


def _stage_leaves(wb: WitnessBuilder) -> dict[str, list[int]]:
    tr = wb.trace
    p = tr.program.n_ops
    out: dict[str, list[int]] = defaultdict(list)
    for leaf in range(tr.length):
        op = tr.program.ops[leaf % p]
        if op.code == Code.SAMPLE:
            out[f"SAMPLE {Stage(op.attrs[0]).name}"].append(leaf)
    return out


def _wrong(rng: random.Random, out: np.ndarray, e: int, bits: int) -> int:
    """A claim other than the honest one: a bit flip, a neighbour's value, or one more."""
    width = out.dtype.itemsize * 8
    kind = rng.randrange(3)
    if kind == 1 and out.size > 1:
        other = _bits(out, e + 1 if e + 1 < out.size else e - 1)
        if other != bits:
            return other
    if kind == 2:
        return (bits + 1) % (1 << width)
    return bits ^ (1 << rng.randrange(width))


def sample_cases(builders: list[WitnessBuilder], per_stage: int, seed: int):
    """Per SAMPLE stage: `per_stage` random (trace, leaf, element), the honest claim and a
    wrong one."""
    rng = random.Random(seed)
    pool: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, wb in enumerate(builders):
        for name, leaves in _stage_leaves(wb).items():
            pool[name] += [(i, leaf) for leaf in leaves]
    cases = []
    for name, items in sorted(pool.items()):
        for _ in range(per_stage):
            i, leaf = rng.choice(items)
            wb = builders[i]
            out = wb.trace.outputs[leaf]
            e = rng.randrange(out.size)
            bits = _bits(out, e)
            wit = wb.element(leaf, e)
            cases.append((name, Claim.ELEMENT, wb.context(leaf, e, bits), wit, 1))
            wrong = _wrong(rng, out, e, bits)
            cases.append((name, Claim.ELEMENT, wb.context(leaf, e, wrong), wit, 0))
    return pool, cases


def _tampered(wb: WitnessBuilder, leaf: int, out: np.ndarray) -> WitnessBuilder:
    """The same trace with `out` committed at `leaf`: a defender whose leaf is wrong there."""
    tr = wb.trace
    outputs, roots = list(tr.outputs), list(tr.roots)
    outputs[leaf], roots[leaf] = out, tensor_root_np(out)
    return WitnessBuilder(Trace(tr.program, tr.job_tokens, outputs, tr.config, roots),
                          wb.weights, wb.config)


def _cheat(rng: random.Random, out: np.ndarray) -> np.ndarray:
    """One way to get a SORT/MERGE/SCAN row wrong: an element moved further down (the rest
    shifted up), two elements swapped, or one element off by one bit / one ulp."""
    bad = out.copy()
    flat = _raw(bad)
    n = flat.size
    k = rng.randrange(n)
    m = rng.randrange(n)
    kind = rng.randrange(3)
    if kind == 0 and k != m:
        lo, hi = min(k, m), max(k, m)
        flat[lo:hi + 1] = np.roll(flat[lo:hi + 1].copy(), -1)
    elif kind == 1 and flat[k] != flat[m]:
        flat[k], flat[m] = flat[m].copy(), flat[k].copy()
    else:
        flat[k] ^= flat.dtype.type(1 << rng.randrange(bad.dtype.itemsize * 8 if kind else 1))
    return bad


def _raw(a: np.ndarray) -> np.ndarray:
    """The elements' bit patterns (C1), so that NaNs compare by bits."""
    return a.reshape(-1).view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)


def cheater_cases(builders: list[WitnessBuilder], pool, per_stage: int, seed: int):
    """Defenders whose SORT/MERGE/SCAN leaf differs from the honest one: the first differing
    element (the one the game reaches) goes against them; elements before it are honest; the
    ones after it are judged from the defender's own prefix (chain and mirror must agree)."""
    rng = random.Random(seed)
    cases = []
    for name in SELF_STAGES:
        for _ in range(per_stage):
            i, leaf = rng.choice(pool[name])
            wb = builders[i]
            honest = wb.trace.outputs[leaf]
            bad = _cheat(rng, honest)
            diff = np.flatnonzero(_raw(bad) != _raw(honest))
            if diff.size == 0:
                continue
            liar = _tampered(wb, leaf, bad)
            k0 = int(diff[0])
            picks = {k0: 0, rng.randrange(bad.size): None}
            if k0 + 1 < bad.size:
                picks[k0 + 1] = None
            if k0 > 0:
                picks[rng.randrange(k0)] = 1
            for e, want in picks.items():
                ctx = liar.context(leaf, e, _bits(bad, e))
                cases.append((name, Claim.ELEMENT, ctx, liar.element(leaf, e), want))
    return cases


def test_sample_differential_fast(chain, mirrors, sampled):
    n = int(os.environ.get("REFEREE_CASES", "60"))
    pool, cases = sample_cases(sampled, n, seed=31)
    assert set(pool) == {f"SAMPLE {st.name}" for st in Stage}
    _check(chain, mirrors, cases)
    _check(chain, mirrors, cheater_cases(sampled, pool, max(2, n // 6), seed=32))


@pytest.mark.slow
def test_sample_differential_full(chain, mirrors):
    builders = sampled_builders(n_configs=16, steps=5, seed=41)
    pool, cases = sample_cases(builders, 5000, seed=42)
    _check(chain, mirrors, cases + cheater_cases(builders, pool, 500, seed=43))


def _rewitness(wit: bytes, edit) -> bytes:
    """The witness decoded, changed by `edit(list of its fields)`, and encoded again."""
    (w,) = decode([WITNESS_ABI], wit)
    w = list(w)
    edit(w)
    return encode([WITNESS_ABI], [tuple(w)])


def test_sample_witness_refusals(chain, sampled):
    """§L7 for SAMPLE: the config must be the job's, SCAN and MERGE need the defender's own
    output (and only they take one), and it must be the disputed leaf's output."""
    wb = next(b for b in sampled if not b.trace.config.greedy)  # so c and p differ (SCAN)
    pool = _stage_leaves(wb)
    other = next(b for b in sampled if b.config != wb.config)
    for name in ("SAMPLE SCAN", "SAMPLE MERGE", "SAMPLE DRAW"):
        leaf = pool[name][-1]
        out = wb.trace.outputs[leaf]
        e = out.size // 2
        ctx = wb.context(leaf, e, _bits(out, e))
        wit = wb.element(leaf, e)
        assert _verdict(chain, Claim.ELEMENT, ctx, wit) == 1
        # another job's config bytes (or this config under another hash)
        forged = _rewitness(wit, lambda w: w.__setitem__(7, other.config))
        assert _verdict(chain, Claim.ELEMENT, ctx, forged) == 2
        bad_ctx = wb.context(leaf, e, _bits(out, e))
        bad_ctx.config_hash = b"\x22" * 32
        assert _verdict(chain, Claim.ELEMENT, bad_ctx, wit) == 2
        if name == "SAMPLE DRAW":  # no self: one tensor more is refused
            extra = _rewitness(wit, lambda w: w.__setitem__(8, list(w[8]) + [w[8][0]]))
            assert _verdict(chain, Claim.ELEMENT, ctx, extra) == 2
            continue
        missing = _rewitness(wit, lambda w: w.__setitem__(8, list(w[8])[:-1]))
        assert _verdict(chain, Claim.ELEMENT, ctx, missing) == 2
        # a self tensor that is an input's (proven chunks, but not the disputed output)
        swapped = _rewitness(wit, lambda w: w.__setitem__(8, list(w[8])[:-1] + [w[8][0]]))
        assert _verdict(chain, Claim.ELEMENT, ctx, swapped) == 2
        # the right tensor under another output root in the context
        moved = wb.context(leaf, e, _bits(out, e))
        moved.output_root = wb.trace.roots[leaf - 1]
        assert _verdict(chain, Claim.ELEMENT, moved, wit) == 2
