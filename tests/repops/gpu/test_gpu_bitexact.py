"""Bit equality of the Triton backend with the CPU reference on a real GPU (RepOps spec §8).

Skipped without CUDA. scripts/gpu_conformance.py runs the same cases at >= 10^6 elements per
op and records the result in docs/reports/repops-gpu.md.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _cases():
    from repops.gpu.cases import cases

    return list(cases(scale=64, seed=7))


@pytest.fixture(scope="module")
def all_cases():
    return _cases()


def test_every_op_bit_equal_to_cpu_reference(all_cases):
    import repops
    from repops.gpu.cases import first_mismatch, run_case

    bad = []
    for case in all_cases:
        fn = getattr(repops, case.op)
        mm = first_mismatch(run_case(fn, case, "cpu"), run_case(fn, case, "cuda"))
        if mm is not None:
            bad.append((case.op, case.label, mm))
    assert not bad, bad


def test_matmul_bits_do_not_depend_on_tiles_or_kernel():
    from repops.gpu.matmul import matmul

    g = torch.Generator(device="cuda").manual_seed(3)
    a = torch.randn(67, 301, device="cuda", generator=g)
    b = torch.randn(301, 45, device="cuda", generator=g)
    ref = matmul(a, b).view(torch.int32)
    for cfg in [(16, 16, 16, 1, 1, 1), (64, 32, 32, 4, 4, 3), (32, 64, 64, 8, 2, 2)]:
        assert torch.equal(matmul(a, b, cfg=cfg, gemv=False).view(torch.int32), ref)
    assert torch.equal(matmul(a, b, gemv=True).view(torch.int32), ref)
    # batch invariance: a row computed alone equals the same row inside the batch
    assert torch.equal(matmul(a[5:6], b).view(torch.int32), ref[5:6])


def test_chain_keeps_minus_zero_and_k_padding_is_neutral():
    from repops.gpu.matmul import matmul

    # every product underflows to -0 (exact value tiny negative): the chain from +0.0 gives -0
    # after the first step; K = 17 forces a padded tail, which must not turn -0 into +0.
    a = torch.full((3, 17), 1e-30, device="cuda")
    b = torch.full((17, 5), -1e-30, device="cuda")
    for gemv in (False, True):
        out = matmul(a, b, gemv=gemv).view(torch.int32)
        assert (out == -2**31).all(), out


def test_decode_equals_prefill_last_row_attention():
    import repops

    g = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(1, 9, 40, 64, device="cuda", generator=g)
    k = torch.randn(1, 3, 40, 64, device="cuda", generator=g)
    v = torch.randn(1, 3, 40, 64, device="cuda", generator=g)
    full = repops.attention(q, k, v, 0.125)
    last = repops.attention(q[:, :, -1:], k, v, 0.125)
    assert torch.equal(full[:, :, -1:].contiguous().view(torch.int32), last.view(torch.int32))
