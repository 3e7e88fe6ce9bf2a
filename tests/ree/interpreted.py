"""A script of tests/ree run under the Triton interpreter, in a child process (TRITON_INTERPRET=1
must be set before triton is imported): the kernels' indexing and masks on CPU tensors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_interpreted(script: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`script` (a file beside this one) under the interpreter, the repository on its path."""
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=str(HERE.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, str(HERE / script)], env=env, capture_output=True,
                          text=True, timeout=timeout)
