"""Commitment hashing benchmark: C path vs pycryptodome path → docs/reports/bench-commit.md.

Tensor roots (commitments C4) per second and MB/s for SmolLM2-typical trace outputs, Merkle
trees and trace roots (C3, C5), on both paths of `repops.commit` (same bytes, checked here too).

    python scripts/bench_commit.py                 # writes docs/reports/bench-commit.{md,json}
    python scripts/bench_commit.py --seconds 0.5 --out /tmp
    python scripts/bench_commit.py --e2e        # also scripts/bench_runtime.py on both paths
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repops import commit  # noqa: E402

# (label, shape): hidden-state row, MLP-sized output / attention scores, one layer's KV cache
TENSORS = [
    ("576 floats (hidden row)", (576,)),
    ("1536 floats (MLP row)", (1536,)),
    ("49152 floats (vocab logits)", (49152,)),
    ("256x192 KV cache", (256, 192)),
    ("41x576 prefill hidden", (41, 576)),
    ("1536x576 weight (model hash)", (1536, 576)),
]


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second over at least `seconds` (best of 3 windows, the machine is shared)."""
    fn()
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= seconds / 3:
                break
        best = max(best, n / dt)
    return best


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench(seconds: float) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for label, shape in TENSORS:
        arr = rng.standard_normal(shape, dtype=np.float32)
        row = {"tensor": label, "shape": list(shape), "bytes": arr.nbytes}
        roots = {}
        for name in ("python", "c"):
            commit.set_backend(name)
            roots[name] = commit.tensor_root_np(arr)
            row[f"{name}_per_s"] = _rate(lambda a=arr: commit.tensor_root_np(a), seconds)
            row[f"{name}_mb_s"] = row[f"{name}_per_s"] * arr.nbytes / 1e6
        assert roots["python"] == roots["c"], label
        row["speedup"] = row["c_per_s"] / row["python_per_s"]
        rows.append(row)

    trees = []
    leaves_5504 = [commit.keccak256(i.to_bytes(4, "big")) for i in range(5504)]
    cases = [
        ("merkle_levels, 192 leaves", lambda: commit.merkle_levels(leaves_5504[:192])),
        ("trace_root, 5504 ops (1 token)",
         lambda: commit.trace_root(leaves_5504, leaves_5504)),
        ("keccak256, 68 bytes", lambda: commit.keccak256(bytes(68))),
    ]
    for label, fn in cases:
        row = {"case": label}
        for name in ("python", "c"):
            commit.set_backend(name)
            row[f"{name}_per_s"] = _rate(fn, seconds)
        row["speedup"] = row["c_per_s"] / row["python_per_s"]
        trees.append(row)
    commit.set_backend("c")
    weight = rng.standard_normal((1536, 576), dtype=np.float32)
    scaling = []
    saved = os.environ.get("REPOPS_CPU_THREADS")
    for threads in sorted({1, 2, os.cpu_count() or 1}):
        os.environ["REPOPS_CPU_THREADS"] = str(threads)
        scaling.append({
            "threads": threads,
            "weight_mb_s": _rate(lambda: commit.tensor_root_np(weight), seconds)
            * weight.nbytes / 1e6,
            "trace_root_per_s": _rate(lambda: commit.trace_root(leaves_5504, leaves_5504),
                                      seconds),
        })
    if saved is None:
        os.environ.pop("REPOPS_CPU_THREADS")
    else:
        os.environ["REPOPS_CPU_THREADS"] = saved
    commit.set_backend("auto")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs",
        "threads": commit._threads(),
        "tensors": rows,
        "trees": trees,
        "threads_scaling": scaling,
    }


def bench_e2e(tokens: int) -> list[dict]:
    """scripts/bench_runtime.py (CPU, decode at batch 1) once per commit path, in a subprocess
    so each path starts cold; only its trace section is kept."""
    rows = []
    script = Path(__file__).resolve().parent / "bench_runtime.py"
    for name in ("python", "c"):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, str(script), "--device", "cpu", "--tokens", str(tokens),
                 "--no-eager-b32", "--out", tmp],
                check=True, capture_output=True, env={**os.environ, "REPOPS_COMMIT_BACKEND": name},
            )
            rep = json.loads((Path(tmp) / "bench-runtime.json").read_text())
        section = rep["sections"]["cpu"] if "sections" in rep else rep
        rows.append({"backend": name, **section["trace"]})
    return rows


def markdown(r: dict) -> str:
    out = [
        "# Commitment hashing: C keccak vs pycryptodome",
        "",
        "Generated by `scripts/bench_commit.py`. Both paths of `repops/commit.py` give the same "
        "bytes (docs/commitments.md, checked by the script); the C path is "
        "`repops/cpu/csrc/repops_keccak.c`, one call per tensor or tree. "
        f"{r['date']}, {r['machine']}, {r['threads']} hashing threads (tensors of ≥ 64 chunks "
        "split their leaves over threads). Best of 3 windows on a shared machine.",
        "",
        "## Tensor roots (C4), float32",
        "",
        "| tensor | bytes | pycryptodome roots/s | C roots/s | pycryptodome MB/s | C MB/s "
        "| speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in r["tensors"]:
        out.append(
            f"| {t['tensor']} | {t['bytes']} | {t['python_per_s']:.0f} | {t['c_per_s']:.0f} "
            f"| {t['python_mb_s']:.0f} | {t['c_mb_s']:.0f} | {t['speedup']:.1f}× |"
        )
    out += ["", "## Trees (C3, C5) and single hashes", "",
            "| case | pycryptodome /s | C /s | speedup |", "|---|---|---|---|"]
    for t in r["trees"]:
        out.append(f"| {t['case']} | {t['python_per_s']:.1f} | {t['c_per_s']:.1f} "
                   f"| {t['speedup']:.1f}× |")
    out += ["", "## Threads (C path; levels of ≥ 1024 hashes are split over threads)", "",
            "| threads | 1536x576 weight MB/s | trace_root 5504 ops /s |", "|---|---|---|"]
    for t in r["threads_scaling"]:
        out.append(f"| {t['threads']} | {t['weight_mb_s']:.0f} | {t['trace_root_per_s']:.1f} |")
    if r.get("e2e"):
        out += ["", "## End to end: scripts/bench_runtime.py, CPU, SmolLM2 trace executor", "",
                "| commit path | prefill commit s (41 tok) | decode tok/s exec only "
                "| decode tok/s with trace | trace overhead |", "|---|---|---|---|---|"]
        for t in r["e2e"]:
            out.append(f"| {t['backend']} | {t['prefill_commit_s']} | "
                       f"{t['decode_tok_s_exec_only']} | {t['decode_tok_s_with_trace']} | "
                       f"{t['trace_overhead_pct']} % |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument("--e2e", action="store_true", help="also run bench_runtime.py twice")
    parser.add_argument("--e2e-tokens", type=int, default=4)
    parser.add_argument("--name", default="bench-commit", help="report file stem")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "reports")
    args = parser.parse_args(argv)
    if commit.set_backend("c") is None or commit.backend() != "c":
        raise SystemExit("C commitment library unavailable")
    r = bench(args.seconds)
    if args.e2e:
        r["e2e"] = bench_e2e(args.e2e_tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(r, indent=1) + "\n")
    md = markdown(r)
    (args.out / f"{args.name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
