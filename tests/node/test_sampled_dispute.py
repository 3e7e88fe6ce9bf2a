"""A sampled SmolLM2 job disputed on anvil end to end (docs/trace-layout.md §L5.10): the real
model through node/served.py, a temperature 0.7 / top_k 40 / top_p 0.9 job, an executor that
corrupts one element of one SAMPLE leaf (SORT, the last MERGE level, DRAW) on its committed
trace, and the honest watchtower that re-executes, bisects to that leaf and wins the on-chain
one-step. The toy-model variant of the same games is in test_adversary_games.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.client import ChainClient
from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.deployment import deploy_protocol, register_model, served_entry
from node.models import ModelError
from node.requester import JobSpec, job_status, submit_job
from referee.layout import Code, Stage

pytestmark = [pytest.mark.chain, pytest.mark.slow]

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("adversary_node", _here / "adversary_node.py")
W = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("adversary_node", W)
_spec.loader.exec_module(W)

MAX_CTX = 40
SAMPLED = {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "seed": 20261123}
N_TOKENS = 2


@pytest.fixture(scope="module")
def served():
    from node.ree.model import ModelLoadError
    from node.served import load_served_model

    try:
        return load_served_model("smollm2", max_ctx=MAX_CTX)
    except (ModelError, ModelLoadError) as e:  # pragma: no cover - only without `make setup`
        pytest.skip(f"SmolLM2 GGUF not available: {e}")


@pytest.fixture(scope="module")
def chain(served):
    with Anvil() as anvil:
        owner = ChainClient(anvil.rpc_url, DEV_KEYS[0])
        dep = deploy_protocol(owner, clock_budget_s=W.CLOCK, with_consumer=False)
        register_model(owner, dep.registry, served_entry(served))
        yield anvil, owner, dep


def _leaf(served, stage: Stage, last: bool = False) -> int:
    prog = served.model.program
    js = [i for i, op in enumerate(prog.ops) if op.code == Code.SAMPLE and op.attrs[0] == stage]
    return prog.n_ops + (js[-1] if last else js[0])  # step 1: the first sampled decode step


@pytest.mark.parametrize("stage,last,element,mask", [
    (Stage.SORT, False, 1000, 1),  # a token of block 3 swapped for its neighbour
    (Stage.MERGE, True, 20000, 1),  # the whole-row order, checked through `self`
    (Stage.DRAW, False, 0, 1 << 22),
], ids=["sort", "merge", "draw"])
def test_sampled_smollm2_cheat_loses_the_on_chain_one_step(served, chain, tmp_path, stage,
                                                             last, element, mask):
    anvil, owner, dep = chain
    snap = W.rpc(owner, "evm_snapshot")
    try:
        market = owner.contract("JobMarket", dep.market)
        toks = served.model.tokenizer().encode("The capital of France is")
        spec = JobSpec(model_hash=served.model_hash, input_tokens=toks, max_tokens=N_TOKENS,
                       reward_wei=W.REWARD, bond_wei=W.BOND, challenge_window_s=W.WINDOW,
                       **SAMPLED)
        job_id = submit_job(owner, market, spec)[0]
        leaf = _leaf(served, stage, last)
        ex = W.make_node(ExecutorDaemon, anvil.rpc_url, dep, DEV_KEYS[1], served,
                         tmp_path / "ex.db", fault=Fault(leaf=leaf, element=element, mask=mask))
        ch = W.make_node(ChallengerDaemon, anvil.rpc_url, dep, DEV_KEYS[2], served,
                         tmp_path / "ch.db")
        W.settle([ex, ch], owner)
        g = W.game_info(owner, dep, 1)
        assert g["phase"] == W.RESOLVED and g["leaf"] == leaf, "bisected to the SAMPLE leaf"
        assert not g["defender_won"] and g["reason"] == W.REASON_VERIFIER
        W.advance(owner, W.WINDOW + 1)
        W.settle([ex, ch], owner)
        if job_status(owner, market, job_id)["status"] == "Committed":
            owner.transact(market.functions.finalize(job_id))
        assert job_status(owner, market, job_id)["status"] == "Failed"
        led = W.ledger(owner, dep, executor=ex.client.address, challenger=ch.client.address)
        burn = W.burn_of(W.BOND)
        assert led["executor"] == 0 and led["challenger"] == 2 * W.BOND - burn
    finally:
        assert W.rpc(owner, "evm_revert", snap)
