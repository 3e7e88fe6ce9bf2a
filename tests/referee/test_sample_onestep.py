"""One-step mirror (referee/onestep.py) on SAMPLE leaves (docs/trace-layout.md §L5.10): an
honest claim wins, a wrong one loses, for every stage; and cheaters who change one SAMPLE leaf
are caught at the element the game reaches (the first differing element of the first
differing chunk), including a SORT pair swapped across chunks, the top token moved far down
the merged order (the case a neighbour-checked whole-row SORT cannot catch) and a SCAN value
one ulp off with every later value consistent with it."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sample_program import edge_rows, table_program

from referee import onestep
from referee.bisection import find_divergence
from referee.execute import run
from referee.layout import Claim, Code, JobConfig, Stage
from referee.witness import WitnessBuilder, element_bits

V = 600  # several chunks: 256 int32 / 128 int64 / 256 float32 per chunk
BLOCK = 8
CFG = JobConfig.of(3, 0.8, 0, 0.95, 99)


def _bits(arr: np.ndarray, e: int) -> int:
    flat = arr.reshape(-1)
    v = flat.view(np.uint32)[e] if arr.dtype == np.float32 else flat[e]
    return element_bits(int(v), arr.dtype.name)


def _verdict(wb: WitnessBuilder, leaf: int, e: int, claimed: int) -> int:
    try:
        return int(onestep.verify(Claim.ELEMENT, wb.context(leaf, e, claimed),
                                  wb.element(leaf, e)))
    except onestep.InvalidWitness:
        return 2


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(5)
    table = edge_rows(rng, V, V)
    table[:, :] = rng.standard_normal((V, V)).astype(np.float32) * 3  # plain rows
    table[::7] = edge_rows(rng, (V + 6) // 7, V)  # every 7th row has edge values
    prog, weights, _ = table_program(table, BLOCK)
    honest = run(prog, weights, [1, 2], 3, config=CFG)
    return prog, weights, honest, WitnessBuilder(honest, weights, CFG.encode())


def _stage_ops(prog) -> dict[Stage, list[int]]:
    out: dict[Stage, list[int]] = {}
    for j, op in enumerate(prog.ops):
        if op.code == Code.SAMPLE:
            out.setdefault(Stage(op.attrs[0]), []).append(j)
    return out


def test_every_stage_honest_wins_wrong_loses(setup):
    prog, _, honest, wb = setup
    rng = random.Random(1)
    stages = _stage_ops(prog)
    assert set(stages) == set(Stage)
    for st, ops in stages.items():
        for j in ops:
            for step in range(honest.n_steps):
                leaf = step * prog.n_ops + j
                out = honest.outputs[leaf]
                for e in {0, out.size - 1, *rng.sample(range(out.size), min(6, out.size))}:
                    good = _bits(out, e)
                    assert _verdict(wb, leaf, e, good) == 1, (st, leaf, e)
                    width = out.dtype.itemsize * 8
                    bad = good ^ (1 << rng.randrange(width))
                    assert _verdict(wb, leaf, e, bad) == 0, (st, leaf, e)


def test_sampled_tokens_are_the_spec_oracle(setup):
    import torch

    from repops.sample import SamplingConfig, sample_token

    prog, _, honest, _ = setup
    li = prog.ops[prog.token_op].inputs[0].op
    f = lambda b: float(np.array(b, np.uint32).view(np.float32))  # noqa: E731
    sc = SamplingConfig(f(CFG.temperature), CFG.top_k, f(CFG.top_p), CFG.seed)
    for s, tok in enumerate(honest.output_tokens()):
        z = torch.from_numpy(honest.outputs[s * prog.n_ops + li].reshape(-1).copy())
        assert tok == sample_token(z, sc, s)


def _merge_t(lv: np.ndarray, half: int) -> np.ndarray:
    """t of a MERGE level for an arbitrary token sequence (a cheater keeping t consistent)."""
    is_a = ((lv // half) % 2 == 0).astype(np.int64)
    excl = np.cumsum(is_a) - is_a
    start = (np.arange(lv.size) // (2 * half)) * 2 * half
    return excl - excl[start]


def _rotate(arr: np.ndarray, a: int, b: int) -> np.ndarray:
    """Move element a to position b (a < b), shifting a+1..b left by one."""
    x = arr.copy()
    x[a:b] = arr[a + 1:b + 1]
    x[b] = arr[a]
    return x


def _cheats(prog, honest, step):
    """(name, op index, output → cheated output) for every SAMPLE stage at `step`."""
    st = _stage_ops(prog)
    last_merge = st[Stage.MERGE][-1]
    half = prog.ops[last_merge].attrs[1]
    scan = st[Stage.SCAN][0]
    p_of_scan = honest.outputs[step * prog.n_ops + prog.ops[scan].inputs[0].op].reshape(-1)

    def flip(e, bit=0):
        def f(out):
            out = out.copy()
            flat = out.reshape(-1)
            if out.dtype == np.float32:
                flat.view(np.uint32)[e] ^= np.uint32(1 << bit)
            elif out.dtype == np.int64:
                flat[e] ^= 1
            else:
                flat[e] = (flat[e] + 1) % V
            return out
        return f

    def sort_swap_far(out):  # positions 3 (chunk 0) and 520 (chunk 2) swapped
        out = out.copy()
        flat = out.reshape(-1)
        flat[[3, 520]] = flat[[520, 3]]
        return out

    def merge_rotate_far(out):  # the top token moved to position 400 (chunk 3), t consistent
        lv = _rotate(out.reshape(-1) & 0xFFFFFFFF, 0, 400)
        return ((_merge_t(lv, half) << 32) | lv).reshape(out.shape)

    def scan_ulp(out):  # c[300] one ulp up, every later c the running sum from it
        c = out.reshape(-1).copy()
        c.view(np.uint32)[300] += np.uint32(1)
        for j in range(301, c.size):
            c[j] = np.float32(c[j - 1] + p_of_scan[j])  # binary32 add, one rounding
        return c.reshape(out.shape)

    return [("scale", st[Stage.SCALE][0], flip(17)),
            ("sort_swap_far", st[Stage.SORT][0], sort_swap_far),
            ("sort_one", st[Stage.SORT][0], flip(300)),
            ("merge_rotate_far", last_merge, merge_rotate_far),
            ("merge_first", st[Stage.MERGE][0], flip(5)),
            ("exp", st[Stage.EXP][0], flip(2, 3)),
            ("scan_ulp", scan, scan_ulp),
            ("topp", st[Stage.TOPP][0], flip(0, 29)),
            ("draw", st[Stage.DRAW][0], flip(1, 29)),
            ("jstar", st[Stage.JSTAR][0], flip(0)),
            ("pick", st[Stage.PICK][0], flip(0))]


def test_cheaters_lose_at_the_element_the_game_reaches(setup):
    prog, weights, honest, wb = setup
    step = 1
    for name, j, cheat in _cheats(prog, honest, step):
        target = step * prog.n_ops + j

        def override(leaf, out, target=target, cheat=cheat):
            return cheat(out) if leaf == target else out

        tr = run(prog, weights, [1, 2], 3, override=override, config=CFG)
        div = find_divergence(tr.leaves(), tr.outputs, honest.leaves(), honest.outputs)
        assert div.leaf == target and div.element is not None, name
        liar = WitnessBuilder(tr, weights, CFG.encode())
        claimed = _bits(tr.outputs[target], div.element)
        assert _verdict(liar, target, div.element, claimed) == 0, name
        good = _bits(honest.outputs[target], div.element)
        assert _verdict(wb, target, div.element, good) == 1, name


def test_far_rotation_passes_every_neighbour_check_of_its_first_chunk(setup):
    """Why SORT is not one whole-row sort checked against its neighbours (§L5.10): the top
    token moved far down leaves the first differing chunk locally sorted."""
    from referee.ops import prec, sort_key

    prog, _, honest, _ = setup
    st = _stage_ops(prog)
    step = 1
    order = honest.outputs[step * prog.n_ops + st[Stage.MERGE][-1]].reshape(-1) & 0xFFFFFFFF
    zp = honest.outputs[step * prog.n_ops + st[Stage.SCALE][0]].reshape(-1).view(np.uint32)
    cheat = _rotate(order, 0, 400)
    key = sort_key(zp)
    ok = prec(key[cheat[:-1]], cheat[:-1], key[cheat[1:]], cheat[1:])
    assert ok[:399].all() and not ok[399]  # chunk 0 (int32: 256 positions) is all "sorted"
