"""Model hash (DESIGN §5): binds the compiled program, every weight root, the tokenizer, the
chat template and the RepOps spec version, so "the same model" is one 32-byte fact that the
registry stores and any machine can recompute from the same GGUF.

    weight_leaf(i)  = keccak256(0x20 ‖ uint16 len(name) ‖ name ‖ tensor_root(weight_i))   (C4)
    weights_root    = MerkleRoot(weight leaves in program weight order)                    (C3)
    tokenizer_hash  = keccak256(0x21 ‖ keccak256(tokens, each uint32 len ‖ utf-8)
                                     ‖ keccak256(merges, each uint32 len ‖ utf-8)
                                     ‖ keccak256(token types, int32 big-endian each)
                                     ‖ int32 bos ‖ int32 eos ‖ utf-8 pre-tokenizer name)
    template_hash   = keccak256(0x22 ‖ utf-8 chat template)
    model_hash      = keccak256(0x30 ‖ keccak256(spec version) ‖ program_root
                                ‖ keccak256(io_record) ‖ weights_root ‖ tokenizer_hash
                                ‖ template_hash)

The weight leaf proves one weight (by index) against `weights_root`, which is what the one-step
needs for an input that is a weight (DESIGN §6 soundness 3).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.runtime.program import Program
from repops.commit import keccak256, merkle_root, tensor_root_np

SPEC_VERSION = "repops-v1"


def weight_leaf(name: str, root: bytes) -> bytes:
    nb = name.encode("utf-8")
    return keccak256(b"\x20" + struct.pack(">H", len(nb)) + nb + root)


def weight_roots(prog: Program, weights: dict[str, np.ndarray]) -> list[bytes]:
    return [tensor_root_np(np.ascontiguousarray(weights[n])) for n in prog.weights]


def _strings_hash(items: Sequence[str]) -> bytes:
    return keccak256(b"".join(struct.pack(">I", len(b)) + b
                              for b in (s.encode("utf-8") for s in items)))


def tokenizer_hash(meta: dict[str, Any]) -> bytes:
    types = meta.get("tokenizer.ggml.token_type") or []
    return keccak256(
        b"\x21"
        + _strings_hash(meta["tokenizer.ggml.tokens"])
        + _strings_hash(meta["tokenizer.ggml.merges"])
        + keccak256(b"".join(struct.pack(">i", int(t)) for t in types))
        + struct.pack(">i", int(meta.get("tokenizer.ggml.bos_token_id", -1)))
        + struct.pack(">i", int(meta.get("tokenizer.ggml.eos_token_id", -1)))
        + str(meta.get("tokenizer.ggml.pre", "")).encode("utf-8")
    )


def template_hash(template: str | None) -> bytes:
    return keccak256(b"\x22" + (template or "").encode("utf-8"))


@dataclass(frozen=True)
class ModelHash:
    model_hash: bytes
    program_root: bytes
    weights_root: bytes
    tokenizer_hash: bytes
    template_hash: bytes
    spec_version: str

    def to_json(self) -> dict[str, str]:
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.__dict__.items()}


def model_hash(prog: Program, weights: dict[str, np.ndarray], meta: dict[str, Any],
               roots: list[bytes] | None = None) -> ModelHash:
    """The model hash of a compiled program with its weights and GGUF tokenizer metadata."""
    roots = roots if roots is not None else weight_roots(prog, weights)
    leaves = [weight_leaf(n, r) for n, r in zip(prog.weights, roots, strict=True)]
    w_root = merkle_root(leaves or [b"\x00" * 32])  # C3 ZERO leaf for a weightless program
    p_root = prog.root()
    t_hash = tokenizer_hash(meta)
    c_hash = template_hash(meta.get("tokenizer.chat_template"))
    h = keccak256(b"\x30" + keccak256(SPEC_VERSION.encode()) + p_root
                  + keccak256(prog.io_record()) + w_root + t_hash + c_hash)
    return ModelHash(h, p_root, w_root, t_hash, c_hash, SPEC_VERSION)
