"""`qchain_quant_kernel` (decode linears from their GGUF blocks, Q4_1 and Q8_0) under the
Triton interpreter against the CPU's kernel for the same blocks (interp_quant_linear.py in a
child process); its sm_90 compile is test_step_plan_cuda's, its GPU bits the switch tests
[QUANT_Q8] and test_cuda_q4_linears_equal_cpu_leaf_by_leaf."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.ree.interpreted import run_interpreted


def test_quant_linears_under_the_interpreter() -> None:
    r = run_interpreted("interp_quant_linear.py")
    assert r.returncode == 0 and "quant linears equal" in r.stdout, r.stdout + r.stderr[-3000:]


def test_quant_layout_refuses_blocks_of_other_values() -> None:
    """Blocks that do not dequantize to the chain's fp32 weight are refused when laid out,
    so wrongly keyed blocks cannot change a trace."""
    pytest.importorskip("triton")
    from node.ree import linear_chain as lc
    from node.ree.step_plan_cuda import CudaChain

    n, k = 32, 64
    rng = np.random.default_rng(3)
    raw = np.concatenate([np.full((n * k // 32, 1), 0.5, np.float16).view(np.uint8),
                          rng.integers(-128, 128, (n * k // 32, 32)).astype(np.int8)
                          .view(np.uint8)], axis=1).reshape(-1)
    chain = lc.Chain(0, 0, b"", ((0, k),))
    wrong = torch.zeros((k, n), dtype=torch.float32)
    with pytest.raises(ValueError, match="do not dequantize"):
        CudaChain(wrong, chain, lc.QuantBlocks("q8_0", raw, n, k)).quant()
