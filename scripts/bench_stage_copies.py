"""Host cost of staging a stack's first decode step: N prefilled jobs' KV caches into their
lanes' arenas (`step_plan_cuda._stage_pairs` collecting the pairs, `run_copies` copying).

Why: a b=32 CUDA bench's first decode step after the job-by-job prefills takes ~5× a
steady one (notes-runtime-perf.md, twenty-fifth revision). One multi-tensor copy did not
change that, so this measures the other part of staging, the Python that collects a copy
per cache, on any machine: CPU tensors stand for the device's, since that Python is the
same. Since the thirty-third session a copy is (arena, offset, source), no view made, and a
GPU runs them all from a table of addresses (node/ree/stage_copies_cuda.py); here the
copies still go through views (`copy_ms`). Collect, 3 runs each on this 2-core machine:
14.4-25.0 ms with a view pair per cache, 4.1-10.0 ms now. Prints one JSON line.

    python scripts/bench_stage_copies.py [--jobs 32] [--runs 3]
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import time

import torch

from node.ree.fastexec import FastExecutor
from node.ree.model import load_model
from node.ree.step_plan_cuda import CudaStepPlan, _stage_pairs, run_copies
from referee.layout import Symbols

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=32, help="prefilled jobs staged at once")
    ap.add_argument("--runs", type=int, default=3, help="timed repetitions")
    args = ap.parse_args()
    m = load_model("smollm2", max_ctx=2048)
    w = m.weights_by_root()
    cpu = FastExecutor(m.program, w, quant=m.quant_blocks())
    shaped = FastExecutor(m.program, w, chains="masked", plan=False)  # CUDA's weight layout
    plan = CudaStepPlan(m.program, w, shaped.weights, shaped._chains, shaped._wt,
                        torch.device("cpu"))
    prefill = cpu.run_step(0, PROMPT)
    past = Symbols.for_step(len(PROMPT), 1).past  # the first decode step's
    pd, _, po = plan.frozen_layout(past - 1)
    size = int(plan.layout(past)[2][-1])
    arenas = [torch.empty(size, dtype=torch.uint8) for _ in range(args.jobs)]
    collect, copy, n = [], [], 0
    for _ in range(args.runs):
        prevs = [[t.clone() if isinstance(t, torch.Tensor) else t for t in prefill]
                 for _ in range(args.jobs)]
        gc.collect()  # the clones' garbage collected outside the timed part
        t0 = time.perf_counter()
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for prev, arena in zip(prevs, arenas, strict=True):
            _stage_pairs(plan, prev, arena, pd, po, pairs)
        t1 = time.perf_counter()
        run_copies(pairs, (0, 1))  # the sources lie outside: one multi-tensor copy
        t2 = time.perf_counter()
        collect.append(round(1e3 * (t1 - t0), 2))
        copy.append(round(1e3 * (t2 - t1), 2))
        n = len(pairs)
    print(json.dumps({"jobs": args.jobs, "pairs": n, "collect_ms": collect, "copy_ms": copy,
                      "cpu": platform.processor() or platform.machine(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
