"""Runtime benchmark (issue 4) → docs/reports/bench-runtime.json + .md.

Measures, on one device per invocation (sections for cpu and cuda are merged into the report):
- the REE trace executor (node/ree): prefill tokens/s, decode tokens/s at batch 1 with and
  without committing the trace (tensor roots of every leaf), trace overhead in %;
- PyTorch eager (node/runtime/llama.py) of the same weights in the same run: fp32 (and bf16
  on CUDA) prefill tokens/s and decode tokens/s at batch 1 and 32;
- llama.cpp through llama-cpp-python when installed (CPU only; optional bench extra).
- the REE trace executor at batch 32 (node/ree/batch.py): 32 jobs side by side, each with its
  own trace (the layout has no batch axis), their weight matmuls stacked into one call; decode
  tokens/s over all jobs with and without committing the 32 traces.

    python scripts/bench_runtime.py --device cpu --tokens 8
    python scripts/bench_runtime.py --device cuda --tokens 32 --json-only --out $OUT
    python scripts/bench_runtime.py --merge other/bench-runtime.json
    python scripts/bench_runtime.py --device cpu --tokens 4 --batch-tokens 2   # short CPU run
    python scripts/bench_runtime.py --device cpu --tokens 32 --segment 192   # cpu-seg192
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from referee.compact import compact_ops  # noqa: E402 - needs the repo root on sys.path
from referee.lowering import DEFAULT_SEGMENT  # noqa: E402
from scripts import bench_llamacpp, cuda_switches  # noqa: E402

PROMPT = "Explain in a few sentences why the sky is blue."


def _sync(dev: str) -> None:
    import torch

    if dev == "cuda":
        torch.cuda.synchronize()


def _trace_pass(ex, dev: str, toks: list[int], n_new: int, rec) -> tuple[float, float]:
    """One prefill and n_new decode steps; (prefill s, decode s). With a recorder the
    prefill's time includes committing its leaves (~580 MB for a 41-token prompt, hashed by
    both cores: flushed before decode starts, so the decode rate is the steady state and
    `prefill_commit_s` the prefill's commit cost), and the decode time runs until the last
    root is computed (the worker hashes step s while the executor runs step s + 1, so only
    what does not overlap shows)."""
    import torch

    from node.ree.step_plan import token_of

    with torch.no_grad():
        ex.reset()
        t0 = time.perf_counter()
        outs = ex.run_step(0, toks)
        _sync(dev)
        if rec is not None:
            rec.add_step(outs)
            rec.flush()
        # as generate.py: the prefill's outputs freed before the decode (the executor
        # keeps only what the next step reads)
        del outs
        t1 = time.perf_counter()
        for s in range(1, n_new + 1):
            # as node/ree/generate.py runs a job: the token read on the host, the next
            # step queued ahead on CUDA (`speculate`), one device sync at the end
            outs = ex.run_step(s, toks, speculate=s < n_new)
            token_of(outs, ex.program.token_op)
            if rec is not None:
                rec.add_step(outs)
        _sync(dev)
        if rec is not None:
            rec.root()
        return t1 - t0, time.perf_counter() - t1


def bench_trace(model, dev: str, toks: list[int], n_new: int, reps: int = 3) -> dict:
    """Prefill and decode of the trace executor, without a trace, committing every leaf (C4
    roots, C5 root) and committing the compact trace (docs/trace-layout.md §L10),
    alternating, `reps` times each; medians are reported (the shared 2-core machine's noise
    moved single runs by ±20 %) and an overhead is the difference of the median wall
    times."""
    import torch

    from node.ree import collector
    from node.ree.fastexec import FastExecutor
    from node.ree.trace import TraceRecorder

    ex = FastExecutor(model.program, model.weights_by_root(), dev, quant=model.quant_blocks())
    collector.hold()  # as node/ree/session.py does (node/ree/collector.py), for good here
    with torch.no_grad():  # warm-up (Triton JIT, caches)
        ex.run_step(0, toks[:8])
        ex.run_step(1, toks[:8])
        # and the trace's: on CUDA its roots kernels compile and their graphs are captured
        # at the first graph steps (node/ree/step_plan_cuda.py `_RootsGraphs`)
        warm = TraceRecorder(model.program, toks[:8])
        for s in range(6):
            warm.add_step(ex.run_step(s, toks[:8]))
        warm.close()
        warm = TraceRecorder(model.program, toks[:8], compact=True)
        for s in range(6):
            warm.add_step(ex.run_step(s, toks[:8]))
        warm.close()
    # the timed positions once: on CUDA each grid bucket's graphs (step_plan_cuda.grid_tops)
    # are captured at its first step, which made the first timed exec-only run of each three
    # the slowest (H100, sixteenth session: 137-151 tok/s against 181-197)
    _trace_pass(ex, dev, toks, n_new, None)
    runs_x, runs_t, runs_c, hashed = [], [], [], 0.0
    for _ in range(reps):
        runs_x.append(_trace_pass(ex, dev, toks, n_new, None))
        rec = TraceRecorder(model.program, toks)
        runs_t.append(_trace_pass(ex, dev, toks, n_new, rec))
        rec.close()
        hashed += rec.hash_seconds
        rec = TraceRecorder(model.program, toks, compact=True)
        runs_c.append(_trace_pass(ex, dev, toks, n_new, rec))
        rec.close()
    pre_x, dec_x = (statistics.median(r[i] for r in runs_x) for i in (0, 1))
    pre_t, dec_t = (statistics.median(r[i] for r in runs_t) for i in (0, 1))
    pre_c, dec_c = (statistics.median(r[i] for r in runs_c) for i in (0, 1))
    return {
        "prefill_tokens": len(toks), "prefill_tok_s": round(len(toks) / pre_x, 2),
        "prefill_commit_s": round(max(0.0, pre_t - pre_x), 3),
        "decode_tokens": n_new, "reps": reps,
        "decode_tok_s_exec_only": round(n_new / dec_x, 3),
        "decode_tok_s_with_trace": round(n_new / dec_t, 3),
        "decode_tok_s_exec_only_runs": [round(n_new / r[1], 2) for r in runs_x],
        "decode_tok_s_with_trace_runs": [round(n_new / r[1], 2) for r in runs_t],
        "trace_overhead_pct": round(100 * (dec_t - dec_x) / dec_x, 1),
        "hash_worker_s_per_token": round(hashed / reps / (n_new + 1), 4),
        "trace_ops_per_token": model.program.n_ops,
        "compact": {"decode_tok_s_with_trace": round(n_new / dec_c, 3),
                    "decode_tok_s_with_trace_runs": [round(n_new / r[1], 2) for r in runs_c],
                    "trace_overhead_pct": round(100 * (dec_c - dec_x) / dec_x, 1),
                    "prefill_commit_s": round(max(0.0, pre_c - pre_x), 3),
                    "leaves_per_token": len(compact_ops(model.program))},
        "fallback_elements": ex.fallbacks,
    }


def bench_trace_batch(model, dev: str, toks: list[int], n_new: int, batch: int,
                      compact: bool = False) -> dict:
    """`batch` copies of the job run together (BatchExecutor), once without traces and once
    each committing its own (TraceRecorder per job; `compact`: its compact trace, §L10);
    prefill, and the hashing of its leaves, are timed apart from decode."""
    import torch

    from node.ree import collector
    from node.ree.batch import BatchExecutor, Lane
    from node.ree.fastexec import FastExecutor
    from node.ree.sampling import SamplingConfig
    from node.ree.step_plan import token_of
    from node.ree.trace import TraceRecorder

    bx = BatchExecutor(FastExecutor(model.program, model.weights_by_root(), dev,
                                    quant=model.quant_blocks()))
    # as node/ree/session.py does for `ree run`: the batch bench had not, and its timed b=32
    # steps held generation-2 collections of 60 and 86 ms (H100, twenty-second session)
    collector.hold()
    cfg = SamplingConfig().job_config(n_new + 1)
    prog = model.program

    def prefills(lanes: list, recs: list | None) -> tuple[float, float]:
        """Step 0 job by job, as `generate_batch` runs it without `batch_prefill` (the CPU):
        each prefill's leaves hashed before the next but one (all 32 held at once were
        ~18.5 GB here)."""
        ex = cm = 0.0
        for i, ln in enumerate(lanes):
            t0 = time.perf_counter()
            (o,) = bx.run_step([ln])
            _sync(dev)
            t1 = time.perf_counter()
            ln.feed = int(o[prog.token_op].reshape(-1)[0])
            if recs is not None:
                if i:
                    recs[i - 1].flush()
                recs[i].add_step(o)
            del o
            ex, cm = ex + t1 - t0, cm + time.perf_counter() - t1
        return ex, cm

    def steps(lanes: list, n: int, recs: list | None, pauses: _GcPauses | None = None
              ) -> tuple[list[float], list[float]]:
        exec_s, commit_s = [], []
        for s in range(n):
            if pauses is not None:
                pauses.step = s
            t0 = time.perf_counter()
            if s == 0 and not bx.batch_prefill:
                x, c = prefills(lanes, recs)
                exec_s.append(x)
                commit_s.append(c)
                if recs is not None:
                    for r in recs:
                        r.flush()
                continue
            # as `generate_batch` steps: the tokens read on the host, the next step queued
            # ahead on CUDA (`speculate`), the device synced once at the end
            outs = bx.run_step(lanes, speculate=s + 1 < n)
            picked = [token_of(o, prog.token_op) for o in outs]
            t1 = time.perf_counter()
            for i, (ln, o) in enumerate(zip(lanes, outs, strict=True)):
                if recs is not None:
                    recs[i].add_step(o)
                ln.feed = picked[i]
            # the lanes keep what the next step reads, the recorders what they still hash:
            # holding the rest here (32 prefills: ~20 GB of leaves) measured memory pressure
            del outs, o
            if recs is not None and s == 0:
                # the prefills' leaves hashed before decode is timed, as `bench_trace` does:
                # else their backlog (32 × ~580 MB) lands in the first decode steps
                for r in recs:
                    r.flush()
            exec_s.append(t1 - t0)
            commit_s.append(time.perf_counter() - t1)
        t0 = time.perf_counter()
        _sync(dev)
        exec_s[-1] += time.perf_counter() - t0
        return exec_s, commit_s

    with torch.no_grad():
        # warm-up, traced: on CUDA the first decode steps capture each lane's graphs (its
        # plan and its trace roots, one per arena: two steps) and compile the kernels
        warm = [TraceRecorder(prog, toks[:4], compact=compact) for _ in range(batch)]
        steps([Lane(list(toks[:4]), config=cfg) for _ in range(batch)], 3, warm)
        for r in warm:
            r.close()
        # the timed positions once, as `bench_trace` does: on CUDA the stack's graphs of each
        # grid bucket past the warm-up's are captured at its first step (H100, seventeenth
        # session: a 201 ms step inside the timed 32, against ~18 ms steady steps)
        steps([Lane(list(toks), config=cfg) for _ in range(batch)], n_new + 1, None)
        with _GcPauses() as gc_pauses:
            exec_s, _ = steps([Lane(list(toks), config=cfg) for _ in range(batch)], n_new + 1,
                              None, gc_pauses)
        lanes = [Lane(list(toks), config=cfg) for _ in range(batch)]
        recs = [TraceRecorder(prog, toks, compact=compact) for _ in range(batch)]
        tr_exec, tr_commit = steps(lanes, n_new + 1, recs)
    t3 = time.perf_counter()
    for r in recs:
        r.root()
        r.close()
    root_s = time.perf_counter() - t3
    dec_x = sum(exec_s[1:])  # without a trace
    dec_t = sum(tr_exec[1:]) + sum(tr_commit[1:]) + root_s  # committing 32 traces
    return {
        "batch": batch, "prefill_tokens": batch * len(toks),
        "prefill_tok_s": round(batch * len(toks) / exec_s[0], 2),
        "prefill_commit_s": round(max(0.0, tr_exec[0] + tr_commit[0] - exec_s[0]), 3),
        "decode_steps": n_new,
        "decode_tok_s_exec_only": round(batch * n_new / dec_x, 3),
        "decode_tok_s_with_trace": round(batch * n_new / dec_t, 3),
        "trace_overhead_pct": round(100 * (dec_t - dec_x) / dec_x, 1),
        # per decode step: the first ones after job-by-job prefills first-touch the lanes'
        # arenas (notes-runtime-perf.md, thirteenth revision), which the totals include
        "decode_step_ms_exec_only": [round(1000 * x, 1) for x in exec_s[1:]],
        "decode_step_ms_with_trace": [round(1000 * (x + c), 1)
                                      for x, c in zip(tr_exec[1:], tr_commit[1:], strict=True)],
        "gc_pauses_ms_exec_only": gc_pauses.ms,
        # the step of each (0: the prefills, outside the decode numbers; 1: the first decode
        # step, `decode_step_ms_exec_only[0]`)
        "gc_pause_steps_exec_only": gc_pauses.steps,
        # every collection in the exec-only steps (prefills included): by generation, ms in all
        "gc_collections_exec_only": gc_pauses.count,
        "gc_ms_exec_only": round(gc_pauses.all_ms, 2),
        "batched_matmuls": bx.batched_calls, "jobs_rerun_ops": bx.reruns,
        "timed_positions_warmed": True,
    }


def _host_line(m: dict) -> str:
    """The host's speed as `host_speed` measured it, where the section has it."""
    h = m.get("host_speed")
    if not h:
        return ""
    return (f"; host: load {h['load_avg_1min']}, Python loop {h['python_loop_m_per_s']} M/s, "
            f"leaf hashing {h['chunk_leaves_mb_s']} MB/s")


def _switches_line(sec: dict) -> str:
    """The CUDA switches a section ran with (scripts/cuda_switches.py), those it recorded."""
    from scripts.cuda_switches import settings_names

    got = [f"{k} {sec[k]}" for k in settings_names() if k in sec]
    return ("; CUDA switches: " + ", ".join(got)) if got else ""


class _GcPauses:
    """The garbage collector's pauses (ms, generation 2 only) inside a `with` block.

    Why: a batch's timed steps showed one or two steps of ~60-70 ms among ~12 ms ones
    (H100, twenty-first session). This record found them to be full collections (60 and
    86 ms, twenty-second session), and `bench_trace_batch` now freezes the model's objects
    first; it stays, to show any that come back. It also counts the young collections (all
    generations: their number and ms in all), which node/ree/collector.py spaces out."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.steps: list[int] = []  # the step each pause fell in (0: the prefills)
        self.step = 0  # set by the loop being timed
        self.count = [0, 0, 0]  # collections by generation
        self.all_ms = 0.0
        self._t0 = 0.0

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = 1000 * (time.perf_counter() - self._t0)
        gen = info.get("generation", 2)
        self.count[gen] += 1
        self.all_ms += ms
        if gen == 2:
            self.ms.append(round(ms, 2))
            self.steps.append(self.step)

    def __enter__(self) -> _GcPauses:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._cb)


def bench_eager(model, dev: str, dtype_name: str, toks: list[int], n_new: int,
                batch: int) -> dict:
    import torch

    from node.runtime import llama
    from node.runtime.llama import from_gguf

    if not getattr(llama.causal_mask, "_on_device", False):  # the module builds it on the CPU
        orig = llama.causal_mask

        def on_device(t, total, dt):  # noqa: ANN001, ANN202
            return orig(t, total, dt).to(dev)

        on_device._on_device = True
        llama.causal_mask = on_device
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    g = SimpleNamespace(config=model.config, weights=model.weights)
    net = from_gguf(g, max_pos=len(toks) + n_new + 8).to(dev)
    if dtype != torch.float32:
        net = net.to(dtype)
    x = torch.tensor([toks] * batch, device=dev)
    with torch.no_grad():
        past = [(k.to(dev, dtype), v.to(dev, dtype)) for k, v in net.empty_cache(batch)]
        net(x[:, :4], past)  # warm-up
        _sync(dev)
        past = [(k.to(dev, dtype), v.to(dev, dtype)) for k, v in net.empty_cache(batch)]
        t0 = time.perf_counter()
        logits, past = net(x, past)
        _sync(dev)
        t1 = time.perf_counter()
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(n_new):
            logits, past = net(nxt, past)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
        _sync(dev)
        t2 = time.perf_counter()
    return {"batch": batch, "prefill_tok_s": round(batch * len(toks) / (t1 - t0), 1),
            "decode_tok_s": round(batch * n_new / (t2 - t1), 2)}


def host_speed() -> dict:
    """A few numbers that tell one lent host from another: the load average as the bench
    starts, a Python loop's speed (the host tails' and recorders' bookkeeping) and the C
    hashing of trace leaves over 32 MB (all threads).

    Why: the b=32 and traced paths wait on the host, and the same kernels gave b=32 steps
    of ~10 ms on one H100 host and 15-20 ms on another in the same hour (twenty-second
    session), with the same CPU model name."""
    import os

    from repops import commit

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    s = 0
    for i in range(2_000_000):
        s += i
    py = 2.0 / (time.perf_counter() - t0)
    data = bytes(32 << 20)
    commit.chunk_leaves(data)  # the native library loaded (built once) and warm
    t0 = time.perf_counter()
    commit.chunk_leaves(data)
    mbs = 32 / (time.perf_counter() - t0)
    return {"load_avg_1min": round(load, 2), "python_loop_m_per_s": round(py, 1),
            "chunk_leaves_mb_s": round(mbs, 1)}


def machine(dev: str) -> dict:
    import torch

    from repops.cpu import kernels

    m = {"device": dev, "torch": torch.__version__, "python": platform.python_version(),
         "cpu_isa": kernels.isa()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                m["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    m["cpu_count"] = os.cpu_count()
    m["host_speed"] = host_speed()
    if dev == "cuda":
        import triton

        m["gpu"] = torch.cuda.get_device_name(0)
        m["triton"] = triton.__version__
    return m


def latest(rep: dict) -> list[str]:
    """The newest number of each machine for each of the issue's targets, with the section it
    comes from. Why: the report keeps every run's section (A/Bs, hosts, switches) in the order
    they were written, ~40 of them, and the targets' state was found only by reading them all.
    A b=1 number needs a run of 32 decode steps or more; only the default segment counts."""
    best: dict[str, dict[str, str]] = {}
    for name, sec in rep.get("sections", {}).items():
        if sec.get("segment", DEFAULT_SEGMENT) != DEFAULT_SEGMENT:
            continue
        m, tr, tb = sec["machine"], sec["trace"], sec.get("trace_batch") or {}
        row = best.setdefault(m.get("gpu") or f"{m.get('cpu', '?')} ({m.get('cpu_isa')})", {})
        at = f" ({name}, {sec['date']})"
        if tr.get("decode_tokens", 0) >= 32:
            row["b1"] = f"{tr['decode_tok_s_exec_only']}{at}"
            if tr.get("compact"):
                row["trace"] = f"{tr['compact']['trace_overhead_pct']} %{at}"
            lc = (sec.get("llama_cpp") or {}).get("decode_tok_s")
            if lc:
                row["llama"] = f"{tr['decode_tok_s_exec_only'] / lc:.2f}×{at}"
        if tb.get("batch") == 32:
            row["b32"] = f"{tb['decode_tok_s_exec_only']}{at}"
    lines = ["## Latest, against the issue's targets", "",
             "The newest section of each machine that measured it (targets: GPU b=1 ≥ 500 and "
             "b=32 ≥ 5,000 tok/s on an H100; CPU b=1 ≥ 0.5× llama.cpp; trace ≤ 10 %). The lent "
             "GPU hosts' speed moves host-bound numbers by up to 2× between leases: each "
             "section's host line says how fast its host was.", "",
             "| machine | decode b=1, exec only | decode b=32, exec only | compact trace "
             "overhead (b=1) | b=1 vs llama.cpp |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {r.get('b1', '-')} | {r.get('b32', '-')} | {r.get('trace', '-')} | "
              f"{r.get('llama', '-')} |" for k, r in best.items()]
    return lines + [""]


def markdown(rep: dict) -> str:
    lines = ["# Runtime benchmark: REE trace executor vs PyTorch eager (issue 4)", "",
             "Generated by `scripts/bench_runtime.py`. Tokens/s; decode at batch 1 unless "
             "stated. The trace executor runs the one-step trace program "
             "(docs/trace-layout.md), committing a C4 root for every trace op.", "",
             *latest(rep)]
    for dev, sec in rep.get("sections", {}).items():
        m, tr = sec["machine"], sec["trace"]
        tb = sec.get("trace_batch") or {}
        full_b32 = tb.get("decode_tok_s_with_trace", "n/a") if tb.get("trace") != "compact" \
            else "-"
        seg = (f"; trace program with DOT segments of {sec['segment']} (ADR 0012)"
               if sec.get("segment") else "")
        lines += [f"## {dev}: {m.get('gpu', m.get('cpu', ''))} ({sec['date']}{seg})", "",
                  f"torch {m['torch']}" + (f", Triton {m['triton']}" if 'triton' in m else "")
                  + f", {m.get('cpu_count')} CPUs, RepOps CPU ISA {m['cpu_isa']}"
                  + _host_line(m) + _switches_line(sec), "",
                  "| engine | prefill tok/s | decode tok/s (b=1) | decode tok/s (b=32) |",
                  "|---|---|---|---|",
                  f"| REE trace executor, with trace | {tr['prefill_tok_s']} | "
                  f"{tr['decode_tok_s_with_trace']} | "
                  f"{full_b32} |",
                  f"| REE trace executor, exec only | {tr['prefill_tok_s']} | "
                  f"{tr['decode_tok_s_exec_only']} | {tb.get('decode_tok_s_exec_only', 'n/a')} |"]
        if tr.get("compact"):
            cb = tb.get("decode_tok_s_with_trace", "n/a") if tb.get("trace") == "compact" \
                else "-"
            lines.insert(-1, f"| REE trace executor, with compact trace (§L10) | "
                             f"{tr['prefill_tok_s']} | "
                             f"{tr['compact']['decode_tok_s_with_trace']} | {cb} |")
        for name, e in sec.get("eager", {}).items():
            if "b1" not in e:
                lines.append(f"| PyTorch eager {name} | failed: {e.get('error', '?')} | | |")
                continue
            b32 = e.get("b32", {}).get("decode_tok_s", "-")
            lines.append(f"| PyTorch eager {name} | {e['b1']['prefill_tok_s']} | "
                         f"{e['b1']['decode_tok_s']} | {b32} |")
        lines += bench_llamacpp.markdown_row(sec.get("llama_cpp"))
        lines += ["", f"Trace overhead (decode wall time committing every leaf over the same "
                  f"run without a trace, minus 1): "
                  f"**{tr['trace_overhead_pct']} %**; {tr['trace_ops_per_token']} trace ops per "
                  f"token; prompt {tr['prefill_tokens']} tokens, {tr['decode_tokens']} decode "
                  f"steps; elements re-checked by the reference: {tr['fallback_elements']}."
                  + (f" The prefill's leaves are committed before decode starts: "
                     f"{tr['prefill_commit_s']} s on top of its execution."
                     if "reps" in tr else "")]
        if tr.get("decode_tok_s_exec_only_runs"):
            lines += ["", f"REE b=1 decode: median of {tr['reps']} alternating runs each; "
                      f"exec only {tr['decode_tok_s_exec_only_runs']} tok/s, with trace "
                      f"{tr['decode_tok_s_with_trace_runs']} tok/s."]
        if tr.get("compact"):
            c = tr["compact"]
            lines += ["", f"Compact trace (docs/trace-layout.md §L10, ADR 0013: "
                      f"{c['leaves_per_token']} of the {tr['trace_ops_per_token']} ops "
                      f"committed a token), in the same alternation: "
                      f"{c['decode_tok_s_with_trace_runs']} tok/s, overhead "
                      f"**{c['trace_overhead_pct']} %**; the prefill's commit "
                      f"{c['prefill_commit_s']} s."
                      + (f" As a fraction of llama.cpp: "
                         f"**{c['decode_tok_s_with_trace'] / ll:.2f}×**."
                         if (ll := (sec.get("llama_cpp") or {}).get("decode_tok_s")) else "")]
        lines += bench_llamacpp.markdown_ratio(tr, sec.get("llama_cpp"))
        if sec.get("trace_repeat"):  # the same b=1 run in another call: the spread
            rr = sec["trace_repeat"]
            lines += ["", f"Repeat of the b=1 trace run in another call: decode "
                      f"{rr['decode_tok_s_with_trace']} tok/s with trace, "
                      f"{rr['decode_tok_s_exec_only']} exec only, overhead "
                      f"{rr['trace_overhead_pct']} %."]
        if sec.get("note"):
            lines += ["", f"Note: {sec['note']}."]
        if tb.get("batch"):
            how = ("the decode steps of all jobs one stack of CUDA graph lanes, ADR 0011"
                   if dev.startswith("cuda") else "weight matmuls of all jobs in one call")
            lines += ["", f"REE at batch {tb['batch']} (node/ree/batch.py: {tb['batch']} jobs, "
                      f"each its own {tb.get('trace', 'full')} trace; {how}): "
                      f"{tb['decode_steps']} decode steps after a prefill of "
                      f"{tb['prefill_tokens']} tokens ({tb['prefill_tok_s']} tok/s); trace "
                      f"overhead {tb['trace_overhead_pct']} %."
                      + (" The timed positions ran once before timing (each grid bucket's "
                         "graphs captured)." if tb.get("timed_positions_warmed") else "")]
            if tb.get("decode_step_ms_exec_only"):
                lines += ["", f"Its decode steps, ms each: exec only "
                          f"{tb['decode_step_ms_exec_only']}, with the traces "
                          f"{tb['decode_step_ms_with_trace']}."]
        lines += [""]
    return "\n".join(lines)


def write(rep: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-runtime.json").write_text(json.dumps(rep, indent=1) + "\n")
    (out / "bench-runtime.md").write_text(markdown(rep))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--tokens", type=int, default=8, help="decode steps")
    ap.add_argument("--out", default="docs/reports")
    ap.add_argument("--merge", help="merge the sections of another bench-runtime.json")
    ap.add_argument("--no-eager-b32", action="store_true")
    ap.add_argument("--batch", type=int, default=32, help="jobs of the REE batch run (0: skip)")
    ap.add_argument("--batch-tokens", type=int, help="decode steps of the batch run "
                    "(default --tokens)")
    cuda_switches.add_arguments(ap)
    ap.add_argument("--no-eager", action="store_true",
                    help="skip the PyTorch eager baselines (A/B runs of the trace executor)")
    ap.add_argument("--segment", type=int, default=DEFAULT_SEGMENT,
                    help="fma steps per committed DOT segment of the trace program "
                         f"(docs/trace-layout.md §L8, ADR 0012; default {DEFAULT_SEGMENT})")
    ap.add_argument("--batch-trace", choices=("full", "compact"), default="full",
                    help="what each job of the batch run commits (docs/trace-layout.md §L10)")
    ap.add_argument("--section", help="the report section to write (default: the device, "
                                      "with -segN when --segment is not the default)")
    args = ap.parse_args(argv)
    name = args.section or (args.device if args.segment == DEFAULT_SEGMENT
                            else f"{args.device}-seg{args.segment}")
    out = Path(args.out)
    path = out / "bench-runtime.json"
    rep = json.loads(path.read_text()) if path.is_file() else {"sections": {}}
    if args.merge:
        rep["sections"].update(json.loads(Path(args.merge).read_text())["sections"])
        write(rep, out)
        return 0

    from node.ree.model import load_model

    grid = cuda_switches.apply(args) if args.device == "cuda" else {}
    model = load_model("smollm2", max_ctx=2048, segment=args.segment, with_model_hash=False)
    tok = model.tokenizer()
    toks = tok.encode_chat(PROMPT)
    sec = {"date": time.strftime("%Y-%m-%d"), "machine": machine(args.device), **grid,
           "segment": args.segment}
    sec["trace"] = bench_trace(model, args.device, toks, args.tokens)
    print(json.dumps(sec["trace"]), file=sys.stderr, flush=True)
    eager: dict = {}
    sec["eager"] = eager
    rep["sections"][name] = sec
    write(rep, out)  # the trace numbers survive a failing baseline
    for kind in () if args.no_eager else ("fp32", "bf16") if args.device == "cuda" \
            else ("fp32",):
        try:
            e = {"b1": bench_eager(model, args.device, kind, toks, max(args.tokens, 16), 1)}
            if not args.no_eager_b32:
                e["b32"] = bench_eager(model, args.device, kind, toks, max(args.tokens, 16),
                                       32)
        except Exception as ex:  # recorded in the report instead of losing the run
            e = {"error": f"{type(ex).__name__}: {ex}"}
        eager[kind] = e
    if args.device == "cpu":  # same GGUF, same token ids and decode steps as the trace run
        sec["llama_cpp"] = bench_llamacpp.bench_llama_cpp(
            toks, args.tokens, tok.apply_chat_template([{"role": "user", "content": PROMPT}]))
        print(json.dumps(sec["llama_cpp"]), file=sys.stderr, flush=True)
    rep["sections"][name] = sec
    write(rep, out)
    if args.batch > 0:
        sec["trace_batch"] = bench_trace_batch(model, args.device, toks,
                                               args.batch_tokens or args.tokens, args.batch,
                                               compact=args.batch_trace == "compact")
        sec["trace_batch"]["trace"] = args.batch_trace
        print(json.dumps(sec["trace_batch"]), file=sys.stderr, flush=True)
        write(rep, out)
    print(json.dumps(sec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
