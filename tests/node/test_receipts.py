"""Receipts: sign, round-trip through JSON and msgpack, and name a tampered field."""

import json

import pytest
from eth_account import Account

from node.receipts import Receipt, ReceiptError, tokens_bytes, validate

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def _receipt() -> Receipt:
    return Receipt(
        model="smollm2", model_hash="0x" + "11" * 32, runtime_version="judge-ree 0.1.0",
        spec_version="repops-v1", prompt="Is water wet?", input_tokens=[1, 2, 3, 49151],
        parameters={"max_new_tokens": 4, "temperature": 0.0, "seed": 7},
        output_tokens=[5, 6], token_count=2, finish_reason="eos", text="Yes.",
        trace_root="0x" + "22" * 32, trace_length=1234,
    ).sign(Account.from_key(KEY))


def test_sign_and_validate(tmp_path):
    r = _receipt()
    validate(r)
    assert r.executor == Account.from_key(KEY).address
    for name in ("r.json", "r.msgpack"):
        r.save(tmp_path / name)
        back = Receipt.load(tmp_path / name)
        validate(back)
        assert back == r


@pytest.mark.parametrize("field,value", [
    ("prompt", "Is fire wet?"), ("input_tokens", [1, 2, 3]), ("output_tokens", [5, 7]),
    ("text", "No."),
    ("trace_root", "0x" + "33" * 32), ("model_hash", "0x" + "44" * 32), ("trace_length", 1),
    ("parameters", {"max_new_tokens": 5, "temperature": 0.0, "seed": 7}),
    ("finish_reason", "length"),
])
def test_tampered_field_is_named(field, value):
    r = _receipt()
    setattr(r, field, value)
    with pytest.raises(ReceiptError) as e:
        validate(r)
    assert e.value.field == field


def test_forged_signed_block_fails_signature():
    r = _receipt()
    r.text = "No."
    from repops.commit import keccak256
    r.signed["textHash"] = "0x" + keccak256(b"No.").hex()
    with pytest.raises(ReceiptError) as e:
        validate(r)
    assert e.value.field == "signature"


def test_bad_structure(tmp_path):
    p = tmp_path / "bad.json"
    d = _receipt().to_dict()
    del d["trace_root"]
    p.write_text(json.dumps(d))
    with pytest.raises(ReceiptError, match="trace_root"):
        Receipt.load(p)
    p.write_bytes(b"\x00garbage")
    with pytest.raises(ReceiptError):
        Receipt.load(p)


def test_tokens_bytes():
    assert tokens_bytes([1, 256]) == bytes([0, 0, 0, 1, 0, 0, 1, 0])
    with pytest.raises(ReceiptError):
        tokens_bytes([2**32])
