"""The first decode steps after a prefill, as the b=1 bench runs them (issue 4 speed work):
each step's wall, then one pass with step FIRST (default 1) under torch.profiler: its
device work by kernel and the largest idle gaps; a steady step (--steady, default 4) the
same way for comparison. Prints a table; a diagnostic, not a benchmark report.

Why: on the H100 (thirty-third session) the b=1 bench's first decode step took 7.5-10 ms
against 2.02 ms steady, and a device sync right after it returned at 11.0 ms (the step and
the next, speculated, one): ~7 ms of device time that a steady step does not have, ~4 of the
bench's 64-token run's ~134 ms. The host's cProfile of that step showed ~8 ms in all, most
of it waiting on the device.

    python scripts/profile_first_step_cuda.py [--steps 8] [--passes 2]
    python scripts/profile_first_step_cuda.py --hold-ab 4 [--steps 64]

`--hold-ab N`: N rounds of two 64-token passes, one holding the prefill's outputs into the
first decode step (as the executor and the bench's loop did before the thirty-fifth session:
freeing its ~3,400 tensors took 6.4-6.7 ms inside that step on the H100 host), one freeing
them before it; tok/s and the first two steps' walls of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "Write a short poem about the sea."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="decode steps a pass")
    ap.add_argument("--passes", type=int, default=2, help="untimed passes first (JIT, graphs)")
    ap.add_argument("--first", type=int, default=1, help="the step profiled (1: the first)")
    ap.add_argument("--steady", type=int, default=4, help="a steady step profiled beside it")
    ap.add_argument("--no-probe", action="store_true",
                    help="skip the clock probe (a fixed matmul timed right after the prefill "
                         "and after a steady step: longer after the prefill means the GPU "
                         "left its clocks down while the host-bound prefill ran)")
    ap.add_argument("--hold-ab", type=int, default=0, metavar="N",
                    help="A/B the prefill's outputs held into the first step or not, N rounds")
    args = ap.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from node.ree import collector
    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model

    if not torch.cuda.is_available():
        print("profile_first_step_cuda: no CUDA device", file=sys.stderr)
        return 2
    model = load_model("smollm2", with_model_hash=False)
    toks = model.tokenizer().encode_chat(PROMPT)
    ex = FastExecutor(model.program, model.weights_by_root(), "cuda",
                      quant=model.quant_blocks())
    collector.hold()  # as node/ree/session.py does
    token_op, n = model.program.token_op, args.steps

    a = torch.randn(2048, 2048, device="cuda")

    def probe() -> float:
        """µs of one fixed fp32 matmul, by CUDA events: a proxy for the SM clock."""
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0.record()
        torch.mm(a, a)
        t1.record()
        t1.synchronize()
        return 1e3 * t0.elapsed_time(t1)

    def one_pass(profiled: int | None = None, probe_at: int | None = None,
                 hold: bool = False) -> list[float]:
        """Prefill, then n decode steps as bench_runtime `_trace_pass` runs them; `hold`:
        the prefill's outputs held until the first decode step returns (`--hold-ab`)."""
        walls = []
        ex.reset()
        held = ex.run_step(0, toks)
        torch.cuda.synchronize()
        if not hold:
            held = None
        if probe_at == 0:
            print(f"clock probe after the prefill: {probe():.1f} us", flush=True)
        for s in range(1, n + 1):
            if probe_at == s:
                torch.cuda.synchronize()
                print(f"clock probe before step {s}: {probe():.1f} us", flush=True)
            t0 = time.perf_counter()
            if s == profiled:
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    outs = ex.run_step(s, toks, speculate=s < n)
                    int(outs[token_op].reshape(-1)[0])
                    torch.cuda.synchronize()
                _report(s, prof)
            else:
                outs = ex.run_step(s, toks, speculate=s < n)
                held = None  # noqa: F841 - freed here, inside the step's wall, when held
                int(outs[token_op].reshape(-1)[0])
            walls.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        return walls

    with torch.no_grad():
        for _ in range(args.passes):
            one_pass()
        if args.hold_ab:
            for _ in range(args.hold_ab):
                for hold in (True, False):
                    w = one_pass(hold=hold)
                    print(f"prefill outputs {'held' if hold else 'freed'}: "
                          f"{n / sum(w):.1f} tok/s, first steps {1e3 * w[0]:.2f} "
                          f"{1e3 * w[1]:.2f} ms", flush=True)
            return 0
        walls = one_pass()
        print("step walls (ms):", [round(1e3 * w, 2) for w in walls], flush=True)
        for s in (args.first, args.steady):
            one_pass(s)
        if not args.no_probe:
            probe()  # its kernel chosen and loaded outside the timed probes
            for at in (0, args.steady, 0, args.steady):
                one_pass(probe_at=at)
    return 0


def _report(step: int, prof) -> None:  # noqa: ANN001 - a torch.profiler profile
    ev = sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                if e.device_type.name == "CUDA")
    if not ev:
        print(f"step {step}: no device work recorded")
        return
    total, count = defaultdict(float), defaultdict(int)
    for a, b, name in ev:
        total[name[:70]] += b - a
        count[name[:70]] += 1
    print(f"step {step} (and the step it queues): {len(ev)} device events over "
          f"{ev[-1][1] - ev[0][0]:.0f} us")
    for name, us in sorted(total.items(), key=lambda x: -x[1])[:12]:
        print(f"  {us:9.1f} us {count[name]:4d} x  {name}")
    gaps, end = [], ev[0][1]
    for (a, b, name), (*_, prev) in zip(ev[1:], ev, strict=False):
        if a > end:
            gaps.append((a - end, prev[:40], name[:40]))
        end = max(end, b)
    for g, before, after in sorted(gaps, reverse=True)[:6]:
        print(f"  idle {g:7.0f} us after {before} before {after}")


if __name__ == "__main__":
    sys.exit(main())
