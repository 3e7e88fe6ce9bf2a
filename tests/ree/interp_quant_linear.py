"""Child process of test_quant_linear_cuda.py (TRITON_INTERPRET=1 must be set before triton
is imported): `qchain_quant_kernel` over `CudaChain.quant`'s layouts of synthetic Q4_1 and
Q8_0 weights against the CPU's kernel for the same blocks (`QuantChain`), segment by
segment. The interpreter's arithmetic is NumPy's, not the GPU's: what this shows is the
layout, the nibble and byte extraction, the signs and the indexing; the GPU test
[QUANT_Q8] shows the bits."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

assert os.environ.get("TRITON_INTERPRET") == "1"

from node.ree import linear_chain as lc  # noqa: E402
from node.ree.step_plan_cuda import CudaChain  # noqa: E402
from node.runtime.gguf_loader import dequantize  # noqa: E402
from repops.gpu import step_kernels as sk  # noqa: E402

N, K, SEGW, BN = 96, 384, 192, 32


def blocks(qtype: str, rng: np.random.Generator) -> np.ndarray:
    """Random GGUF blocks of an [N, K] weight, every q value and both signs of d present."""
    nb = N * K // 32
    d = (rng.standard_normal(nb) * 0.02).astype(np.float16)
    if qtype == "q8_0":
        q = rng.integers(-128, 128, (nb, 32)).astype(np.int8)
        q[0] = np.arange(-128, 128, 8)  # the extremes
        return np.concatenate([d.view(np.uint8).reshape(nb, 2), q.view(np.uint8)], axis=1)
    m = (rng.standard_normal(nb) * 0.05).astype(np.float16)
    q = rng.integers(0, 16, (nb, 32)).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)  # low nibbles: elements 0..15
    return np.concatenate([d.view(np.uint8).reshape(nb, 2), m.view(np.uint8).reshape(nb, 2),
                           packed], axis=1)


def run(qtype: str) -> str | None:
    rng = np.random.default_rng(5)
    raw = blocks(qtype, rng).reshape(-1)
    qb = lc.QuantBlocks(qtype, raw, N, K)
    w = dequantize(qtype.upper(), raw, (N, K))
    chain = lc.Chain(0, 0, b"", tuple((s, s + SEGW) for s in range(0, K, SEGW)))
    x = torch.from_numpy(rng.standard_normal((1, K)).astype(np.float32))
    want, _ = lc.QuantChain(qb, chain, w).run(x)
    ch = CudaChain(torch.from_numpy(np.ascontiguousarray(w.T)), chain, qb)
    lay, qt = ch.quant()
    nseg = K // SEGW
    out = torch.full((nseg * N,), float("nan"))
    ints = [0, 0, K, 0, 0, 1, N, 0, 0, N, 1, N, 1, nseg, 0, SEGW, K, 0]
    args = torch.tensor(ints + [0] * (32 - len(ints)), dtype=torch.int64)
    sk.qchain_quant_kernel[(N // BN,)](x.reshape(-1), lay, out, args, 0, BN=BN, SEGW=SEGW,
                                       PF=0, QT=qt)
    got = out.reshape(nseg, 1, N)
    if not torch.equal(got.view(torch.int32), want.view(torch.int32)):
        bad = (got.view(torch.int32) != want.view(torch.int32)).nonzero()[:5].tolist()
        return f"{qtype}: outputs differ at {bad}"
    return None


def head_choice() -> str | None:
    """SmolLM2's head (its Q8_0 token embedding) planned as `qchain_quant_kernel` QT 8 for
    one job (QUANT_Q8), and as `qchain_v8_kernel` in a stack's lane (`emit(stacked=True)`)."""
    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model
    from node.ree.step_plan_cuda import CudaStepPlan
    from referee.layout import Symbols

    class Stop(Exception):
        pass

    m = load_model("smollm2", max_ctx=2048)
    w = m.weights_by_root()
    cpu = FastExecutor(m.program, w, quant=m.quant_blocks())
    shaped = FastExecutor(m.program, w, chains="masked", plan=False)
    plan = CudaStepPlan(m.program, w, shaped.weights, shaped._chains, shaped._wt,
                        torch.device("cpu"), quant=m.quant_blocks())
    plan.qchain, plan.quant_q8 = ("v8", 32, 64, -1, 1), True
    prompt = [1, 9690, 198, 2683]
    prev = cpu.run_step(0, prompt)
    emit, got = plan.emit, {}
    for stacked in (False, True):
        def spy(*a, stacked=stacked, **k):  # noqa: ANN002, ANN003, ANN202
            got[stacked] = emit(*a, stacked=stacked, **k)
            raise Stop
        plan.emit = spy
        try:
            plan.run(Symbols.for_step(len(prompt), 1), prev, 42)
        except Stop:
            pass
    q8 = {s: [ln.grid for ln in seq if ln.kernel is sk.qchain_quant_kernel
              and ln.consts["QT"] == 8] for s, seq in got.items()}
    if q8 != {False: [(1536,)], True: []}:
        return f"the head's Q8_0 launches (one job, stacked): {q8}"
    return None


if __name__ == "__main__":
    errs = [e for e in (run("q4_1"), run("q8_0"), head_choice()) if e]
    print("\n".join(errs) or "quant linears equal")
    sys.exit(1 if errs else 0)
