"""Child process of test_step_plan_cuda.py (TRITON_INTERPRET=1 must be set before triton is
imported): the CUDA plan's first layer of records on CPU tensors against the CPU plan."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

assert os.environ.get("TRITON_INTERPRET") == "1"

from node.models import ModelError  # noqa: E402
from node.ree.fastexec import FastExecutor  # noqa: E402
from node.ree.model import ModelLoadError, load_model  # noqa: E402
from node.ree.step_plan import K_CONCAT  # noqa: E402
from node.ree.step_plan_cuda import CudaStepPlan  # noqa: E402
from referee.layout import Symbols  # noqa: E402

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646]
FULL = "--full" in sys.argv  # every record of the step (minutes), not the first two layers


def main() -> int:
    try:
        m = load_model("smollm2", max_ctx=2048)
    except (ModelError, ModelLoadError) as e:
        print(f"skipped: {e}")
        return 0
    w = m.weights_by_root()
    cpu = FastExecutor(m.program, w, quant=m.quant_blocks())
    shaped = FastExecutor(m.program, w, chains="masked", plan=False)  # CUDA's weight layout
    plan = CudaStepPlan(m.program, w, shaped.weights, shaped._chains, shaped._wt,
                        torch.device("cpu"))
    # records up to the second layer's K-cache append: every record kind once or more
    if not FULL:
        cut = [i for i, r in enumerate(plan.records) if r[0] == K_CONCAT][2]
        plan.records = plan.records[:cut + 1]
    last = plan.records[-1][1] + 1
    prev = cpu.run_step(0, PROMPT)
    want = cpu.run_step(1, PROMPT)
    got = plan.run(Symbols.for_step(len(PROMPT), 1), prev, cpu.plan_token(prev, None))
    bad = [j for j in range(last)
           if want[j].shape != got[j].shape
           or not np.array_equal(want[j].numpy().view(np.uint32), got[j].numpy().view(np.uint32))]
    if bad:
        print("differ:", [(j, m.program.ops[j].name) for j in bad[:20]])
        return 1
    print(f"{len(plan.records)} records equal ({last} ops)")
    return check_argfold(cpu)


def check_argfold(cpu: FastExecutor) -> int:
    """`argfold_level_kernel` level by level against the CPU executor's §L5.5 levels, on
    rows with NaNs, ties, ±0 and ±inf (odd widths, caps that pair part of a row)."""
    from referee.layout import Code, TraceOp
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(5)
    x = torch.randint(-3, 4, (3, 1001), generator=g).float()
    x[0, 7], x[1, 500], x[1, 3], x[2, 0] = float("nan"), float("nan"), float("inf"), -0.0
    x[2, 1] = 0.0
    idx, w = None, 1001
    for cap in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
        op = TraceOp(Code.ARGFOLD, "int32", (), (), (cap,), "t")
        want = cpu._argfold(op, [x] if idx is None else [x, idx])
        wout = min(w, cap)
        got = torch.empty((3, wout), dtype=torch.int32)
        sk.argfold_level_kernel[(-(-wout // 64), 3)](
            x, idx if idx is not None else got, got, 1001, w, cap, wout, max(0, w - cap),
            HAS_IDS=idx is not None, BLOCK=64)
        if not torch.equal(want.reshape(3, wout), got):
            print(f"argfold level cap {cap} differs")
            return 1
        idx, w = got, wout
    print("argfold levels equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
