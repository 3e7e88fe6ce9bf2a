"""Adversaries against the daemons on anvil (issue 7; DESIGN §6 soundness checklist, §7).

Real contracts, real daemons, real traces of a tiny Llama (tests/node/adversary_node.py).
Each scenario asserts where every wei went: the balances owed by the market to every party,
`totalEscrow`, `totalCredit`, `totalBurned`, and that the market holds exactly their sum.

One anvil and one deployment serve the module; every test runs from an `evm_snapshot` and
reverts it afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from node.chain.client import TxReverted
from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.game_player import D, GamePlayer, Phase
from node.jobs import JobOutcome, JobTrace
from node.requester import job_status
from referee.bisection import lift
from repops.commit import merkle_levels

pytestmark = pytest.mark.chain

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("adversary_node", _here / "adversary_node.py")
W = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("adversary_node", W)
_spec.loader.exec_module(W)

BOND, REWARD, WINDOW, CLOCK = W.BOND, W.REWARD, W.WINDOW, W.CLOCK
BURN = W.burn_of(BOND)

logging.getLogger("judge").setLevel(logging.INFO)


World = W.World


@pytest.fixture(scope="module")
def chain():
    with W.deployed_world(W.toy_model(0), W.toy.TOY.vocab, W.toy.MAX_CTX, "toy") as w:
        yield w


@pytest.fixture()
def world(chain, tmp_path):
    snap = W.rpc(chain.owner, "evm_snapshot")
    chain.tmp = tmp_path
    yield chain
    assert W.rpc(chain.owner, "evm_revert", snap)


def _finish_job(w: World, nodes: list, job_id: int) -> str:
    return w.finish(nodes, job_id)


def _cheater_slashed(w: World, ex: Any, ch: Any, job_id: int) -> None:
    """Money after a cheating executor lost its only game and the job failed."""
    assert _finish_job(w, [ex, ch], job_id) == "Failed"
    led = w.ledger(executor=ex, challenger=ch, requester=w.owner.address)
    assert led["executor"] == 0
    assert led["challenger"] == 2 * BOND - BURN  # own bond back + the cheater's, less the burn
    assert led["requester"] == REWARD  # no valid result: the reward goes back
    assert led["escrow"] == 0 and led["burned"] == BURN
    assert led["credit"] == 2 * BOND - BURN + REWARD


# ---- 1. wrong final output over an honest trace (DESIGN §6 checklist 4) ----------------------


@pytest.mark.parametrize("how", ["change", "drop"])
def test_wrong_output_tokens_lose_the_output_token_one_step(world, how):
    w = world
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex", fault=W.TokenLie(how, index=1))
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    honest = w.model.honest()
    committed = list(w.owner.call(w.market.functions.commitmentOf(job_id, 0))[6])
    assert committed != honest.output_tokens()
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and not g["defender_won"]
    assert g["reason"] == W.REASON_VERIFIER
    pending = w.owner.call(w.game.functions.pending(1))
    assert pending[0] == 4, "decided by the OutputToken claim (same trace, no bisection)"
    _cheater_slashed(w, ex, ch, job_id)


# ---- 2. correct output, one wrong trace leaf (committed copy only) ---------------------------


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_wrong_trace_leaf_with_correct_output_is_found_and_slashed(world, where):
    w = world
    honest = w.model.honest()
    leaf = {"first": 0, "middle": honest.length // 2, "last": honest.length - 1}[where]
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex", fault=W.CopyFault(Fault(leaf=leaf, mask=1)))
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    c = w.owner.call(w.market.functions.commitmentOf(job_id, 0))
    assert list(c[6]) == honest.output_tokens(), "the output itself is right"
    honest_root = JobTrace(JobOutcome(honest, w.model.weights, b"")).root()
    assert c[5] != honest_root and c[5] == JobTrace(ex.outcome(job_id)).root()
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and g["leaf"] == leaf, "bisected to the corrupted leaf"
    assert not g["defender_won"] and g["reason"] == W.REASON_VERIFIER
    _cheater_slashed(w, ex, ch, job_id)


# ---- 2b. a sampled job (docs/trace-layout.md §L5.10): a cheat inside the sampling tail -------

SAMPLED = {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "seed": 4242}


@pytest.mark.parametrize("stage,element,mask", [("SORT", 5, 1), ("DRAW", 0, 1 << 22)])
def test_sampled_job_cheat_in_a_sample_leaf_is_slashed(world, stage, element, mask):
    """The executor corrupts one element of a SAMPLE leaf of step 1 (later ops read it); the
    honest challenger re-executes the sampled job, bisects to that leaf and wins the on-chain
    one-step of the SAMPLE stage."""
    from referee.layout import Code, Stage

    w = world
    prog = w.model.program
    j = next(i for i, op in enumerate(prog.ops)
             if op.code == Code.SAMPLE and op.attrs[0] == Stage[stage])
    leaf = prog.n_ops + j
    honest = w.model.honest(config=W.job_config({"max_new_tokens": W.N_TOKENS, **SAMPLED}))
    greedy = w.model.honest()
    assert honest.output_tokens() != greedy.output_tokens(), "the seed must make it sample"
    job_id = w.post(**SAMPLED)
    ex = w.node(ExecutorDaemon, 1, "ex", fault=Fault(leaf=leaf, element=element, mask=mask))
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and g["leaf"] == leaf, "bisected to the SAMPLE leaf"
    assert not g["defender_won"] and g["reason"] == W.REASON_VERIFIER
    _cheater_slashed(w, ex, ch, job_id)


def test_honest_sampled_job_finalizes_with_the_sampled_tokens(world):
    w = world
    honest = w.model.honest(config=W.job_config({"max_new_tokens": W.N_TOKENS, **SAMPLED}))
    job_id = w.post(**SAMPLED)
    ex = w.node(ExecutorDaemon, 1, "ex")
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    assert W.game_info(w.owner, w.dep, 1)["job"] == 0, "no game: the challenger agreed"
    assert _finish_job(w, [ex, ch], job_id) == "Finalized"
    assert job_status(w.owner, w.market, job_id)["output_tokens"] == honest.output_tokens()


# ---- 3. equivocation during bisection --------------------------------------------------------


class EquivocatingPlayer(GamePlayer):
    """A party that plays its committed (faulty) tree for the first round, then switches to
    the honest tree's children: a story that does not hash to its committed node."""

    def __init__(self, *a: Any, honest: JobTrace, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.honest = honest
        self.first_height: int | None = None
        self.refusals: list[str] = []
        self.onchain_refusals = 0

    def step(self) -> str | None:
        st = self.state()
        if st.phase == Phase.TRACE_BISECT and st.turn == self.side:
            if self.first_height is None:
                self.first_height = st.height
            if st.height < self.first_height:
                levels = lift(merkle_levels(self.honest.leaves()), self._trace_height())
                lie = self._children(levels, st.height, st.pos)
                f = self.game.functions
                fn = (f.reveal(self.game_id, lie) if self.side == D
                      else f.respond(self.game_id, lie, self._last_reveal()))
                try:  # refused at estimation (the RPC node runs the contract's check)
                    self.client.transact(fn, what="equivocating move")
                except TxReverted as e:
                    self.refusals.append(e.error)
                if not self.onchain_refusals:  # and refused on chain: mined, reverted
                    self.onchain_refusals += 1
                    try:
                        self.client.transact(fn, gas=2_000_000, what="equivocating move")
                    except TxReverted as e:
                        self.refusals.append(e.error)
                return None
        return super().step()


class Equivocating:
    """Daemon mixin: its games are played by an EquivocatingPlayer."""

    def player(self, game_id: int, side: int, job_id: int) -> GamePlayer:
        if game_id not in self.players:
            model = W.toy_model(0)
            honest = model.runner(model.model_hash, W.PROMPT, {"max_new_tokens": W.N_TOKENS})
            self.players[game_id] = EquivocatingPlayer(
                self.client, self.game, game_id, side, JobTrace(self.outcome(job_id)),
                honest=JobTrace(honest))
        return self.players[game_id]


class EquivocatingExecutor(Equivocating, ExecutorDaemon):
    pass


class EquivocatingChallenger(Equivocating, ChallengerDaemon):
    pass


@pytest.mark.parametrize("liar", ["defender", "challenger"])
def test_equivocating_party_is_refused_and_loses_on_its_clock(world, liar):
    """DESIGN §6 checklist 5: every move is checked against the mover's own commitment."""
    w = world
    honest = w.model.honest()
    job_id = w.post()
    leaf = W.float_leaf(honest, honest.length // 2)
    fault = Fault(leaf=leaf, mask=1 << 20)
    if liar == "defender":
        ex = w.node(EquivocatingExecutor, 1, "ex", fault=fault)
        ch = w.node(ChallengerDaemon, 2, "ch")
    else:
        ex = w.node(ExecutorDaemon, 1, "ex")
        ch = w.node(EquivocatingChallenger, 2, "ch", fault=fault)
    W.settle([ex, ch], w.owner)
    p = (ex if liar == "defender" else ch).players[1]
    assert "RootMismatch" in p.refusals, p.refusals
    assert any(r.startswith("status 0") for r in p.refusals), "the contract itself refused it"
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == Phase.TRACE_BISECT and g["turn"] == p.side, "stuck on the liar's move"
    W.advance(w.owner, CLOCK + 1)
    W.settle([ex, ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and g["reason"] == W.REASON_TIMEOUT
    assert g["defender_won"] == (liar == "challenger")
    if liar == "defender":
        _cheater_slashed(w, ex, ch, job_id)
        return
    assert _finish_job(w, [ex, ch], job_id) == "Finalized"
    led = w.ledger(executor=ex, challenger=ch, requester=w.owner.address)
    assert led["executor"] == 2 * BOND + REWARD - BURN and led["challenger"] == 0
    assert led["requester"] == 0 and led["escrow"] == 0 and led["burned"] == BURN


# ---- 4. executor silence ---------------------------------------------------------------------


def test_silent_executor_loses_on_timeout(world):
    w = world
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex", fault=Fault(leaf=5, mask=1 << 22))
    ch = w.node(ChallengerDaemon, 2, "ch")
    ex.poll_once()  # commits, then never runs again
    assert job_status(w.owner, w.market, job_id)["status"] == "Committed"
    W.settle([ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == Phase.TRACE_BISECT and g["turn"] == D
    W.advance(w.owner, CLOCK // 2)
    W.settle([ch], w.owner)
    assert W.game_info(w.owner, w.dep, 1)["phase"] == Phase.TRACE_BISECT, "clock not out yet"
    W.advance(w.owner, CLOCK // 2 + 1)
    W.settle([ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and not g["defender_won"] and g["reason"] == W.REASON_TIMEOUT
    assert _finish_job(w, [ch], job_id) == "Failed"
    led = w.ledger(executor=ex, challenger=ch, requester=w.owner.address)
    assert led == {**led, "executor": 0, "challenger": 2 * BOND - BURN, "requester": REWARD,
                   "escrow": 0, "burned": BURN}


# ---- 5. a lying challenger -------------------------------------------------------------------


def test_lying_challenger_loses_its_bond_to_the_honest_executor(world):
    w = world
    honest = w.model.honest()
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex")
    leaf = W.float_leaf(honest, honest.length // 3)
    liar = w.node(ChallengerDaemon, 2, "liar", fault=Fault(leaf=leaf, mask=1 << 21))
    W.settle([ex, liar], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and g["defender_won"] and g["reason"] == W.REASON_VERIFIER
    assert g["leaf"] == leaf
    assert _finish_job(w, [ex, liar], job_id) == "Finalized"
    assert job_status(w.owner, w.market, job_id)["output_tokens"] == honest.output_tokens()
    led = w.ledger(executor=ex, challenger=liar, requester=w.owner.address)
    assert led["executor"] == BOND + REWARD + BOND - BURN
    assert led["challenger"] == 0 and led["requester"] == 0
    assert led["escrow"] == 0 and led["burned"] == BURN
    assert ex.withdraw() == 2 * BOND + REWARD - BURN
    assert w.ledger(executor=ex)["credit"] == 0
    for n in (ex, liar):
        W.assert_journal_matches_chain(w.owner, n.store, n.client.address, w.dep.block)


# ---- 6. two challengers on the same job ------------------------------------------------------


def test_two_honest_challengers_against_a_cheater_are_not_paid_twice(world):
    w = world
    job_id = w.post()
    leaf = W.float_leaf(w.model.honest(), 100)  # an int leaf (an index) may leave the domain
    ex = w.node(ExecutorDaemon, 1, "ex", fault=Fault(leaf=leaf, mask=1 << 22))
    a = w.node(ChallengerDaemon, 2, "a")
    b = w.node(ChallengerDaemon, 3, "b")
    W.settle([ex, a, b], w.owner)
    games = [W.game_info(w.owner, w.dep, i) for i in (1, 2)]
    assert all(g["phase"] == W.RESOLVED and not g["defender_won"] for g in games)
    assert {g["challenger"] for g in games} == {a.client.address, b.client.address}
    assert _finish_job(w, [ex, a, b], job_id) == "Failed"
    led = w.ledger(executor=ex, a=a, b=b, requester=w.owner.address)
    first = a if games[0]["challenger"] == a.client.address else b
    second = b if first is a else a
    assert led["a" if first is a else "b"] == 2 * BOND - BURN, "first win takes the cheater's bond"
    assert led["a" if second is a else "b"] == BOND, "second win only gets its own bond back"
    assert led["executor"] == 0 and led["requester"] == REWARD
    assert led["escrow"] == 0 and led["burned"] == BURN
    for n in (ex, a, b):
        txs = W.assert_journal_matches_chain(w.owner, n.store, n.client.address, w.dep.block)
        assert [t["method"] for t in txs].count("challenge") == (n is not ex)


def test_honest_and_lying_challenger_against_a_cheater(world):
    """The cheater is wrong at a late leaf, the liar at an early one: the honest challenger
    wins its game; the liar's game ends at the liar's leaf, where the cheater was right, so
    the liar's bond goes to the (already eliminated) cheater — the liar lied."""
    w = world
    honest = w.model.honest()
    late = W.float_leaf(honest, 2 * honest.length // 3)
    early = W.float_leaf(honest, honest.length // 4)
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex", fault=Fault(leaf=late, mask=1 << 22))
    good = w.node(ChallengerDaemon, 2, "good")
    liar = w.node(ChallengerDaemon, 3, "liar", fault=Fault(leaf=early, mask=1 << 22))
    W.settle([ex, good, liar], w.owner)
    games = {W.game_info(w.owner, w.dep, i)["challenger"]: W.game_info(w.owner, w.dep, i)
             for i in (1, 2)}
    g_good, g_liar = games[good.client.address], games[liar.client.address]
    assert g_good["phase"] == W.RESOLVED and not g_good["defender_won"] and g_good["leaf"] == late
    assert g_liar["phase"] == W.RESOLVED and g_liar["defender_won"] and g_liar["leaf"] == early
    assert _finish_job(w, [ex, good, liar], job_id) == "Failed"
    led = w.ledger(executor=ex, good=good, liar=liar, requester=w.owner.address)
    assert led["good"] == 2 * BOND - BURN
    assert led["liar"] == 0
    assert led["executor"] == BOND - BURN
    assert led["requester"] == REWARD
    assert led["escrow"] == 0 and led["burned"] == 2 * BURN
