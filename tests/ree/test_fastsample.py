"""The fast SAMPLE path (node/ree/fastsample.py) equals the reference trace executor leaf by
leaf (docs/trace-layout.md §L5.10): the toy Llama and edge-value logits rows, greedy and
sampled configs, with and without MERGE levels; CUDA too when there is a GPU. The CPU path (C,
repops_sample.c) also stage by stage against `referee.ops`, up to the real vocabulary."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "referee"))

from sample_program import edge_rows, table_program  # noqa: E402
from toy_llama import MAX_CTX, SEGMENT, TOY, toy_weights  # noqa: E402

from node.ree import fastsample  # noqa: E402
from node.ree.fastexec import FastExecutor  # noqa: E402
from referee import execute as ref  # noqa: E402
from referee.execute import ArrayView, to_array  # noqa: E402
from referee.layout import Code, JobConfig, Stage, Symbols, TraceOp  # noqa: E402
from referee.lowering import llama_program  # noqa: E402
from referee.ops import EvalContext, elements, prng_u_bits  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _configs(v: int, n: int, seed: int) -> list[JobConfig]:
    rng = random.Random(seed)
    out = [JobConfig.of(4, 0.0)]
    for _ in range(n - 1):
        out.append(JobConfig.of(4, rng.choice([1e-30, 0.3, 0.7, 1.0, 2.5]),
                                rng.choice([0, 1, 3, 5, v, v + 1]),
                                rng.choice([1.0, 0.9, 0.5, 1e-6]), rng.randrange(1 << 64)))
    return out


def compare(prog, weights, toks, steps, cfg, device="cpu"):
    fx = FastExecutor(prog, weights, device)
    fast = []
    for s in range(steps):
        fast += [o.cpu().numpy() for o in fx.run_step(s, toks, config=cfg)]
    tr = ref.run(prog, weights, toks, steps, config=cfg)
    assert len(fast) == len(tr.outputs)
    for i, (a, b) in enumerate(zip(fast, tr.outputs, strict=True)):
        step, j = divmod(i, prog.n_ops)
        where = f"leaf {i} (step {step}, op {j} {prog.ops[j].name}) {cfg}"
        assert a.shape == b.shape and a.dtype == b.dtype, where
        assert a.tobytes() == b.tobytes(), where
    return tr


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", [256, 4])
def test_toy_llama_fast_equals_reference(device, block):
    w, store, _, _ = toy_weights(1)
    prog = llama_program(TOY, w, MAX_CTX, segment=SEGMENT, sort_block=block)
    for cfg in _configs(TOY.vocab, 4, seed=block):
        compare(prog, store, [5, 2, 11], 3, cfg, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block,v", [(4, 40), (8, 37), (1, 9), (16, 97)])
def test_edge_rows_fast_equals_reference(device, block, v):
    rng = np.random.default_rng(block * 100 + v)
    prog, weights, _ = table_program(edge_rows(rng, v, v), block)
    for i, cfg in enumerate(_configs(v, 6, seed=v)):
        compare(prog, weights, [i % v, int(rng.integers(v))], 3, cfg, device)


@pytest.mark.parametrize("block,v", [(4, 40), (16, 97)])
def test_torch_path_on_cpu_equals_reference(monkeypatch, block, v):
    """The torch path (CUDA's) run on CPU tensors: checked here on machines without a GPU,
    and the oracle of the C path at the real vocabulary below."""
    def torch_run(op, ins, config, step, device):
        return fastsample._torch_run(op, ins, config or JobConfig(), step, device)

    monkeypatch.setattr(fastsample, "run", torch_run)
    rng = np.random.default_rng(block + v)
    prog, weights, _ = table_program(edge_rows(rng, v, v), block)
    for i, cfg in enumerate(_configs(v, 4, seed=v + 1)):
        compare(prog, weights, [i % v, int(rng.integers(v))], 3, cfg)


# ------------------------------------------------------------------ the CPU path stage by stage
# node/ree/fastsample.py sends CPU tensors to repops/cpu/csrc/repops_sample.c. Each stage is
# checked against `referee.ops` (the definition) on rows of several widths and blocks, among
# them widths that are no multiple of 16 (the vector split's scalar tails) and, for the
# stages whose reference is cheap, the real vocabulary (V = 49152, block 256); SORT and MERGE
# at V = 49152 against the torch path, itself checked against the reference above.

CPU = torch.device("cpu")


def _sample_ops(v: int, block: int) -> dict[Stage, list[TraceOp]]:
    """The SAMPLE ops of a tail over a [1, v] row, by stage, in program order."""
    prog, _, _ = table_program(np.zeros((1, v), np.float32), block)
    ops: dict[Stage, list[TraceOp]] = {}
    for op in prog.ops:
        if op.code == Code.SAMPLE:
            ops.setdefault(Stage(op.attrs[0]), []).append(op)
    return ops


def _ref(op: TraceOp, arrays: list[np.ndarray], cfg: JobConfig, step: int) -> np.ndarray:
    cx = EvalContext(Symbols(1, 0), step, [0], cfg)
    shape = op.shape(cx.sym)
    e = np.arange(int(np.prod(shape)), dtype=np.int64)
    return to_array(elements(op, [ArrayView(a) for a in arrays], e, cx), op.dtype, shape)


def _fast(op: TraceOp, arrays: list, cfg: JobConfig, step: int) -> np.ndarray:
    """The fast path on arrays or tensors (a tensor passed again is the same object: SORT and
    MERGE share the step's sort only for the same z' tensor)."""
    ins = [a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
           for a in arrays]
    return fastsample.run(op, ins, cfg, step, CPU).numpy()


def _same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, what
    assert a.tobytes() == b.tobytes(), what


def _bits(*words: int) -> np.ndarray:
    return np.array(words, dtype=np.uint32).view(np.float32)


# non-canonical NaNs (quiet and signalling, both signs), subnormals, ±0, ±inf, extremes
ODD = _bits(0x7FC00001, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x00000001, 0x80000001, 0x007FFFFF,
            0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF)


def _rows(rng: np.random.Generator, v: int) -> list[np.ndarray]:
    """edge_rows' kinds (normals, ties, signed zeros, edge values, one NaN, all −inf but a
    few) and: odd bit patterns sprinkled, a constant row, an all-NaN row, and a row whose top
    tokens are finite and the rest −inf (EXP's chunks past them have no finite difference)."""
    rows = list(edge_rows(rng, 6, v))
    odd = rng.standard_normal(v).astype(np.float32)
    pick = rng.random(v) < 0.2
    odd[pick] = rng.choice(ODD, int(pick.sum()))
    top = np.full(v, -np.inf, np.float32)
    live = rng.choice(v, size=min(v, 300), replace=False)
    top[live] = rng.standard_normal(live.size).astype(np.float32)
    return rows + [odd, np.full(v, 0.25, np.float32), np.full(v, np.nan, np.float32), top]


def _stage_configs(v: int, seed: int) -> list[JobConfig]:
    """Greedy (T = ±0), tiny and ordinary temperatures, every top_k kind, top_p to 1e-6."""
    rng = random.Random(seed)
    out = [JobConfig.of(4, 0.0), JobConfig.of(4, -0.0, 5, 0.5, 3)]
    for t, k, p in [(1e-30, 0, 1.0), (1e-3, 1, 0.9), (0.7, 5, 0.5), (1.0, v, 1e-6),
                    (2.5, v + 1, 0.9), (0.3, 0, 0.999)]:
        out.append(JobConfig.of(4, t, k, p, rng.randrange(1 << 64)))
    return out


def _sorts(ops: dict[Stage, list[TraceOp]], zp: np.ndarray, cfg: JobConfig, step: int,
           check: bool = True) -> None:
    """SORT and the MERGE levels on z', fast against the reference: the levels from SORT's one
    C call (the same z' tensor), and each MERGE on its own."""
    (sort,) = ops[Stage.SORT]
    for shared in (True, False):
        zt = torch.from_numpy(zp)
        order = _fast(sort, [zt if shared else zp], cfg, step)
        if check:
            _same(order, _ref(sort, [zp], cfg, step), "SORT")
        for op in ops.get(Stage.MERGE, []):
            fast = _fast(op, [order, zt if shared else zp], cfg, step)
            if check:
                _same(fast, _ref(op, [order, zp], cfg, step), f"MERGE {op.attrs[1]} {shared}")
            order = fast


def _tail(ops: dict[Stage, list[TraceOp]], z: np.ndarray, cfg: JobConfig, step: int,
          check_sort: bool) -> None:
    """Every stage of the tail on row z, the fast output against the reference's; each stage
    fed the reference's previous outputs (the fold, div and argmax between them in NumPy)."""
    v = z.size
    z = z.reshape(1, v)
    (scale,) = ops[Stage.SCALE]
    zp = _ref(scale, [z], cfg, step)
    _same(_fast(scale, [z], cfg, step), zp, "SCALE")
    if check_sort:
        _sorts(ops, zp, cfg, step)
    order = _fast(ops[Stage.SORT][0], [zp], cfg, step)
    for op in ops.get(Stage.MERGE, []):
        order = _fast(op, [order, zp], cfg, step)
    (exp,) = ops[Stage.EXP]
    e = _ref(exp, [zp, order], cfg, step)
    _same(_fast(exp, [zp, order], cfg, step), e, "EXP")
    s = np.float32(np.sum(e, dtype=np.float64))  # any p: SCAN's own rule is what is checked
    with np.errstate(all="ignore"):
        p = (e / s).astype(np.float32)
    (scan,) = ops[Stage.SCAN]
    c = _ref(scan, [p], cfg, step)
    _same(_fast(scan, [p], cfg, step), c, "SCAN")
    (topp,) = ops[Stage.TOPP]
    f = _ref(topp, [c], cfg, step)
    _same(_fast(topp, [c], cfg, step), f, "TOPP")
    big_j0 = np.array([[int(np.argmax(f.reshape(-1)))]], np.int32)
    (draw,) = ops[Stage.DRAW]
    g = _ref(draw, [c, f, big_j0], cfg, step)
    _same(_fast(draw, [c, f, big_j0], cfg, step), g, "DRAW")
    j0 = np.array([[int(np.argmax(g.reshape(-1)))]], np.int32)
    (jstar,) = ops[Stage.JSTAR]
    js = _ref(jstar, [g, j0, f, big_j0], cfg, step)
    _same(_fast(jstar, [g, j0, f, big_j0], cfg, step), js, "JSTAR")
    a = np.array([[int(np.argmax(np.nan_to_num(z.reshape(-1), nan=np.inf)))]], np.int32)
    (pick,) = ops[Stage.PICK]
    _same(_fast(pick, [z, a, order, js], cfg, step), _ref(pick, [z, a, order, js], cfg, step),
          "PICK")


@pytest.mark.parametrize("block,v", [(16, 300), (256, 1000), (8, 129), (64, 64), (256, 100)])
def test_cpu_stages_equal_reference(block, v):
    """Every stage on every row kind and config, two steps each (the DRAW's u changes)."""
    ops = _sample_ops(v, block)
    rng = np.random.default_rng(block * 1000 + v)
    for r, z in enumerate(_rows(rng, v)):
        for cfg in _stage_configs(v, seed=r):
            for step in (0, 7):
                _tail(ops, z, cfg, step, check_sort=True)
        _sorts(ops, z.reshape(1, v), cfg, 0)  # SCALE leaves no NaN payload


def test_cpu_stages_full_vocab():
    """V = 49152, block 256 (SmolLM2): SORT and the 8 MERGE levels against the torch path, the
    other stages against the reference."""
    v = 49152
    ops = _sample_ops(v, 256)
    assert len(ops[Stage.MERGE]) == 8
    rng = np.random.default_rng(49152)
    for r, z in enumerate(_rows(rng, v)):
        cfg = _stage_configs(v, seed=r)[r % 8]
        zp = torch.from_numpy(_fast(ops[Stage.SCALE][0], [z.reshape(1, v)], cfg, 1))
        for op in [ops[Stage.SORT][0], *ops[Stage.MERGE]]:
            fast = fastsample.run(op, [zp, zp], cfg, 1, CPU)
            want = fastsample._torch_run(op, [zp, zp], cfg, 1, CPU)
            _same(fast.numpy(), want.numpy(), f"{op.name} row {r}")
        _tail(ops, z, cfg, 1, check_sort=False)


def test_cpu_scan_odd_addends():
    """SCAN's shortcuts (−0 addends skipped, nothing added after a NaN) against the sequential
    kernel on rows full of −0, +0, NaN payloads, ±inf and subnormals, from a −0 or NaN start."""
    rng = np.random.default_rng(5)
    (scan,) = _sample_ops(700, 256)[Stage.SCAN]
    cfg = JobConfig.of(4, 1.0)
    neg0, pos0 = _bits(0x80000000)[0], np.float32(0.0)
    fixed = np.array([neg0, neg0, pos0, neg0, 1.0, neg0, -1.0, pos0, np.inf, neg0, -np.inf, 2.0],
                     np.float32)  # −0 + −0 = −0, −0 + +0 = +0, inf − inf = NaN
    for head in (fixed, fixed[1:], -fixed, np.concatenate([[neg0], fixed[4:]])):
        p = rng.standard_normal((1, 700)).astype(np.float32)
        p[0, :head.size] = head
        _same(_fast(scan, [p], cfg, 0), _ref(scan, [p], cfg, 0), f"SCAN {head}")
    for at in (1, 2, 15, 16, 17, 350, 690, 697, 699):  # −0 up to a +0: in vectors and tails
        p = np.full((1, 700), neg0, np.float32)
        p[0, at] = pos0
        p[0, at + 1:at + 3] = (neg0, 1.0)[: 700 - at - 1]
        _same(_fast(scan, [p], cfg, 0), _ref(scan, [p], cfg, 0), f"SCAN +0 at {at}")
    for lead in (-0.0, 0.0, np.nan, 1.0):
        for frac in (0.0, 0.5, 0.95):
            p = rng.standard_normal(700).astype(np.float32)
            pick = rng.random(700) < frac
            p[pick] = rng.choice(np.concatenate([ODD, _bits(0x80000000, 0x80000000)]),
                                 int(pick.sum()))
            p[0] = lead
            _same(_fast(scan, [p.reshape(1, -1)], cfg, 0), _ref(scan, [p.reshape(1, -1)], cfg, 0),
                  f"SCAN lead {lead} frac {frac}")


def test_cpu_order_int32_and_strided_rows():
    """EXP and PICK read an int32 order (a tail without MERGE levels, V <= B) as well as an
    int64 one; a strided z row (a view) gives the same bits as a contiguous one."""
    v = 200
    ops = _sample_ops(v, 256)
    assert Stage.MERGE not in ops
    rng = np.random.default_rng(3)
    for z in _rows(rng, v):
        _tail(ops, z, JobConfig.of(4, 0.7, 5, 0.9, 11), 2, check_sort=True)
    wide = torch.from_numpy(rng.standard_normal((v, 3)).astype(np.float32))
    row = wide[:, 1].reshape(1, v)
    assert not row.is_contiguous()
    (scale,) = ops[Stage.SCALE]
    cfg = JobConfig.of(4, 0.7)
    got = fastsample.run(scale, [row], cfg, 0, CPU).numpy()
    _same(got, _ref(scale, [row.contiguous().numpy()], cfg, 0), "SCALE strided")


def test_cpu_bad_indices_raise():
    """An order entry or index outside the row is an error, as in the reference."""
    v = 40
    ops = _sample_ops(v, 4)
    cfg = JobConfig.of(4, 0.7, 0, 0.9, 1)
    zp = np.linspace(-1, 1, v, dtype=np.float32).reshape(1, v)
    bad = np.arange(v, dtype=np.int64).reshape(1, v)
    bad[0, 3] = v
    (exp,) = ops[Stage.EXP]
    for fn in (_fast, _ref):
        with pytest.raises(ValueError):
            fn(exp, [zp, bad], cfg, 0)
    (pick,) = ops[Stage.PICK]
    ok_a = np.zeros((1, 1), np.int32)
    for js in (3, v):
        for fn in (_fast, _ref):
            with pytest.raises(ValueError):
                fn(pick, [zp, ok_a, bad, np.array([[js]], np.int32)], cfg, 0)
    (draw,) = ops[Stage.DRAW]
    for fn in (_fast, _ref):
        with pytest.raises(ValueError):
            fn(draw, [zp, zp, np.array([[v]], np.int32)], cfg, 0)


def test_cpu_topp_draw_boundaries():
    """TOPP's c >= top_p and DRAW's c > r at equality: c rows holding top_p and r exactly
    (r = mul(u, c[J]) = u for c[J] = 1.0), J from f or K − 1, NaN and ±inf in c."""
    v = 64
    ops = _sample_ops(v, 16)
    (topp,), (draw,) = ops[Stage.TOPP], ops[Stage.DRAW]
    for k in (0, 1, 5, 40):
        for step in (0, 3):
            cfg = JobConfig.of(4, 0.7, k, 0.5, 99)
            u = _bits(prng_u_bits(cfg, step))[0]
            c = np.linspace(0.01, 1.0, v, dtype=np.float32)
            c[[3, 4]] = np.float32(0.5)
            c[[1, 2, 6]] = u
            c[7] = np.nan
            c[9] = np.inf
            c[10] = 1.0
            c = c.reshape(1, v)
            f = _ref(topp, [c], cfg, step)
            _same(_fast(topp, [c], cfg, step), f, f"TOPP k={k}")
            for j0 in (0, 3, 10, v - 1):
                big = np.array([[j0]], np.int32)
                _same(_fast(draw, [c, f, big], cfg, step), _ref(draw, [c, f, big], cfg, step),
                      f"DRAW k={k} J0={j0}")


@pytest.mark.parametrize("device", DEVICES)
def test_argmax_token_is_the_greedy_pick(device):
    """`argmax_token` (the CUDA step's guess of the next token, step_plan_cuda `_Graphs.
    speculate`) against the reference executor's greedy token (§L5.10 PICK at T = 0) on the
    edge rows, and rows with NaNs of both signs and payloads, ties of −0 and +0 at the top,
    ±inf only."""
    v = 37
    rng = np.random.default_rng(7)
    rows = edge_rows(rng, 12, v)
    bits = rows.view(np.uint32)
    bits[6] = rng.choice(np.array([0xFF800001, 0x7FC00000, 0xFFC00000, 0x3F800000],
                                  dtype=np.uint32), v)
    bits[10] = 0x3F800000  # the first NaN wins whatever its sign and payload
    bits[10, [3, 5]] = 0xFF800001, 0x7FC00000
    bits[11] = 0x3F800000
    bits[11, [2, 4]] = 0x7F800001, 0x7FFFFFFF
    bits[7] = rng.choice(np.array([0x00000000, 0x80000000, 0xBF800000], np.uint32), v)
    bits[8] = rng.choice(np.array([0x7F800000, 0xFF800000], np.uint32), v)
    bits[9] = 0xFFFFFFFF  # all -NaN: the first one
    prog, weights, _ = table_program(rows, 4)
    greedy = JobConfig.of(4, 0.0)
    wants = []
    for r in range(len(rows)):
        want = int(ref.run(prog, weights, [r], 1, config=greedy).outputs[prog.token_op][0, 0])
        got = fastsample.argmax_token(torch.from_numpy(rows[r].copy()).to(device))
        assert got.dtype == torch.int64 and got.shape == (1,)
        assert int(got[0]) == want, f"row {r}"
        wants.append(want)
    # all rows at once, as a batch's stack asks (one row a lane)
    got = fastsample.argmax_token(torch.from_numpy(rows).to(device))
    assert got.shape == (len(rows),) and got.tolist() == wants
