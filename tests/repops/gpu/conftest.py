"""Fixtures for the Triton backend tests.

Triton decides between compiled and interpreted kernels when `triton` and each kernel are
imported, so interpreter checks (`interp_checks.py`) run in a child pytest started with
TRITON_INTERPRET=1 (see test_interpret.py); `gpu_interp` hands them the package there.
"""

from __future__ import annotations

import importlib
import os

import pytest


@pytest.fixture(scope="module")
def gpu_interp():
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 set before triton is imported (run via "
                    "test_interpret.py)")
    pytest.importorskip("triton")
    return importlib.import_module("repops.gpu")
