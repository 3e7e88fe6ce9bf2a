"""The Python mirror's verdicts (referee.onestep) for the differential tests, computed in worker
processes while the test process sends the same cases to the chain.

A 10^4-case differential spends about half its time in the mirror and a third in eth_calls
that anvil (another process) answers; one process did them one after the other on CI's two
cores. Workers are spawned, not forked: the test process has torch's and RepOps' threads.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence

from referee import onestep
from referee.witness import StepContext

Case = tuple[int, StepContext, bytes]  # (claim kind, context, witness)


def verdict(kind: int, ctx: StepContext, wit: bytes) -> int:
    """As the chain reports it: 1 the defender's claim holds, 0 it does not, 2 the witness is
    refused (the contract reverts)."""
    try:
        return 1 if onestep.verify(kind, ctx, wit) else 0
    except onestep.InvalidWitness:
        return 2


def _verdicts(part: Sequence[Case]) -> list[int]:
    return [verdict(*case) for case in part]


class MirrorPool:
    """`with MirrorPool() as mp: pending = mp.submit(cases); …; verdicts = pending()`."""

    def __init__(self, workers: int = 2, chunk: int = 500) -> None:
        self._pool = mp.get_context("spawn").Pool(workers)
        self._chunk = chunk

    def submit(self, cases: Sequence[Case]) -> Callable[[], list[int]]:
        """Start the verdicts of `cases`; the returned call waits for them, in order."""
        parts = [cases[i:i + self._chunk] for i in range(0, len(cases), self._chunk)]
        pending = self._pool.map_async(_verdicts, parts)
        return lambda: [v for part in pending.get() for v in part]

    def __enter__(self) -> MirrorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.terminate()
        self._pool.join()
