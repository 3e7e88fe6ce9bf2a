"""One eager run of a CUDA decode step's launches between cudaProfilerStart and Stop, for
Nsight Compute (issue 4 speed work): where a kernel's warps stall, which torch.profiler's
durations cannot tell.

    ncu --profile-from-start off -k regex:qchain_v8 --launch-count 4 \\
        --section WarpStateStats --section SchedulerStats python scripts/ncu_step_kernels.py

Without ncu it runs the same launches and exits (nothing measured)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import cuda_switches  # noqa: E402 - needs the repo root

PROMPT = "Explain in a few sentences why the sky is blue."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="decode steps run before the probe")
    cuda_switches.add_arguments(ap)
    args = ap.parse_args(argv)

    import torch

    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model
    from node.ree.step_plan_cuda import launched

    if not torch.cuda.is_available():
        print("ncu_step_kernels: no CUDA device", file=sys.stderr)
        return 2
    cuda_switches.apply(args)
    model = load_model("smollm2", with_model_hash=False)
    toks = model.tokenizer().encode_chat(PROMPT)
    ex = FastExecutor(model.program, model.weights_by_root(), "cuda",
                      quant=model.quant_blocks())
    plan = ex.plan
    with torch.no_grad():
        ex.reset()
        for s in range(args.steps):
            ex.run_step(s, toks)
        torch.cuda.synchronize()
        g = plan._graph
        if g is None:
            print(f"no step graph: {plan.graph_error}", file=sys.stderr)
            return 1
        k, past = g.parity, args.steps
        c0, kp, kt = g.tables[k]
        g.args.copy_(torch.from_numpy(c0 + kp * past + kt * 1))
        seq = g.launches(k, past)
        plan.launch(seq, g.args)  # compiled, caches warm as in a replay
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        plan.launch(seq, g.args)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    print(f"probed {len(launched(seq))} launches at position {past}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
