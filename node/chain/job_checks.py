"""JobMarket.postJob's refusals, checked before a job is sent.

Why a mirror: a requester should learn that its job cannot be run from one clear line, with
the same reason the contract would give (the custom error's name), without paying for a
reverted transaction. The contract stays the authority; these rules follow it check for check
and in the same order (contracts/protocol/JobMarket.sol `_checkJob`), and the anvil test
tests/node/test_job_refusals.py holds both to the same error names.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from node.chain.contracts import F32_ONE, MAX_EXECUTORS, MAX_TOKENS, JobConfig

F32_MAX_FINITE = 0x7F7FFFFF
F32_NEG_ZERO = 0x80000000


class JobRefused(ValueError):
    """A job postJob would refuse; `error` is the contract's custom error name."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message


@dataclass(frozen=True)
class ModelTerms:
    """ModelRegistry.termsOf: what a job for the model is checked against."""

    program_root: bytes
    vocab_size: int
    max_context: int

    @property
    def registered(self) -> bool:
        return self.program_root != bytes(32)


def model_terms(client: Any, market: Any, model_hash: bytes) -> ModelTerms:
    """The registry entry behind `market` for `model_hash` (zeros when it is unknown)."""
    registry = client.contract("ModelRegistry", client.call(market.functions.registry()))
    root, vocab, ctx = client.call(registry.functions.termsOf(model_hash))
    return ModelTerms(bytes(root), int(vocab), int(ctx))


def f32_bits(x: float) -> int:
    """binary32 bits of a Python float, rounded to nearest; a value that rounds past the
    largest finite float32 becomes ±inf, as IEEE conversion does (struct raises instead)."""
    try:
        return struct.unpack(">I", struct.pack(">f", x))[0]
    except OverflowError:
        return 0xFF800000 if x < 0 else 0x7F800000


def f32_value(bits: int) -> float:
    return struct.unpack(">f", struct.pack(">I", bits))[0]


def check_config(cfg: JobConfig) -> None:
    """RepOps spec §7.3 (JobMarket `_checkConfig`): 1 ≤ maxTokens ≤ MAX_TOKENS; temperature
    finite and ≥ 0 (−0 counts as 0); 0 < top_p ≤ 1."""
    if not 1 <= cfg.max_tokens <= MAX_TOKENS:
        raise JobRefused("BadMaxTokens", f"max tokens {cfg.max_tokens} must be 1..{MAX_TOKENS}")
    t = cfg.temperature_bits
    if t > F32_MAX_FINITE and t != F32_NEG_ZERO:
        raise JobRefused("BadTemperature", f"temperature {f32_value(t)} (float32 0x{t:08x}) "
                         "must be finite and >= 0 (RepOps spec §7.3)")
    p = cfg.top_p_bits
    if p == 0 or p > F32_ONE:
        raise JobRefused("BadTopP", f"top_p {f32_value(p)} (float32 0x{p:08x}) must be in "
                         "(0, 1]; 1.0 disables it (RepOps spec §7.3)")


def check_input(tokens: Sequence[int], max_tokens: int, terms: ModelTerms) -> None:
    """Commitments C6 tokens the program can run (JobMarket `_checkInput`, trace layout §L1):
    at least one, input + max tokens within the registered context, every id in the
    vocabulary. (InputNotTokens cannot arise here: a token list is whole uint32s.)"""
    n = len(tokens)
    if n == 0:
        raise JobRefused("EmptyInput", "the job input has no token")
    if n + max_tokens > terms.max_context:
        raise JobRefused("ContextExceeded", f"{n} input tokens + {max_tokens} new tokens "
                         f"exceed the model's context of {terms.max_context}")
    for i, t in enumerate(tokens):
        if not 0 <= t < terms.vocab_size:
            raise JobRefused("TokenOutOfVocab", f"input token {i} is {t}, not below the "
                             f"model's vocabulary size {terms.vocab_size}")


def check_job(model_hash: bytes, cfg: JobConfig, tokens: Sequence[int], terms: ModelTerms, *,
              n_executors: int, deadline: int, now: int, challenge_window: int,
              reward: int) -> None:
    """Every check of JobMarket.postJob, in its order; raises JobRefused on the first."""
    if not terms.registered:
        raise JobRefused("UnknownModel", f"model 0x{model_hash.hex()} is not registered")
    if not 1 <= n_executors <= MAX_EXECUTORS:
        raise JobRefused("BadRequest", f"executors {n_executors} must be 1..{MAX_EXECUTORS}")
    if deadline <= now:
        raise JobRefused("BadRequest", "the deadline has passed")
    if challenge_window == 0:
        raise JobRefused("BadRequest", "the challenge window must be at least 1 s")
    if reward == 0:
        raise JobRefused("BadRequest", "the reward must be more than 0 wei")
    check_config(cfg)
    check_input(tokens, cfg.max_tokens, terms)
