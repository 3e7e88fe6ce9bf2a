"""Jobs the registered program cannot run are refused at postJob, with a named reason.

On a real anvil deployment with a registered model (vocabulary 40, context 16, the toy's
limits): each bad job (token id outside the vocabulary, empty input, input + maxTokens past
the context, maxTokens 0, temperature NaN/inf/negative, top_p 0/negative/above 1/NaN) reverts
with the JobMarket custom error naming it; the requester refuses the same job before sending
anything, with the same name; `judge model register` registers the limits of the config that
produced the model hash; `judge job submit` prints the reason and exits 2 without sending.
Without a chain: the Python rules against the spec's wording (RepOps spec §7.3), fuzzed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.client import ChainClient, TxReverted
from node.chain.contracts import F32_ONE, JobConfig, ModelEntry
from node.chain.job_checks import JobRefused, check_config, f32_bits, f32_value
from node.deployment import Deployment, deploy_protocol, register_model
from node.receipts import tokens_bytes
from node.requester import JobSpec, submit_job
from repops.commit import keccak256

VOCAB, CTX = 40, 16
MODEL = keccak256(b"refusals test model")
PROGRAM = keccak256(b"refusals test program")
NAN, INF, NEG_INF = 0x7FC00000, 0x7F800000, 0xFF800000

# name -> (input tokens, config): each one a job the program cannot run
BAD_JOBS: dict[str, tuple[list[int], JobConfig]] = {
    "TokenOutOfVocab": ([1, VOCAB, 2], JobConfig(4)),
    "TokenOutOfVocab (2^32-1)": ([2**32 - 1], JobConfig(4)),
    "EmptyInput": ([], JobConfig(4)),
    "ContextExceeded": ([1] * 10, JobConfig(CTX - 9)),
    "BadMaxTokens": ([1, 2], JobConfig(0)),
    "BadTemperature (NaN)": ([1, 2], JobConfig(4, temperature_bits=NAN)),
    "BadTemperature (+inf)": ([1, 2], JobConfig(4, temperature_bits=INF)),
    "BadTemperature (-inf)": ([1, 2], JobConfig(4, temperature_bits=NEG_INF)),
    "BadTemperature (-1)": ([1, 2], JobConfig(4, temperature_bits=f32_bits(-1.0))),
    "BadTopP (0)": ([1, 2], JobConfig(4, top_p_bits=0)),
    "BadTopP (-0)": ([1, 2], JobConfig(4, top_p_bits=0x80000000)),
    "BadTopP (1.0000001)": ([1, 2], JobConfig(4, top_p_bits=F32_ONE + 1)),
    "BadTopP (NaN)": ([1, 2], JobConfig(4, top_p_bits=NAN)),
    "BadTopP (-0.5)": ([1, 2], JobConfig(4, top_p_bits=f32_bits(-0.5))),
}


def _error(name: str) -> str:
    return name.split(" ")[0]


def _spec(tokens: list[int], cfg: JobConfig, model: bytes = MODEL) -> JobSpec:
    return JobSpec(model_hash=model, input_tokens=tokens, max_tokens=cfg.max_tokens,
                   temperature=f32_value(cfg.temperature_bits), top_k=cfg.top_k,
                   top_p=f32_value(cfg.top_p_bits), seed=cfg.seed)


# ---- without a chain: the rules against the spec's words ------------------------------------


def _spec_valid(temperature: float, top_p: float) -> bool:
    """RepOps spec §7.3 in words: T finite and >= 0 (-0 counts as 0); 0 < top_p <= 1."""
    return math.isfinite(temperature) and temperature >= 0 and 0 < top_p <= 1


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_config_rules_match_the_spec(t_bits: int, p_bits: int) -> None:
    t, p = f32_value(t_bits), f32_value(p_bits)
    try:
        check_config(JobConfig(1, temperature_bits=t_bits, top_p_bits=p_bits))
        ok = True
    except JobRefused as e:
        assert e.error == ("BadTemperature" if not (math.isfinite(t) and t >= 0) else "BadTopP")
        ok = False
    assert ok == _spec_valid(t, p)


def test_f32_bits_rounds_like_ieee() -> None:
    assert f32_bits(1.0) == F32_ONE and f32_bits(-0.0) == 0x80000000
    assert f32_bits(1e39) == INF and f32_bits(-1e39) == NEG_INF  # struct would raise
    assert f32_bits(3.4028235e38) == 0x7F7FFFFF
    assert f32_bits(float("nan")) & 0x7F800000 == 0x7F800000
    assert f32_bits(1e-46) == 0  # rounds to +0: top_p 1e-46 is refused
    with pytest.raises(JobRefused, match="BadTopP"):
        check_config(JobConfig(1, top_p_bits=f32_bits(1e-46)))
    check_config(JobConfig(1, temperature_bits=0x80000000, top_p_bits=1))  # -0, tiny top_p


# ---- on anvil ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain():
    with Anvil() as anvil:
        owner = ChainClient(anvil.rpc_url, DEV_KEYS[0])
        dep = deploy_protocol(owner, clock_budget_s=600, with_consumer=False)
        register_model(owner, dep.registry, ModelEntry(MODEL, PROGRAM, VOCAB, CTX, 1, "t", "u"))
        yield anvil, owner, dep


def _raw_post(client: ChainClient, market: Any, tokens: list[int], cfg: JobConfig,
              model: bytes = MODEL) -> Any:
    req = (model, cfg.as_tuple(), client.timestamp() + 3600, 600, 10**17, 1)
    return client.transact(market.functions.postJob(req, tokens_bytes(tokens)), value=10**16)


@pytest.mark.chain
def test_each_bad_job_reverts_with_its_named_error(chain) -> None:
    anvil, owner, dep = chain
    requester = ChainClient(anvil.rpc_url, DEV_KEYS[1])
    market = requester.contract("JobMarket", dep.market)
    nonce = requester.w3.eth.get_transaction_count(requester.address)
    for name, (tokens, cfg) in BAD_JOBS.items():
        with pytest.raises(JobRefused) as pre:
            submit_job(requester, market, _spec(tokens, cfg))
        assert pre.value.error == _error(name), name
    assert requester.w3.eth.get_transaction_count(requester.address) == nonce, "nothing sent"
    for name, (tokens, cfg) in BAD_JOBS.items():  # sent anyway: the contract says the same
        with pytest.raises(TxReverted) as rev:
            _raw_post(requester, market, tokens, cfg)
        assert rev.value.error == _error(name), name
    with pytest.raises(JobRefused, match="UnknownModel"):
        submit_job(requester, market, _spec([1], JobConfig(1), model=keccak256(b"nope")))
    with pytest.raises(TxReverted) as rev:
        _raw_post(requester, market, [1], JobConfig(1), model=keccak256(b"nope"))
    assert rev.value.error == "UnknownModel"
    # mined, not only estimated: a fixed gas limit skips the pre-flight and the tx reverts
    req = (MODEL, JobConfig(0).as_tuple(), requester.timestamp() + 3600, 600, 10**17, 1)
    with pytest.raises(TxReverted, match="status 0"):
        requester.transact(market.functions.postJob(req, tokens_bytes([1])), value=10**16,
                           gas=300_000)
    assert requester.call(market.functions.jobCount()) == 0
    assert requester.call(market.functions.totalEscrow()) == 0
    # the edges are runnable: the largest token id, exactly the context, -0, tiny top_p
    edge = JobConfig(CTX - 4, temperature_bits=0x80000000, top_p_bits=1)
    job_id, _ = submit_job(requester, market, _spec([VOCAB - 1, 0, 1, 2], edge))
    assert job_id == 1
    job = requester.call(market.functions.jobOf(job_id))
    assert bytes(job[12]) == keccak256(tokens_bytes([VOCAB - 1, 0, 1, 2]))


@pytest.mark.chain
def test_registry_records_the_limits(chain) -> None:
    _anvil, owner, dep = chain
    reg = owner.contract("ModelRegistry", dep.registry)
    assert tuple(owner.call(reg.functions.termsOf(MODEL))) == (PROGRAM, VOCAB, CTX)
    m = owner.call(reg.functions.modelOf(MODEL))
    assert (m[3], m[4]) == (VOCAB, CTX)
    with pytest.raises(TxReverted) as e:
        owner.transact(reg.functions.register(keccak256(b"m2"), PROGRAM, 1, 0, CTX, "x", "y",
                                              bytes(32)))
    assert e.value.error == "BadLimits"
    with pytest.raises(ValueError, match="max_context"):
        ModelEntry(keccak256(b"m2"), PROGRAM, VOCAB, 1).as_args()


@pytest.mark.chain
def test_deploy_cli_registers_the_limits(chain) -> None:
    anvil, _owner, _dep = chain
    base = [sys.executable, "-m", "node.chain.deploy", "--rpc", anvil.rpc_url,
            "--no-consumer", "--model-hash", "0x" + MODEL.hex(),
            "--program-root", "0x" + PROGRAM.hex()]
    env = {"JUDGE_PRIVATE_KEY": DEV_KEYS[5], "PATH": "/usr/bin:/bin"}
    out = subprocess.run(base, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "--vocab-size, --max-context" in out.stderr
    out = subprocess.run(base + ["--vocab-size", "49152", "--max-context", "256"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    dep = Deployment(**json.loads(out.stdout))
    reader = ChainClient(anvil.rpc_url)
    terms = reader.call(reader.contract("ModelRegistry", dep.registry).functions.termsOf(MODEL))
    assert tuple(terms) == (PROGRAM, 49152, 256)


# ---- the judge CLI (register/submit) with a served model standing in for SmolLM2 -----------


@dataclass
class _Cfg:
    vocab_size: int


@dataclass
class _Model:
    config: _Cfg


@dataclass
class _Served:
    """The fields of node.served.ServedModel that register/submit read (the real model is
    exercised end to end by tests/node/test_cli_judge.py)."""

    name: str
    model_hash: bytes
    program_root: bytes
    uri: str
    max_ctx: int
    model: _Model
    prompt_tokens: list[int]

    def chat_tokens(self, prompt: str) -> list[int]:
        return list(self.prompt_tokens)


@pytest.mark.chain
def test_judge_cli_registers_limits_and_refuses_before_sending(chain, tmp_path, monkeypatch,
                                                               capsys) -> None:
    anvil, owner, _ = chain
    import node.served
    from node.cli import judge

    dep = deploy_protocol(owner, clock_budget_s=600, with_consumer=False)
    dep.save(tmp_path / "dep.json")
    served = _Served("toy", keccak256(b"cli model"), PROGRAM, "test://toy", CTX,
                     _Model(_Cfg(VOCAB)), [1, VOCAB + 3, 2])
    monkeypatch.setattr(node.served, "load_served_model", lambda *a, **k: served)
    monkeypatch.setenv("JUDGE_PRIVATE_KEY", DEV_KEYS[0])
    common = ["--json", "--rpc", anvil.rpc_url, "--deployment", str(tmp_path / "dep.json")]
    assert judge.main(common + ["model", "register"]) == 0
    reg = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (reg["vocab_size"], reg["max_context"]) == (VOCAB, CTX)
    registry = owner.contract("ModelRegistry", dep.registry)
    assert tuple(owner.call(registry.functions.termsOf(served.model_hash)))[1:] == (VOCAB, CTX)

    nonce = owner.w3.eth.get_transaction_count(owner.address)
    market = owner.contract("JobMarket", dep.market)
    cases = [([], "TokenOutOfVocab: input token 1 is 43"),
             (["--temperature", "nan"], "BadTemperature"),
             (["--top-p", "0"], "BadTopP"),
             (["--max-tokens", "0"], "BadMaxTokens")]
    for extra, reason in cases:
        if extra:
            served.prompt_tokens = [1, 2]
        assert judge.main(common + ["job", "submit", "--prompt", "x", "--max-tokens", "4",
                                    *extra]) == 2
        err = capsys.readouterr().err
        assert f"judge: error: job refused, nothing sent: {reason}" in err, err
    served.prompt_tokens = [1] * (CTX - 3)
    assert judge.main(common + ["job", "submit", "--prompt", "x", "--max-tokens", "4"]) == 2
    assert "ContextExceeded: 13 input tokens + 4 new tokens exceed the model's context of 16" \
        in capsys.readouterr().err
    assert owner.w3.eth.get_transaction_count(owner.address) == nonce, "nothing was sent"
    assert owner.call(market.functions.jobCount()) == 0
    served.prompt_tokens = [1] * (CTX - 4)
    assert judge.main(common + ["job", "submit", "--prompt", "x", "--max-tokens", "4"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["job"] == 1

