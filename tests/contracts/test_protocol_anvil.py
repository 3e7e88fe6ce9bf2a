"""Issue 5 acceptance on a real chain: deploy the protocol to anvil from Python (the real
compiler's bytecode), post a job, commit, let the window pass unchallenged, finalize, and have
the example consumer (a YES/NO prediction market) settle on the result — asserting where every
wei went."""

from __future__ import annotations

import subprocess
import sys

import pytest
from web3 import Web3

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.client import ChainClient, TxReverted
from node.chain.contracts import JobConfig, JobRequest, JobStatus, ModelEntry, Outcome
from node.chain.deploy import deploy
from node.deployment import Deployment
from node.receipts import tokens_bytes, tokens_hash
from repops.commit import keccak256, tensor_root_np, trace_root

pytestmark = pytest.mark.chain

MODEL = keccak256(b"smollm2-135m-instruct test model")
PROGRAM = keccak256(b"program root")
YES, NO = 14134, 3160
BOND = 10**18
REWARD = 5 * 10**17
WINDOW = 600


@pytest.fixture(scope="module")
def chain():
    with Anvil() as a:
        yield a


def _trace() -> tuple[bytes, int]:
    """A real C5 trace root over a few op outputs (commitments.md C4/C5)."""
    import numpy as np

    outs = [np.arange(n, dtype=np.float32) for n in (1, 7, 300)]
    ops = [keccak256(f"op{i}".encode()) for i in range(len(outs))]
    return trace_root(ops, [tensor_root_np(o) for o in outs]), len(outs)


def _advance(client: ChainClient, seconds: int) -> None:
    client.w3.provider.make_request("evm_increaseTime", [seconds])
    client.w3.provider.make_request("evm_mine", [])


def test_deploy_cli(chain):
    out = subprocess.run(
        [sys.executable, "-m", "node.chain.deploy", "--rpc", chain.rpc_url, "--clock", "120",
         "--model-hash", "0x" + MODEL.hex(), "--program-root", "0x" + PROGRAM.hex(),
         "--model-name", "SmolLM2", "--vocab-size", "49152", "--max-context", "2048"],
        env={"JUDGE_PRIVATE_KEY": DEV_KEYS[5], "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert DEV_KEYS[5] not in out.stdout + out.stderr  # the key is never printed
    dep = Deployment(**__import__("json").loads(out.stdout))
    reader = ChainClient(chain.rpc_url)
    registry = reader.contract("ModelRegistry", dep.registry)
    assert reader.call(registry.functions.programRootOf(MODEL)) == PROGRAM
    game = reader.contract("DisputeGame", dep.game)
    assert reader.call(game.functions.market()) == dep.market
    assert reader.call(game.functions.clockBudget()) == 120


def test_job_unchallenged_finalizes_and_consumer_settles(chain):
    deployer = ChainClient(chain.rpc_url, DEV_KEYS[0])
    requester = ChainClient(chain.rpc_url, DEV_KEYS[1])
    executor = ChainClient(chain.rpc_url, DEV_KEYS[2])
    bettor_yes = ChainClient(chain.rpc_url, DEV_KEYS[3])
    bettor_no = ChainClient(chain.rpc_url, DEV_KEYS[4])
    dep = deploy(chain.rpc_url, DEV_KEYS[0], clock_budget_s=300,
                 model=ModelEntry(MODEL, PROGRAM, 49152, 2048, 1, "SmolLM2-135M-Instruct", "hf://x"))
    c = dep.contracts(deployer)
    market, consumer = c["market"], c["consumer"]

    # requester posts the question; the input bytes are C6 token bytes
    prompt = [1, 9690, 42, 2]
    now = deployer.timestamp()
    req = JobRequest(MODEL, JobConfig(max_tokens=8, seed=7), deadline=now + 3600,
                     challenge_window=WINDOW, bond=BOND)
    res = requester.transact(market.functions.postJob(req.as_tuple(), tokens_bytes(prompt)),
                             value=REWARD)
    (posted,) = market.events.JobPosted().process_receipt(res.receipt)
    job_id = posted["args"]["jobId"]
    assert posted["args"]["input"] == tokens_bytes(prompt)
    status, _, _ = requester.call(market.functions.resultOf(job_id))
    assert status == JobStatus.OPEN

    # a market on the answer, and two bets
    pm_res = deployer.transact(consumer.functions.createMarket(job_id, now + 300, [YES], [NO]))
    (created,) = consumer.events.MarketCreated().process_receipt(pm_res.receipt)
    mid = created["args"]["marketId"]
    bettor_yes.transact(consumer.functions.bet(mid, True), value=3 * 10**17)
    bettor_no.transact(consumer.functions.bet(mid, False), value=10**17)

    # the executor commits (output tokens, C6 hash, C5 trace root) with the bond
    out_tokens = [198, YES, 13]
    root, length = _trace()
    commit = executor.transact(
        market.functions.commit(job_id, out_tokens, tokens_hash(out_tokens), root, length),
        value=BOND)
    assert commit.gas_used < 300_000
    status, _, _ = requester.call(market.functions.resultOf(job_id))
    assert status == JobStatus.COMMITTED
    with pytest.raises(TxReverted, match="NotFinalizable"):
        requester.transact(market.functions.finalize(job_id))

    # nobody challenges; the window passes; anyone finalizes
    _advance(deployer, WINDOW + 1)
    fin = requester.transact(market.functions.finalize(job_id))
    status, out_hash, toks = requester.call(market.functions.resultOf(job_id))
    assert status == JobStatus.FINALIZED
    assert out_hash == tokens_hash(out_tokens) and list(toks) == out_tokens

    # the consumer acts on the verdict
    deployer.transact(consumer.functions.settle(mid))
    assert deployer.call(consumer.functions.marketOf(mid))[2] == Outcome.YES
    before = bettor_yes.balance(bettor_yes.address)
    claim = bettor_yes.transact(consumer.functions.claim(mid))
    fee = claim.gas_used * claim.receipt["effectiveGasPrice"]
    assert bettor_yes.balance(bettor_yes.address) == before + 4 * 10**17 - fee
    with pytest.raises(TxReverted, match="NothingToClaim"):
        bettor_no.transact(consumer.functions.claim(mid))

    # the executor pulls its bond and the reward; the market ends empty
    assert executor.call(market.functions.balanceOf(executor.address)) == BOND + REWARD
    before = executor.balance(executor.address)
    w = executor.transact(market.functions.withdraw())
    fee = w.gas_used * w.receipt["effectiveGasPrice"]
    assert executor.balance(executor.address) == before + BOND + REWARD - fee
    assert deployer.balance(Web3.to_checksum_address(dep.market)) == 0
    assert deployer.balance(Web3.to_checksum_address(dep.consumer)) == 0
    print(f"gas: commit {commit.gas_used}, finalize {fin.gas_used}, withdraw {w.gas_used}")
