"""SIGKILL and restart of each daemon at each phase (issue 7: "a node killed with SIGKILL at
any phase restarts and carries on without losing a bond or missing a deadline").

The daemon under test runs as its own process (tests/node/adversary_node.py) on an sqlite
file; its opponent runs in this process. The daemon stops dead at a chosen journal event (a
transaction recorded but not yet broadcast; broadcast but not yet seen mined; mined but the
node's own bookkeeping not yet updated), writes a marker, and this test kills it with
SIGKILL. A fresh process on the same sqlite file must then finish the game with the right
winner, and every transaction the node ever got mined must be the single one journaled under
its intent key (no second commit, no second challenge, no duplicate move).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.client import ChainClient
from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.deployment import deploy_protocol
from node.requester import JobSpec, job_status, submit_job
from node.store import Store

pytestmark = pytest.mark.chain

_here = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("adversary_node", _here / "adversary_node.py")
W = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("adversary_node", W)
_spec.loader.exec_module(W)

BOND, REWARD, WINDOW, CLOCK = W.BOND, W.REWARD, W.WINDOW, W.CLOCK
BURN = W.burn_of(BOND)
# calls anyone may make: two parties racing for them may see the loser's tx revert on chain
RACY = {"resolve", "claimTimeout"}


@dataclass
class Env:
    anvil: Anvil
    owner: ChainClient
    dep: Any
    dep_file: Path
    model: Any
    tmp: Path = Path(".")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    model = W.toy_model(0)
    with Anvil() as anvil:
        owner = ChainClient(anvil.rpc_url, DEV_KEYS[0])
        dep = deploy_protocol(owner, clock_budget_s=CLOCK, with_consumer=False)
        reg = owner.contract("ModelRegistry", dep.registry)
        owner.transact(reg.functions.register(model.model_hash, model.program.root(), 1,
                                              W.toy.TOY.vocab, W.toy.MAX_CTX, "toy",
                                              "test://toy", bytes(32)))
        dep_file = dep.save(tmp_path_factory.mktemp("dep") / "deployment.json")
        yield Env(anvil, owner, dep, dep_file, model)


@pytest.fixture()
def world(env, tmp_path):
    snap = W.rpc(env.owner, "evm_snapshot")
    env.tmp = tmp_path
    yield env
    assert W.rpc(env.owner, "evm_revert", snap)


class Proc:
    """The daemon under test, as a process we start, SIGKILL and restart."""

    def __init__(self, env: Env, role: str, key: int, fault_leaf: int | None) -> None:
        self.env, self.role, self.key, self.fault_leaf = env, role, key, fault_leaf
        self.db = env.tmp / f"{role}.db"
        self.stop_file = env.tmp / f"{role}.stop"
        self.marker = env.tmp / f"{role}.killpoint"
        self.log = env.tmp / f"{role}.log"
        self.p: subprocess.Popen | None = None
        self.address = ChainClient(env.anvil.rpc_url, DEV_KEYS[key]).address

    def start(self, kill: tuple[str, str, int] | None = None) -> None:
        args = [sys.executable, str(_here / "adversary_node.py"), "--role", self.role,
                "--rpc", self.env.anvil.rpc_url, "--deployment", str(self.env.dep_file),
                "--key", str(self.key), "--db", str(self.db), "--stop-file", str(self.stop_file)]
        if self.fault_leaf is not None:
            args += ["--fault-leaf", str(self.fault_leaf)]
        if kill is not None:
            stage, prefix, nth = kill
            args += ["--kill-stage", stage, "--kill-key", prefix, "--kill-nth", str(nth),
                     "--marker", str(self.marker)]
        with self.log.open("ab") as out:
            self.p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def alive(self) -> None:
        if self.p is not None and self.p.poll() is not None:
            raise AssertionError(f"{self.role} exited {self.p.returncode}:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""

    def sigkill(self) -> None:
        os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=10)
        self.p = None

    def stop(self) -> None:
        if self.p is None:
            return
        self.stop_file.touch()
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(timeout=10)
        self.p = None


@pytest.fixture()
def procs():
    started: list[Proc] = []
    yield started
    for p in started:
        if p.p is not None:  # never leave a process behind, whatever happened
            os.kill(p.p.pid, signal.SIGKILL)
            p.p.wait(timeout=10)


def _pump(nodes: list, proc: Proc, until: Callable[[], bool], timeout: float = 120) -> None:
    """Poll the in-process nodes while the daemon process works, until `until()`."""
    deadline = time.monotonic() + timeout
    while not until():
        proc.alive()
        for n in nodes:
            n.poll_once()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; {proc.role} log:\n{proc.tail()}")
        time.sleep(0.1)


def _post(env: Env) -> int:
    market = env.owner.contract("JobMarket", env.dep.market)
    spec = JobSpec(model_hash=env.model.model_hash, input_tokens=W.PROMPT,
                   max_tokens=W.N_TOKENS, reward_wei=REWARD, bond_wei=BOND,
                   challenge_window_s=WINDOW)
    return submit_job(env.owner, market, spec)[0]


def _resolved(env: Env, game_id: int = 1) -> Callable[[], bool]:
    game = env.owner.contract("DisputeGame", env.dep.game)
    return lambda: (env.owner.call(game.functions.gameCount()) >= game_id and
                    env.owner.call(game.functions.gameInfo(game_id))[1] == W.RESOLVED)


def _settled(env: Env, job_id: int) -> Callable[[], bool]:
    market = env.owner.contract("JobMarket", env.dep.market)
    return lambda: job_status(env.owner, market, job_id)["status"] in ("Finalized", "Failed")


def _check_journal(env: Env, proc: Proc, expect: dict[str, int]) -> None:
    with Store(proc.db) as store:
        txs = W.node_txs(env.owner, proc.address, env.dep.block)
        rows = store.db.query("SELECT key, tx_hash FROM txs")
    journaled = {bytes(r["tx_hash"]): r["key"] for r in rows if r["tx_hash"]}
    for t in txs:
        assert t["hash"] in journaled, f"{t['method']} tx {t['hash'].hex()} not journaled"
        assert t["status"] == 1 or t["method"] in RACY, f"{t['method']} reverted on chain"
    keys = [journaled[t["hash"]] for t in txs]
    assert len(keys) == len(set(keys)), "two mined txs under one intent key"
    methods = [t["method"] for t in txs]
    for m, n in expect.items():
        assert methods.count(m) == n, (m, methods)


# (role under test, kill stage, key prefix, nth event, cheater side)
CASES = {
    "executor-commit-recorded": ("executor", "prepared", "executor:commit:", 1, "executor"),
    "executor-commit-mined": ("executor", "mined", "executor:commit:", 1, None),
    "executor-finalize-recorded": ("executor", "prepared", "executor:finalize:", 1, None),
    "executor-mid-game": ("executor", "prepared", "executor:move:", 2, "challenger"),
    "cheating-executor-mid-game": ("executor", "mined", "executor:move:", 1, "executor"),
    "challenger-challenge-recorded": ("challenger", "prepared", "challenger:challenge:", 1,
                                      "executor"),
    "challenger-challenge-mined": ("challenger", "mined", "challenger:challenge:", 1,
                                   "executor"),
    "challenger-mid-game": ("challenger", "sent", "challenger:move:", 3, "executor"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_and_restart(world, procs, case):
    role, stage, prefix, nth, cheater = CASES[case]
    env = world
    honest = env.model.honest()
    leaf = W.float_leaf(honest, honest.length // 2)
    fault = Fault(leaf=leaf, mask=1 << 22)
    job_id = _post(env)
    other_cls, other_key = ((ChallengerDaemon, 2) if role == "executor" else (ExecutorDaemon, 1))
    other = W.make_node(other_cls, env.anvil.rpc_url, env.dep, DEV_KEYS[other_key], env.model,
                        env.tmp / "other.db",
                        fault=fault if cheater not in (None, role) else None)
    proc = Proc(env, role, 1 if role == "executor" else 2,
                fault_leaf=leaf if cheater == role else None)
    procs.append(proc)

    market = env.owner.contract("JobMarket", env.dep.market)

    def agreed() -> bool:  # committed, and the challenger re-executed it and agrees
        raw = other.store.get(f"commitment:{job_id}:0")
        return raw is not None and b'"agreed"' in raw

    proc.start(kill=(stage, prefix, nth))
    if prefix.endswith("finalize:"):  # the claim phase: let the window pass first
        _pump([other], proc, agreed)
        W.advance(env.owner, WINDOW + 1)
    _pump([other], proc, proc.marker.exists)
    proc.sigkill()
    assert proc.marker.read_text().startswith(prefix)

    proc.start()
    if cheater is not None:
        _pump([other], proc, _resolved(env))
        g = W.game_info(env.owner, env.dep, 1)
        assert g["leaf"] == leaf and g["reason"] == W.REASON_VERIFIER, g
        assert g["defender_won"] == (cheater == "challenger")
    elif not prefix.endswith("finalize:"):
        _pump([other], proc, agreed)
    if job_status(env.owner, market, job_id)["status"] == "Committed":
        W.advance(env.owner, WINDOW + 1)
    _pump([other], proc, _settled(env, job_id))
    proc.stop()

    game = env.owner.contract("DisputeGame", env.dep.game)
    n_games = env.owner.call(game.functions.gameCount())
    assert n_games == (0 if cheater is None else 1), "exactly one game: no second challenge"
    who = {"executor": proc.address if role == "executor" else other.client.address,
           "challenger": proc.address if role == "challenger" else other.client.address}
    led = W.ledger(env.owner, env.dep, requester=env.owner.address, **who)
    if cheater is None:
        assert led["executor"] == BOND + REWARD and led["challenger"] == 0
        assert led["burned"] == 0
    elif cheater == "executor":
        assert led["challenger"] == 2 * BOND - BURN and led["executor"] == 0
        assert led["requester"] == REWARD and led["burned"] == BURN
    else:
        assert led["executor"] == 2 * BOND + REWARD - BURN and led["challenger"] == 0
        assert led["burned"] == BURN
    assert led["escrow"] == 0
    expect = {"commit": 1} if role == "executor" else {"challenge": 1}
    if role == "executor" and cheater is None:
        expect["finalize"] = 1
    _check_journal(env, proc, expect)
