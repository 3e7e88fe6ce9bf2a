#!/usr/bin/env python3
"""Exhaustive proof that the RepOps exp and log are correctly rounded (RepOps spec §5).

For every one of the 2^32 binary32 bit patterns the correctly rounded (RNE) result is computed
independently of the implementation and compared bit for bit (docs/spec-exp-log.md §6):

* oracle `numpy-mpmath` (default on cpu): numpy's binary64 exp/log (a different algorithm and
  library), then a rounding-boundary test: if the binary64 value lies within 2^-44 (relative)
  of a binary32 rounding boundary, far beyond numpy's few-ulp error, the result is decided by
  mpmath at 200 bits, whose value is then required to be at least 2^-180 away from the
  boundary;
* oracle `clib` (default on cuda when mpmath is missing): the C library of
  repops/cpu/csrc/crmath.c compiled on the same machine, itself proven by the cpu run.

Implementations under test: the C library (`--device cpu`, compiled here with the project's
flags -O3 -ffp-contract=off -fno-fast-math) or the Triton kernels of repops/gpu/crmath.py
(`--device cuda`). The report goes to docs/reports/exp-log-exhaustive.{json,md}, one entry per
device. `--find-hard` enumerates the inputs that need the hard-case table and `--write-tables`
rewrites the tables in crmath.c / crmath.py; full cpu runs with `--write-vectors` record the
inputs closest to a rounding boundary in tests/vectors/exp_log_hard.json.

    nice .venv/bin/python scripts/check_exp_log_exhaustive.py --device cpu --func both
    .venv/bin/python scripts/check_exp_log_exhaustive.py --sample 1000000
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import json
import multiprocessing as mp
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "repops" / "cpu" / "csrc"
C_SOURCE = CSRC / "crmath.c"
PY_SOURCE = ROOT / "repops" / "gpu" / "crmath.py"
REPORT_DIR = ROOT / "docs" / "reports"
VECTORS = ROOT / "tests" / "vectors" / "exp_log_hard.json"
CFLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC"]
FUNCS = ("exp", "log")
WHICH = {"exp": 0, "log": 1}
CANON_NAN = 0x7FC00000
TOTAL = 1 << 32
NEAR_TOL = 2.0**-44  # relative: numpy's binary64 exp/log err by a few ulps (2^-52), not 2^8 more
MP_PREC = 200
MP_MIN_GAP = 2.0**-180  # mpmath's 200-bit value must be this far (relative) from a boundary
CLOSEST_KEEP = 32


# ----------------------------------------------------------------------------- C library


def build_clib(out_dir: Path | None = None) -> Path:
    """Compile crmath.c with the project's flags into a private shared library."""
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="crmath_"))
    out = out_dir / "libcrmath_check.so"
    cmd = ["gcc", *CFLAGS, f"-I{CSRC}", str(C_SOURCE), "-o", str(out), "-lm"]
    subprocess.run(cmd, check=True)
    return out


class CLib:
    """ctypes binding of the C API declared in repops/cpu/csrc/crmath.h."""

    def __init__(self, path: Path | str) -> None:
        lib = ctypes.CDLL(str(path))
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        for name in ("repops_exp_f32", "repops_log_f32"):
            getattr(lib, name).argtypes = [p, p, i64]
            getattr(lib, name).restype = None
        for name in ("repops_expf", "repops_logf"):
            getattr(lib, name).argtypes = [ctypes.c_float]
            getattr(lib, name).restype = ctypes.c_float
        lib.repops_crmath_approx_f64.argtypes = [ctypes.c_int, p, p, i64]
        lib.repops_crmath_find_hard.argtypes = [ctypes.c_int, ctypes.c_uint32, i64, p, i64]
        lib.repops_crmath_find_hard.restype = i64
        lib.repops_crmath_table_size.argtypes = [ctypes.c_int]
        lib.repops_crmath_table_size.restype = i64
        u32p = ctypes.POINTER(ctypes.c_uint32)
        lib.repops_crmath_table_entry.argtypes = [ctypes.c_int, i64, u32p, u32p]
        self.lib = lib

    def apply(self, func: str, bits: np.ndarray) -> np.ndarray:
        """Result bits of the array API (repops_exp_f32 / repops_log_f32)."""
        x = np.ascontiguousarray(bits, dtype=np.uint32).view(np.float32)
        y = np.empty_like(x)
        getattr(self.lib, f"repops_{func}_f32")(x.ctypes.data, y.ctypes.data, x.size)
        return y.view(np.uint32)

    def scalar(self, func: str, bits: int) -> int:
        x = np.array([bits], np.uint32).view(np.float32)[0]
        r = getattr(self.lib, f"repops_{func}f")(float(x))
        return int(np.array([r], np.float32).view(np.uint32)[0])

    def approx(self, func: str, bits: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(bits, dtype=np.uint32).view(np.float32)
        y = np.empty(x.size, np.float64)
        self.lib.repops_crmath_approx_f64(WHICH[func], x.ctypes.data, y.ctypes.data, x.size)
        return y

    def find_hard(self, func: str, first: int, count: int) -> np.ndarray:
        out = np.zeros(4096, np.uint32)
        n = self.lib.repops_crmath_find_hard(WHICH[func], first, count, out.ctypes.data, out.size)
        if n > out.size:
            raise RuntimeError(f"{func}: {n} hard cases in one range, more than expected")
        return out[:n].copy()

    def table(self, func: str) -> list[tuple[int, int]]:
        n = self.lib.repops_crmath_table_size(WHICH[func])
        a, b = ctypes.c_uint32(), ctypes.c_uint32()
        rows = []
        for i in range(n):
            self.lib.repops_crmath_table_entry(WHICH[func], i, ctypes.byref(a), ctypes.byref(b))
            rows.append((a.value, b.value))
        return rows


# ----------------------------------------------------------------------------- oracle


def _mp():
    import mpmath

    mpmath.mp.prec = MP_PREC
    return mpmath


def mp_correct_rounding(func: str, xbits: int) -> tuple[int, float]:
    """Correctly rounded result bits by mpmath and the distance (in ulps) to the boundary.

    The binary32 neighbours of the 200-bit value are compared with the exact midpoints
    (binary64 holds them exactly), so no double rounding can occur."""
    mpm = _mp()
    x = float(np.array([xbits], np.uint32).view(np.float32)[0])
    v = mpm.exp(mpm.mpf(x)) if func == "exp" else mpm.log(mpm.mpf(x))
    r = np.float32(float(v)) if abs(v) < 2**128 else np.float32(np.inf) * np.sign(float(v))
    for _ in range(3):
        lo, hi = _midpoints(np.array([r], np.float32))
        lo, hi = float(lo[0]), float(hi[0])
        if v < lo:
            r = np.nextafter(r, np.float32(-np.inf))
        elif v > hi:
            r = np.nextafter(r, np.float32(np.inf))
        else:
            break
    gap = min(abs(v - lo), abs(v - hi))
    if gap <= abs(v) * MP_MIN_GAP:
        raise ArithmeticError(f"{func}({xbits:#010x}) too close to a rounding boundary for mpmath")
    dist_ulp = float(gap / (hi - lo)) if hi != lo else float("inf")
    return int(np.array([r], np.float32).view(np.uint32)[0]), dist_ulp


def _midpoints(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper rounding boundaries (binary64, exact) of binary32 values r.

    The float after FLT_MAX is taken as 2^128, so the upper boundary of FLT_MAX is the
    overflow threshold (IEEE 754 §4.3.1)."""
    big = np.float64(2.0**128)

    def wide(v: np.ndarray) -> np.ndarray:
        d = v.astype(np.float64)
        return np.where(np.isinf(d), np.copysign(big, d), d)

    rr = wide(r)
    dn = wide(np.nextafter(r, np.float32(-np.inf)))
    up = wide(np.nextafter(r, np.float32(np.inf)))
    return (rr + dn) * 0.5, (rr + up) * 0.5


def oracle(func: str, bits: np.ndarray) -> tuple[np.ndarray, int, list]:
    """Correctly rounded result bits of all inputs (docs/spec-exp-log.md §6).

    Returns (expected bits, number of inputs decided by mpmath, closest cases)."""
    with np.errstate(all="ignore"):
        x = bits.view(np.float32).astype(np.float64)
        y = np.exp(x) if func == "exp" else np.log(x)
        r = y.astype(np.float32)
        lo, hi = _midpoints(r)
        tol = np.abs(y) * NEAR_TOL
        near = np.isfinite(y) & ((np.abs(y - lo) <= tol) | (np.abs(y - hi) <= tol))
    expected = r.view(np.uint32).copy()
    expected[np.isnan(y)] = CANON_NAN
    closest = []
    idx = np.flatnonzero(near)
    for i in idx:
        xb = int(bits[i])
        expected[i], dist = mp_correct_rounding(func, xb)
        closest.append((dist, xb, int(expected[i])))
    closest.sort()
    return expected, int(idx.size), closest[:CLOSEST_KEEP]


# ----------------------------------------------------------------------------- workers

_WORKER_LIB: CLib | None = None


def _worker_init(lib_path: str) -> None:
    global _WORKER_LIB
    _WORKER_LIB = CLib(lib_path) if lib_path else None


def _chunk_bits(task: tuple) -> np.ndarray:
    if task[0] == "range":
        return np.arange(task[1], task[1] + task[2], dtype=np.uint64).astype(np.uint32)
    return task[1]


def _compare(got: np.ndarray, expected: np.ndarray, bits: np.ndarray, keep: int = 10) -> tuple:
    bad = np.flatnonzero(got != expected)
    first = [(int(bits[i]), int(got[i]), int(expected[i])) for i in bad[:keep]]
    return int(bad.size), first


def task_check_clib(args: tuple) -> dict:
    """Worker: C library against the independent oracle on one chunk."""
    func, task = args
    bits = _chunk_bits(task)
    expected, nfb, closest = oracle(func, bits)
    nbad, first = _compare(_WORKER_LIB.apply(func, bits), expected, bits)
    return {"n": int(bits.size), "bad": nbad, "first": first, "fallbacks": nfb,
            "closest": closest}


def task_oracle(args: tuple) -> dict:
    """Worker: expected bits of one chunk (for the cuda device)."""
    func, task = args
    bits = _chunk_bits(task)
    expected, nfb, closest = oracle(func, bits)
    return {"expected": expected, "fallbacks": nfb, "closest": closest}


# ----------------------------------------------------------------------------- drivers


def make_tasks(sample: int | None, chunk: int, seed: int) -> list[tuple]:
    if sample is None:
        return [("range", s, min(chunk, TOTAL - s)) for s in range(0, TOTAL, chunk)]
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, TOTAL, sample, dtype=np.uint64).astype(np.uint32)
    return [("bits", bits[i:i + chunk]) for i in range(0, sample, chunk)]


class Progress:
    def __init__(self, func: str, total: int) -> None:
        self.func, self.total, self.done, self.bad = func, total, 0, 0
        self.t0 = self.last = time.time()

    def update(self, n: int, bad: int) -> None:
        self.done += n
        self.bad += bad
        now = time.time()
        if now - self.last >= 10 or self.done == self.total:
            self.last = now
            el = now - self.t0
            eta = el / self.done * (self.total - self.done) if self.done else 0
            print(f"  {self.func}: {100 * self.done / self.total:5.1f}% ({self.done} inputs), "
                  f"{self.bad} misrounded, {el:.0f} s elapsed, eta {eta:.0f} s", flush=True)


def _merge(func: str, results, total: int, progress: Progress) -> dict:
    out = {"inputs_checked": 0, "misrounded": 0, "first_mismatches": [], "mpmath_decided": 0,
           "closest": []}
    for res in results:
        out["inputs_checked"] += res["n"]
        out["misrounded"] += res["bad"]
        out["first_mismatches"] += res["first"][: 10 - len(out["first_mismatches"])]
        out["mpmath_decided"] += res.get("fallbacks", 0)
        out["closest"] = sorted(out["closest"] + res.get("closest", []))[:CLOSEST_KEEP]
        progress.update(res["n"], res["bad"])
    return out


def run_cpu(func: str, tasks: list, lib_path: Path, workers: int, total: int) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(str(lib_path),)) as pool:
        it = pool.imap_unordered(task_check_clib, [(func, t) for t in tasks])
        return _merge(func, it, total, Progress(func, total))


def run_cpu_vs_clib(func: str, tasks: list, impl: CLib, ref: CLib, workers: int,
                    total: int) -> dict:
    """Another build of the C library (e.g. the project's -march=native one) against the
    reference build proven by the numpy-mpmath run."""

    def one(task):
        bits = _chunk_bits(task)
        nbad, first = _compare(impl.apply(func, bits), ref.apply(func, bits), bits)
        return {"n": int(bits.size), "bad": nbad, "first": first}

    with ThreadPoolExecutor(workers) as ex:  # ctypes releases the GIL
        return _merge(func, ex.map(one, tasks), total, Progress(func, total))


_TRITON_MOD = None


def _triton_crmath():
    """repops/gpu/crmath.py loaded by path: independent of the rest of the package."""
    global _TRITON_MOD
    if _TRITON_MOD is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("repops_gpu_crmath_checked", PY_SOURCE)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        _TRITON_MOD = mod
    return _TRITON_MOD


def _cuda_apply(func: str, bits: np.ndarray):
    import torch

    crmath = _triton_crmath()
    x = torch.from_numpy(bits.view(np.int32)).cuda().view(torch.float32)
    y = (crmath.exp_f32 if func == "exp" else crmath.log_f32)(x)
    return y.view(torch.int32).cpu().numpy().view(np.uint32)


def run_cuda(func: str, tasks: list, oracle_name: str, lib: CLib, workers: int,
             total: int) -> dict:
    """Triton kernels on the GPU; expected bits from the oracle computed on the CPU cores."""
    progress = Progress(func, total)

    def results():
        if oracle_name == "clib":
            with ThreadPoolExecutor(workers) as ex:
                for task in tasks:
                    bits = _chunk_bits(task)
                    parts = np.array_split(bits, workers)
                    expected = np.concatenate(list(ex.map(lambda b: lib.apply(func, b), parts)))
                    nbad, first = _compare(_cuda_apply(func, bits), expected, bits)
                    yield {"n": int(bits.size), "bad": nbad, "first": first}
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init, initargs=("",)) as pool:
                it = pool.imap(task_oracle, [(func, t) for t in tasks])
                for task, ores in zip(tasks, it, strict=True):
                    bits = _chunk_bits(task)
                    nbad, first = _compare(_cuda_apply(func, bits), ores["expected"], bits)
                    yield {"n": int(bits.size), "bad": nbad, "first": first,
                           "fallbacks": ores["fallbacks"], "closest": ores["closest"]}

    return _merge(func, results(), total, progress)


# ----------------------------------------------------------------------------- hard tables


def find_hard(lib: CLib, workers: int) -> dict[str, list[tuple[int, int]]]:
    """All inputs whose binary64 approximation fails the rounding test, with mpmath results."""
    step = 1 << 26
    tables = {}
    for func in FUNCS:
        t0 = time.time()
        with ThreadPoolExecutor(workers) as ex:
            parts = ex.map(lambda s, f=func: lib.find_hard(f, s, step), range(0, TOTAL, step))
            hard = np.concatenate(list(parts))
        tables[func] = [(int(b), mp_correct_rounding(func, int(b))[0]) for b in hard]
        print(f"  {func}: {len(hard)} hard inputs ({time.time() - t0:.0f} s)", flush=True)
    return tables


def _signed(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def write_tables(tables: dict[str, list[tuple[int, int]]]) -> None:
    """Rewrite the marked hard-case regions of crmath.c and crmath.py."""
    c_src, py_src = C_SOURCE.read_text(), PY_SOURCE.read_text()
    for func, rows in tables.items():
        c_rows = "".join(f"    {{0x{a:08X}u, 0x{b:08X}u}},\n" for a, b in rows)
        c_src = re.sub(rf"(/\* BEGIN HARD TABLE {func} \*/\n).*?(    /\* END HARD TABLE)",
                       lambda m, r=c_rows: m.group(1) + r + m.group(2), c_src, flags=re.S)
        py_rows = "".join(f"    r = tl.where(ux == {_signed(a)}, {_signed(b)}, r)\n"
                          for a, b in rows)
        py_src = re.sub(rf"(# BEGIN HARD TABLE {func}\n).*?(    # END HARD TABLE)",
                        lambda m, r=py_rows: m.group(1) + r + m.group(2), py_src, flags=re.S)
    C_SOURCE.write_text(c_src)
    PY_SOURCE.write_text(py_src)


def update_vectors(section: str, data: dict[str, list[dict]]) -> None:
    doc = json.loads(VECTORS.read_text()) if VECTORS.exists() else {}
    doc["description"] = (
        "Hard binary32 inputs of exp and log (docs/spec-exp-log.md §4). 'table': the inputs "
        "whose RepOps binary64 approximation needs the hard-case table; 'closest': the inputs "
        "whose exact result is closest to a rounding boundary (found by the exhaustive run), "
        "dist_ulp = distance to the boundary in units of the result's ulp. x and y are "
        "binary32 bit patterns; y is the correctly rounded (RNE) result.")
    for func, rows in data.items():
        doc.setdefault(func, {})[section] = rows
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(json.dumps(doc, indent=1) + "\n")


# ----------------------------------------------------------------------------- report


def _versions(device: str) -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        v["gcc"] = subprocess.run(["gcc", "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        pass
    try:
        import mpmath

        v["mpmath"] = mpmath.__version__
    except ImportError:
        pass
    for src in (C_SOURCE, PY_SOURCE):  # what was tested, even in a dirty checkout
        v[f"sha256 {src.name}"] = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        if re.fullmatch(r"[0-9a-f]{40}", head):
            v["git_commit"] = head
    except OSError:
        pass
    if device == "cuda":
        import torch
        import triton

        v["torch"], v["triton"] = torch.__version__, triton.__version__
        v["cuda"] = torch.version.cuda
        try:
            v["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    return v


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt_case(t: tuple) -> dict:
    return {"x": f"0x{t[0]:08X}", "got": f"0x{t[1]:08X}", "expected": f"0x{t[2]:08X}"}


def write_report(report_dir: Path, device: str, entry: dict) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    jpath = report_dir / "exp-log-exhaustive.json"
    doc = json.loads(jpath.read_text()) if jpath.exists() else {}
    doc.setdefault("runs", {})[device] = entry
    jpath.write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Exhaustive exp/log check (RepOps spec §5)", "",
             "Generated by `scripts/check_exp_log_exhaustive.py`; method in "
             "`docs/spec-exp-log.md` §6.", ""]
    for dev, e in sorted(doc["runs"].items()):
        lines += [f"## {dev}: {e['device_name']}", "",
                  f"- date: {e['date']}, oracle: `{e['oracle']}`, mode: {e['mode']}",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in e["versions"].items()), "",
                  "| function | inputs checked | misrounded | decided by mpmath | time (s) |",
                  "| --- | --- | --- | --- | --- |"]
        for f, r in e["functions"].items():
            decided = r.get("mpmath_decided", "-") if e["oracle"] != "clib" else "-"
            lines.append(f"| {f} | {r['inputs_checked']} | {r['misrounded']} | "
                         f"{decided} | {r['time_s']:.1f} |")
        for f, r in e["functions"].items():
            for m in r["first_mismatches"]:
                lines.append(f"- {f} mismatch: x={m['x']} got {m['got']} expected "
                             f"{m['expected']}")
        lines.append("")
    (report_dir / "exp-log-exhaustive.md").write_text("\n".join(lines))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--func", choices=["exp", "log", "both"], default="both")
    ap.add_argument("--sample", type=int, default=None, help="N random bit patterns instead "
                    "of all 2^32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oracle", choices=["numpy-mpmath", "clib"], default=None)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk", type=int, default=1 << 22)
    ap.add_argument("--report-dir", type=Path, default=None,
                    help=f"default {REPORT_DIR.relative_to(ROOT)} for full runs, none for samples")
    ap.add_argument("--lib", type=Path, default=None, help="prebuilt crmath shared library")
    ap.add_argument("--find-hard", action="store_true",
                    help="enumerate the hard-case inputs (and record them in the vectors)")
    ap.add_argument("--write-tables", action="store_true",
                    help="with --find-hard: rewrite the tables in crmath.c and crmath.py")
    ap.add_argument("--write-vectors", action="store_true",
                    help="record the closest cases of a full run in the vectors file")
    args = ap.parse_args(argv)

    lib_path = args.lib or build_clib()
    lib = CLib(lib_path)
    if args.find_hard:
        tables = find_hard(lib, args.workers)
        update_vectors("table", {f: [{"x": f"0x{a:08X}", "y": f"0x{b:08X}"} for a, b in rows]
                                 for f, rows in tables.items()})
        if args.write_tables:
            write_tables(tables)
            print("tables rewritten; rebuild and rerun the exhaustive check")
        return 0

    oracle_name = args.oracle
    if oracle_name is None:
        try:
            import mpmath  # noqa: F401

            oracle_name = "numpy-mpmath"
        except ImportError:
            oracle_name = "clib"
    ref = None
    if args.device == "cpu" and oracle_name == "clib":
        if args.lib is None:
            ap.error("--device cpu --oracle clib compares the library given by --lib with a "
                     "fresh reference build")
        ref = CLib(build_clib())
    funcs = FUNCS if args.func == "both" else (args.func,)
    total = TOTAL if args.sample is None else args.sample
    tasks = make_tasks(args.sample, args.chunk, args.seed)
    mode = "exhaustive" if args.sample is None else f"sample of {args.sample}"
    print(f"checking {', '.join(funcs)} on {args.device} ({_device_name(args.device)}), "
          f"{mode}, oracle {oracle_name}, {args.workers} workers", flush=True)
    results = {}
    for func in funcs:
        t0 = time.time()
        if args.device == "cpu" and ref is not None:
            res = run_cpu_vs_clib(func, tasks, lib, ref, args.workers, total)
        elif args.device == "cpu":
            res = run_cpu(func, tasks, lib_path, args.workers, total)
        else:
            res = run_cuda(func, tasks, oracle_name, lib, args.workers, total)
        res["time_s"] = time.time() - t0
        res["first_mismatches"] = [_fmt_case(t) for t in res["first_mismatches"]]
        res["closest"] = [{"x": f"0x{xb:08X}", "y": f"0x{yb:08X}", "dist_ulp": d}
                          for d, xb, yb in res["closest"]]
        results[func] = res
        print(f"{func}: {res['inputs_checked']} inputs, {res['misrounded']} misrounded, "
              f"{res['time_s']:.0f} s", flush=True)

    entry = {"device_name": _device_name(args.device), "oracle": oracle_name, "mode": mode,
             "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "versions": _versions(args.device),
             "functions": {f: {k: v for k, v in r.items() if k != "closest"}
                           for f, r in results.items()}}
    report_dir = args.report_dir or (REPORT_DIR if args.sample is None else None)
    if report_dir is not None:
        key = args.device if oracle_name == "numpy-mpmath" else f"{args.device}-vs-clib"
        if args.lib is not None and args.device == "cpu":
            entry["library"] = str(args.lib)
        write_report(report_dir, key, entry)
        print(f"report written to {report_dir}/exp-log-exhaustive.{{json,md}}")
    if args.write_vectors:
        if args.sample is not None or oracle_name != "numpy-mpmath":
            ap.error("--write-vectors needs a full run with the numpy-mpmath oracle")
        update_vectors("closest", {f: r["closest"] for f, r in results.items()})
    return 1 if any(r["misrounded"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
