"""The chain and the requester as adversaries (issue 7): reorgs, bad job input, RPC outages.

- Reorgs (DESIGN §7 "reorg-aware"): a node acting only on blocks `confirmations` deep never
  acts on a JobPosted that a reorg of at most that depth removes; a watcher that sees the
  block under its cursor change rewinds to the fork point (the last recorded block still on
  the chain, however deep) and rescans from there, and a watchtower re-checks what the new
  chain holds (not what it had checked on the old one).
- Bad input: a job input that is not uint32 tokens, or that the program cannot run (token id
  outside the vocabulary, empty prompt, more tokens than the context), is refused by the
  contract with a named error (and by the requester before sending); a job for a model the
  node does not serve is ignored, or skipped by a node that tries it, which carries on.
- RPC down then back: the client retries with backoff; when its retries run out the daemon's
  loop carries on; once anvil is back (same port, state reloaded) the job gets done.

Every scenario checks where every wei went (tests/node/adversary_node.py `ledger`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from node.chain.anvil import DEV_KEYS, Anvil, free_port
from node.chain.client import ChainClient, TxReverted
from node.chain.contracts import ModelEntry
from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.deployment import deploy_protocol, register_model
from node.receipts import tokens_bytes
from node.requester import JobRefused, JobSpec, job_status, submit_job
from node.store import Store
from node.store.records import JobStatus
from node.watch import EventWatcher, Subscription
from repops.commit import keccak256

pytestmark = pytest.mark.chain

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("adversary_node", _here / "adversary_node.py")
W = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("adversary_node", W)
_spec.loader.exec_module(W)

BOND, REWARD, WINDOW, CLOCK = W.BOND, W.REWARD, W.WINDOW, W.CLOCK
BURN = W.burn_of(BOND)
PROMPT_B = [5, 2]


class World:
    def __init__(self, anvil: Anvil, owner: ChainClient, dep: Any, model: Any) -> None:
        self.anvil, self.owner, self.dep, self.model = anvil, owner, dep, model
        self.market = owner.contract("JobMarket", dep.market)
        self.tmp = Path(".")

    def node(self, cls: type, key_index: int, name: str, **kw: Any) -> Any:
        return W.make_node(cls, self.anvil.rpc_url, self.dep, DEV_KEYS[key_index], self.model,
                           self.tmp / f"{name}.db", **kw)

    def post(self, prompt: list[int] = W.PROMPT, n_tokens: int = W.N_TOKENS,
             model_hash: bytes | None = None, n_executors: int = 1) -> int:
        spec = JobSpec(model_hash=model_hash or self.model.model_hash, input_tokens=prompt,
                       max_tokens=n_tokens, reward_wei=REWARD, bond_wei=BOND,
                       challenge_window_s=WINDOW, n_executors=n_executors)
        return submit_job(self.owner, self.market, spec)[0]

    def mine(self, n: int = 1) -> None:
        for _ in range(n):
            W.rpc(self.owner, "evm_mine")


def _entry(model: Any, model_hash: bytes | None = None) -> ModelEntry:
    """The toy's registry entry: its limits are the ones its program was lowered with."""
    return ModelEntry(model_hash or model.model_hash, model.program.root(), W.toy.TOY.vocab,
                      W.toy.MAX_CTX, 1, "toy", "test://toy")


def _deploy(anvil: Anvil, model: Any) -> tuple[ChainClient, Any]:
    owner = ChainClient(anvil.rpc_url, DEV_KEYS[0])
    dep = deploy_protocol(owner, clock_budget_s=CLOCK, with_consumer=False)
    register_model(owner, dep.registry, _entry(model))
    return owner, dep


@pytest.fixture(scope="module")
def chain():
    model = W.toy_model(0)
    with Anvil() as anvil:
        owner, dep = _deploy(anvil, model)
        yield World(anvil, owner, dep, model)


@pytest.fixture()
def world(chain, tmp_path):
    snap = W.rpc(chain.owner, "evm_snapshot")
    chain.tmp = tmp_path
    yield chain
    assert W.rpc(chain.owner, "evm_revert", snap)


# ---- reorgs ----------------------------------------------------------------------------------


def test_job_reorged_away_is_not_acted_on_with_enough_confirmations(world):
    w = world
    depth = 3
    safe = w.node(ExecutorDaemon, 1, "safe", confirmations=depth)
    reckless = w.node(ExecutorDaemon, 3, "reckless", confirmations=0)
    w.mine(depth)  # the reorg below must not reach the deployment
    w.post()  # job 1 (prompt A) in block N
    reckless.poll_once()  # acts at once: commits (block N+1)
    safe.poll_once()
    w.mine()  # head N+2: the job is 2 deep, not yet `depth`
    safe.poll_once()
    assert [j.status for j in reckless.store.jobs()] == [JobStatus.COMMITTED]
    assert safe.store.jobs() == [], "not deep enough to act on"
    W.rpc(w.owner, "anvil_reorg", depth, [])  # blocks N..N+2 replaced: job and commit gone
    assert w.owner.call(w.market.functions.jobCount()) == 0
    w.mine(depth)
    safe.poll_once()
    assert safe.store.jobs() == [], "the reorged-away job was never seen"
    assert W.node_txs(w.owner, safe.client.address, w.dep.block) == []
    # a different job now takes id 1 (two executor slots); the safe node runs *that* one once
    # it is buried; the reckless node, whose commit for the old job 1 vanished, must not
    # re-broadcast it (it would commit the old job's trace to the new job): it acts afresh
    old_commit = reckless.store.tx_by_key("executor:commit:1")
    job_id = w.post(PROMPT_B, n_tokens=3, n_executors=2)  # A's commit would fit B's shape
    assert job_id == 1
    W.settle([safe, reckless], w.owner, confirmations=depth)
    assert reckless.store.tx_by_key("executor:commit:1").status == "dropped"
    from node.jobs import JobOutcome, JobTrace

    b = w.model.honest(PROMPT_B, 3)
    b_root = JobTrace(JobOutcome(b, w.model.weights, b"")).root()
    committers = set()
    for slot in (0, 1):
        c = w.owner.call(w.market.functions.commitmentOf(job_id, slot))
        committers.add(c[0])
        assert list(c[6]) == b.output_tokens() and bytes(c[5]) == b_root, "job B's own trace"
    assert committers == {safe.client.address, reckless.client.address}
    assert old_commit.tx_hash not in {t["hash"] for t in W.node_txs(
        w.owner, reckless.client.address, w.dep.block)}
    led = W.ledger(w.owner, w.dep, safe=safe.client.address, reckless=reckless.client.address)
    assert led["escrow"] == REWARD + 2 * BOND and led["credit"] == 0 and led["burned"] == 0
    assert led["held"] == REWARD + 2 * BOND, "nothing of the reorged-away job or commit remains"


def test_watcher_rescans_after_a_reorg_and_the_watchtower_checks_the_new_chain(world):
    """A watchtower with 0 confirmations checked (and agreed with) a commitment that a reorg
    then removed; on the new chain the same job id holds another job, committed to by a
    cheater. The watcher must notice the reorg, rescan, and the watchtower must re-run and
    dispute the new commitment — not trust what it had checked on the old chain."""
    w = world
    depth = 3
    reckless = w.node(ExecutorDaemon, 3, "reckless", confirmations=0)
    tower = w.node(ChallengerDaemon, 2, "tower", confirmations=0)
    honest_b = w.model.honest(PROMPT_B, 2)
    leaf = W.float_leaf(honest_b, honest_b.length // 2)
    cheater = w.node(ExecutorDaemon, 1, "cheater", confirmations=depth,
                     fault=Fault(leaf=leaf, mask=1 << 22))
    w.mine(depth)  # the reorg below must not reach the deployment
    w.post()  # job 1 = prompt A, block N
    reckless.poll_once()  # commits honestly, block N+1
    tower.poll_once()  # sees the commitment, re-runs A, agrees
    cheater.poll_once()
    assert b'"agreed"' in tower.store.get("commitment:1:0")
    W.rpc(w.owner, "anvil_reorg", depth, [])
    w.post(PROMPT_B, n_tokens=2)  # job 1 = prompt B on the new chain
    W.settle([cheater, tower], w.owner, confirmations=depth)
    job = tower.store.get_job(1)
    assert job.input == tokens_bytes(PROMPT_B), "the watcher rescanned the new chain"
    g = W.game_info(w.owner, w.dep, 1)
    assert g["challenger"] == tower.client.address
    assert g["phase"] == W.RESOLVED and not g["defender_won"] and g["leaf"] == leaf
    W.advance(w.owner, WINDOW + 1)
    W.settle([cheater, tower], w.owner, confirmations=depth)
    assert job_status(w.owner, w.market, 1)["status"] == "Failed"
    led = W.ledger(w.owner, w.dep, cheater=cheater.client.address,
                   tower=tower.client.address, reckless=reckless.client.address,
                   requester=w.owner.address)
    assert led["tower"] == 2 * BOND - BURN and led["cheater"] == 0 and led["reckless"] == 0
    assert led["requester"] == REWARD and led["escrow"] == 0 and led["burned"] == BURN


def test_own_transactions_dropped_by_a_shallow_reorg_are_sent_again(world):
    """A node's own transactions land at the head, so even a reorg no deeper than its
    confirmations can drop them: here the watchtower's challenge, then a game move. The nodes
    must notice (their journal says mined, the chain has no receipt) and broadcast the same
    signed transactions again; otherwise the cheater finalizes unchallenged, or the player
    whose move vanished loses on its clock."""
    w = world
    honest = w.model.honest()
    leaf = W.float_leaf(honest, honest.length // 2)
    cheater = w.node(ExecutorDaemon, 1, "cheater", confirmations=1,
                     fault=Fault(leaf=leaf, mask=1 << 22))
    tower = w.node(ChallengerDaemon, 2, "tower", confirmations=1)
    w.mine(3)
    job_id = w.post()
    game = w.owner.contract("DisputeGame", w.dep.game)
    for _ in range(4):  # commit, let it be buried, challenge
        cheater.poll_once()
        tower.poll_once()
        w.mine()
    assert w.owner.call(game.functions.gameCount()) == 1
    challenge = [t for t in W.node_txs(w.owner, tower.client.address, w.dep.block)
                 if t["method"] == "challenge"]
    assert len(challenge) == 1
    depth = w.owner.block_number() - w.owner.w3.eth.get_transaction(challenge[0]["hash"])[
        "blockNumber"] + 1
    W.rpc(w.owner, "anvil_reorg", depth, [])
    assert w.owner.call(game.functions.gameCount()) == 0, "the challenge is gone"
    for _ in range(6):  # a few moves, then a one-block reorg drops the latest one
        cheater.poll_once()
        tower.poll_once()
    moves = w.owner.block_number()
    assert w.owner.call(game.functions.gameCount()) == 1, "the challenge was sent again"
    W.rpc(w.owner, "anvil_reorg", 1, [])
    assert w.owner.block_number() == moves
    W.settle([cheater, tower], w.owner, confirmations=1)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and not g["defender_won"] and g["leaf"] == leaf
    assert g["reason"] == W.REASON_VERIFIER, "decided by the one-step, not by a clock"
    W.advance(w.owner, WINDOW + 1)
    W.settle([cheater, tower], w.owner, confirmations=1)
    assert job_status(w.owner, w.market, job_id)["status"] == "Failed"
    led = W.ledger(w.owner, w.dep, cheater=cheater.client.address,
                   tower=tower.client.address, requester=w.owner.address)
    assert led["tower"] == 2 * BOND - BURN and led["cheater"] == 0
    assert led["requester"] == REWARD and led["escrow"] == 0 and led["burned"] == BURN
    for n in (cheater, tower):
        W.assert_journal_matches_chain(w.owner, n.store, n.client.address, w.dep.block)


def test_watcher_rewinds_to_the_fork_point_of_a_deep_reorg(world, caplog):
    """A reorg 100 blocks deep (deeper than any fixed rewind) replaces the branch the node had
    scanned with one holding a job at its bottom. The watcher must go back to the fork point,
    the last block it recorded that is still on the chain, and find the job."""
    w = world
    ex = w.node(ExecutorDaemon, 1, "ex", confirmations=0)
    w.mine(2)
    ex.poll_once()  # the cursor (and its hash) at block n
    n = w.owner.block_number()
    snap = W.rpc(w.owner, "evm_snapshot")
    w.mine(100)
    ex.poll_once()  # the cursor at n + 100 on the branch about to vanish
    assert ex.store.get_cursor(ex.watcher.name).block == n + 100
    assert W.rpc(w.owner, "evm_revert", snap)
    job_id = w.post()  # block n + 1 of the new branch
    w.mine(120)  # longer than the old branch: only the hash tells the cursor's block changed
    caplog.set_level(logging.WARNING, logger="judge.watch")
    ex.poll_once()
    assert f"rescanning from {n + 1}" in caplog.text
    assert [(j.job, j.status) for j in ex.store.jobs()] == [(job_id, JobStatus.COMMITTED)]
    recorded = ex.store.block_hashes(ex.watcher.name)
    assert n + 100 not in recorded or recorded[n + 100] == bytes(
        w.owner.w3.eth.get_block(n + 100)["hash"]), "nothing of the old branch is kept"
    assert all(bytes(w.owner.w3.eth.get_block(k)["hash"]) == h for k, h in recorded.items())


def test_watcher_rescans_only_above_the_fork_point(world, tmp_path, caplog):
    """Events below the fork point are not handled again; events of the dropped blocks are
    replaced by what the new chain holds; a chain shorter than the cursor is a reorg too."""
    w = world
    store = Store(tmp_path / "watch.db")
    seen: list[tuple[int, bytes]] = []

    def on_job(ev: Any) -> None:
        seen.append((ev["args"]["jobId"], bytes(ev["args"]["input"])))

    watcher = EventWatcher(w.owner, store, "t", [Subscription(w.market, "JobPosted", on_job)],
                           start_block=w.dep.block)
    caplog.set_level(logging.WARNING, logger="judge.watch")
    try:
        w.post()  # job 1 in block a
        watcher.poll()
        a = w.owner.block_number()
        w.post(PROMPT_B)  # job 2 in block a + 1
        watcher.poll()
        w.mine()
        watcher.poll()  # cursor at a + 2
        W.rpc(w.owner, "anvil_reorg", 2, [])  # a + 1 and a + 2 replaced by empty blocks
        assert watcher.poll() == 0
        assert f"rescanning from {a + 1}" in caplog.text, "rewound to the fork point a"
        assert w.post([9, 9]) == 2  # job 2 again, another input, on the new chain
        watcher.poll()
        pa, pb = tokens_bytes(W.PROMPT), tokens_bytes(PROMPT_B)
        assert seen == [(1, pa), (2, pb), (2, tokens_bytes([9, 9]))], "job 1 handled once"
        # the chain gets shorter than the cursor: the last recorded block still on it is a
        snap_height = w.owner.block_number()
        snap = W.rpc(w.owner, "evm_snapshot")
        w.mine(5)
        watcher.poll()
        assert W.rpc(w.owner, "evm_revert", snap)
        assert w.owner.block_number() == snap_height
        caplog.clear()
        assert watcher.poll() == 0
        assert f"rescanning from {snap_height + 1}" in caplog.text
        assert len(seen) == 3
    finally:
        store.close()


# ---- bad input -------------------------------------------------------------------------------


def test_malformed_job_input_is_refused_by_the_contract(world):
    w = world
    req = (w.model.model_hash, (3, 0, 0, 0x3F800000, 0), w.owner.timestamp() + 3600, WINDOW,
           BOND, 1)
    before = W.ledger(w.owner, w.dep)
    for bad in (b"\x00" * 5, b"\x01\x02\x03"):
        with pytest.raises(TxReverted) as e:
            w.owner.transact(w.market.functions.postJob(req, bad), value=REWARD)
        assert e.value.error == "InputNotTokens"
    assert w.owner.call(w.market.functions.jobCount()) == 0
    assert W.ledger(w.owner, w.dep) == before


def test_unrunnable_jobs_never_reach_the_chain(world):
    """Jobs the toy program cannot run: the requester refuses them before sending, with the
    contract's reason, and the contract refuses them too when sent anyway. A node therefore
    never sees one (the full list of refusals: tests/node/test_job_refusals.py)."""
    w = world
    vocab, ctx = W.toy.TOY.vocab, W.toy.MAX_CTX
    bad = {"TokenOutOfVocab": ([3, vocab, 1], W.N_TOKENS), "EmptyInput": ([], W.N_TOKENS),
           "ContextExceeded": (W.PROMPT, ctx - len(W.PROMPT) + 1)}
    nonce = w.owner.w3.eth.get_transaction_count(w.owner.address)
    for error, (prompt, n) in bad.items():
        with pytest.raises(JobRefused) as e:
            w.post(prompt, n_tokens=n)
        assert e.value.error == error
    assert w.owner.w3.eth.get_transaction_count(w.owner.address) == nonce, "nothing was sent"
    for error, (prompt, n) in bad.items():
        req = (w.model.model_hash, (n, 0, 0, 0x3F800000, 0), w.owner.timestamp() + 3600,
               WINDOW, BOND, 1)
        with pytest.raises(TxReverted) as e:
            w.owner.transact(w.market.functions.postJob(req, tokens_bytes(prompt)),
                             value=REWARD)
        assert e.value.error == error
    assert w.owner.call(w.market.functions.jobCount()) == 0
    assert w.post(W.PROMPT, n_tokens=ctx - len(W.PROMPT)) == 1, "exactly the context is fine"


def test_unserved_model_is_skipped_and_the_node_carries_on(world):
    w = world
    other = keccak256(b"some other model")
    register_model(w.owner, w.dep.registry, _entry(w.model, other))
    jobs = {"unserved": w.post(model_hash=other), "good": w.post()}
    ex = w.node(ExecutorDaemon, 1, "ex")
    # a node serving every registered model runs the unserved job too, and must survive it
    greedy = w.node(ExecutorDaemon, 3, "greedy", served_models=None)
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, greedy, ch], w.owner)
    assert {j.job for j in ex.store.jobs()} == {jobs["good"]}
    assert {j.job: j.status for j in greedy.store.jobs()}[jobs["unserved"]] == JobStatus.SKIPPED
    # the good job pays the executor that got its slot; the other reward goes back
    W.advance(w.owner, 3600 + 1)
    W.settle([ex, greedy, ch], w.owner)
    for name, job_id in jobs.items():
        if job_status(w.owner, w.market, job_id)["status"] == "Open":
            w.owner.transact(w.market.functions.finalize(job_id))
        assert job_status(w.owner, w.market, job_id)["status"] == \
            ("Finalized" if name == "good" else "Failed"), name
    winner = w.owner.call(w.market.functions.commitmentOf(jobs["good"], 0))[0]
    led = W.ledger(w.owner, w.dep, ex=ex.client.address, greedy=greedy.client.address,
                   ch=ch.client.address, requester=w.owner.address)
    paid = "ex" if winner == ex.client.address else "greedy"
    assert led[paid] == BOND + REWARD
    assert led["ex" if paid == "greedy" else "greedy"] == 0 and led["ch"] == 0
    assert led["requester"] == REWARD
    assert led["escrow"] == 0 and led["burned"] == 0


# ---- RPC down, then back ---------------------------------------------------------------------


def test_rpc_down_then_back(tmp_path, caplog):
    """The node starts while anvil is down, rides out an outage longer than its client's
    retry budget, and commits and collects once anvil is back on the same port."""
    model = W.toy_model(0)
    port = free_port()
    state = tmp_path / "anvil-state.json"
    first = Anvil(port=port, extra_args=["--dump-state", str(state)]).start()
    try:
        owner, dep = _deploy(first, model)
        market = owner.contract("JobMarket", dep.market)
        spec = JobSpec(model_hash=model.model_hash, input_tokens=W.PROMPT,
                       max_tokens=W.N_TOKENS, reward_wei=REWARD, bond_wei=BOND,
                       challenge_window_s=WINDOW)
        job_id = submit_job(owner, market, spec)[0]
    finally:
        os.killpg(first.proc.pid, signal.SIGINT)  # SIGINT: anvil dumps its state and exits
        first.proc.wait(timeout=20)
        first.proc = None
    assert state.is_file()
    ex = W.make_node(ExecutorDaemon, f"http://127.0.0.1:{port}", dep, DEV_KEYS[1], model,
                     tmp_path / "ex.db", retries=3, backoff=0.1)
    caplog.set_level(logging.WARNING, logger="judge")
    t = threading.Thread(target=ex.run, kwargs={"interval": 0.2}, daemon=True)
    t.start()
    second = None
    try:
        time.sleep(3.0)  # > the client's retry budget (0.1 + 0.2 + 0.4 s): its loop sees errors
        assert t.is_alive(), "the daemon's loop survived the outage"
        assert ex.store.jobs() == []
        second = Anvil(port=port, extra_args=["--load-state", str(state)]).start()
        deadline = time.monotonic() + 60
        while not ex.store.jobs(JobStatus.COMMITTED):
            assert time.monotonic() < deadline, "no commit after the RPC came back"
            time.sleep(0.2)
        ex.stop()
        t.join(timeout=30)
        assert not t.is_alive()
        assert any("RPC trouble" in r.getMessage() for r in caplog.records)
        assert any("retrying in" in r.getMessage() for r in caplog.records)
        W.advance(owner, WINDOW + 1)
        W.settle([ex], owner)
        assert job_status(owner, market, job_id)["status"] == "Finalized"
        led = W.ledger(owner, dep, ex=ex.client.address)
        assert led["ex"] == BOND + REWARD and led["escrow"] == 0
        txs = W.assert_journal_matches_chain(owner, ex.store, ex.client.address, dep.block)
        assert [t["method"] for t in txs] == ["commit", "finalize"]
    finally:
        ex.stop()
        t.join(timeout=30)
        if second is not None:
            second.stop()
