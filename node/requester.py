"""Requester tooling: post a job, watch its status, read its verified result.

The job's input on-chain is the prompt's token ids (commitments C6), not its text: the
one-step contract can read a token, but it cannot run a BPE tokenizer. Tokenizing happens
here with the tokenizer bound by the model hash, so anyone can re-check it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from node.chain.client import ChainClient, TxResult
from node.chain.contracts import JobConfig, JobStatus
from node.chain.job_checks import JobRefused, check_job, f32_bits, model_terms
from node.receipts import tokens_bytes

__all__ = ["JobRefused", "JobSpec", "config_from_chain", "f32_bits", "job_status",
           "submit_job", "tokens_from_input"]


@dataclass
class JobSpec:
    model_hash: bytes
    input_tokens: list[int]
    max_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    reward_wei: int = 10**16
    bond_wei: int = 10**17
    deadline_s: int = 3600  # from now
    challenge_window_s: int = 600
    n_executors: int = 1

    def config(self) -> JobConfig:
        return JobConfig(self.max_tokens, f32_bits(self.temperature), self.top_k,
                         f32_bits(self.top_p), self.seed)

    def config_tuple(self) -> tuple[int, int, int, int, int]:
        return self.config().as_tuple()

    def config_dict(self) -> dict[str, Any]:
        """The generation config as the runtime and receipts see it."""
        return {"max_new_tokens": self.max_tokens, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}


def config_from_chain(cfg: Any) -> dict[str, Any]:
    """JobMarket.JobConfig (tuple or dict from an event) → runtime config dict."""
    if hasattr(cfg, "keys"):  # dict or web3 AttributeDict
        vals = (cfg["maxTokens"], cfg["temperature"], cfg["topK"], cfg["topP"], cfg["seed"])
    else:
        vals = tuple(cfg)
    max_tokens, temp_bits, top_k, top_p_bits, seed = vals
    as_f = lambda b: struct.unpack(">f", struct.pack(">I", b))[0]  # noqa: E731
    return {"max_new_tokens": int(max_tokens), "temperature": as_f(temp_bits),
            "top_k": int(top_k), "top_p": as_f(top_p_bits), "seed": int(seed)}


def tokens_from_input(data: bytes) -> list[int]:
    """Commitments C6 decoding; rejects a length that is not a multiple of 4."""
    if len(data) % 4:
        raise ValueError(f"job input of {len(data)} bytes is not a sequence of uint32 tokens")
    return [int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4)]


def check_spec(client: ChainClient, market: Any, spec: JobSpec, now: int) -> None:
    """Raises JobRefused, naming the contract's error, for a job postJob would refuse; reads
    the model's vocabulary size and context from the registry (node.chain.job_checks)."""
    check_job(spec.model_hash, spec.config(), spec.input_tokens,
              model_terms(client, market, spec.model_hash), n_executors=spec.n_executors,
              deadline=now + spec.deadline_s, now=now,
              challenge_window=spec.challenge_window_s, reward=spec.reward_wei)


def submit_job(client: ChainClient, market: Any, spec: JobSpec) -> tuple[int, TxResult]:
    """Post the job; returns (job id, tx). A job the contract would refuse raises JobRefused
    and nothing is sent."""
    now = client.timestamp()
    check_spec(client, market, spec, now)
    req = (spec.model_hash, spec.config_tuple(), now + spec.deadline_s, spec.challenge_window_s,
           spec.bond_wei, spec.n_executors)
    res = client.transact(market.functions.postJob(req, tokens_bytes(spec.input_tokens)),
                          value=spec.reward_wei, what="postJob")
    logs = market.events.JobPosted().process_receipt(res.receipt)
    if not logs:
        raise RuntimeError("postJob succeeded but emitted no JobPosted event")
    return int(logs[0]["args"]["jobId"]), res


def job_status(client: ChainClient, market: Any, job_id: int) -> dict[str, Any]:
    status, output_hash, tokens = client.call(market.functions.resultOf(job_id))
    return {"job": job_id, "status": JobStatus(status).name.capitalize(),
            "output_hash": "0x" + output_hash.hex(), "output_tokens": list(tokens)}
