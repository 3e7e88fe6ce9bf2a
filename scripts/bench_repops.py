#!/usr/bin/env python3
"""GEMM throughput of the RepOps Triton matmul vs cuBLAS (torch.matmul fp32 with TF32 off, and
bf16), at 4096^3, 8192^3 and the SmolLM2 shapes. Results merge into
docs/reports/bench-repops.json + .md, one section per GPU model (DESIGN §9: benchmarks, not
timed tests).

    python3 scripts/bench_repops.py [--sweep] [--out-dir docs/reports]

--sweep also times candidate tile configs (and checks that every config gives the same bits,
as RepOps spec §3 requires: tiling must not change the k-order).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REPORT = ROOT / "docs" / "reports" / "bench-repops.json"

SMOL_KN = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)]
SWEEP_GEMM = [
    (128, 128, 32, 8, 8, 3), (64, 64, 32, 8, 4, 3), (64, 64, 64, 8, 4, 3), (64, 128, 32, 8, 4, 3),
    (128, 64, 32, 8, 4, 3), (64, 64, 32, 8, 2, 3), (64, 64, 32, 8, 4, 4), (64, 64, 32, 8, 4, 2),
    (128, 128, 32, 8, 8, 4), (32, 64, 32, 8, 2, 3), (64, 32, 32, 8, 2, 3), (128, 128, 64, 8, 8, 2),
    (64, 128, 64, 8, 8, 2), (32, 32, 32, 8, 1, 3), (16, 64, 32, 8, 1, 3), (32, 64, 64, 8, 2, 3),
    (64, 128, 32, 8, 4, 4), (16, 32, 32, 8, 1, 3), (16, 32, 64, 8, 1, 3), (16, 16, 32, 8, 1, 3),
]
SWEEP_GEMV_NS = [(128, 32, 4, 2), (128, 32, 4, 3), (128, 16, 4, 3), (64, 32, 2, 3),
                 (64, 16, 2, 4), (32, 32, 1, 3), (256, 32, 8, 3), (128, 32, 4, 1)]
SWEEP_GEMV = [(32, 64, 1), (32, 128, 1), (64, 64, 2), (128, 64, 4), (128, 32, 4), (256, 32, 8),
              (64, 32, 2), (32, 32, 1), (256, 64, 8), (128, 128, 4)]


GEMV_COLS = "BN, BK, warps[, stages]"
GEMM_COLS = "BM, BN, BK, GROUP_M, warps, stages"


def _bench(fn, ms: int = 300) -> float:
    import triton

    return triton.testing.do_bench(fn, warmup=50, rep=ms, return_mode="median")


def _bench_graph(fn, reps: int = 20) -> float:
    """Per-call device time from a CUDA graph of `reps` calls (METHOD.md): small shapes are
    otherwise dominated by host launch overhead (Python wrapper + Triton launcher)."""
    import torch

    fn()
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    return _bench(g.replay) / reps


def _tflops(m: int, n: int, k: int, t_ms: float) -> float:
    return 2.0 * m * n * k / (t_ms * 1e-3) / 1e12


def _inputs(m: int, k: int, n: int):
    import torch

    g = torch.Generator(device="cuda").manual_seed(m * 7 + n * 13 + k)
    a = torch.randn(m, k, device="cuda", generator=g)
    b = torch.randn(k, n, device="cuda", generator=g)
    return a, b


def shape_row(m: int, k: int, n: int) -> dict:
    import torch

    from repops.gpu.matmul import linear, matmul

    a, b = _inputs(m, k, n)
    torch.backends.cuda.matmul.allow_tf32 = False
    a16, b16 = a.bfloat16(), b.bfloat16()
    small = m * n * k < 2**31
    tb = _bench_graph if small else _bench  # graphs only where launch overhead matters
    t_rep = tb(lambda: matmul(a, b))
    t_sgemm = tb(lambda: torch.matmul(a, b))
    t_bf16 = tb(lambda: torch.matmul(a16, b16))
    row = {"M": m, "K": k, "N": n, "repops_ms": t_rep, "sgemm_ms": t_sgemm, "bf16_ms": t_bf16,
           "repops_tflops": _tflops(m, n, k, t_rep), "sgemm_tflops": _tflops(m, n, k, t_sgemm),
           "bf16_tflops": _tflops(m, n, k, t_bf16), "vs_sgemm": t_sgemm / t_rep,
           "vs_bf16": t_bf16 / t_rep}
    if m <= 32:  # decode-style: weights stored [N, K] (spec §3.3 linear) and memory bandwidth
        w = b.t().contiguous()
        t_lin = tb(lambda: linear(a, w))
        t_tlin = tb(lambda: torch.nn.functional.linear(a, w))
        row["repops_eager_ms"] = _bench(lambda: matmul(a, b))
        row.update({"linear_ms": t_lin, "torch_linear_fp32_ms": t_tlin,
                    "repops_GBps": 4.0 * k * n / (t_rep * 1e-3) / 1e9})
    return row


def sweep(m: int, k: int, n: int, gemv: bool) -> dict:
    import torch

    from repops.gpu.matmul import matmul

    a, b = _inputs(m, k, n)
    ref = matmul(a, b).view(torch.int32)
    tb = _bench_graph if m * n * k < 2**31 else _bench
    res = []
    for cfg in (SWEEP_GEMV if gemv else SWEEP_GEMM):
        try:
            out = matmul(a, b, cfg=cfg, gemv=gemv)
            same = bool(torch.equal(out.view(torch.int32), ref))
            t = tb(lambda cfg=cfg: matmul(a, b, cfg=cfg, gemv=gemv))
            res.append({"cfg": list(cfg), "ms": t, "tflops": _tflops(m, n, k, t),
                        "bits_equal_default": same})
        except Exception as e:  # a config may not fit in shared memory / registers
            res.append({"cfg": list(cfg), "error": f"{type(e).__name__}: {str(e)[:120]}"})
        print("sweep", m, k, n, res[-1], flush=True)
    return {"M": m, "K": k, "N": n, "gemv": gemv, "results": res}


def render(rep: dict) -> str:
    out = ["# RepOps GEMM benchmark", "",
           "Generated by `scripts/bench_repops.py`. RepOps = the Triton matmul of `repops/gpu` "
           "(ascending-k fma chain, bit-identical to the CPU reference); SGEMM = `torch.matmul` "
           "fp32 with TF32 off (cuBLAS); bf16 = `torch.matmul` on bf16 copies. Median of "
           "`triton.testing.do_bench`; shapes under 2^31 FLOP are timed as CUDA-graph replays "
           "(device time per call, no host launch overhead; `eager ms` shows the latter for "
           "M <= 32). `x SGEMM` > 1 means RepOps is faster.", ""]
    for name, sec in sorted(rep.get("runs", {}).items()):
        e = sec["env"]
        out += [f"## {name}", "", f"- driver {e['driver']}, CUDA {e['cuda']}, torch {e['torch']},"
                f" Triton {e['triton']}; run {e['date']}; commit `{sec.get('commit', '?')}`", "",
                "| M | K | N | RepOps TFLOP/s | SGEMM TFLOP/s | bf16 TFLOP/s | x SGEMM | x bf16 |"
                " RepOps ms | linear([N,K]) ms | torch linear fp32 ms | RepOps eager ms |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sec["shapes"]:
            out.append(f"| {r['M']} | {r['K']} | {r['N']} | {r['repops_tflops']:.2f} | "
                       f"{r['sgemm_tflops']:.2f} | {r['bf16_tflops']:.2f} | {r['vs_sgemm']:.3f} | "
                       f"{r['vs_bf16']:.3f} | {r['repops_ms']:.4f} | "
                       f"{r.get('linear_ms', float('nan')):.4f} | "
                       f"{r.get('torch_linear_fp32_ms', float('nan')):.4f} | "
                       f"{r.get('repops_eager_ms', float('nan')):.4f} |")
        for sw in sec.get("sweeps", []) + sec.get("sweeps_big", []) + sec.get("sweeps_gemv", []):
            out += ["", f"Sweep M={sw['M']} K={sw['K']} N={sw['N']} "
                    f"({'gemv' if sw['gemv'] else 'gemm'}; cfg = "
                    f"{GEMV_COLS if sw['gemv'] else GEMM_COLS})",
                    "", "| cfg | TFLOP/s | ms | same bits |", "|---|---:|---:|---|"]
            for r in sw["results"]:
                if "error" in r:
                    out.append(f"| {r['cfg']} | - | - | {r['error']} |")
                else:
                    out.append(f"| {r['cfg']} | {r['tflops']:.2f} | {r['ms']:.4f} | "
                               f"{r['bits_equal_default']} |")
        out.append("")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--no-shapes", action="store_true")
    ap.add_argument("--sweep-big", action="store_true", help="GROUP_M/stages sweep at 8192^3")
    ap.add_argument("--sweep-gemv", action="store_true", help="fma-loop kernel with pipelining")
    ap.add_argument("--out-dir", type=Path, default=REPORT.parent)
    ap.add_argument("--commit", default="?")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    rep = json.loads(REPORT.read_text()) if REPORT.exists() else {"runs": {}}
    if not args.render:
        import subprocess

        import torch
        import triton

        drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True).stdout
        env = {"gpu": torch.cuda.get_device_name(0), "driver": drv.strip(),
               "cuda": torch.version.cuda, "torch": torch.__version__,
               "triton": triton.__version__,
               "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
        sec = rep["runs"].get(env["gpu"], {})
        sec.update({"env": env, "commit": args.commit})
        if args.sweep_big:
            global SWEEP_GEMM
            SWEEP_GEMM = [(64, 128, 32, g, 4, st) for g in (4, 8, 16) for st in (3, 4, 5)]
            SWEEP_GEMM += [(64, 128, 32, 8, 8, 4), (128, 64, 32, 8, 4, 4), (32, 128, 32, 8, 4, 4),
                           (64, 256, 32, 8, 8, 4)]
            sec["sweeps_big"] = [sweep(8192, 8192, 8192, False)]
        if args.sweep_gemv:
            global SWEEP_GEMV
            SWEEP_GEMV = SWEEP_GEMV_NS
            sec["sweeps_gemv"] = [sweep(1, 576, 49152, True), sweep(1, 576, 1536, True),
                                  sweep(1, 1536, 576, True), sweep(1, 576, 576, True)]
        if args.sweep:
            sec["sweeps"] = [sweep(4096, 4096, 4096, False), sweep(8192, 8192, 8192, False),
                             sweep(1, 576, 49152, True), sweep(1, 576, 1536, True),
                             sweep(1, 1536, 576, True), sweep(32, 576, 1536, False),
                             sweep(32, 1536, 576, False), sweep(512, 576, 1536, False),
                             sweep(512, 576, 49152, False), sweep(1, 576, 1536, False),
                             sweep(1, 1536, 576, False), sweep(32, 576, 576, False)]
        if not args.no_shapes:
            shapes = [(4096, 4096, 4096), (8192, 8192, 8192)]
            shapes += [(m, k, n) for m in (1, 32, 512) for (k, n) in SMOL_KN]
            sec["shapes"] = []
            for s in shapes:
                sec["shapes"].append(shape_row(*s))
                print(json.dumps(sec["shapes"][-1]), flush=True)
        sec.setdefault("shapes", [])
        rep["runs"][env["gpu"]] = sec
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bench-repops.json").write_text(json.dumps(rep, indent=1) + "\n")
    (args.out_dir / "bench-repops.md").write_text(render(rep))
    print(render(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
