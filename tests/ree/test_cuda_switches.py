"""The switches' one table (scripts/cuda_switches.py), as the A/B scripts set them between
runs of one process (scripts/ab_batch_loop_cuda.py)."""

import pytest

from node.ree import fastexec
from scripts import cuda_switches


def test_set_switches_parses_by_the_switch_type_and_names_an_unknown_one(monkeypatch):
    monkeypatch.setattr(fastexec, "TAIL_IN_PLACE", True)
    monkeypatch.setattr(fastexec, "TAIL_REST_THREADS", 0)
    got = cuda_switches.set_switches({"tail_in_place": "0", "tail_rest_threads": "12"})
    assert fastexec.TAIL_IN_PLACE is False and fastexec.TAIL_REST_THREADS == 12
    assert got["tail_in_place"] is False and got["tail_rest_threads"] == 12
    cuda_switches.set_switches({"tail_in_place": "true"})
    assert fastexec.TAIL_IN_PLACE is True
    with pytest.raises(ValueError, match="no switch 'tail_inplace'"):
        cuda_switches.set_switches({"tail_inplace": "1"})
    with pytest.raises(ValueError):
        cuda_switches.set_switches({"tail_rest_threads": "many"})
    assert set(cuda_switches.settings_names()) == set(cuda_switches.settings())
