"""A/B of runtime switches in the real CUDA batch loop (issue 4 speed work): `--batch` greedy
jobs of one prompt, prefilled job by job, then `--steps` decode steps with the next step
speculated and each job's token read on the host, as `generate_batch` and the bench's batch
run them; the variants alternate, `--rounds` times, in one process. Prints each run's median
step (without its first) and whether its tokens equal the first run's; a diagnostic, not a
benchmark report.

Why one process, alternating: host-bound numbers on the lent GPU hosts moved by up to 2×
between leases (notes-runtime-perf.md, thirty-fourth revision), so an A/B across runs or
leases says little.

    python scripts/ab_batch_loop_cuda.py --variant tail_in_place=0 --variant tail_in_place=1
    python scripts/ab_batch_loop_cuda.py --variant tail_rest_threads=0 \
        --variant tail_rest_threads=12

Only switches the executor reads at each step can alternate here (fastexec's; a plan's are
read when it is made: use bench_runtime.py's flags for those).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import cuda_switches  # noqa: E402 - needs the repo root

PROMPT = "Write a short poem about the sea."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME=VALUE[,NAME=VALUE...] of cuda_switches' record names; twice or "
                         "more")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32, help="decode steps a run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=int, default=72,
                    help="untimed steps first: every position's graphs captured")
    args = ap.parse_args(argv)
    try:  # a bad variant fails here, before the model loads
        variants = [dict(kv.split("=", 1) for kv in v.split(",")) for v in args.variant]
        for v in variants:
            cuda_switches.set_switches(v)
    except ValueError as e:
        ap.error(f"--variant: {e} (NAME=VALUE[,NAME=VALUE...])")
    import torch

    from node.ree import collector
    from node.ree.batch import BatchExecutor, Lane
    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model
    from node.ree.sampling import SamplingConfig
    from node.ree.step_plan import token_of

    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    model = load_model("smollm2", with_model_hash=False)
    prog = model.program
    toks = model.tokenizer().encode_chat(PROMPT)
    bx = BatchExecutor(FastExecutor(prog, model.weights_by_root(), "cuda",
                                    quant=model.quant_blocks()))
    collector.hold()  # as a session holds it (node/ree/collector.py)
    cfg = SamplingConfig().job_config(args.warm + args.steps + 2)

    def prefilled() -> list:
        lanes = [Lane(list(toks), config=cfg) for _ in range(args.batch)]
        for ln in lanes:
            (o,) = bx.run_step([ln])
            ln.feed = token_of(o, prog.token_op)
            del o
        torch.cuda.synchronize()
        return lanes

    def loop(lanes: list, n: int) -> tuple[list[float], list[list[int]]]:
        walls, got = [], []
        for s in range(n):
            t0 = time.perf_counter()
            outs = bx.run_step(lanes, speculate=s < n - 1)
            picked = [token_of(o, prog.token_op) for o in outs]
            for ln, t in zip(lanes, picked, strict=True):
                ln.feed = t
            del outs
            got.append(picked)
            walls.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        return walls, got

    print(f"{torch.cuda.get_device_name()}; {args.batch} jobs, {args.steps} steps a run",
          flush=True)
    with torch.no_grad():
        loop(prefilled(), args.warm)
        first = None
        for r in range(args.rounds):
            for v in variants:
                cuda_switches.set_switches(v)
                walls, got = loop(prefilled(), args.steps)
                first = first or got
                med = statistics.median(walls[1:])
                print(f"round {r} {','.join(f'{k}={x}' for k, x in v.items())}: median "
                      f"{1e3 * med:.2f} ms a step, {args.batch / med:.0f} tok/s; first step "
                      f"{1e3 * walls[0]:.1f} ms; tokens as the first run's: {got == first}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
