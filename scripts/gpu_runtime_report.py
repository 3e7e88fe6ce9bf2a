"""GPU vs CPU trace equality on SmolLM2 → docs/reports/runtime-gpu.json + .md (issue 4).

For each of N prompts × T new tokens, the job runs through the trace program twice, once with
the fast executor on CUDA (RepOps Triton kernels) and once on the CPU (RepOps C reference),
and every leaf's output root (commitments C4), the trace root (C5) and the output tokens are
compared; a difference names the first divergent leaf (step, op, name). Jobs are spread over
worker processes (one CPU thread each, all sharing the GPU) because hashing every leaf is
Python-bound. `--side cpu` runs only the CPU side and writes tokens + trace roots, so a trace
made on another machine's CPU can be checked against the GPU run with `--cpu-roots FILE`.

Needs on the GPU machine: torch, triton, numpy, jinja2, mpmath, pycryptodome, gguf (wheels in
.whl); no web3/eth-account.

    python scripts/gpu_runtime_report.py --prompts 20 --tokens 64 --workers 14
    python scripts/gpu_runtime_report.py --side cpu --prompts 2 --tokens 64 --write roots.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.cli.trace_options import DEFAULT_SEGMENT  # noqa: E402 - needs the repo root

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three prime numbers.",
    "What does a compiler do?",
    "Give me a synonym for happy.",
    "How many legs does a spider have?",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 7?",
    "Name a famous painter.",
    "Why is the sky blue?",
    "Describe a cat in five words.",
    "What is the boiling point of water?",
    "Suggest a name for a pet dog.",
    "What is machine learning?",
    "Who wrote Romeo and Juliet?",
    "Give one tip for better sleep.",
    "What is the largest planet?",
    "Write a short greeting for a birthday card.",
    "What is the chemical symbol for gold?",
    "Summarize the plot of Cinderella in one line.",
    "What are the colors of the rainbow?",
    "How do airplanes fly?",
    "Recommend a book for a child.",
]

_STATE: dict = {}


def _init(max_ctx: int, sides: tuple[str, ...], segment: int,
          switches: argparse.Namespace) -> None:
    import torch

    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model
    from scripts import cuda_switches

    torch.set_num_threads(1)
    if "cuda" in sides:
        cuda_switches.apply(switches)
    m = load_model("smollm2", max_ctx=max_ctx, segment=segment, with_model_hash=False)
    w = m.weights_by_root()
    _STATE["model"] = m
    q = m.quant_blocks()  # what `ree run` uses (CPU panels; CUDA's Q4_1 decode linears)
    _STATE["ex"] = {side: FastExecutor(m.program, w, side, quant=q) for side in sides}


def _job(args: tuple[int, list[int], int]) -> dict:
    from node.ree.generate import generate

    i, toks, n_new = args
    m = _STATE["model"]
    out: dict = {"job": i, "prompt_tokens": len(toks)}
    runs = {}
    for side, ex in _STATE["ex"].items():
        t0 = time.time()
        try:
            runs[side] = generate(ex, toks, n_new, max_ctx=m.max_ctx)
        except Exception as e:  # reported, not fatal: the report says which job broke
            out[f"{side}_error"] = f"{type(e).__name__}: {e}"
            continue
        r = runs[side]
        out[side] = {"tokens": r.tokens, "trace_root": "0x" + r.trace_root.hex(),
                     "trace_length": r.trace_length, "finish_reason": r.finish_reason,
                     "seconds": round(time.time() - t0, 2), "fallbacks": r.fallbacks}
    if len(runs) == 2:
        a, b = runs["cpu"], runs["cuda"]
        first = next((k for k, (x, y) in enumerate(zip(a.roots, b.roots, strict=False))
                      if x != y), None)
        if first is None and len(a.roots) != len(b.roots):
            first = min(len(a.roots), len(b.roots))
        out["leaves_compared"] = min(len(a.roots), len(b.roots))
        out["all_equal"] = first is None and a.tokens == b.tokens
        if first is not None:
            s, j = divmod(first, m.program.n_ops)
            out["first_divergent"] = {"leaf": first, "step": s, "op": j,
                                      "name": m.program.ops[j].name}
    return out


def _versions(device_side: bool) -> dict:
    import numpy as np
    import torch

    from repops.cpu import kernels

    v = {"python": platform.python_version(), "torch": torch.__version__,
         "numpy": np.__version__, "machine": platform.machine(), "cpu_isa": kernels.isa(),
         "cpu": platform.processor() or _cpu_name()}
    if device_side and torch.cuda.is_available():
        import triton

        v["gpu"] = torch.cuda.get_device_name(0)
        v["triton"] = triton.__version__
        v["cuda"] = torch.version.cuda
        v["driver"] = _driver()
        from node.ree import step_plan_cuda as spc
        from scripts import cuda_switches

        # which kernels ran: the plan's switches change launches, never bits, and the report
        # is the evidence for the setting it ran with
        v["cuda_plan"] = {"qchain": list(spc.QCHAIN), "fuse": spc.FUSE,
                          **cuda_switches.settings()}
    return v


def _driver() -> str:
    """The NVIDIA driver version (nvidia-smi), or '-' where it cannot be read."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30, check=True)
        return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "-"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _markdown(rep: dict) -> str:
    v = rep["versions"]
    lines = [
        "# SmolLM2 trace equality: GPU vs CPU (issue 4)", "",
        f"Generated by `scripts/gpu_runtime_report.py` on {rep['date']}.", "",
        f"- GPU: **{v.get('gpu', 'none')}**, torch {v['torch']}, Triton {v.get('triton', '-')},"
        f" CUDA {v.get('cuda', '-')}, driver {v.get('driver', 'not recorded')}",
        (f"- CPU reference on another machine: {rep['cpu_versions']['cpu']} "
         f"({rep['cpu_versions']['cpu_isa']}, torch {rep['cpu_versions']['torch']})"
         if "cpu_versions" in rep else
         f"- CPU reference on the same host: {v['cpu']} ({v['cpu_isa']})"),
        *([f"- CUDA step plan: {json.dumps(v['cuda_plan'])}"] if "cuda_plan" in v else []),
        f"- Trace program: {rep['n_ops']} trace ops per token (docs/trace-layout.md), max_ctx "
        f"{rep['max_ctx']}, program root `{rep['program_root'][:18]}…`",
        f"- Jobs: {rep['jobs']} prompts × {rep['tokens']} new tokens at most (greedy, chat "
        "template, stop at EOS)",
        "",
        f"**Result: {rep['summary']}**", "",
        "| job | prompt tokens | new tokens | leaves compared | tokens equal | trace root "
        "(both) | all equal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rep["results"]:
        c, g = r.get("cpu", {}), r.get("cuda", {})
        lines.append(f"| {r['job']} | {r['prompt_tokens']} | {len(c.get('tokens', []))} | "
                     f"{r.get('leaves_compared', '-')} | {c.get('tokens') == g.get('tokens')} | "
                     f"`{c.get('trace_root', '-')[:14]}…` | {r.get('all_equal', False)} |")
    if rep.get("cross_machine"):
        x = rep["cross_machine"]
        lines += ["", f"Cross-machine: {x['jobs']} jobs' trace roots computed on "
                  f"{x['source']} equal the GPU's: **{x['equal']}**."]
    if rep.get("same_host_leaf_by_leaf"):
        x = rep["same_host_leaf_by_leaf"]
        lines += ["", f"Same host, leaf by leaf (GPU vs that host's CPU, every op root compared):"
                  f" {x['jobs']} jobs × {x['tokens']} tokens, {x['leaves_compared']} leaves, "
                  f"all equal: **{x['all_equal']}**."]
    if rep.get("note"):
        lines += ["", rep["note"]]
    lines += ["", "A mismatch would name the first divergent leaf (step, op) per job in the JSON."]
    return "\n".join(lines) + "\n"


def compare(args: argparse.Namespace) -> int:
    """Report from a CPU-side file and a GPU-side file (tokens and trace roots per job)."""
    cpu = json.loads(Path(args.compare[0]).read_text())
    gpu = json.loads(Path(args.compare[1]).read_text())
    if cpu["program_root"] != gpu["program_root"]:
        raise SystemExit("the two sides ran different trace programs")
    gj = {j["job"]: j for j in gpu["jobs"]}
    results, leaves = [], 0
    for c in cpu["jobs"]:
        g = gj.get(c["job"], {})
        eq = (g.get("tokens") == c.get("tokens") and g.get("trace_root") == c.get("trace_root")
              and g.get("trace_length") == c.get("trace_length") and "trace_root" in c)
        n = c.get("trace_length", 0) if eq else 0
        leaves += n
        results.append({"job": c["job"], "prompt_tokens": c["prompt_tokens"], "cpu": c,
                        "cuda": g, "leaves_compared": n, "all_equal": eq})
    equal = all(r["all_equal"] for r in results) and len(gj) >= len(results)
    rep = {"date": time.strftime("%Y-%m-%d"), "versions": gpu["versions"],
           "cpu_versions": cpu["versions"], "max_ctx": cpu["max_ctx"], "n_ops": cpu["n_ops"],
           "segment": cpu.get("segment", DEFAULT_SEGMENT),
           "program_root": cpu["program_root"], "jobs": len(results), "tokens": cpu["tokens"],
           "all_equal": equal, "leaves_compared": leaves, "results": results,
           "method": "trace roots (C5) and output tokens per job; equal trace roots over "
                     "equal-length traces mean every leaf (op output root) is equal"}
    rep["cross_machine"] = {"source": f"{cpu['versions']['cpu']} ({cpu['versions']['cpu_isa']}"
                                      f", torch {cpu['versions']['torch']})",
                            "jobs": len(results), "equal": equal}
    if args.same_host:
        sh = json.loads(Path(args.same_host).read_text())
        rep["same_host_leaf_by_leaf"] = {k: sh[k] for k in ("jobs", "tokens", "all_equal",
                                                            "leaves_compared", "versions")}
    if args.note:
        rep["note"] = args.note
    rep["summary"] = (f"{'ALL EQUAL' if equal else 'MISMATCH'}: {leaves} leaves "
                      f"({sum(len(r['cpu'].get('tokens', [])) for r in results)} tokens) in "
                      f"{len(results)} jobs")
    outdir = Path(args.out)
    (outdir / f"{args.name}.json").write_text(json.dumps(rep, indent=1) + "\n")
    (outdir / f"{args.name}.md").write_text(_markdown(rep))
    print(rep["summary"])
    return 0 if equal else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--note", help="--compare: a coverage note for the report")
    ap.add_argument("--only", help="comma-separated job numbers to run (default: all)")
    ap.add_argument("--max-ctx", type=int, default=2048)
    ap.add_argument("--segment", type=int, default=DEFAULT_SEGMENT,
                    help="the trace program's DOT segment (ADR 0012)")
    ap.add_argument("--side", choices=("both", "cpu", "cuda"), default="both")
    ap.add_argument("--write", help="--side cpu|cuda: where to write tokens + trace roots "
                                    "(also appended job by job to WRITE.jsonl)")
    ap.add_argument("--compare", nargs=2, metavar=("CPU_JSON", "GPU_JSON"),
                    help="build the report from two one-side files (another machine's CPU)")
    ap.add_argument("--same-host", help="a --side both report to include as leaf-level "
                                        "evidence from the GPU host's own CPU")
    ap.add_argument("--cpu-roots", help="trace roots from another machine's CPU to compare")
    ap.add_argument("--out", default="docs/reports", help="report directory")
    ap.add_argument("--name", default="runtime-gpu",
                    help="--compare: the report's file name, without .json/.md (one per GPU "
                         "model, e.g. runtime-gpu-h100)")
    from scripts import cuda_switches

    cuda_switches.add_arguments(ap)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.compare:
        return compare(args)

    from node.ree.model import load_model

    t0 = time.time()
    m = load_model("smollm2", max_ctx=args.max_ctx, segment=args.segment, with_model_hash=False,
                   log=lambda s: print(s, file=sys.stderr, flush=True))
    tok = m.tokenizer()
    prompts = (PROMPTS * (1 + args.prompts // len(PROMPTS)))[: args.prompts]
    jobs = [(i, tok.encode_chat(p), args.tokens) for i, p in enumerate(prompts)]
    if args.only:
        keep = {int(x) for x in args.only.split(",")}
        jobs = [j for j in jobs if j[0] in keep]
    sides = ("cpu", "cuda") if args.side == "both" else (args.side,)
    log = Path(args.write + ".jsonl") if args.write else None
    print(f"model ready in {time.time() - t0:.0f}s; {len(jobs)} jobs on {args.workers} workers",
          file=sys.stderr, flush=True)
    ctx = mp.get_context("spawn")
    results = []
    if "cuda" in sides:
        cuda_switches.apply(args)  # here too: the report records the settings
    init = (args.max_ctx, sides, args.segment, args)
    with ctx.Pool(args.workers, initializer=_init, initargs=init) as pool:
        for r in pool.imap_unordered(_job, jobs):
            results.append(r)
            if log is not None:
                with log.open("a") as f:
                    f.write(json.dumps(r) + "\n")
            print(f"job {r['job']}: equal={r.get('all_equal')} "
                  f"{ {k: v for k, v in r.items() if k.endswith('error')} }",
                  file=sys.stderr, flush=True)
    results.sort(key=lambda r: r["job"])
    if args.side != "both":
        out = {"versions": _versions(args.side == "cuda"), "max_ctx": args.max_ctx,
               "segment": args.segment,
               "program_root": "0x" + m.program.root().hex(), "n_ops": m.program.n_ops,
               "tokens": args.tokens, "seconds": round(time.time() - t0, 1),
               "jobs": [{"job": r["job"], "prompt_tokens": r["prompt_tokens"],
                         **r.get(args.side, {}),
                         **{k: v for k, v in r.items() if k.endswith("error")}}
                        for r in results]}
        Path(args.write or f"{args.side}-roots.json").write_text(json.dumps(out, indent=1))
        return 0
    equal = all(r.get("all_equal") for r in results)
    rep = {"date": time.strftime("%Y-%m-%d"), "versions": _versions(True),
           "max_ctx": args.max_ctx, "segment": args.segment, "n_ops": m.program.n_ops,
           "program_root": "0x" + m.program.root().hex(), "jobs": len(jobs),
           "tokens": args.tokens, "all_equal": equal,
           "leaves_compared": sum(r.get("leaves_compared", 0) for r in results),
           "seconds": round(time.time() - t0, 1), "results": results}
    if args.cpu_roots:
        other = json.loads(Path(args.cpu_roots).read_text())
        mine = {r["job"]: r.get("cuda", {}) for r in results}
        same = [mine.get(j["job"], {}).get("trace_root") == j["trace_root"]
                and mine.get(j["job"], {}).get("tokens") == j["tokens"] for j in other["jobs"]]
        rep["cross_machine"] = {"source": f"{other['versions']['cpu']} "
                                          f"({other['versions']['cpu_isa']})",
                                "jobs": len(same), "equal": all(same) and bool(same)}
        equal = equal and rep["cross_machine"]["equal"]
    rep["summary"] = (f"{'ALL EQUAL' if equal else 'MISMATCH'}: "
                      f"{rep['leaves_compared']} leaves in {len(jobs)} jobs")
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "runtime-gpu.json").write_text(json.dumps(rep, indent=1) + "\n")
    (outdir / "runtime-gpu.md").write_text(_markdown(rep))
    print(rep["summary"], file=sys.stderr)
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
