"""speculate_cuda.NextTable (the device's greedy guess and the next graph's table): on the
GPU, and its indexing and masks under the Triton interpreter (not bit evidence for the GPU,
but the order and the table arithmetic are integer work)."""

from __future__ import annotations

import pytest
import torch

from tests.ree.interpreted import run_interpreted


def test_next_table_under_the_interpreter() -> None:
    """Each edge of the order (ties across blocks, ±0, NaN of either sign above +inf, all
    −inf, the last partial block) gives argmax_token's token and the numpy table."""
    r = run_interpreted("speculate_cases.py")
    assert r.returncode == 0 and "all equal" in r.stdout, r.stdout + r.stderr[-3000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_next_table_on_the_gpu() -> None:
    from tests.ree.speculate_cases import check

    assert check(torch.device("cuda")) == []


def test_next_table_rejects_bad_input() -> None:
    """A table of mixed dtypes, or logits past the partial maxima's room, is refused."""
    pytest.importorskip("triton")
    from node.ree.speculate_cuda import MAX_PARTS, ROW_BLOCK, NextTable

    i64 = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="int64"):
        NextTable(i64, i64.to(torch.int32), i64)
    with pytest.raises(ValueError, match="one shape"):
        NextTable(i64, i64.reshape(2, 2), i64)
    nt = NextTable(i64, i64, i64)
    with pytest.raises(ValueError, match="logits"):
        nt.queue(torch.zeros(MAX_PARTS * ROW_BLOCK + 1), 0, i64.clone())
    with pytest.raises(ValueError, match="args"):
        nt.queue(torch.zeros(10), 0, torch.zeros(3, dtype=torch.int64))
