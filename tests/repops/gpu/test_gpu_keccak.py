"""The Triton keccak (repops/gpu/keccak.py) on a real GPU: C4 tensor roots (C2 leaves, C3
levels, headers) equal to the C keccak's over a buffer of many tensors of every padding case
and tree height. Skipped without CUDA; interp_checks.py covers indexing and masks in CI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_device_tensor_roots_equal_the_c_keccak():
    from repops import commit
    from repops.gpu.keccak import roots_plan, tensor_roots

    rng = np.random.default_rng(11)
    sizes = np.concatenate([[0, 1, 7, 8, 135, 136, 137, 1023, 1024, 1025, 2048, 196608],
                            rng.integers(1, 20000, 300)])
    offs = np.cumsum(np.concatenate([[0], sizes[:-1] + rng.integers(0, 9, len(sizes) - 1)]))
    buf = rng.integers(0, 256, int(offs[-1] + sizes[-1] + 64), dtype=np.uint8)
    heads = [commit.header("uint8", (int(s),) if i % 3 else (1, int(s)))
             for i, s in enumerate(sizes)]
    width = max(map(len, heads))
    hdr = np.zeros((len(sizes), width), dtype=np.uint8)
    for i, h in enumerate(heads):
        hdr[i, :len(h)] = np.frombuffer(h, dtype=np.uint8)
    plan = roots_plan(offs, sizes, np.array(list(map(len, heads))), width)
    got = tensor_roots(torch.from_numpy(buf).cuda(), torch.from_numpy(hdr.reshape(-1)).cuda(),
                       plan, plan.table.cuda()).cpu().numpy()
    want = commit.tensor_roots_at([buf.ctypes.data + int(o) for o in offs], sizes.tolist(), heads)
    assert [bytes(r) for r in got] == want
