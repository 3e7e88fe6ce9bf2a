"""The protocol contracts as Python sees them: artifacts from the real compiler and the
argument shapes of their entry points.

Why a module: the ABI tuples (JobRequest, JobConfig) and the enums (job status, game phase,
claim kind) are positional on the wire; spelling them once here keeps the CLI, the daemons and
the tests from drifting from contracts/protocol (contracts/protocol/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from node.chain.compile import compile_contracts
from referee.layout import Claim  # noqa: F401 - IOneStepVerifier.Claim, re-exported

PROTOCOL_CONTRACTS = ("ModelRegistry", "DisputeGame", "JobMarket", "PredictionMarket")

# JobMarket constants (contracts/protocol/JobMarket.sol)
BURN_BPS = 1000
MAX_EXECUTORS = 16
MAX_TOKENS = 4096
NO_TOKEN = 2**256 - 1  # "no token at this index" in output-token disputes
# ModelRegistry constant (contracts/protocol/ModelRegistry.sol)
MAX_CONTEXT = 1 << 17
F32_ONE = 0x3F800000  # float32 1.0: top_p disabled (RepOps spec §7.3)


class JobStatus(IntEnum):
    """IJobResult.Status."""

    NONE = 0
    OPEN = 1
    COMMITTED = 2
    FINALIZED = 3
    FAILED = 4


class Phase(IntEnum):
    """DisputeGame.Phase."""

    NONE = 0
    TRACE_BISECT = 1
    LEAF_OPEN = 2
    TENSOR_BISECT = 3
    CHUNK_REVEAL = 4
    ELEMENT_PICK = 5
    PROOF = 6
    LENGTH_PROOF = 7
    RESOLVED = 8
    LINK_PICK = 9  # docs/trace-layout.md §L9: C names a link of D's revealed chain
    EXPAND = 10  # docs/trace-layout.md §L10: the parties reveal full traces for compact ones


class Outcome(IntEnum):
    """PredictionMarket.Outcome."""

    UNRESOLVED = 0
    YES = 1
    NO = 2
    INVALID = 3


@dataclass(frozen=True)
class ModelEntry:
    """ModelRegistry.register's arguments. `vocab_size` and `max_context` must come from the
    runtime config that produced the model hash (the hash binds the context through the
    compiled program), so that postJob's limits are the program's own."""

    model_hash: bytes
    program_root: bytes
    vocab_size: int
    max_context: int
    spec_version: int = 1
    name: str = ""
    uri: str = ""
    compact_root: bytes = b"\x00" * 32  # docs/trace-layout.md §L10; zero: full traces

    def as_args(self) -> tuple:
        if len(self.model_hash) != 32 or len(self.program_root) != 32:
            raise ValueError("model_hash and program_root must be 32 bytes")
        if not 1 <= self.vocab_size < 2**32:
            raise ValueError(f"vocab_size {self.vocab_size} must be 1..2^32-1")
        if not 2 <= self.max_context <= MAX_CONTEXT:
            raise ValueError(f"max_context {self.max_context} must be 2..{MAX_CONTEXT}")
        if len(self.compact_root) != 32:
            raise ValueError("compact_root must be 32 bytes")
        return (self.model_hash, self.program_root, self.spec_version, self.vocab_size,
                self.max_context, self.name, self.uri, self.compact_root)


@dataclass(frozen=True)
class JobConfig:
    """JobMarket.JobConfig; temperature and top_p are float32 bit patterns (temperature 0 =
    greedy; top_p 1.0 = disabled, and 0 is invalid: RepOps spec §7.3)."""

    max_tokens: int
    temperature_bits: int = 0
    top_k: int = 0
    top_p_bits: int = F32_ONE
    seed: int = 0

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.max_tokens, self.temperature_bits, self.top_k, self.top_p_bits, self.seed)


@dataclass(frozen=True)
class JobRequest:
    """JobMarket.JobRequest."""

    model_hash: bytes
    config: JobConfig
    deadline: int
    challenge_window: int
    bond: int
    n_executors: int = 1

    def as_tuple(self) -> tuple:
        if len(self.model_hash) != 32:
            raise ValueError("model_hash must be 32 bytes")
        if not 1 <= self.n_executors <= MAX_EXECUTORS:
            raise ValueError(f"n_executors must be 1..{MAX_EXECUTORS}")
        if not 1 <= self.config.max_tokens <= MAX_TOKENS:
            raise ValueError(f"max_tokens must be 1..{MAX_TOKENS}")
        return (self.model_hash, self.config.as_tuple(), self.deadline, self.challenge_window,
                self.bond, self.n_executors)


def protocol_artifacts() -> dict[str, dict]:
    """`{name: {"abi", "bytecode"}}` for the protocol contracts, compiled by solc 0.8.37
    (node.chain.compile, the same settings forge tests use)."""
    arts = compile_contracts()
    missing = [n for n in PROTOCOL_CONTRACTS if n not in arts]
    if missing:
        raise RuntimeError(f"compiler output lacks {missing}; are contracts/protocol present?")
    return {n: arts[n] for n in PROTOCOL_CONTRACTS}
