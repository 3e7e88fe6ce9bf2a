"""Where the trace's time goes in a CUDA decode: per step the executor's run_step and
add_step, and the recorder's parts (device leaves → C3/C4 on the host, the host tail's
roots), by thread. Prints a table; a diagnostic, not a benchmark report.

    python scripts/profile_trace_cuda.py [--tokens 32]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args(argv)
    import torch

    from node.ree import trace
    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model

    model = load_model("smollm2", max_ctx=2048, with_model_hash=False)
    toks = model.tokenizer().encode_chat("Explain in a few sentences why the sky is blue.")
    ex = FastExecutor(model.program, model.weights_by_root(), "cuda", quant=model.quant_blocks())
    acc: dict[tuple[str, str], list[float]] = collections.defaultdict(list)

    def timed(owner, name: str) -> None:  # noqa: ANN001
        fn = getattr(owner, name)

        def wrap(*a, **k):  # noqa: ANN002, ANN003, ANN202
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[(name, threading.current_thread().name[:10])].append(
                    time.perf_counter() - t0)
        setattr(owner, name, wrap)

    timed(trace, "tensor_roots_raw")
    timed(trace.TraceRecorder, "_leaf_roots")
    timed(trace.TraceRecorder, "add_step")
    timed(trace.TraceRecorder, "_wait_oldest")
    timed(trace.TraceRecorder, "_finish_parts")
    from repops.gpu import keccak

    timed(trace._DeviceStep, "__init__")
    timed(trace._DeviceStep, "help")
    timed(keccak, "device_roots")
    orig_sync = torch.cuda.Event.synchronize

    def sync(self):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        orig_sync(self)
        acc[("event.synchronize", threading.current_thread().name[:10])].append(
            time.perf_counter() - t0)
    torch.cuda.Event.synchronize = sync

    with torch.no_grad():
        for _ in range(2):
            ex.reset()
            ex.run_step(0, toks)
            for s in range(1, 4):
                ex.run_step(s, toks)
        for label, with_trace in (("exec only", False), ("with trace", True)):
            ex.reset()
            rec = trace.TraceRecorder(model.program, toks) if with_trace else None
            outs = ex.run_step(0, toks)
            torch.cuda.synchronize()
            if rec is not None:
                rec.add_step(outs)
                rec.flush()
            acc.clear()
            t_run = []
            prof = cProfile.Profile()
            prof.enable()
            t0 = time.perf_counter()
            for s in range(1, args.tokens + 1):
                a = time.perf_counter()
                outs = ex.run_step(s, toks)
                torch.cuda.synchronize()
                t_run.append(time.perf_counter() - a)
                if rec is not None:
                    rec.add_step(outs)
            t1 = time.perf_counter()
            prof.disable()
            if rec is not None:
                rec.flush()
            t2 = time.perf_counter()
            if rec is not None:
                rec.root()
                rec.close()
            t3 = time.perf_counter()
            n = args.tokens
            print(f"== {label}: {n / (t3 - t0):.1f} tok/s; loop {1e3 * (t1 - t0) / n:.2f} ms/step, "
                  f"run_step {1e3 * sum(t_run) / n:.2f} ms/step, flush {1e3 * (t2 - t1):.1f} ms, "
                  f"root {1e3 * (t3 - t2):.1f} ms")
            for (name, th), v in sorted(acc.items()):
                print(f"   {name:22s} {th:10s} calls {len(v):5d}  total/step "
                      f"{1e3 * sum(v) / n:7.3f} ms  median {1e3 * statistics.median(v):7.3f} ms"
                      f"  max {1e3 * max(v):7.3f} ms")
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
