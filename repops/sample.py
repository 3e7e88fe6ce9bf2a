"""Token choice from a logits row: greedy and seeded sampling, RepOps spec §7.

Why here and not in the runtime: the chosen token is part of what executors, the referee and
the Solidity one-step must agree on, so its float steps are RepOps ops (`repops.div/sub/exp/
sum`, which dispatch on the logits' device and give the same bits on CPU and CUDA) and its
integer steps (sort order, PRNG, searches) are exact. Only the short sequential tail (§7.3
steps 6-8: running sum, top-p cut, the draw) runs on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from repops import api
from repops.commit import keccak256

_U64 = 1 << 64


@dataclass(frozen=True)
class SamplingConfig:
    """Spec §7.3 config. `temperature` and `top_p` are rounded once to binary32; a config outside
    the spec's ranges is invalid (ValueError), as the job would be rejected on acceptance."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: bytes | int = 0  # the job's seed (§7.2): 32 bytes, or an int read as bytes32(uint256)

    def __post_init__(self) -> None:
        seed_bytes(self.seed)  # validates
        with np.errstate(over="ignore"):  # 1e39 -> +inf is rejected below
            t, p = np.float32(self.temperature), np.float32(self.top_p)
        if not (np.isfinite(t) and t >= 0):
            raise ValueError(
                f"repops.sample: temperature must be a finite binary32 >= 0, got {self.temperature}"
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)):
            raise TypeError(f"repops.sample: top_k must be an int, got {self.top_k!r}")
        if self.top_k < 0:
            raise ValueError(f"repops.sample: top_k must be >= 0 (0 = disabled), got {self.top_k}")
        if not 0 < p <= 1:
            raise ValueError(f"repops.sample: top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """Spec §7.3 step 1: T == 0 (IEEE, so -0 too) means greedy."""
        return bool(np.float32(self.temperature) == 0)


def seed_bytes(seed: bytes | int) -> bytes:
    """Spec §7.2 seed encoding: 32 bytes as given, or an integer as bytes32(uint256(seed))."""
    if isinstance(seed, (bytes, bytearray)):
        if len(seed) != 32:
            raise ValueError(f"repops.sample: a bytes seed must be 32 bytes, got {len(seed)}")
        return bytes(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"repops.sample: seed must be 32 bytes or an int, got {type(seed)}")
    if not 0 <= seed < 1 << 256:
        raise ValueError(f"repops.sample: an int seed must be in [0, 2^256), got {seed}")
    return int(seed).to_bytes(32, "big")


def prng_r24(seed: bytes | int, step: int) -> int:
    """Spec §7.2: the first 24 bits of keccak256(seed ‖ uint64_be(step))."""
    if not 0 <= step < _U64:
        raise ValueError(f"repops.sample: step must be a uint64, got {step}")
    h = keccak256(seed_bytes(seed) + int(step).to_bytes(8, "big"))
    return int.from_bytes(h, "big") >> 232


def prng_u(seed: bytes | int, step: int) -> float:
    """Spec §7.2: u = r24 · 2^-24, an exact binary32 in [0, 1 - 2^-24]."""
    return math.ldexp(prng_r24(seed, step), -24)


def _row(op: str, logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"repops.{op}: logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dtype != torch.float32:
        raise TypeError(f"repops.{op}: logits must be float32, got {logits.dtype}")
    if logits.dim() != 1 or logits.shape[0] == 0:
        raise ValueError(
            f"repops.{op}: logits must be one non-empty row z[0..V), got shape "
            f"{tuple(logits.shape)} on {logits.device}"
        )
    return logits


def greedy_token(logits: torch.Tensor) -> int:
    """Spec §7.1: argmax (§6.11) of the row: the first NaN, else the lowest index of the max."""
    return int(api.argmax(_row("greedy_token", logits)))


def sample_token(logits: torch.Tensor, config: SamplingConfig, step: int) -> int:
    """Spec §7.3: the token for generation step `step` (0-based, counting generated tokens) of
    the job whose config (and seed) is `config`."""
    z = _row("sample_token", logits)
    u = np.float32(prng_u(config.seed, step))  # validates step before any work
    # step 1: greedy, or a NaN anywhere (argmax then returns the first NaN's index)
    first = int(api.argmax(z))
    if config.greedy or math.isnan(float(z[first])):
        return first
    v = z.shape[0]
    dev = z.device
    t = torch.tensor(np.float32(config.temperature), device=dev)
    zp = api.div(z, t)  # step 2
    # step 3: descending by value, equal values (incl. -0/+0) by ascending index. A stable
    # ascending sort of the negated values with zeros made one bit pattern: a radix sort (CUDA)
    # would otherwise order -0 and +0 apart. Negation and the zero fix are exact.
    k = v if config.top_k == 0 or config.top_k >= v else int(config.top_k)  # step 4
    if dev.type == "cpu":
        order = torch.from_numpy(_top_order_cpu(zp.numpy(), k))
    else:
        key = torch.neg(zp)
        key = torch.where(key == 0, torch.zeros((), device=dev), key)
        order = torch.sort(key, stable=True).indices[:k]
    zs = zp.index_select(0, order)
    e = api.exp(api.sub(zs, zs[:1]))  # step 5 (m = z'[order[0]])
    s = api.sum(e)
    p = api.div(e, s).cpu()
    c = _cumsum(p)  # step 6
    top_p = np.float32(config.top_p)
    if top_p < 1:
        hit = np.flatnonzero(c >= top_p)
        j_last = int(hit[0]) if hit.size else k - 1
    else:
        j_last = k - 1
    r = float(api.mul(torch.tensor(u), torch.from_numpy(c[j_last : j_last + 1].copy()))[0])
    above = np.flatnonzero(c[: j_last + 1] > np.float32(r))  # step 8 (step 7 is r above)
    j_star = int(above[0]) if above.size else j_last
    return int(order[j_star])


def _top_order_cpu(zp: np.ndarray, k: int) -> np.ndarray:
    """Spec §7.3 steps 3-4 on the CPU: the first k indices of the order by value descending,
    ties by ascending index, without sorting the whole vocabulary when k is small. NumPy
    compares with IEEE `<`, so -0 and +0 tie; negation is exact."""
    key = -zp
    if k < key.shape[0]:
        kth = np.partition(key, k - 1)[k - 1]  # the k-th largest value of zp, negated
        ahead = np.flatnonzero(key < kth)
        tied = np.flatnonzero(key == kth)[: k - ahead.shape[0]]
        cand = np.concatenate([ahead, tied])
    else:
        cand = np.arange(key.shape[0])
    return cand[np.lexsort((cand, key[cand]))]  # by value, then by index


def _cumsum(p: torch.Tensor) -> np.ndarray:
    from repops.cpu import kernels

    return kernels.cumsum_seq(p).numpy()
