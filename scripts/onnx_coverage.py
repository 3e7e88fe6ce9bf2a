"""ONNX backend node-test coverage of the RepOps compiler -> docs/reports/onnx-coverage.md.

For every node test shipped with the `onnx` package (generated from
`onnx.backend.test.case.node`, since the wheel carries the generators, not the data dirs) whose
graph uses only op types the compiler handles, compile it, run the program on the RepOps CPU
reference and compare with the expected outputs at the test's own tolerances. Each failure is
listed with its reason: a graph the compiler rejects must be rejected with a named error, never
miscompiled.

Usage: python scripts/onnx_coverage.py [--out docs/reports/onnx-coverage.md] [--filter SUBSTR]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.runtime.compiler import HANDLERS, CompileError, compile_onnx  # noqa: E402
from node.runtime.execute import ExecutionError, run_program  # noqa: E402

_OK_DTYPES = {np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.bool_),
              np.dtype(np.uint8)}


def _to_torch(a: np.ndarray):  # noqa: ANN202
    import torch

    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    return torch.from_numpy(np.array(a, copy=True))


def run_case(case) -> tuple[str, str]:  # noqa: ANN001
    """('pass'|'rejected'|'mismatch'|'error'|'dtype', detail)."""
    g = case.model.graph
    inputs, outputs = case.data_sets[0]
    for a in list(inputs) + list(outputs):
        if isinstance(a, np.ndarray) and a.dtype not in _OK_DTYPES:
            return "dtype", f"dtype {a.dtype} is not a RepOps type"
        if not isinstance(a, np.ndarray):
            return "dtype", f"non-tensor value {type(a).__name__}"
    bound = ""
    try:
        prog, weights = compile_onnx(case.model)
    except CompileError as e:
        if "compile-time constant" not in str(e):
            return "rejected", str(e)
        # a RepOps program fixes shapes/axes at compile time: bind the test's int64 inputs
        model, inputs = _bind_int_inputs(case.model, inputs)
        g = model.graph
        bound = " (int64 shape/axes inputs bound as constants)"
        try:
            prog, weights = compile_onnx(model)
        except CompileError as e2:
            return "rejected", str(e2)
    except Exception as e:  # noqa: BLE001 - reported, a crash is a bug to list
        return "error", f"compiler crashed: {type(e).__name__}: {e}"
    names = [vi.name for vi in g.input if vi.name not in {i.name for i in g.initializer}]
    feeds = {n: _to_torch(a) for n, a in zip(names, inputs, strict=False)}
    try:
        out = run_program(prog, {k: _to_torch(v) for k, v in weights.items()}, feeds, {})
    except (ExecutionError, KeyError, ValueError, TypeError, RuntimeError) as e:
        return "error", f"execution: {type(e).__name__}: {str(e)[:200]}"
    for vo, want in zip(g.output, outputs, strict=False):
        got = out[vo.name].numpy()
        if want.dtype == np.bool_:
            got = got.astype(bool)
        if got.shape != want.shape:
            return "mismatch", f"{vo.name}: shape {got.shape} vs {want.shape}"
        try:
            np.testing.assert_allclose(got.astype(want.dtype), want, rtol=max(case.rtol, 1e-6),
                                       atol=max(case.atol, 1e-7))
        except AssertionError as e:
            return "mismatch", f"{vo.name}: {str(e).strip().splitlines()[-1][:160]}"
    return "pass", bound


def _bind_int_inputs(model, inputs):  # noqa: ANN001, ANN202
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep, vals = [], []
    real = [vi for vi in m.graph.input if vi.name not in {i.name for i in m.graph.initializer}]
    for vi, a in zip(real, inputs, strict=False):
        if a.dtype == np.int64:
            m.graph.initializer.append(onnx.numpy_helper.from_array(a, vi.name))
        else:
            keep.append(vi)
            vals.append(a)
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m, vals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs/reports/onnx-coverage.md")
    ap.add_argument("--filter", default="")
    args = ap.parse_args(argv)
    import onnx
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    supported = set(HANDLERS)
    results: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    t0 = time.time()
    considered = 0
    bound = 0
    for case in cases:
        if args.filter and args.filter not in case.name:
            continue
        ops = {n.op_type for n in case.model.graph.node} - {"Constant", "Identity"}
        if not ops or not ops <= supported:
            continue
        considered += 1
        main_op = sorted(ops)[0] if len(ops) == 1 else "+".join(sorted(ops))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status, detail = run_case(case)
        results[main_op].append((case.name, status, detail))
        bound += status == "pass" and bool(detail)
    elapsed = time.time() - t0
    totals = defaultdict(int)
    for rows in results.values():
        for _, s, _ in rows:
            totals[s] += 1
    lines = [
        "# ONNX backend node-test coverage of the RepOps compiler",
        "",
        "Generated by `scripts/onnx_coverage.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — onnx {onnx.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}.",
        "",
        "Cases: every node test generated by `onnx.backend.test.case.node` whose graph uses only "
        "op types the compiler handles (Constant/Identity aside); each is compiled, run on the "
        "RepOps CPU reference (`repops.api`) and compared with the expected outputs at the "
        "test's tolerances. `rejected` = the compiler refused the graph with a named error "
        "(an unsupported attribute, dtype or form), `dtype` = a non-RepOps dtype (float64, "
        "float16, strings, ...) in the test data.",
        "",
        f"**{considered} cases considered: {totals['pass']} pass, {totals['rejected']} rejected "
        f"with a named error, {totals['dtype']} use non-RepOps dtypes, "
        f"{totals['mismatch']} mismatch, {totals['error']} execution errors** "
        f"({elapsed:.0f} s). {bound} of the passes bind the test's int64 shape/axes inputs as "
        "constants (a program fixes shapes at compile time).",
        "",
        "| op(s) | cases | pass | rejected | dtype | mismatch | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for op in sorted(results):
        rows = results[op]
        c = defaultdict(int)
        for _, s, _ in rows:
            c[s] += 1
        lines.append(f"| {op} | {len(rows)} | {c['pass']} | {c['rejected']} | {c['dtype']} | "
                     f"{c['mismatch']} | {c['error']} |")
    lines += ["", "## Cases that do not pass", ""]
    for op in sorted(results):
        for name, s, d in results[op]:
            if s != "pass":
                lines.append(f"- `{name}` — {s}: {d.replace('|', '/')[:220]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = {"considered": considered, **totals, "seconds": round(elapsed, 1)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
