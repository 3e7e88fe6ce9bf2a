"""Runs interp_checks.py (the Triton kernels under TRITON_INTERPRET=1, on CPU tensors) in a
child pytest, because the interpreter must be chosen before triton is first imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def test_triton_kernels_under_interpreter():
    """Two child pytests side by side (the interpreter runs one core each; the graph-roots
    check alone is half the time): the keccak graph pair, and every other check."""
    pytest.importorskip("triton")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    base = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
            str(HERE / "interp_checks.py")]
    children = [subprocess.Popen(base + ["-k", k], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for k in ("graph_roots", "not graph_roots")]
    for child in children:
        out, err = child.communicate(timeout=900)
        assert child.returncode == 0, out[-6000:] + err[-3000:]
        assert " passed" in out and "deselected" in out, out[-3000:]
