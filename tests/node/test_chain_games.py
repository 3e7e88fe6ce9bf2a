"""Level 3 of the dispute game (docs/trace-layout.md §L9) played by the daemons on anvil.

The wide toy (tests/referee/chain_program.py) has DOT elements of up to 1024 fma steps, so a
dispute landing on one goes through the accumulation chain: D reveals its chain
(`revealChain`), C names the first link that differs from its own (`pickLink`), the one-step
decides that link. Three games, real contracts and real traces:
- a cheating executor (one DOT element flipped; later ops read it) loses on the last link;
- a cheating executor whose revealed chain also lies in the middle loses on that link;
- an honest executor against a lying challenger wins (every link of its chain holds).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.game_player import GamePlayer
from node.jobs import JobTrace
from repops.commit import keccak256

pytestmark = pytest.mark.chain

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("adversary_node", _here / "adversary_node.py")
W = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("adversary_node", W)
_spec.loader.exec_module(W)
sys.path.insert(0, str(_here.parent / "referee"))
import chain_program as CP  # noqa: E402

BOND, REWARD, WINDOW, CLOCK = W.BOND, W.REWARD, W.WINDOW, W.CLOCK
BURN = W.burn_of(BOND)
FAULT_OP = "L0/down[0:"  # a DOT segment of K = 1024: 16 links
FAULT_ELEMENT = 5

logging.getLogger("judge").setLevel(logging.INFO)


def _wide_model() -> Any:
    prog, store = CP.wide_program()
    return W.ToyModel(keccak256(b"wide-toy" + prog.root()), prog, store)


World = W.World


@pytest.fixture(scope="module")
def chain():
    with W.deployed_world(_wide_model(), CP.WIDE.vocab, CP.WIDE_CTX, "wide toy") as w:
        yield w


@pytest.fixture()
def world(chain, tmp_path):
    with W.snapshot(chain, tmp_path) as w:
        yield w


def _fault_leaf(w: World) -> int:
    return CP.op_leaf(w.model.honest(), FAULT_OP, step=1)


def _moves(node: Any) -> list[str]:
    return [m for p in node.players.values() for m, _ in p.moves]


class ChainLyingPlayer(GamePlayer):
    """A defender whose revealed chain is also wrong at link `LIE` (its end stays its claim)."""

    LIE = 3

    def _reveal_chain(self, kind: int, ctx: Any, chain: list[int]) -> str:
        chain = list(chain)
        chain[self.LIE] ^= 1 << 20
        return super()._reveal_chain(kind, ctx, chain)


class SilentLoserPlayer(GamePlayer):
    """A defender that reveals its chain but never resolves a one-step it would lose: the
    challenger must resolve the picked link with its own witness (its trace's inputs and the
    defender's revealed tree nodes)."""

    def _resolve(self) -> str | None:
        return None


class ChainLyingExecutor(ExecutorDaemon):
    PLAYER: type[GamePlayer] = ChainLyingPlayer

    def player(self, game_id: int, side: int, job_id: int) -> GamePlayer:
        if game_id not in self.players:
            self.players[game_id] = self.PLAYER(
                self.client, self.game, game_id, side, JobTrace(self.outcome(job_id)),
                key_prefix=f"{self.role}:move:{game_id}")
        return self.players[game_id]


class SilentLoserExecutor(ChainLyingExecutor):
    PLAYER = SilentLoserPlayer


@pytest.mark.parametrize("lie_in_chain", [False, True])
def test_cheating_executor_loses_a_link_of_the_chain(world, lie_in_chain):
    w = world
    leaf = _fault_leaf(w)
    job_id = w.post()
    cls = ChainLyingExecutor if lie_in_chain else ExecutorDaemon
    ex = w.node(cls, 1, "ex", fault=Fault(leaf=leaf, element=FAULT_ELEMENT, mask=1 << 22))
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and g["leaf"] == leaf, "bisected to the faulty DOT leaf"
    assert not g["defender_won"] and g["reason"] == W.REASON_VERIFIER
    (revealed,) = w.events("ChainRevealed")
    (picked,) = w.events("LinkPicked")
    accs = list(revealed["accs"])
    assert len(accs) == 16
    want = ChainLyingPlayer.LIE if lie_in_chain else 15
    assert picked["link"] == want, "C names the first link that differs from its chain"
    assert picked["claimedBits"] == accs[want] and picked["startBits"] == accs[want - 1]
    ctx = w.owner.call(w.game.functions.stepContext(1))
    assert ctx[10] == FAULT_ELEMENT and ctx[11] == accs[want]
    assert _moves(ex).count("revealChain") == 1 and _moves(ch).count("pickLink") == 1
    assert w.finish([ex, ch], job_id) == "Failed"
    led = W.ledger(w.owner, w.dep, executor=ex.client.address, challenger=ch.client.address)
    assert led["executor"] == 0 and led["challenger"] == 2 * BOND - BURN
    W.check_journals(w, ex, ch)


def test_the_challenger_resolves_the_picked_link_itself(world):
    w = world
    leaf = _fault_leaf(w)
    job_id = w.post()
    ex = w.node(SilentLoserExecutor, 1, "ex", fault=Fault(leaf=leaf, element=FAULT_ELEMENT,
                                                           mask=1 << 22))
    ch = w.node(ChallengerDaemon, 2, "ch")
    W.settle([ex, ch], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and not g["defender_won"]
    assert g["reason"] == W.REASON_VERIFIER, "decided by the verifier, not the clock"
    assert "resolve" in _moves(ch) and "resolve" not in _moves(ex)
    assert w.finish([ex, ch], job_id) == "Failed"


def test_honest_executor_wins_every_link_against_a_lying_challenger(world):
    w = world
    leaf = _fault_leaf(w)
    job_id = w.post()
    ex = w.node(ExecutorDaemon, 1, "ex")
    liar = w.node(ChallengerDaemon, 2, "liar",
                  fault=Fault(leaf=leaf, element=FAULT_ELEMENT, mask=1 << 22))
    W.settle([ex, liar], w.owner)
    g = W.game_info(w.owner, w.dep, 1)
    assert g["phase"] == W.RESOLVED and g["leaf"] == leaf
    assert g["defender_won"] and g["reason"] == W.REASON_VERIFIER
    (revealed,) = w.events("ChainRevealed")
    honest = JobTrace(ex.outcome(job_id)).chain(leaf, int(
        w.owner.call(w.game.functions.stepContext(1))[10]))
    assert list(revealed["accs"]) == honest, "D reveals its true chain"
    (picked,) = w.events("LinkPicked")
    assert picked["link"] == 15, "the liar's chain differs only at its own element"
    assert w.finish([ex, liar], job_id) == "Finalized"
    led = W.ledger(w.owner, w.dep, executor=ex.client.address, challenger=liar.client.address)
    assert led["executor"] == 2 * BOND + REWARD - BURN and led["challenger"] == 0
    W.check_journals(w, ex, liar)
