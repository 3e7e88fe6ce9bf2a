"""The Triton keccak (repops/gpu/keccak.py) on a real GPU: C4 tensor roots (C2 leaves, C3
levels, headers; the graph kernels launched eagerly) equal to the C keccak's over a buffer of
many tensors of every padding case and tree height. Skipped without CUDA; interp_checks.py
covers indexing and masks in CI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_device_roots_equal_the_c_keccak():
    from repops import commit
    from repops.gpu.keccak import device_roots, tensor_rows

    rng = np.random.default_rng(11)
    sizes = np.concatenate([[0, 1, 7, 8, 135, 136, 137, 1023, 1024, 1025, 2048, 196608],
                            rng.integers(1, 20000, 300)])
    offs = np.cumsum(np.concatenate([[0], sizes[:-1] + rng.integers(0, 9, len(sizes) - 1)]))
    buf = rng.integers(0, 256, int(offs[-1] + sizes[-1] + 64), dtype=np.uint8)
    shapes = [(int(s),) if i % 3 else (1, int(s)) for i, s in enumerate(sizes)]
    dims = np.array([sh if len(sh) == 2 else (sh[0], 0) for sh in shapes])
    rows = tensor_rows(offs, sizes, np.full(len(sizes), commit.DTYPE_CODES["uint8"]),
                       np.array([len(sh) for sh in shapes]), dims)
    got = device_roots(torch.from_numpy(buf).cuda(), rows).cpu().numpy()
    want = commit.tensor_roots_at([buf.ctypes.data + int(o) for o in offs], sizes.tolist(),
                                  [commit.header("uint8", sh) for sh in shapes])
    assert [bytes(r) for r in got] == want
