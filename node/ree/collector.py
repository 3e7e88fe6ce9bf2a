"""The cyclic garbage collector while a model is loaded for decoding (issue 4 speed work).

Two settings, held while any session is open and given back when the last one closes:

1. What exists when a session opens is frozen (`gc.freeze`): the program, weights index and
   executor closures are ~200k long-lived objects that every full collection re-scanned,
   pauses of up to ~200 ms inside a ~60 ms CPU decode step (measured).
2. Young collections are spaced out (`YOUNG`, the generation-0 threshold, from CPython's
   700). A decode step makes a few thousand container objects that live about one step:
   its outputs (SmolLM2: lists of ~3,400 slots, one per op, 64 of them a step at batch 32)
   and their tensors. At 700, several young collections ran in every step, each traversing
   those lists: in the batch-32 loop on the H100's host 1.42-2.82 ms a step, at 100,000
   0.05 (one collection in 32 steps); on a 2-core EPYC's batch-32 CPU steps 1.3-3.1 ms a
   step, none in four at 100,000 (notes-runtime-perf.md, thirty-fourth revision). The count
   CPython compares is allocations less deallocations, so a loop whose objects die within a
   step stays below it. Garbage in reference cycles is still collected, after more of it has
   accumulated; the step walls did not fall by as much as the collections did (the H100
   host's noise is of that size).
"""

from __future__ import annotations

import gc

YOUNG = 100_000

_holders = 0
_saved: tuple[int, int, int] | None = None


def hold() -> None:
    """A session opened: what exists now frozen, young collections spaced out."""
    global _holders, _saved
    if _holders == 0:
        _saved = gc.get_threshold()
        gc.set_threshold(max(YOUNG, _saved[0]), _saved[1], _saved[2])
    _holders += 1
    gc.freeze()


def release() -> None:
    """A session closed (its objects dropped by the caller): everything frozen is handed back
    and collected, so the closed session's reference cycles go now. Frozen objects are never
    collected (measured: 11 GB kept over the CLI tests before sessions released them). The
    sessions still open keep their objects frozen and the spaced-out threshold."""
    global _holders, _saved
    if _holders == 0:
        return
    _holders -= 1
    gc.unfreeze()
    if _holders == 0 and _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None
    gc.collect()
    if _holders:
        gc.freeze()
