"""The REE's sampling config and its two readings: the job config the trace program's SAMPLE
ops execute (docs/trace-layout.md §L5.10), and the RepOps spec §7 oracle on a logits row.

The token of a run is never chosen here: it is the trace program's PICK op (node/ree/generate).
`choose` is the spec's definition (`repops.sample`), kept for tests and tools that hold a bare
logits row; there is one implementation of §7.3, in `repops/sample.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from referee.layout import JobConfig
from repops import sample as spec


@dataclass(frozen=True)
class SamplingConfig:
    """§7.3 config; temperature 0 is greedy. `seed` is the job's 32-byte seed as an int (the
    market's uint64 seed is bytes32(uint256(seed)), §7.2)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        t, p = np.float32(self.temperature), np.float32(self.top_p)
        if not (t >= 0 and np.isfinite(t)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.seed < 2**256:
            raise ValueError("seed must fit 32 bytes")

    @property
    def greedy(self) -> bool:
        return bool(np.float32(self.temperature) == 0)

    def job_config(self, max_tokens: int) -> JobConfig:
        """The JobConfig the SAMPLE ops read (floats rounded once to binary32)."""
        return JobConfig.of(max_tokens, float(self.temperature), int(self.top_k),
                            float(self.top_p), int(self.seed))

    def spec(self) -> spec.SamplingConfig:
        return spec.SamplingConfig(float(self.temperature), int(self.top_k),
                                   float(self.top_p), int(self.seed))


def prng_u(seed: int, step: int) -> np.float32:
    """§7.2: u = (keccak256(seed ‖ uint64_be(step)) >> 232) · 2^-24, exact in binary32."""
    return np.float32(spec.prng_u(seed, step))


def choose(z: np.ndarray, cfg: SamplingConfig, step: int) -> int:
    """RepOps spec §7.3 (§7.1 when greedy) on the logits row `z[0..V)` for generation step
    `step`: the oracle the trace program's PICK op must equal."""
    row = torch.from_numpy(np.ascontiguousarray(np.asarray(z, np.float32).reshape(-1)))
    if cfg.greedy:
        return spec.greedy_token(row)
    return spec.sample_token(row, cfg.spec(), step)
