"""Where a CUDA batch decode step's time goes (node/ree/batch.py over CudaStepPlan.run_lanes):
per step the host time to queue the step (one stack of lanes, or with --no-stack every lane's
graph), the wait for the device, the jobs' SAMPLE tails (for greedy jobs: up to the argmax,
the rest on a worker); then the captured graphs replayed alone: the stack's one graph, or the
lanes' graphs on one stream for all and on a stream per lane, to see whether replays of
different lanes overlap on the device. Prints a table; a diagnostic, not a benchmark report.

    python scripts/profile_batch_cuda.py [--batch 32] [--steps 4] [--no-stack]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import cuda_switches  # noqa: E402 - needs the repo root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--kernels", action="store_true",
                    help="also the device time of the stack's launches by kernel (torch.profiler)")
    ap.add_argument("--no-stack", action="store_true",
                    help="a lane of graphs per job (ADR 0007) instead of one stack (ADR 0011)")
    ap.add_argument("--trace", action="store_true",
                    help="also commit each job's trace (a TraceRecorder per job, as the bench's "
                         "traced batch): the recorders' time a step")
    ap.add_argument("--compact", action="store_true",
                    help="with --trace: compact traces (docs/trace-layout.md §L10)")
    cuda_switches.add_arguments(ap)
    args = ap.parse_args(argv)
    import torch

    from node.ree.batch import BatchExecutor, Lane
    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model
    from node.ree.sampling import SamplingConfig
    from node.ree.trace import TraceRecorder

    cuda_switches.apply(args)

    model = load_model("smollm2", max_ctx=2048, with_model_hash=False)
    toks = model.tokenizer().encode_chat("Explain in a few sentences why the sky is blue.")
    fx = FastExecutor(model.program, model.weights_by_root(), "cuda", quant=model.quant_blocks())
    bx = BatchExecutor(fx)
    cfg = SamplingConfig().job_config(args.steps + 8)
    lanes = [Lane(list(toks), config=cfg) for _ in range(args.batch)]
    plan = fx.plan
    plan.stack_lanes = not args.no_stack
    prog = model.program

    recs = [TraceRecorder(prog, toks, compact=args.compact) for _ in lanes] if args.trace \
        else []

    def feed(outs: list) -> None:
        for ln, o in zip(lanes, outs, strict=True):
            ln.feed = int(o[prog.token_op].reshape(-1)[0])

    def record(outs: list) -> None:
        if recs:
            for r, o in zip(recs, outs, strict=True):
                r.add_step(o)

    with torch.no_grad():
        for _ in range(3):  # prefill, then both arenas' graphs captured
            outs = bx.run_step(lanes)
            record(outs)
            feed(outs)
        del outs
        for r in recs:  # the prefills' leaves hashed before the steps are timed
            r.flush()
            r.hash_seconds = 0.0
        torch.cuda.synchronize()
        rows, tail_cpu = [], []
        prof, tprof, rprof = cProfile.Profile(), cProfile.Profile(), cProfile.Profile()
        for n in range(args.steps):
            states = [ln.state() for ln in lanes]
            if n == args.steps - 1:
                prof.enable()
            t0 = time.perf_counter()
            outs = plan.run_lanes([(st.sym, ln.prev, fx.plan_token(ln.prev, ln.feed))
                                   for ln, st in zip(lanes, states, strict=True)])
            t1 = time.perf_counter()
            prof.disable()
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            worker = fx._host._worker if fx._host is not None else None
            if worker is not None:  # the last step's tail rest, if still running
                worker.submit(int).result()
            t2w = time.perf_counter()
            if n == args.steps - 1:
                tprof.enable()
            c2, f2 = os.times(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            full = fx.run_tails(states, outs, [ln.prev for ln in lanes],
                                [ln.feed for ln in lanes])  # as BatchExecutor does
            tprof.disable()
            t3 = time.perf_counter()
            c3, f3 = os.times(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            tail_cpu.append((c3.user + c3.system - c2.user - c2.system, f3 - f2))
            if n == args.steps - 1:
                rprof.enable()
            bx.advance(lanes, full)
            feed(full)
            record(full)
            rprof.disable()
            del full
            rows.append((t1 - t0, t2 - t1, t2w - t2, t3 - t2w, time.perf_counter() - t3))
        t4 = time.perf_counter()
        for r in recs:
            r.flush()
        flush_ms = (time.perf_counter() - t4) * 1e3
        med = [statistics.median(c) * 1e3 for c in zip(*rows, strict=True)]
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)
        print("the tails of one step (one call, side by side):")
        pstats.Stats(tprof).sort_stats("tottime").print_stats(25)
        if recs:
            print("lanes kept and traces queued, one step:")
            pstats.Stats(rprof).sort_stats("tottime").print_stats(20)
        cpu_ms, faults = (statistics.median(c) for c in zip(*tail_cpu, strict=True))
        print(f"the tails' host CPU time {cpu_ms * 1e3:.1f} ms a step (all threads), "
              f"{faults:.0f} page faults a step; {_host_facts()}")
        _tail_parts(fx, states, outs)
        stack = plan._stack
        print(f"batch {args.batch}, stacked lanes {stack.lanes if stack else 0}, lane graphs "
              f"{len(plan._lanes)}, graph_error {plan.graph_error}")
        print(f"per step (ms, median of {args.steps}): queue lanes {med[0]:.1f}, "
              f"device after queueing {med[1]:.1f}, the last tails' rest still running "
              f"{med[2]:.1f}, tails {med[3]:.1f}, lanes kept and traces queued {med[4]:.1f}, "
              f"total {sum(med):.1f} -> {args.batch / sum(med) * 1e3:.0f} tok/s")
        if recs and stack is not None:
            _roots_replay(stack, args.kernels)
        if recs:
            hashed = sum(r.hash_seconds for r in recs)
            print(f"traces: {flush_ms:.1f} ms to finish hashing after the last step; the "
                  f"recorders' workers {hashed / args.steps * 1e3:.1f} ms a step (all "
                  f"{len(recs)}, waits for the device included)")
            for r in recs:
                r.close()

        if stack is not None and stack.graphs:
            q, w = _replay_ms(next(iter(stack.graphs.values())).replay, 5)
            print(f"the stack's graph ({stack.lanes} lanes) replayed alone: queued in {q:.2f} "
                  f"ms, done in {w:.2f} ms")
            if args.kernels:
                _kernels(plan, stack)
        graphs = [next(iter(g.graphs.values())) for g in plan._lanes if g.graphs]
        streams = [g.stream for g in plan._lanes if g.graphs]
        for label, per_lane in (("one stream", False), ("a stream per lane", True)):
            def replay(per_lane: bool = per_lane) -> None:
                for g, s in zip(graphs, streams, strict=True):
                    if per_lane:
                        with torch.cuda.stream(s):
                            g.replay()
                    else:
                        g.replay()

            q, w = _replay_ms(replay, 3)
            print(f"{len(graphs)} lane graphs replayed on {label}: queued in {q:.1f} ms, "
                  f"done in {w:.1f} ms")
    return 0


def _host_facts() -> str:
    """What bounds the host's threads: the cores this process may use, the cgroup's CPU
    quota (a quota under the core count throttles a team of that many threads), the load."""
    quota = "none"
    for f in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            quota = Path(f).read_text().strip()
            break
        except OSError:
            continue
    return (f"{len(os.sched_getaffinity(0))} cores usable, cgroup cpu quota {quota!r}, "
            f"load {os.getloadavg()[0]:.2f}")


def _tail_parts(fx, states, outs) -> None:  # noqa: ANN001 - the executor, a step's states/outputs
    """One batch of host tails again, timed by part: laying out the jobs (arenas, the
    logits copied from the device), the records up to the argmax, the rest (here waited
    for), each with the plan's thread count."""
    from repops.cpu.kernels import plan_threads

    host, nt = fx._host, plan_threads()
    if host is None or host.plan is None:
        return
    plan = host.plan
    t0 = time.perf_counter()
    jobs = host._prepare(outs, states)
    t1 = time.perf_counter()
    plan.run_prepared(jobs, 0, plan.early_records, nt)
    t2 = time.perf_counter()
    plan.run_prepared(jobs, plan.early_records, plan.n_records, nt)
    t3 = time.perf_counter()
    print(f"{len(states)} tails by part ({nt} threads): lay out {(t1 - t0) * 1e3:.2f} ms, "
          f"to the argmax {(t2 - t1) * 1e3:.2f} ms, the rest {(t3 - t2) * 1e3:.2f} ms")


def _replay_ms(replay, reps: int) -> tuple[float, float]:  # noqa: ANN001 - a callable
    """Medians over `reps` runs of `replay` from an idle device: (ms to queue, ms to done)."""
    import torch

    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        replay()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        times.append((t1 - t0, time.perf_counter() - t0))
    q, w = (statistics.median(c) * 1e3 for c in zip(*times, strict=True))
    return q, w


def _kernels(plan, stack) -> None:  # noqa: ANN001 - a CudaStepPlan and its LaneStack
    """The stack's launches of one step, eagerly, under torch.profiler: device time by kernel
    and, for each kernel, by its launches' constexprs."""
    from node.ree.step_plan_cuda import launched

    k, b = next(iter(stack.graphs))  # the parity and grid size of a step that ran
    seq = stack.seqs[k][b]
    stack._fill(k)
    _by_kernel(lambda: plan.launch(seq, stack.args, stack.lanes),
               f"{len(launched(seq))} launches (grids for position {stack.tops[b]})")


def _by_kernel(launch, label: str) -> None:  # noqa: ANN001 - a callable that launches
    """Device time of `launch`'s kernels (eager, under torch.profiler), by kernel."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    launch()  # warm
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        launch()
        torch.cuda.synchronize()
    rows = [(e.key, e.device_time_total, e.count) for e in prof.key_averages()
            if e.device_time_total > 0]
    total = sum(t for _k, t, _c in rows)
    print(f"{label}, device time {total / 1e3:.2f} ms:")
    for k, t, c in sorted(rows, key=lambda r: -r[1])[:20]:
        print(f"  {t / 1e3:8.3f} ms {c:5d} x {t / max(c, 1):8.1f} us  {k[:90]}")


def _roots_replay(stack, kernels: bool) -> None:  # noqa: ANN001 - a LaneStack
    """One lane's trace-roots graph (`_RootsGraphs`, a replay per lane a step) alone."""
    from repops.gpu import keccak

    r = next((x for lane in stack._roots for x in lane.values()), None)  # by `compact`
    if r is None:
        print(f"no roots graph (roots_error {stack.roots_error})")
        return
    k = next((i for i, g in enumerate(r.graphs) if g is not None), None)
    if k is None:
        return
    q, w = _replay_ms(r.graphs[k].replay, 5)
    print(f"one lane's roots graph replayed alone: queued in {q:.2f} ms, done in {w:.2f} ms "
          f"({stack.lanes} such replays a step); {r.slots.shape[0]} chunk slots, "
          f"{r.nodes.shape[0]} tree nodes")
    if kernels:
        _by_kernel(lambda: keccak.graph_roots(r.g.arenas[k], r.tens, r.slots, r.nodes,
                                              r.out[k]), "one lane's roots, eagerly")


if __name__ == "__main__":
    raise SystemExit(main())
