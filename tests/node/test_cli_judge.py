"""The `judge` CLI as a user runs it: separate processes, the real SmolLM2, a real anvil.

deploy → model register → job submit → executor and challenger daemons → time passes →
job result is Finalized with the model's answer. Daemons are stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from web3 import Web3

from node.chain.anvil import DEV_KEYS, Anvil

JUDGE = [sys.executable, "-m", "node.cli.judge"]


def _judge(env: dict, *args: str, timeout: int = 900) -> dict:
    out = subprocess.run(JUDGE + ["--json", *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def chain():
    with Anvil() as a:
        yield a


def test_cli_flow_real_model(chain, tmp_path):
    env = dict(os.environ, JUDGE_RPC_URL=chain.rpc_url,
               JUDGE_DEPLOYMENT=str(tmp_path / "deployment.json"),
               JUDGE_PRIVATE_KEY=DEV_KEYS[0], PYTHONUNBUFFERED="1")
    dep = _judge(env, "deploy", "--clock-budget", "600")
    assert Web3.is_address(dep["market"])
    reg = _judge(env, "model", "register")
    assert reg["model_hash"].startswith("0x")
    job = _judge(env, "job", "submit", "--prompt",
                 "What is the capital of France?", "--max-tokens", "2", "--window", "600")
    job_id = job["job"]

    procs = []
    for role, key in (("executor", DEV_KEYS[1]), ("challenger", DEV_KEYS[2])):
        e = dict(env, JUDGE_PRIVATE_KEY=key, JUDGE_DATA_DIR=str(tmp_path / role),
                 JUDGE_POLL_INTERVAL="0.5")
        procs.append(subprocess.Popen(JUDGE + [role], env=e,
                                      stdout=subprocess.DEVNULL,
                                      stderr=open(tmp_path / f"{role}.log", "w")))
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
    try:
        deadline = time.monotonic() + 900
        status = None
        while time.monotonic() < deadline:
            status = _judge(env, "job", "status", str(job_id))
            if status["status"] == "Finalized":
                break
            checked = "agrees with our re-execution" in (tmp_path / "challenger.log").read_text()
            if status["status"] == "Committed" and checked:
                # only once the watchtower has re-executed: then let the window pass
                w3.provider.make_request("evm_increaseTime", [601])
                w3.provider.make_request("evm_mine", [])
            for p in procs:
                assert p.poll() is None, (tmp_path / "executor.log").read_text()[-3000:]
            time.sleep(2)
        assert status and status["status"] == "Finalized", status
        res = _judge(env, "job", "result", str(job_id))
        assert len(res["output_tokens"]) == 2
        assert "capital" in res["text"].lower() or res["text"].strip()
        ch_log = (tmp_path / "challenger.log").read_text()
        assert "agrees with our re-execution" in ch_log
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, JUDGE_RPC_URL="http://127.0.0.1:9",
               JUDGE_DEPLOYMENT=str(tmp_path / "none.json"))
    env.pop("JUDGE_PRIVATE_KEY", None)
    out = subprocess.run(JUDGE + ["job", "status", "1"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "judge: error:" in out.stderr and "judge deploy" in out.stderr
    out = subprocess.run(JUDGE + ["deploy"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "JUDGE_PRIVATE_KEY" in out.stderr
