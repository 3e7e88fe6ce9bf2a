"""Receipts: the signed record of one model run (REE's fields plus what REE lacks).

A receipt binds model hash, runtime and spec versions, the exact input tokens, the generation
config, the output tokens/text and the trace root, and is signed by the executor with EIP-712
so a contract or anyone else can check who vouched for it. `validate` needs nothing but the
receipt; `verify` (in node/cli/ree.py) re-executes.

The signed struct holds hashes of the variable-size fields; `validate` recomputes each hash
from the plain fields, so a tampered field is named rather than reported as "bad signature".
JSON is for people, msgpack for the wire; both carry the same dict.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from repops import commit
from repops.commit import keccak256

RECEIPT_VERSION = 1
EIP712_DOMAIN = {"name": "JudgeREE", "version": "1"}

EIP712_TYPES = {
    "Receipt": [
        {"name": "modelHash", "type": "bytes32"},
        {"name": "runtimeVersion", "type": "string"},
        {"name": "specVersion", "type": "string"},
        {"name": "promptHash", "type": "bytes32"},
        {"name": "inputHash", "type": "bytes32"},
        {"name": "configHash", "type": "bytes32"},
        {"name": "outputHash", "type": "bytes32"},
        {"name": "textHash", "type": "bytes32"},
        {"name": "traceRoot", "type": "bytes32"},
        {"name": "traceLength", "type": "uint64"},
        {"name": "tokenCount", "type": "uint32"},
        {"name": "finishReason", "type": "string"},
        {"name": "executor", "type": "address"},
    ]
}


class ReceiptError(ValueError):
    """A receipt is malformed or does not check out; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def tokens_bytes(tokens: Sequence[int]) -> bytes:
    """Commitments C6 (repops.commit.tokens_bytes), raising ReceiptError for a bad token."""
    try:
        return commit.tokens_bytes(tokens)
    except ValueError as e:
        raise ReceiptError(str(e)) from None


def tokens_hash(tokens: Sequence[int]) -> bytes:
    """Commitments C6: keccak256 of the uint32 big-endian encoding."""
    return keccak256(tokens_bytes(tokens))


def config_hash(config: dict[str, Any]) -> bytes:
    """Hash of the generation config as canonical JSON (sorted keys, no spaces)."""
    return keccak256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())


@dataclass
class Receipt:
    model: str
    model_hash: str  # 0x-hex bytes32
    runtime_version: str
    spec_version: str
    prompt: str
    input_tokens: list[int]
    parameters: dict[str, Any]
    output_tokens: list[int]
    token_count: int
    finish_reason: str
    text: str
    trace_root: str  # 0x-hex bytes32
    trace_length: int
    executor: str = ""
    signature: str = ""
    signed: dict[str, Any] = field(default_factory=dict)  # the EIP-712 message, JSON-safe
    device: dict[str, Any] = field(default_factory=dict)  # informational, not signed
    version: int = RECEIPT_VERSION

    # ---- hashing and signing ------------------------------------------------------------

    def message(self) -> dict[str, Any]:
        return {
            "modelHash": bytes.fromhex(self.model_hash.removeprefix("0x")),
            "runtimeVersion": self.runtime_version,
            "specVersion": self.spec_version,
            "promptHash": keccak256(self.prompt.encode()),
            "inputHash": tokens_hash(self.input_tokens),
            "configHash": config_hash(self.parameters),
            "outputHash": tokens_hash(self.output_tokens),
            "textHash": keccak256(self.text.encode()),
            "traceRoot": bytes.fromhex(self.trace_root.removeprefix("0x")),
            "traceLength": self.trace_length,
            "tokenCount": self.token_count,
            "finishReason": self.finish_reason,
            "executor": self.executor,
        }

    def typed_data(self, message: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"domain": EIP712_DOMAIN, "types": EIP712_TYPES, "primaryType": "Receipt",
                "message": self.message() if message is None else message}

    def digest(self) -> bytes:
        from eth_account.messages import _hash_eip191_message, encode_typed_data

        return _hash_eip191_message(encode_typed_data(full_message=self.typed_data()))

    def sign(self, account: Any) -> Receipt:
        """Sign in place with an eth-account LocalAccount; sets `executor`."""
        from eth_account.messages import encode_typed_data

        self.executor = account.address
        message = self.message()
        signed = account.sign_message(encode_typed_data(full_message=self.typed_data(message)))
        self.signature = "0x" + signed.signature.hex().removeprefix("0x")
        self.signed = _jsonable(message)
        return self

    def recover_signer(self) -> str:
        """The address that signed the stored `signed` message."""
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        message = _from_jsonable(self.signed)
        return Account.recover_message(encode_typed_data(full_message=self.typed_data(message)),
                                       signature=self.signature)

    # ---- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_msgpack(self) -> bytes:
        return msgpack.packb(self.to_dict(), use_bin_type=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Receipt:
        check_structure(d)
        return cls(**{k: d[k] for k in _FIELDS if k in d})

    @classmethod
    def load(cls, path: str | Path) -> Receipt:
        p = Path(path)
        if not p.is_file():
            raise ReceiptError(f"receipt {p} not found")
        raw = p.read_bytes()
        try:
            d = json.loads(raw) if raw.lstrip()[:1] == b"{" else msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
            raise ReceiptError(f"receipt {p} is neither JSON nor msgpack: {e}") from None
        if not isinstance(d, dict):
            raise ReceiptError(f"receipt {p} is not an object")
        return cls.from_dict(d)

    def save(self, path: str | Path) -> Path:
        """Write atomically (JSON unless the name ends in .msgpack)."""
        p = Path(path)
        data = self.to_msgpack() if p.suffix == ".msgpack" else self.to_json().encode()
        tmp = p.with_name(p.name + ".partial")
        tmp.write_bytes(data)
        tmp.replace(p)
        return p


def _jsonable(message: dict[str, Any]) -> dict[str, Any]:
    return {k: ("0x" + v.hex()) if isinstance(v, bytes) else v for k, v in message.items()}


def _from_jsonable(signed: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for item in EIP712_TYPES["Receipt"]:
        name = item["name"]
        if name not in signed:
            raise ReceiptError(f"signed message lacks {name!r}", "signed")
        v = signed[name]
        out[name] = bytes.fromhex(v.removeprefix("0x")) if item["type"] == "bytes32" else v
    return out


# Which receipt field each signed message entry commits to (to name a tampered field).
_SIGNED_FROM = {
    "modelHash": "model_hash", "runtimeVersion": "runtime_version", "specVersion": "spec_version",
    "promptHash": "prompt", "inputHash": "input_tokens", "configHash": "parameters",
    "outputHash": "output_tokens",
    "textHash": "text", "traceRoot": "trace_root", "traceLength": "trace_length",
    "tokenCount": "token_count", "finishReason": "finish_reason", "executor": "executor",
}

_FIELDS = [f for f in Receipt.__dataclass_fields__]
_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "model_hash": (str,), "runtime_version": (str,), "spec_version": (str,),
    "prompt": (str,), "input_tokens": (list,), "parameters": (dict,), "output_tokens": (list,),
    "token_count": (int,), "finish_reason": (str,), "text": (str,), "trace_root": (str,),
    "trace_length": (int,), "executor": (str,), "signature": (str,), "signed": (dict,),
    "device": (dict,), "version": (int,),
}
_REQUIRED = [k for k in _FIELDS if k not in ("device",)]


def _is_hex32(s: str) -> bool:
    body = s.removeprefix("0x")
    return s.startswith("0x") and len(body) == 64 and all(c in "0123456789abcdefABCDEF"
                                                          for c in body)


def check_structure(d: dict[str, Any]) -> None:
    for k in _REQUIRED:
        if k not in d:
            raise ReceiptError(f"receipt lacks field {k!r}", k)
    for k, types in _TYPES.items():
        if k in d and (not isinstance(d[k], types) or isinstance(d[k], bool)):
            raise ReceiptError(f"receipt field {k!r} has type {type(d[k]).__name__}", k)
    for k in ("model_hash", "trace_root"):
        if not _is_hex32(d[k]):
            raise ReceiptError(f"receipt field {k!r} is not a 0x-prefixed 32-byte hex", k)
    for k in ("input_tokens", "output_tokens"):
        if not all(isinstance(t, int) and 0 <= t < 2**32 for t in d[k]):
            raise ReceiptError(f"receipt field {k!r} holds a non-token value", k)
    if d["version"] != RECEIPT_VERSION:
        raise ReceiptError(f"receipt version {d['version']} unsupported", "version")


def validate(r: Receipt) -> None:
    """Structure, field hashes and signature; raises ReceiptError naming the bad field.

    The receipt carries the exact message that was signed; every plain field is re-hashed and
    compared with its entry there (so an edited prompt, token list or text is named), then
    the signature over that message must recover to `executor`.
    """
    check_structure(r.to_dict())
    if r.token_count != len(r.output_tokens):
        raise ReceiptError(f"token_count {r.token_count} != {len(r.output_tokens)} output tokens",
                           "token_count")
    if not r.signature or not r.signed:
        raise ReceiptError("receipt is not signed", "signature")
    signed = _from_jsonable(r.signed)
    current = r.message()
    for key, value in current.items():
        if key == "executor":
            same = str(signed[key]).lower() == str(value).lower()
        else:
            same = signed[key] == value
        if not same:
            name = _SIGNED_FROM[key]
            raise ReceiptError(f"field {name!r} was changed after signing", name)
    try:
        signer = r.recover_signer()
    except Exception as e:  # malformed signature bytes
        raise ReceiptError(f"signature does not parse: {e}", "signature") from None
    if signer.lower() != r.executor.lower():
        raise ReceiptError(f"signature is by {signer}, not by executor {r.executor}", "signature")


def diff_fields(a: Receipt, b: Receipt) -> list[str]:
    """Names of the fields whose values differ (for `verify` and tamper reports)."""
    da, db = a.to_dict(), b.to_dict()
    skip = ("signature", "signed", "device", "executor")
    return [k for k in _FIELDS if k not in skip and da.get(k) != db.get(k)]
