"""Where a CUDA decode step's time goes (issue 4 speed work) → DIR/profile-cuda-step.json + .md.

Measures on one GPU, for the SmolLM2 greedy decode after a chat prompt:
- the whole step (wall, steady decode), with the SAMPLE tail on the host (`_HostTail`, the
  default) and on the device;
- the step plan's CUDA graph alone (GPU time of one replay, CUDA events);
- GPU time per launch kind (kernel, op name with layer numbers folded), from torch.profiler
  over one eager run of the graph's launch sequence;
- with --sweep, the weight linears' kernel configs (node/ree/step_plan_cuda.QCHAIN): graph
  time of each, and whether every arena bit equals the first's (chain_kernel's explicit fma);
- with --loop N, N steps of the real greedy loop (`generate`'s: the next step speculated, no
  device sync) under torch.profiler: the wall a step, the device's busy time and idle gaps a
  step, and the device work beside the step graph (copies, other kernels). Why: the b=1
  bench's step (~2.2 ms on the H100) is longer than the graph's replay (~2.05 ms), and only a
  timeline says whether the rest is the device waiting on the host or work of its own.

    python scripts/profile_cuda_step.py --out $OUT [--steps 24] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import cuda_switches  # noqa: E402 - needs the repo root

PROMPT = "Explain in a few sentences why the sky is blue."
# (QCHAIN config, chain_kernel prefetch, double buffer): the first is the reference the
# others' bits match
SWEEP = [(("fma", 128, 32, 4, 2, False), 0, 0), (("v8", 32, 64, -1, 1), 1, 1),
         (("v8", 32, 64, 16, 1), 1, 1), (("v8", 32, 64, 8, 1), 1, 1),
         (("v8", 16, 64, -1, 1), 1, 1), (("v8", 8, 64, -1, 1), 1, 1),
         (("v8", 16, 64, 16, 1), 1, 1), (("v8", 8, 64, 16, 1), 1, 1),
         (("v8", 32, 64, 16, 1, 1), 1, 1), (("v8", 32, 32, 16, 1), 1, 1),
         (("v8", 32, 32, -1, 1), 1, 1), (("v8", 32, 96, -1, 1), 1, 1),
         (("v8", 32, 48, -1, 1), 1, 1)]


def _steps(ex, toks: list[int], first: int, n: int) -> list[float]:
    import torch

    walls = []
    for s in range(first, first + n):
        t0 = time.perf_counter()
        ex.run_step(s, toks)
        torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
    return walls


def _graph_ms(launch, reps: int = 10) -> float:
    """GPU time of one replay of a graph of `launch()` (median of `reps`)."""
    import torch

    launch()  # compile
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        launch()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def _kind(plan, ln) -> str:
    name = plan.program.ops[ln.op].name if ln.op >= 0 else "?"
    return f"{ln.kernel.fn.__name__} {re.sub(r'[0-9]+', '#', name)}"


def _per_launch(plan, seq, args) -> tuple[list[dict], str]:
    """GPU µs per launch kind from one eager run under torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    plan.launch(seq, args)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        plan.launch(seq, args)
        torch.cuda.synchronize()
    kern = sorted((e for e in prof.events() if e.device_type.name == "CUDA"
                   and "kernel" in e.name), key=lambda e: e.time_range.start)
    from node.ree.step_plan_cuda import launched

    seq = launched(seq)  # riders are not launched
    if len(kern) != len(seq):
        return [], f"profiler saw {len(kern)} kernels for {len(seq)} launches"
    agg: dict[str, list[float]] = defaultdict(list)
    for ln, e in zip(seq, kern, strict=True):
        agg[_kind(plan, ln)].append(e.time_range.end - e.time_range.start)
    rows = [{"kind": k, "launches": len(v), "total_us": round(sum(v), 1),
             "mean_us": round(sum(v) / len(v), 2)} for k, v in agg.items()]
    rows.sort(key=lambda r: -r["total_us"])
    return rows, ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the report")
    ap.add_argument("--steps", type=int, default=24, help="decode steps timed per variant")
    ap.add_argument("--sweep", action="store_true", help="compare weight-linear kernels")
    ap.add_argument("--loop", type=int, default=0, metavar="N",
                    help="N steps of the real greedy loop on a device timeline")
    ap.add_argument("--linear", action="store_true",
                    help="one layer's wq and w_down alone: cold, L2-warm, after an L2 touch")
    cuda_switches.add_arguments(ap)
    args = ap.parse_args(argv)

    import torch

    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model
    from node.ree.step_plan_cuda import _PrevArena, launched

    if not torch.cuda.is_available():
        print("profile_cuda_step: no CUDA device", file=sys.stderr)
        return 2
    switches = cuda_switches.apply(args)  # before the executor: plans read them when made
    model = load_model("smollm2", with_model_hash=False)
    toks = model.tokenizer().encode_chat(PROMPT)
    ex = FastExecutor(model.program, model.weights_by_root(), "cuda",
                      quant=model.quant_blocks())
    plan = ex.plan
    rep: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "prompt_tokens": len(toks), "qchain": plan.qchain,
                 "switches": switches}
    with torch.no_grad():
        ex.reset()
        ex.run_step(0, toks)
        _steps(ex, toks, 1, 4)  # graphs captured
        host = _steps(ex, toks, 5, args.steps)
        saved, ex._host = ex._host, None
        dev = _steps(ex, toks, 5 + args.steps, args.steps)
        ex._host = saved
        print(f"step wall: host tail {1e3 * statistics.median(host):.2f} ms, device tail "
              f"{1e3 * statistics.median(dev):.2f} ms", flush=True)
        rep["step_ms_host_tail"] = round(1e3 * statistics.median(host), 3)
        rep["step_ms_device_tail"] = round(1e3 * statistics.median(dev), 3)
        g = plan._graph
        rep["graph_steps"], rep["graph_error"] = plan.graph_steps, plan.graph_error
        k = g.parity
        past = 5 + 2 * args.steps
        c0, kp, kt = g.tables[k]
        g.args.copy_(torch.from_numpy(c0 + kp * past + kt * 1))
        seq = g.launches(k, past)
        rep["launches"] = len(launched(seq))
        rep["graph_ms"] = round(_graph_ms(lambda: plan.launch(seq, g.args)), 3)
        print(f"graph replay {rep['graph_ms']} ms for {rep['launches']} launches", flush=True)
        rows, err = _per_launch(plan, seq, g.args)
        rep["per_launch"], rep["per_launch_error"] = rows, err
        for r in rows[:25]:
            print(f"  {r['total_us']:9.1f} us {r['launches']:5d} x {r['mean_us']:7.2f}  "
                  f"{r['kind']}", flush=True)
        if args.sweep:
            rep["sweep"] = sweep(plan, g, k, past, _PrevArena)
        if args.linear:
            rep["linear"] = linear_probe(plan, g, k, past, _PrevArena)
        if args.loop:
            rep["loop"] = loop_timeline(model, ex, toks, args.loop)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile-cuda-step.json").write_text(json.dumps(rep, indent=1) + "\n")
    (args.out / "profile-cuda-step.md").write_text(markdown(rep))
    return 0


def loop_timeline(model, ex, toks: list[int], n: int) -> dict:  # noqa: ANN001
    """`generate`'s loop for n greedy steps (after 8 untimed ones), timed, then n more under
    torch.profiler (whose host-side hooks slow the host): the wall a step of each, the
    device's busy time a step (the union of its kernels and copies), its idle gaps, and the
    device work that is not a step-graph kernel (by name: copies, the speculation's
    kernels)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from node.ree.sampling import SamplingConfig

    cfg = SamplingConfig().job_config(2 * n + 8)
    prog = model.program
    graph_kernels = {ln.kernel.fn.__name__ for ln in ex.plan._graph.launches(0, len(toks) + 1)
                     if ln.kernel is not None}

    def run(first: int, steps: int, feed: int | None) -> tuple[int | None, float]:
        t0 = time.perf_counter()
        for s in range(first, first + steps):
            outs = ex.run_step(s, toks, feed, config=cfg, speculate=True)
            feed = int(outs[prog.token_op].reshape(-1)[0])
        torch.cuda.synchronize()
        return feed, time.perf_counter() - t0

    ex.reset()
    feed, _ = run(0, 8, None)
    feed, wall = run(8, n, feed)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        _, wall_prof = run(8 + n, n, feed)
    dev = sorted(((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                  if e.device_type.name == "CUDA"), key=lambda t: t[0])
    busy, gaps, end = 0.0, [], None
    for a, b, _name in dev:
        if end is not None and a > end:
            gaps.append(a - end)
        busy += max(0.0, b - max(a, end if end is not None else a))
        end = b if end is None else max(end, b)
    other: dict[str, list[float]] = defaultdict(list)
    for a, b, name in dev:
        if not any(k in name for k in graph_kernels):
            other[re.sub(r"[0-9]+", "#", name)[:80]].append(b - a)
    span = (dev[-1][1] - dev[0][0]) if dev else 0.0
    big = sorted(gaps, reverse=True)
    out = {"steps": n, "wall_ms_per_step": round(1e3 * wall / n, 3),
           "wall_ms_per_step_profiled": round(1e3 * wall_prof / n, 3),
           "device_span_ms_per_step": round(span / 1e3 / n, 3),
           "device_busy_ms_per_step": round(busy / 1e3 / n, 3),
           "idle_ms_per_step": round(sum(gaps) / 1e3 / n, 3),
           "gaps_over_5us_per_step": round(sum(g > 5 for g in gaps) / n, 2),
           "largest_gaps_us": [round(g, 1) for g in big[:8]],
           "beside_the_graph": sorted(({"name": k, "count_per_step": round(len(v) / n, 2),
                                        "us_per_step": round(sum(v) / n, 2)}
                                       for k, v in other.items()),
                                      key=lambda r: -r["us_per_step"])[:12]}
    print(f"loop: wall {out['wall_ms_per_step']} ms a step; device busy "
          f"{out['device_busy_ms_per_step']}, idle {out['idle_ms_per_step']} "
          f"({out['gaps_over_5us_per_step']} gaps > 5 us a step)", flush=True)
    for r in out["beside_the_graph"]:
        print(f"  beside: {r['us_per_step']:8.2f} us {r['count_per_step']:5.2f} x  {r['name']}",
              flush=True)
    return out


def sweep(plan, g, k: int, past: int, prev_arena) -> list[dict]:  # noqa: ANN001
    """Each weight-linear kernel config: its step's graph time and whether the arena's bits
    equal chain_kernel's (the explicit fma chain)."""
    import torch

    dims, nb, offs = plan.layout(past)
    pd, _, po = plan.layout(past - 1)
    end = int(offs[-1] + nb[-1])
    saved, base, out = (plan.qchain, plan.prefetch, plan.double_buffer), None, []
    for cfg, pf, db in SWEEP:
        plan.qchain, plan.prefetch, plan.double_buffer = cfg, pf, db
        try:
            seq = plan.emit(g.arenas[k], dims.copy(), offs.copy(),
                            prev_arena(g.arenas[1 - k], pd, po), past, 1, None)
            args = torch.from_numpy(plan.table(seq)).cuda()
            ms = _graph_ms(lambda seq=seq, args=args: plan.launch(seq, args))
            bits = g.arenas[k][:end].clone()
        except Exception as e:  # noqa: BLE001 - a config that does not compile is reported
            out.append({"cfg": cfg, "prefetch": pf, "double_buffer": db,
                        "error": repr(e)[:300]})
            print(f"  {cfg}: {e!r}"[:300], flush=True)
            continue
        if base is None:
            base = bits
        same = bool(torch.equal(bits, base))
        out.append({"cfg": cfg, "prefetch": pf, "double_buffer": db, "graph_ms": round(ms, 3),
                    "bits_equal_chain_kernel": same})
        print(f"  {cfg} prefetch {pf} double buffer {db}: graph {ms:.3f} ms, bits equal: "
              f"{same}", flush=True)
    plan.qchain, plan.prefetch, plan.double_buffer = saved
    return out


def linear_probe(plan, g, k: int, past: int, prev_arena) -> list[dict]:  # noqa: ANN001
    """Kernel µs (torch.profiler) of layer 3's wq and w_down linears launched alone: after
    evicting L2 (cold), right after themselves (warm), and cold after `l2_touch_kernel` read
    the weight: whether a linear waits on memory latency or on its chain."""
    import torch
    import triton
    from torch.profiler import ProfilerActivity, profile

    from repops.gpu import step_kernels as sk

    dims, _, offs = plan.layout(past)
    pd, _, po = plan.layout(past - 1)
    flush = torch.empty(1 << 29, dtype=torch.uint8, device="cuda")
    saved, out = plan.qchain, []
    for cfg, _pf, _db in SWEEP:
        plan.qchain = cfg
        seq = plan.emit(g.arenas[k], dims.copy(), offs.copy(),
                        prev_arena(g.arenas[1 - k], pd, po), past, 1, None)
        args = torch.from_numpy(plan.table(seq)).cuda()
        for tag in ("wq", "w_down"):
            i = next(i for i, ln in enumerate(seq)
                     if "layers.3/" in plan.program.ops[ln.op].name
                     and f"/{tag}/" in plan.program.ops[ln.op].name)
            ln = seq[i]
            w = ln.ptrs[1]
            nw = w.numel()

            def one(ln=ln, i=i, args=args) -> None:
                ln.kernel[ln.grid](*ln.ptrs, args, i, **ln.consts)

            def touch(w=w, nw=nw) -> None:
                sk.l2_touch_kernel[(triton.cdiv(nw, 4096),)](w.view(torch.int32), nw, 0,
                                                             BLOCK=4096)

            one()
            touch()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    flush.zero_()
                    one()
                    one()
                    flush.zero_()
                    touch()
                    one()
                torch.cuda.synchronize()
            names = ("chain_kernel", "qchain_dot_kernel", "qchain_vec_kernel", "qchain_v8_kernel",
                     "l2_touch_kernel")
            ev = sorted((e for e in prof.events() if e.device_type.name == "CUDA"
                         and any(n in e.name for n in names)), key=lambda e: e.time_range.start)
            dur = [e.time_range.end - e.time_range.start for e in ev]
            if len(dur) != 20:
                out.append({"cfg": cfg, "op": tag, "error": f"{len(dur)} kernels"})
                continue
            cold, warm, tch, after = dur[0::4], dur[1::4], dur[2::4], dur[3::4]
            row = {"cfg": cfg, "op": tag, "cold_us": round(statistics.median(cold), 2),
                   "warm_us": round(statistics.median(warm), 2),
                   "touch_us": round(statistics.median(tch), 2),
                   "after_touch_us": round(statistics.median(after), 2)}
            out.append(row)
            print(f"  {cfg} {tag}: cold {row['cold_us']} warm {row['warm_us']} touch "
                  f"{row['touch_us']} then {row['after_touch_us']} us", flush=True)
    plan.qchain = saved
    return out


def markdown(rep: dict) -> str:
    lines = [f"# CUDA decode step profile ({rep['gpu']}, torch {rep['torch']})", "",
             f"Step wall, SAMPLE tail on the host: **{rep['step_ms_host_tail']} ms**; on the "
             f"device: {rep['step_ms_device_tail']} ms. Graph replay alone: "
             f"**{rep['graph_ms']} ms** GPU time for {rep['launches']} launches "
             f"(weight linears: {rep['qchain']}).", "",
             "Switches: " + ", ".join(f"{k} {v}" for k, v in rep.get("switches", {}).items())
             + " (per-launch times are clearest with PDL off: with it, a kernel's time "
             "includes its wait for the launch before).", "",
             "| GPU µs | launches | µs each | kernel, op |", "|---:|---:|---:|---|"]
    lines += [f"| {r['total_us']} | {r['launches']} | {r['mean_us']} | {r['kind']} |"
              for r in rep["per_launch"][:40]]
    if rep.get("per_launch_error"):
        lines.append(f"\n{rep['per_launch_error']}")
    if rep.get("sweep"):
        lines += ["", "| weight-linear kernel (step_plan_cuda.QCHAIN) | chain_kernel prefetch | "
                      "double buffer | graph ms | bits equal |", "|---|---|---|---:|---|"]
        lines += [f"| {s['cfg']} | {s.get('prefetch', '-')} | {s.get('double_buffer', '-')} | "
                  f"{s.get('graph_ms', s.get('error'))} | {s.get('bits_equal_chain_kernel', '-')} |"
                  for s in rep["sweep"]]
    if rep.get("linear"):
        lines += ["", "| kernel (QCHAIN) | linear | cold µs | L2-warm µs | touch µs | after "
                      "touch µs |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['cfg']} | {r['op']} | {r.get('cold_us', r.get('error'))} | "
                  f"{r.get('warm_us', '-')} | {r.get('touch_us', '-')} | "
                  f"{r.get('after_touch_us', '-')} |" for r in rep["linear"]]
    lp = rep.get("loop")
    if lp:
        lines += ["", f"The real greedy loop ({lp['steps']} steps, the next step speculated, "
                      f"no sync a step): wall **{lp['wall_ms_per_step']} ms** a step "
                      f"({lp['wall_ms_per_step_profiled']} under the profiler); the "
                      f"device busy {lp['device_busy_ms_per_step']} ms of its "
                      f"{lp['device_span_ms_per_step']} ms span a step, idle "
                      f"{lp['idle_ms_per_step']} ms ({lp['gaps_over_5us_per_step']} gaps over "
                      f"5 µs a step; largest {lp['largest_gaps_us']} µs).", "",
                  "| device work beside the step graph | a step | µs a step |",
                  "|---|---:|---:|"]
        lines += [f"| {r['name']} | {r['count_per_step']} | {r['us_per_step']} |"
                  for r in lp["beside_the_graph"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
