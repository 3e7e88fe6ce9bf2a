"""Games over compact traces (docs/trace-layout.md §L10, ADR 0013) played by the daemons on
anvil: the toy model is registered with its compact commitment, so executors and challengers
commit compact roots (62 of the 111 ops a step). A dispute first dissects the compact traces;
where that ends, both parties expand (`expand`: their full root, bound to the compact leaf
the dissection reached) and the full game decides, one-step and all. Real contracts, real
traces, real one-step verifier."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.jobs import JobTrace
from referee.compact import Compact
from repops.commit import merkle_root

pytestmark = pytest.mark.chain

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("adversary_node", _here / "adversary_node.py")
W = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("adversary_node", W)
_spec.loader.exec_module(W)

BOND, REWARD = W.BOND, W.REWARD
BURN = W.burn_of(BOND)
INTERIOR_OP = "L0/q[0:8]"  # the first DOT segment of a linear: not in the compact trace

logging.getLogger("judge").setLevel(logging.INFO)


@pytest.fixture(scope="module")
def chain():
    with W.deployed_world(W.toy_model(), W.toy.TOY.vocab, W.toy.MAX_CTX, "toy (compact)",
                          compact=True) as w:
        yield w


@pytest.fixture()
def world(chain, tmp_path):
    with W.snapshot(chain, tmp_path) as w:
        yield w


def _interior_leaf(w) -> int:
    prog = w.model.program
    op = next(j for j, o in enumerate(prog.ops) if o.name == INTERIOR_OP)
    assert op not in Compact.of(prog).ops
    return prog.n_ops + op  # step 1


def _moves(node) -> list[str]:
    return [m for p in node.players.values() for m, _ in p.moves]


def test_the_nodes_commit_compact_traces(world):
    w = world
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex")
    W.settle([ex], w.owner)
    out = ex.outcome(job_id)
    cp = Compact.of(w.model.program)
    assert out.compact == cp
    assert out.trace_length == out.trace.n_steps * len(cp.ops) < out.trace.length
    committed = [e["args"] for e in w.owner.events(w.market, "Committed", w.dep.block,
                                                   w.owner.block_number())]
    assert bytes(committed[0]["traceRoot"]) == merkle_root(JobTrace(out).compact_leaves())
    assert committed[0]["traceLength"] == out.trace_length
    assert w.finish([ex], job_id) == "Finalized"


def test_a_fault_inside_a_chain_loses_after_the_expansion(world):
    """The faulty leaf is not committed; its effect on later committed ops is what the
    compact dissection finds. The expansion then leads the full game to the leaf itself."""
    w = world
    leaf = _interior_leaf(w)
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex", fault=Fault(leaf=leaf, element=0, mask=1 << 22))
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and not g["defender_won"]
    assert g["reason"] == W.REASON_VERIFIER
    assert g["leaf"] == leaf, "the full game reached the faulty interior leaf"
    expanded = w.events("Expanded")
    assert [e["side"] for e in expanded] == [0, 1]
    full = JobTrace(ch.outcome(job_id))
    assert bytes(expanded[1]["fullRoot"]) == full.root()
    assert expanded[1]["fullLength"] == ch.outcome(job_id).trace.length
    ctx = w.owner.call(w.game.functions.stepContext(1))
    assert bytes(ctx[5]) == bytes(expanded[0]["fullRoot"]), "the one-step ran on D's full root"
    assert _moves(ex).count("expand") == 1 and _moves(ch).count("expand") == 1
    assert w.finish([ex, ch], job_id) == "Failed"
    led = W.ledger(w.owner, w.dep, executor=ex.client.address, challenger=ch.client.address)
    assert led["executor"] == 0 and led["challenger"] == 2 * BOND - BURN
    W.check_journals(w, ex, ch)


def test_an_honest_executor_wins_against_a_lying_challenger(world):
    w = world
    leaf = _interior_leaf(w)
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex")
    liar = w.node(ChallengerDaemon, 2, "liar", fault=Fault(leaf=leaf, element=0, mask=1 << 22))
    W.settle([ex, liar], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and g["defender_won"] and g["leaf"] == leaf
    assert g["reason"] == W.REASON_VERIFIER
    assert w.finish([ex, liar], job_id) == "Finalized"
    led = W.ledger(w.owner, w.dep, executor=ex.client.address, challenger=liar.client.address)
    assert led["executor"] == 2 * BOND + REWARD - BURN and led["challenger"] == 0


def test_a_token_lie_over_an_agreed_compact_trace_loses(world):
    """Equal compact traces, other output tokens: an output game. Only D expands (its token
    op's leaf proven against its compact root), then the OutputToken one-step decides."""
    w = world
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex", fault=W.TokenLie("change", 1))
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and not g["defender_won"]
    assert g["reason"] == W.REASON_VERIFIER
    assert [e["side"] for e in w.events("Expanded")] == [0]
    assert "expand" not in _moves(ch)
    assert w.finish([ex, ch], job_id) == "Failed"


def test_p2p_locates_the_compact_divergence_off_chain(world):
    """The executor serves its committed (compact) trace over libp2p; the challenger finds the
    first divergent compact leaf from it, proven against the committed root, before the game:
    the first committed op that read the corrupted interior value."""
    import time

    from node.network import start_node

    w = world
    leaf = _interior_leaf(w)
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex", fault=Fault(leaf=leaf, element=0, mask=1 << 22))
    ex_p2p = start_node(ex.outcomes)
    ch = None
    try:
        ex.p2p = ex_p2p
        ch = w.node(ChallengerDaemon, 2, "ch", p2p=start_node({}, bootstrap=ex_p2p.addrs))
        ch.listener.peers.clear()
        deadline = time.monotonic() + 10
        while not ch.p2p.topic_peers("/judge/receipts/1") and time.monotonic() < deadline:
            time.sleep(0.1)
        W.settle([ex, ch], w.owner)
        mine = ch.outcome(job_id).committed_records()[1]
        theirs = ex.outcome(job_id).committed_records()[1]
        first = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
        cp = Compact.of(w.model.program)
        assert cp.full_index(first) > leaf, "a committed op after the faulty interior one"
        assert ch.located[job_id][0] == first
        assert W.game_info(w.owner, w.dep, 1)["leaf"] == leaf
    finally:
        ex_p2p.close()
        if ch is not None:
            ch.p2p.close()
