"""`ree run` → `ree validate` → `ree verify` on the real model, tamper detection, bad input,
and naming the first divergent op of a cheating executor."""

from __future__ import annotations

import json

import pytest

from node.cli import ree as cli
from node.receipts import Receipt

DEV_KEY = "0xac0974bec39a17e36ba4a4b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil #0


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("JUDGE_PRIVATE_KEY", DEV_KEY)


def _json(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_run_validate_verify_roundtrip(tmp_path, key_env, capsys, ree_model):
    rp = tmp_path / "r.json"
    assert cli.main(["run", "--prompt", "What is the capital of France?",
                     "--max-new-tokens", "2", "--receipt", str(rp), "--json", "--quiet",
                     "--keep-trace", str(tmp_path / "trace")]) == 0
    out = _json(capsys)[0]
    assert out["receipt"] == str(rp) and rp.is_file() and cli.roots_path(rp).is_file()
    r = Receipt.load(rp)
    assert r.trace_root == out["trace_root"] and r.token_count == 2
    assert r.model_hash == ree_model.network_hash  # binds runtime hash + trace program root

    from node.ree.trace import KeptTrace, KeptTraceSource

    kt = KeptTrace(tmp_path / "trace" / "job-0")
    assert kt.length == r.trace_length and kt.check(0) and kt.check(kt.length - 1)
    blob = KeptTraceSource(tmp_path / "trace").tensor(0, 5)
    assert blob is not None and blob.data == kt.tensor(5).tobytes()

    assert cli.main(["validate", str(rp), "--json"]) == 0
    assert _json(capsys)[0]["valid"] is True
    assert cli.main(["verify", str(rp), "--json", "--quiet"]) == 0
    v = _json(capsys)[0]
    assert v["ok"] and v["trace_root_match"] and v["output_match"]

    d = json.loads(rp.read_text())
    d["text"] = d["text"] + " (edited)"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    assert cli.main(["validate", str(bad), "--json"]) == 1
    assert _json(capsys)[0]["field"] == "text"


def test_sampled_run_verifies(tmp_path, key_env, capsys, ree_model):
    """A sampled job (§7.3 through the trace program's SAMPLE ops) re-executes to the same
    tokens and trace root, and its receipt records the sampling parameters."""
    rp = tmp_path / "s.json"
    assert cli.main(["run", "--prompt", "Tell me a word.", "--max-new-tokens", "2",
                     "--temperature", "0.7", "--top-k", "40", "--top-p", "0.9", "--seed", "77",
                     "--receipt", str(rp), "--json", "--quiet"]) == 0
    capsys.readouterr()
    r = Receipt.load(rp)
    assert r.parameters["temperature"] == pytest.approx(0.7) and r.parameters["top_k"] == 40
    assert cli.main(["verify", str(rp), "--json", "--quiet"]) == 0
    v = _json(capsys)[0]
    assert v["ok"] and v["trace_root_match"] and v["output_match"]


def _cheating(real, target_step: int, target_op: int):
    """`run_step` of an executor that adds 1.0 to element 0 of one op's output at one step."""
    def cheat(step, toks, feed_token=None, **kw):
        outs = real(step, toks, feed_token, **kw)
        if step == target_step:
            t = outs[target_op].clone()
            t.view(-1)[0] += 1.0
            outs[target_op] = t
        return outs
    return cheat


def test_verify_names_first_divergent_op(tmp_path, key_env, capsys, ree_session):
    """A cheating executor flips one element of one leaf; verify names that op."""
    from eth_account import Account

    from node.ree.session import JobSpec

    ex = ree_session.executor
    prog = ree_session.model.program
    target_step, target_op = 1, 700
    spec = JobSpec("Hi", max_new_tokens=2)
    ex.run_step = _cheating(ex.run_step, target_step, target_op)
    try:
        res = ree_session.run(spec)
    finally:
        del ex.run_step
    r = ree_session.receipt(spec, res, Account.from_key(DEV_KEY))
    rp = tmp_path / "cheat.json"
    cli._write_atomic(cli.roots_path(rp), b"".join(res.roots))
    r.save(rp)
    assert cli.main(["validate", str(rp)]) == 0  # well-formed and signed...
    capsys.readouterr()
    assert cli.main(["verify", str(rp), "--json", "--quiet"]) == 1  # ...but not reproducible
    v = _json(capsys)[0]
    leaf = target_step * prog.n_ops + target_op
    assert v["first_divergent_leaf"] == {"leaf": leaf, "step": target_step, "op": target_op,
                                         "name": prog.ops[target_op].name}


def test_segment_choice_roundtrips(tmp_path, key_env, capsys, ree_model):
    """`--segment` (ADR 0012) picks another trace program of the same model: the same tokens
    as the default's, another model hash and trace root, and `ree verify` re-runs the receipt
    with the segment it records."""
    from referee.lowering import DEFAULT_SEGMENT

    other = 64 if DEFAULT_SEGMENT != 64 else 192
    rp = tmp_path / "g.json"
    assert cli.main(["run", "--prompt", "What is the capital of France?",
                     "--max-new-tokens", "2", "--segment", str(other), "--receipt", str(rp),
                     "--json", "--quiet"]) == 0
    capsys.readouterr()
    r = Receipt.load(rp)
    assert r.parameters["segment"] == other and r.model_hash != ree_model.network_hash
    assert r.parameters["trace_program_root"] != "0x" + ree_model.program.root().hex()
    assert cli.main(["verify", str(rp), "--json", "--quiet"]) == 0
    v = _json(capsys)[0]
    assert v["ok"] and v["trace_root_match"] and v["output_match"]


@pytest.mark.parametrize("name", ["smollm2-gpu.json", "smollm2-cpu.json"])
def test_committed_cross_device_receipts_verify(name, capsys, ree_model):
    """The receipts of docs/reports/receipts (issue 4's acceptance: one made on an H200,
    verified on this CPU, and one the other way) stay valid and reproducible with today's
    code: they were made at segment 64, before ADR 0012 moved the default, and record it."""
    from pathlib import Path

    rp = Path(__file__).resolve().parents[2] / "docs" / "reports" / "receipts" / name
    assert Receipt.load(rp).parameters["segment"] == 64
    assert cli.main(["validate", str(rp), "--json"]) == 0
    assert cli.main(["verify", str(rp), "--json", "--quiet"]) == 0
    v = _json(capsys)[-1]
    assert v["ok"] and v["trace_root_match"] and v["output_match"]


def test_segment_default_is_the_lowerings():
    from node.cli import trace_options
    from referee.lowering import DEFAULT_SEGMENT

    assert trace_options.DEFAULT_SEGMENT == DEFAULT_SEGMENT


def test_trace_kinds_are_the_runtimes():
    from node.cli import trace_options
    from referee.compact import TRACE_KINDS

    assert trace_options.TRACE_KINDS == TRACE_KINDS


@pytest.mark.parametrize("argv,needs", [
    (["run", "--model", "nosuchmodel", "--prompt", "x"], "unknown model"),
    (["run", "--prompt", "x", "--segment", "0"], "segment must be in"),
    (["run", "--prompt", "x", "--prompt-file", "f.jsonl"], "exactly one"),
    (["run", "--prompt", "x", "--top-p", "0"], "top_p"),
    (["run", "--prompt", "x", "--receipt", "r.json"], "JUDGE_PRIVATE_KEY"),
    (["validate", "missing.json"], "not found"),
])
def test_bad_input_exits_2(argv, needs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JUDGE_PRIVATE_KEY", raising=False)
    assert cli.main(argv) == 2
    assert needs in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_corrupt_gguf_and_long_prompt(tmp_path, key_env, capsys, ree_model):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 100)
    assert cli.main(["run", "--model", str(bad), "--prompt", "x"]) == 2
    assert "GGUF" in capsys.readouterr().err
    rp = tmp_path / "r.json"
    assert cli.main(["run", "--prompt", "word " * 2100, "--receipt", str(rp), "--quiet"]) == 2
    assert "longer than the context" in capsys.readouterr().err
    assert not rp.exists() and not cli.roots_path(rp).exists()


def test_invalid_receipt_file(tmp_path, capsys):
    p = tmp_path / "junk.json"
    p.write_text("{not json")
    assert cli.main(["validate", str(p)]) == 2
    p.write_text(json.dumps({"model": "smollm2"}))
    assert cli.main(["verify", str(p)]) == 2
    assert "lacks field" in capsys.readouterr().err


def test_compact_trace_roundtrips_and_names_a_divergence(tmp_path, key_env, capsys, ree_model):
    """`--trace compact` (docs/trace-layout.md §L10): the receipt records it, its trace has
    the compact trace's leaves, `ree verify` re-runs it so, and a cheat in a committed op is
    named by its step and trace op."""
    from eth_account import Account

    from node.ree.session import JobSpec, Session
    from referee.compact import compact_ops

    prog = ree_model.program
    cmap = compact_ops(prog)
    rp = tmp_path / "c.json"
    assert cli.main(["run", "--prompt", "What is the capital of France?", "--max-new-tokens",
                     "2", "--trace", "compact", "--receipt", str(rp), "--json",
                     "--quiet"]) == 0
    capsys.readouterr()
    r = Receipt.load(rp)
    assert r.parameters["trace"] == "compact" and r.trace_length == 2 * len(cmap)
    assert cli.main(["verify", str(rp), "--json", "--quiet"]) == 0
    assert _json(capsys)[0]["ok"]

    target_step, target_c = 1, 300
    target_op = int(cmap[target_c])
    spec = JobSpec("Hi", max_new_tokens=2)
    with Session(loaded=ree_model, trace="compact") as sess:
        sess.executor.run_step = _cheating(sess.executor.run_step, target_step, target_op)
        res = sess.run(spec)
        r = sess.receipt(spec, res, Account.from_key(DEV_KEY))
    rp = tmp_path / "cheat.json"
    cli._write_atomic(cli.roots_path(rp), b"".join(res.roots))
    r.save(rp)
    assert cli.main(["verify", str(rp), "--json", "--quiet"]) == 1
    v = _json(capsys)[0]
    assert v["first_divergent_leaf"] == {"leaf": target_step * len(cmap) + target_c,
                                         "step": target_step, "op": target_op,
                                         "name": prog.ops[target_op].name}
