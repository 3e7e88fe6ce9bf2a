"""Commitment hashing benchmark: C path vs pycryptodome path → docs/reports/bench-commit.md.

Tensor roots (commitments C4) per second and MB/s for SmolLM2-typical trace outputs, Merkle
trees and trace roots (C3, C5), on both paths of `repops.commit` (same bytes, checked here too),
and the commitment of one whole SmolLM2 decode step: every distinct output tensor's C4 root, one
C call per tensor (what node/ree/trace.py did) vs one batched call (`tensor_roots_at`, what it
does now), optionally against the C file of an older revision (`--baseline`).

    python scripts/bench_commit.py                 # writes docs/reports/bench-commit.{md,json}
    python scripts/bench_commit.py --seconds 0.5 --out /tmp
    python scripts/bench_commit.py --baseline 74990ca   # also the C keccak of that revision
    python scripts/bench_commit.py --step synthetic     # the built-in leaf mix, no model load
    python scripts/bench_commit.py --e2e        # also scripts/bench_runtime.py on both paths
"""

from __future__ import annotations

import argparse
import ctypes
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
from repops.cpu import build  # noqa: E402

PROMPT = "Explain in a few sentences why the sky is blue."  # scripts/bench_runtime.py's

# One SmolLM2 decode step's distinct output tensors, bytes -> count (4,639 tensors, 24.0 MB;
# the step's 5,569 leaves repeat some tensors, hashed once). Recorded with `--step model`
# (FastExecutor on CPU, PROMPT, step 1); the fallback mix where the model is not available.
DECODE_STEP_MIX = {
    4: 251, 8: 65, 16: 65, 32: 65, 36: 60, 64: 65, 72: 60, 128: 65, 144: 60, 256: 65, 288: 60,
    512: 65, 576: 60, 768: 570, 1024: 65, 1152: 60, 1512: 150, 2048: 65, 2304: 1715, 4096: 4,
    4608: 60, 6144: 600, 8192: 4, 9216: 60, 16384: 4, 18432: 60, 32256: 120, 32768: 4,
    36864: 60, 65536: 4, 131072: 4, 196608: 16, 393216: 8,
}

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


def _interleaved_best(cases: dict, seconds: float) -> dict:
    """Fastest single call of each case, the cases taking turns for `seconds` in all: on a
    shared machine a busy spell then slows every case alike instead of the one that ran in
    it."""
    best = {key: float("inf") for key in cases}
    t_end = time.perf_counter() + seconds
    rounds = 0
    while rounds < 3 or time.perf_counter() < t_end:
        for key, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
        rounds += 1
    return best


def record_step() -> tuple[list[np.ndarray], float, int]:
    """The distinct output tensors of one real SmolLM2 decode step (FastExecutor on CPU, step 1
    after the prompt), that step's execution seconds (best of 3) and the RepOps kernels' thread
    count it ran with."""
    import torch

    from node.ree.fastexec import FastExecutor
    from node.ree.model import load_model
    from repops.cpu import kernels

    model = load_model("smollm2", max_ctx=2048, with_model_hash=False)
    toks = model.tokenizer().encode_chat(PROMPT)
    ex = FastExecutor(model.program, model.weights_by_root(), "cpu")
    exec_s = float("inf")
    with torch.no_grad():
        for _ in range(3):
            ex.reset()
            ex.run_step(0, toks)
            t0 = time.perf_counter()
            outs = ex.run_step(1, toks)
            exec_s = min(exec_s, time.perf_counter() - t0)
    uniq = {id(t): t for t in outs}
    return ([t.detach().contiguous().numpy().copy() for t in uniq.values()], exec_s,
            kernels.threads())


def synthetic_step() -> list[np.ndarray]:
    """DECODE_STEP_MIX as random float32/uint8 tensors (same sizes, same chunk counts)."""
    rng = np.random.default_rng(1)
    out = []
    for size, count in DECODE_STEP_MIX.items():
        for _ in range(count):
            out.append(rng.standard_normal(size // 4, dtype=np.float32) if size % 4 == 0
                       else rng.integers(0, 256, size, dtype=np.uint8))
    return [out[i] for i in rng.permutation(len(out))]


def baseline_library(rev: str) -> ctypes.CDLL:
    """repops_keccak.c of git revision `rev`, compiled alone with the build's flags."""
    src = subprocess.run(["git", "show", f"{rev}:repops/cpu/csrc/repops_keccak.c"], check=True,
                         capture_output=True, cwd=Path(__file__).resolve().parents[1]).stdout
    tmp = Path(tempfile.mkdtemp(prefix="bench-commit-"))
    (tmp / "keccak.c").write_bytes(src)
    cmd = [build._compiler(), *build.CFLAGS, str(tmp / "keccak.c"), "-o", str(tmp / "k.so")]
    subprocess.run(cmd, check=True, capture_output=True)
    lib = ctypes.CDLL(str(tmp / "k.so"))
    P, I64, N = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.repops_tensor_root.argtypes = [P, I64, P, I64, P, N]
    lib.repops_tensor_root.restype = None
    return lib


def _per_tensor(lib: ctypes.CDLL, ptrs: list[int], sizes: list[int], heads: list[bytes],
                threads: int) -> list[bytes]:
    """The former node/ree/trace.py loop: one repops_tensor_root call per tensor, threads only
    for tensors of ≥ 256 KiB."""
    roots = []
    for p, n, h in zip(ptrs, sizes, heads, strict=True):
        out = ctypes.create_string_buffer(32)
        lib.repops_tensor_root(h, len(h), p, n, out, threads if n >= 1 << 18 else 1)
        roots.append(out.raw)
    return roots


def bench_step(arrays: list[np.ndarray], seconds: float, baseline: ctypes.CDLL | None) -> dict:
    """C4 roots of every tensor of one decode step: per-tensor calls vs one batched call."""
    commit.set_backend("c")
    lib = commit._native()
    ptrs = [a.ctypes.data for a in arrays]
    sizes = [a.nbytes for a in arrays]
    heads = [commit.header(a.dtype.name, a.shape) for a in arrays]
    ref = _per_tensor(lib, ptrs, sizes, heads, 1)
    assert commit.tensor_roots_at(ptrs, sizes, heads, 2) == ref
    if baseline is not None:
        assert _per_tensor(baseline, ptrs, sizes, heads, 1) == ref
    total = sum(sizes)
    cases: dict[tuple[int, str], Callable[[], object]] = {}
    for threads in (1, 2):
        cases[threads, "batched"] = \
            lambda t=threads: commit.tensor_roots_at(ptrs, sizes, heads, t)
        cases[threads, "per_tensor"] = lambda t=threads: _per_tensor(lib, ptrs, sizes, heads, t)
        if baseline is not None:
            cases[threads, "baseline_per_tensor"] = \
                lambda t=threads: _per_tensor(baseline, ptrs, sizes, heads, t)
    best = _interleaved_best(cases, seconds * len(cases) / 2)
    rows = []
    for threads in (1, 2):
        row: dict = {"threads": threads}
        for (t, name), sec in best.items():
            if t == threads:
                row[f"{name}_ms"] = sec * 1e3
                row[f"{name}_mb_s"] = total / sec / 1e6
        rows.append(row)
    commit.set_backend("auto")
    return {"tensors": len(arrays), "bytes": total,
            "chunks": sum(max(1, -(-n // commit.CHUNK_BYTES)) for n in sizes), "rows": rows}


def single_thread_tensors(seconds: float, baseline: ctypes.CDLL | None) -> list[dict]:
    """MB/s of one tensor root per call, one thread: this revision vs the baseline's C file."""
    rng = np.random.default_rng(0)
    lib = commit._native()
    rows = []
    for label, shape in TENSORS:
        arr = rng.standard_normal(shape, dtype=np.float32)
        head = commit.header("float32", shape)
        row = {"tensor": label, "bytes": arr.nbytes}
        libs = {"c": lib} if baseline is None else {"baseline": baseline, "c": lib}
        args = ([arr.ctypes.data], [arr.nbytes], [head], 1)
        cases = {name: lambda lb=lb, a=args: _per_tensor(lb, *a) for name, lb in libs.items()}
        for name, sec in _interleaved_best(cases, seconds * len(cases) / 2).items():
            row[f"{name}_mb_s"] = arr.nbytes / sec / 1e6
        rows.append(row)
    return rows


def _versions() -> dict:
    import Crypto

    cc = subprocess.run([build._compiler(), "--version"], capture_output=True, text=True)
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1])
    flags = build._cpu_flags().split()
    return {"python": platform.python_version(), "numpy": np.__version__,
            "pycryptodome": Crypto.__version__, "cc": cc.stdout.splitlines()[0],
            "cflags": " ".join(build.CFLAGS), "git": rev.stdout.strip(),
            "avx512f": "avx512f" in flags, "avx2": "avx2" in flags}


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
    v = r.get("versions", {})
    out = [
        "# Commitment hashing: C keccak vs pycryptodome",
        "",
        "Generated by `scripts/bench_commit.py`. Both paths of `repops/commit.py` give the same "
        "bytes (docs/commitments.md, checked by the script); the C path is "
        "`repops/cpu/csrc/repops_keccak.c`: keccak-f1600 on 8 lanes at once (AVX-512) or 4 "
        "(AVX2) for equal-length messages, one call per tensor or tree, or one call per trace step "
        "(`tensor_roots_at`). "
        f"{r['date']}, {r['machine']}, {r['threads']} hashing threads. The machine is shared "
        "with other jobs (load average at the start "
        f"{' / '.join(f'{x:.2f}' for x in r.get('load_avg', []))}), so every number is a best "
        "case: the decode-step and one-thread tables keep each case's fastest call, the cases "
        "timed in turns; the others the best of 3 timing windows.",
        "",
    ]
    if v:
        out += [f"Versions: git {v['git']}, Python {v['python']}, NumPy {v['numpy']}, "
                f"pycryptodome {v['pycryptodome']}, {v['cc']}, `{v['cflags']}`, "
                f"AVX-512F {'yes' if v['avx512f'] else 'no'}, "
                f"AVX2 {'yes' if v.get('avx2') else 'no'}.", ""]
    st = r.get("step")
    if st:
        base = r.get("baseline")
        out += ["## One SmolLM2 decode step: C4 roots of every distinct output tensor", "",
                f"{st['source']}: {st['tensors']} tensors, {st['bytes'] / 1e6:.1f} MB, "
                f"{st['chunks']} chunks of 1 KiB."
                + (f" Executing the step (FastExecutor, CPU, RepOps kernels on "
                   f"{st['exec_threads']} thread(s), best of 3): {st['exec_ms']:.0f} ms."
                   if st.get("exec_ms") else ""),
                "Per tensor = one `repops_tensor_root` call per tensor (node/ree/trace.py "
                "before); batched = one `tensor_roots_at` call for the step (now)"
                + (f"; baseline = the per-tensor calls on the C file of revision {base} "
                   "(scalar keccak)." if base else "."), ""]
        head = "| threads |" + (" baseline per tensor |" if base else "") + \
            " per tensor | batched | batched MB/s |" + (" speedup vs baseline |" if base else "") \
            + (" batched / execution |" if st.get("exec_ms") else "")
        out += [head, "|" + "---|" * (head.count("|") - 1)]
        for t in st["rows"]:
            line = f"| {t['threads']} |"
            if base:
                line += f" {t['baseline_per_tensor_ms']:.1f} ms |"
            line += f" {t['per_tensor_ms']:.1f} ms | {t['batched_ms']:.1f} ms " \
                    f"| {t['batched_mb_s']:.0f} |"
            if base:
                line += f" {t['baseline_per_tensor_ms'] / t['batched_ms']:.1f}× |"
            if st.get("exec_ms"):
                line += f" {100 * t['batched_ms'] / st['exec_ms']:.1f} % |"
            out.append(line)
        out.append("")
    if r.get("single_thread"):
        base = r.get("baseline")
        out += ["## One tensor per call, one thread (MB/s)", "",
                "| tensor | bytes |" + (f" {base} (scalar) |" if base else "") + " now |"
                + (" speedup |" if base else ""),
                "|---|---|" + ("---|" if base else "") + "---|" + ("---|" if base else "")]
        for t in r["single_thread"]:
            line = f"| {t['tensor']} | {t['bytes']} |"
            if base:
                line += f" {t['baseline_mb_s']:.0f} |"
            line += f" {t['c_mb_s']:.0f} |"
            if base:
                line += f" {t['c_mb_s'] / t['baseline_mb_s']:.1f}× |"
            out.append(line)
        out.append("")
    out += [
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
    out += ["", "## Threads (C path; levels of ≥ 8192 permutations are split over threads)", "",
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
    parser.add_argument("--baseline", metavar="REV",
                        help="also time repops_keccak.c of this git revision (per tensor)")
    parser.add_argument("--step", choices=("model", "synthetic", "none"), default="model",
                        help="decode-step leaves: recorded from SmolLM2 (falls back to the "
                        "built-in mix when the model cannot load), the built-in mix, or skip")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "reports")
    args = parser.parse_args(argv)
    if commit.set_backend("c") is None or commit.backend() != "c":
        raise SystemExit("C commitment library unavailable")
    load_avg = os.getloadavg()
    r = bench(args.seconds)
    r["load_avg"] = load_avg
    r["versions"] = _versions()
    baseline = baseline_library(args.baseline) if args.baseline else None
    r["baseline"] = args.baseline
    commit.set_backend("c")
    r["single_thread"] = single_thread_tensors(args.seconds, baseline)
    if args.step != "none":
        arrays, exec_s, exec_threads = None, None, None
        source = "built-in leaf mix (DECODE_STEP_MIX)"
        if args.step == "model":
            try:
                arrays, exec_s, exec_threads = record_step()
                source = "recorded SmolLM2 decode step"
            except Exception as e:  # no model, no torch: the built-in mix of the same sizes
                print(f"recording a step failed ({type(e).__name__}: {e}); built-in mix",
                      file=sys.stderr)
        if arrays is None:
            arrays = synthetic_step()
        r["step"] = {"source": source, "exec_ms": exec_s * 1e3 if exec_s else None,
                     "exec_threads": exec_threads,
                     **bench_step(arrays, args.seconds, baseline)}
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
