"""Token choice from a logits row: greedy and seeded sampling exactly per RepOps spec §7.

Every float operation is a binary32 primitive: div/sub/exp/fold-sum go through the `repops`
API; the sequential cumulative sum and the final `mul` are single binary32 operations in
NumPy float32 (IEEE RNE, one rounding each, no FMA), which is what §7.3 step 6/7 define.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import repops
from repops.commit import keccak256


@dataclass(frozen=True)
class SamplingConfig:
    """§7.3 config; temperature 0 is greedy. `seed` is the job's 32-byte seed as an int."""

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
        return np.float32(self.temperature) == 0


def prng_u(seed: int, step: int) -> np.float32:
    """§7.2: u = (keccak256(seed ‖ uint64_be(step)) >> 232) · 2^-24, exact in binary32."""
    h = keccak256(seed.to_bytes(32, "big") + int(step).to_bytes(8, "big"))
    r24 = int.from_bytes(h, "big") >> 232
    return np.float32(r24) * np.float32(2.0**-24)


def argmax_row(z: np.ndarray) -> int:
    """§6.11 / §7.1 through the RepOps API (first NaN, else lowest index of the maximum)."""
    return int(repops.argmax(torch.from_numpy(np.ascontiguousarray(z, np.float32))))


def choose(z: np.ndarray, cfg: SamplingConfig, step: int) -> int:
    """§7.3 steps 1–8 on the logits row `z[0..V)` for the token of generation step `step`."""
    z = np.ascontiguousarray(np.asarray(z, np.float32).reshape(-1))
    if cfg.greedy or np.isnan(z).any():  # step 1
        return argmax_row(z)
    v = z.shape[0]
    zt = repops.div(torch.from_numpy(z), torch.tensor([np.float32(cfg.temperature)])).numpy()
    order = np.argsort(-zt.astype(np.float64), kind="stable")  # step 3: desc, ties by index
    k = v if cfg.top_k == 0 or cfg.top_k >= v else cfg.top_k  # step 4
    order = order[:k]
    zs = torch.from_numpy(np.ascontiguousarray(zt[order]))
    m = zs[:1]
    e = repops.exp(repops.sub(zs, m))  # step 5
    s = repops.sum(e).reshape(1)
    p = repops.div(e, s).numpy()
    c = np.add.accumulate(p, dtype=np.float32)  # step 6: sequential binary32 adds
    top_p = np.float32(cfg.top_p)
    if top_p < 1:
        hit = np.nonzero(c >= top_p)[0]
        j_last = int(hit[0]) if hit.size else k - 1
    else:
        j_last = k - 1
    r = np.float32(prng_u(cfg.seed, step) * c[j_last])  # step 7
    above = np.nonzero(c[: j_last + 1] > r)[0]  # step 8
    return int(order[int(above[0]) if above.size else j_last])
