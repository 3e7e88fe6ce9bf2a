"""End to end on anvil: real contracts (registry, market, game, one-step verifier), real
daemons, a real trace program (a tiny Llama lowered by referee.lowering) executed by the
reference executor. The model is tiny so the whole dispute runs in seconds; the same code
paths serve SmolLM2 (tests/ree and the demo).

Each scenario asserts where every wei went.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.client import ChainClient
from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.deployment import deploy_protocol
from node.jobs import JobOutcome
from node.requester import JobSpec, job_status, submit_job
from node.store import Store
from referee.execute import run
from referee.lowering import llama_program
from referee.witness import config_bytes
from repops.commit import keccak256

_spec = importlib.util.spec_from_file_location(
    "toy_llama", Path(__file__).parents[1] / "referee" / "toy_llama.py")
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)

BOND = 10**17
REWARD = 10**16
WINDOW = 300

logging.getLogger("judge").setLevel(logging.INFO)


@pytest.fixture(scope="module")
def toy_model():
    w, store, _arrays, _layers = toy.toy_weights(0)
    prog = llama_program(toy.TOY, w, toy.MAX_CTX, segment=toy.SEGMENT)
    model_hash = keccak256(b"toy-llama" + prog.root())

    def runner(mh, tokens, config, fault=None):
        assert mh == model_hash
        tr = run(prog, store, list(tokens), int(config["max_new_tokens"]), override=fault)
        return JobOutcome(tr, store, config_bytes(int(config["max_new_tokens"])))

    return model_hash, prog, runner


@pytest.fixture()
def world(toy_model, tmp_path):
    model_hash, prog, runner = toy_model
    with Anvil() as chain:
        owner = ChainClient(chain.rpc_url, DEV_KEYS[0])
        dep = deploy_protocol(owner, clock_budget_s=600)
        reg = owner.contract("ModelRegistry", dep.registry)
        owner.transact(reg.functions.register(model_hash, prog.root(), 1, toy.TOY.vocab,
                                              toy.MAX_CTX, "toy", "test://toy", bytes(32)))
        yield chain, dep, owner, model_hash, runner, tmp_path


def _node(cls, chain, dep, key, runner, path, **kw):
    store = Store(path)
    client = ChainClient(chain.rpc_url, key, journal=store)
    return cls(client, dep, store, runner, **kw)


def _advance(client: ChainClient, seconds: int) -> None:
    client.w3.provider.make_request("evm_increaseTime", [seconds])
    client.w3.provider.make_request("evm_mine", [])


def _play(nodes, client, rounds=80, advance_when_idle=WINDOW + 1):
    """Poll all nodes until nothing moves; then let time pass once (windows, clocks)."""
    idle = 0
    for _ in range(rounds):
        before = client.block_number()
        for n in nodes:
            n.poll_once()
        if client.block_number() == before:
            idle += 1
            if idle == 1:
                _advance(client, advance_when_idle)
            elif idle > 2:
                return
        else:
            idle = 0


def _post(owner, dep, model_hash, n_tokens=3):
    market = owner.contract("JobMarket", dep.market)
    spec = JobSpec(model_hash=model_hash, input_tokens=[3, 7, 1], max_tokens=n_tokens,
                   reward_wei=REWARD, bond_wei=BOND, challenge_window_s=WINDOW)
    job_id, _ = submit_job(owner, market, spec)
    return market, job_id


def test_honest_job_finalizes_and_pays(world):
    chain, dep, owner, model_hash, runner, tmp = world
    market, job_id = _post(owner, dep, model_hash)
    ex = _node(ExecutorDaemon, chain, dep, DEV_KEYS[1], runner, tmp / "ex.db")
    ch = _node(ChallengerDaemon, chain, dep, DEV_KEYS[2], runner, tmp / "ch.db")
    _play([ex, ch], owner)
    st = job_status(owner, market, job_id)
    assert st["status"] == "Finalized"
    assert st["output_tokens"] == runner(model_hash, [3, 7, 1], {"max_new_tokens": 3}).tokens
    # the executor is owed its bond back plus the reward; the challenger never bonded
    assert owner.call(market.functions.balanceOf(ex.client.address)) == BOND + REWARD
    assert owner.call(market.functions.balanceOf(ch.client.address)) == 0
    assert ex.withdraw() == BOND + REWARD
    assert owner.call(market.functions.totalEscrow()) == 0


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_cheating_executor_is_bisected_and_slashed(world, where):
    chain, dep, owner, model_hash, runner, tmp = world
    honest = runner(model_hash, [3, 7, 1], {"max_new_tokens": 3})
    floats = [i for i, o in enumerate(honest.trace.outputs) if o.dtype.name == "float32"]
    leaf = {"first": floats[0], "middle": floats[len(floats) // 2], "last": floats[-1]}[where]
    market, job_id = _post(owner, dep, model_hash)
    ex = _node(ExecutorDaemon, chain, dep, DEV_KEYS[1], runner, tmp / "ex.db",
               fault=Fault(leaf=leaf, element=0, mask=1 << 22))
    ch = _node(ChallengerDaemon, chain, dep, DEV_KEYS[2], runner, tmp / "ch.db")
    _play([ex, ch], owner)
    game = owner.contract("DisputeGame", dep.game)
    info = owner.call(game.functions.gameInfo(1))
    assert info[1] == 8, "game resolved"
    assert info[5] == leaf, "bisection found the corrupted leaf"
    assert info[7] is False, "defender (cheater) lost"
    burn = BOND * owner.call(market.functions.BURN_BPS()) // 10_000
    assert owner.call(market.functions.balanceOf(ch.client.address)) == 2 * BOND - burn
    assert owner.call(market.functions.balanceOf(ex.client.address)) == 0
    bal = owner.w3.eth.get_balance(dep.market)
    owed = (owner.call(market.functions.totalEscrow()) + owner.call(market.functions.totalCredit())
            + owner.call(market.functions.totalBurned()))
    assert bal == owed


def test_p2p_locates_divergence_off_chain(world):
    """The executor serves its trace over libp2p; the challenger finds the corrupted leaf from
    it (checked against the committed root) before the on-chain game confirms the same leaf."""
    from node.network import start_node

    chain, dep, owner, model_hash, runner, tmp = world
    honest = runner(model_hash, [3, 7, 1], {"max_new_tokens": 3})
    floats = [i for i, o in enumerate(honest.trace.outputs) if o.dtype.name == "float32"]
    leaf = floats[len(floats) // 3]
    market, job_id = _post(owner, dep, model_hash)
    ex = _node(ExecutorDaemon, chain, dep, DEV_KEYS[1], runner, tmp / "ex.db",
               fault=Fault(leaf=leaf, element=0, mask=1 << 22))
    ex_p2p = start_node(ex.outcomes)
    ch = None
    try:
        ex.p2p = ex_p2p
        ch_p2p = start_node({}, bootstrap=ex_p2p.addrs)
        ch = _node(ChallengerDaemon, chain, dep, DEV_KEYS[2], runner, tmp / "ch.db", p2p=ch_p2p)
        ch.listener.peers.clear()
        import time as _t

        deadline = _t.monotonic() + 10
        while not ch_p2p.topic_peers("/judge/receipts/1") and _t.monotonic() < deadline:
            _t.sleep(0.1)
        _play([ex, ch], owner)
        assert ch.located[job_id][0] == leaf
        game = owner.contract("DisputeGame", dep.game)
        assert owner.call(game.functions.gameInfo(1))[5] == leaf
    finally:
        ex_p2p.close()
        if ch is not None:
            ch.p2p.close()
