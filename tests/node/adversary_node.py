"""The adversary tests' world (issue 7): a toy model, cheating runners, a shared anvil
deployment, ledger checks, and — run as a script — one daemon process that the SIGKILL tests
kill at a chosen journal event and restart on the same sqlite file.

Why a toy: the tiny Llama of tests/referee/toy_llama.py lowers to the same trace program
format as SmolLM2 (referee.lowering) and runs on the reference executor in under a second, so
every dispute is a real one (real leaves, real one-step verifier) and takes seconds.

Cheats the runner can play (each keeps the honest trace except where it says):
- `daemon.Fault` (the daemon's own): one leaf corrupted before later ops read it;
- `CopyFault`: one leaf corrupted on the committed copy only, output tokens honest (the
  "correct output, wrong trace leaf" cheat of node/served.py);
- `TokenLie`: honest trace, different output tokens (DESIGN §6 checklist 4).

Script use (tests/node/test_adversary_restart.py):
  python adversary_node.py --role executor --rpc URL --deployment dep.json --key 1 --db n.db
      [--fault-leaf N] [--kill-stage prepared|sent|mined --kill-key PREFIX --kill-nth K
       --marker FILE] --stop-file FILE
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from node.chain.anvil import DEV_KEYS  # noqa: E402
from node.chain.client import ChainClient  # noqa: E402
from node.daemon import ChallengerDaemon, Daemon, ExecutorDaemon, Fault  # noqa: E402
from node.deployment import Deployment  # noqa: E402
from node.jobs import JobOutcome  # noqa: E402
from node.store import Store  # noqa: E402
from referee.execute import Trace, run  # noqa: E402
from referee.layout import JobConfig  # noqa: E402
from referee.lowering import llama_program  # noqa: E402
from repops.commit import keccak256, tensor_root_np  # noqa: E402

BOND = 10**17
REWARD = 10**16
WINDOW = 300  # challenge window, s
CLOCK = 600  # each party's chess-clock budget per game, s
PROMPT = [3, 7, 1]
N_TOKENS = 3

_spec = importlib.util.spec_from_file_location(
    "toy_llama", ROOT / "tests" / "referee" / "toy_llama.py")
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


# ---- cheats ---------------------------------------------------------------------------------


@dataclass
class CopyFault:
    """Corrupt the committed copy of one leaf; later ops and the output tokens stay honest."""

    fault: Fault


@dataclass
class TokenLie:
    """Commit the honest trace with other output tokens: `change` xors token `index`;
    `drop` removes the last token; `extra` appends one."""

    how: str = "change"
    index: int = 0


@dataclass
class StatedOutcome(JobOutcome):
    """A job outcome whose committed output tokens are stated, not read from the trace."""

    stated: list[int] = field(default_factory=list)

    @property
    def tokens(self) -> list[int]:
        return list(self.stated)


# ---- the toy model --------------------------------------------------------------------------


@dataclass
class ToyModel:
    model_hash: bytes
    program: Any
    weights: dict[bytes, np.ndarray]

    def honest(self, tokens: Sequence[int] = PROMPT, n: int = N_TOKENS,
               config: JobConfig | None = None) -> Trace:
        return run(self.program, self.weights, list(tokens), n, config=config)

    def runner(self, model_hash: bytes, tokens: Sequence[int], config: dict[str, Any],
               fault: Callable | None = None) -> JobOutcome:
        """node.jobs.JobRunner for the toy; raises ValueError on jobs it cannot run."""
        if model_hash != self.model_hash:
            raise ValueError(f"model 0x{model_hash.hex()[:16]} is not served here")
        n = int(config["max_new_tokens"])
        jc = job_config(config)
        cfg = jc.encode()
        if isinstance(fault, CopyFault):
            tr = self.honest(tokens, n, jc)
            bad = Trace(tr.program, tr.job_tokens, list(tr.outputs), roots=list(tr.roots),
                        config=tr.config)
            leaf = fault.fault.leaf
            bad.outputs[leaf] = fault.fault(leaf, tr.outputs[leaf])
            bad.roots[leaf] = tensor_root_np(bad.outputs[leaf])
            return StatedOutcome(bad, self.weights, cfg, stated=tr.output_tokens())
        if isinstance(fault, TokenLie):
            tr = self.honest(tokens, n, jc)
            toks = tr.output_tokens()
            if fault.how == "change":
                toks[fault.index] ^= 1
            elif fault.how == "drop":
                toks = toks[:-1]
            else:
                toks = toks + [toks[-1]]
            return StatedOutcome(tr, self.weights, cfg, stated=toks)
        return JobOutcome(run(self.program, self.weights, list(tokens), n, override=fault,
                              config=jc), self.weights, cfg)


def job_config(config: dict[str, Any]) -> JobConfig:
    """The runtime config dict (node.requester.config_from_chain) → the JobConfig the SAMPLE
    ops read (docs/trace-layout.md §L5.10)."""
    return JobConfig.of(int(config["max_new_tokens"]), float(config.get("temperature", 0.0)),
                        int(config.get("top_k", 0)), float(config.get("top_p", 1.0)),
                        int(config.get("seed", 0)))


def float_leaf(trace: Trace, at_least: int) -> int:
    """The first float32 leaf at or after `at_least` (a bit flip there stays a valid value;
    in an int leaf such as a token id it may leave the program's domain)."""
    return next(i for i in range(at_least, trace.length)
                if trace.outputs[i].dtype == np.float32)


_MODELS: dict[int, ToyModel] = {}


def toy_model(seed: int = 0) -> ToyModel:
    if seed not in _MODELS:
        w, store, _arrays, _layers = toy.toy_weights(seed)
        prog = llama_program(toy.TOY, w, toy.MAX_CTX, segment=toy.SEGMENT)
        _MODELS[seed] = ToyModel(keccak256(b"toy-llama" + prog.root()), prog, store)
    return _MODELS[seed]


# ---- nodes ----------------------------------------------------------------------------------


def make_node(cls: type[Daemon], rpc_url: str, dep: Deployment, key: str, model: ToyModel,
              db: Path, confirmations: int = 0, retries: int = 5, backoff: float = 0.5,
              **kw: Any) -> Daemon:
    store = Store(db)
    client = ChainClient(rpc_url, key, confirmations=confirmations, retries=retries,
                         backoff=backoff, journal=store)
    kw.setdefault("served_models", {model.model_hash})
    return cls(client, dep, store, model.runner, **kw)


def rpc(client: ChainClient, method: str, *params: Any) -> Any:
    r = client.w3.provider.make_request(method, list(params))
    if "error" in r:
        raise RuntimeError(f"{method}: {r['error']}")
    return r.get("result")


def advance(client: ChainClient, seconds: int) -> None:
    rpc(client, "evm_increaseTime", seconds)
    rpc(client, "evm_mine")


def settle(nodes: Sequence[Daemon], client: ChainClient, max_rounds: int = 120,
           confirmations: int = 0) -> int:
    """Poll every node in turn until a whole round mines nothing; returns the rounds used.

    Time does not pass here (anvil mines on each tx): tests advance it explicitly, so that a
    clock or a window runs out only where the scenario says so. With `confirmations`, up to
    that many empty blocks are mined while idle, as a live chain would, so that nodes acting
    only on buried blocks get to see the last events.
    """
    idle = 0
    for r in range(max_rounds):
        before = client.block_number()
        for n in nodes:
            n.poll_once()
        if client.block_number() != before:
            idle = 0
            continue
        if idle >= confirmations:
            return r
        idle += 1
        rpc(client, "evm_mine")
    raise AssertionError(f"nodes still moving after {max_rounds} rounds")


# ---- where every wei went -------------------------------------------------------------------


def ledger(client: ChainClient, dep: Deployment, **who: str) -> dict[str, int]:
    """Market balances owed to each named address, the three totals and the ETH held."""
    m = client.contract("JobMarket", dep.market)
    out = {name: client.call(m.functions.balanceOf(addr)) for name, addr in who.items()}
    out["escrow"] = client.call(m.functions.totalEscrow())
    out["credit"] = client.call(m.functions.totalCredit())
    out["burned"] = client.call(m.functions.totalBurned())
    out["held"] = client.balance(dep.market)
    assert out["held"] == out["escrow"] + out["credit"] + out["burned"], out
    assert out["credit"] >= sum(out[n] for n in who), out
    return out


class World:
    """One anvil with the protocol deployed and `model` registered, shared by a test module;
    each test runs from an `evm_snapshot` (the modules' `world` fixtures)."""

    def __init__(self, anvil: Any, owner: ChainClient, dep: Deployment, model: Any) -> None:
        self.anvil, self.owner, self.dep, self.model = anvil, owner, dep, model
        self.market = owner.contract("JobMarket", dep.market)
        self.game = owner.contract("DisputeGame", dep.game)
        self.tmp: Path = Path(".")

    def node(self, cls: type, key_index: int, name: str, **kw: Any) -> Any:
        return make_node(cls, self.anvil.rpc_url, self.dep, DEV_KEYS[key_index], self.model,
                         self.tmp / f"{name}.db", **kw)

    def post(self, n_tokens: int = N_TOKENS, **sampling: Any) -> int:
        from node.requester import JobSpec, submit_job

        spec = JobSpec(model_hash=self.model.model_hash, input_tokens=PROMPT,
                       max_tokens=n_tokens, reward_wei=REWARD, bond_wei=BOND,
                       challenge_window_s=WINDOW, **sampling)
        return submit_job(self.owner, self.market, spec)[0]

    def ledger(self, **who: Any) -> dict[str, int]:
        return ledger(self.owner, self.dep, **{k: n.client.address if hasattr(n, "client")
                                               else n for k, n in who.items()})

    def events(self, name: str, game_id: int = 1) -> list[dict]:
        head = self.owner.block_number()
        return [e["args"] for e in self.owner.events(self.game, name, self.dep.block, head)
                if e["args"]["gameId"] == game_id]

    def finish(self, nodes: list, job_id: int) -> str:
        """Let the challenge window pass and the nodes (or the requester) settle the job."""
        from node.requester import job_status

        advance(self.owner, WINDOW + 1)
        settle(nodes, self.owner)
        if job_status(self.owner, self.market, job_id)["status"] == "Committed":
            self.owner.transact(self.market.functions.finalize(job_id))  # anyone may finalize
        return job_status(self.owner, self.market, job_id)["status"]


@contextmanager
def deployed_world(model: Any, vocab: int, max_ctx: int, name: str,
                   compact: bool = False) -> Iterator[World]:
    """A fresh anvil, the protocol deployed, `model` registered under `name` (`compact`: with
    its compact commitment, docs/trace-layout.md §L10: results commit compact traces)."""
    from node.chain.anvil import Anvil
    from node.deployment import deploy_protocol
    from referee.compact import Compact

    with Anvil() as anvil:
        owner = ChainClient(anvil.rpc_url, DEV_KEYS[0])
        dep = deploy_protocol(owner, clock_budget_s=CLOCK, with_consumer=False)
        reg = owner.contract("ModelRegistry", dep.registry)
        croot = Compact.of(model.program).root if compact else bytes(32)
        owner.transact(reg.functions.register(model.model_hash, model.program.root(), 1,
                                              vocab, max_ctx, name, f"test://{name}", croot))
        yield World(anvil, owner, dep, model)


@contextmanager
def snapshot(chain: World, tmp_path: Path) -> Iterator[World]:
    """A module's shared world for one test: its chain state reverted afterwards."""
    snap = rpc(chain.owner, "evm_snapshot")
    chain.tmp = tmp_path
    yield chain
    assert rpc(chain.owner, "evm_revert", snap)


def check_journals(w: World, *nodes: Any) -> None:
    """Every node's journal matches what it got mined (`assert_journal_matches_chain`)."""
    for n in nodes:
        assert_journal_matches_chain(w.owner, n.store, n.client.address, w.dep.block)


def burn_of(amount: int) -> int:
    return amount * 1000 // 10_000  # JobMarket.BURN_BPS


def game_info(client: ChainClient, dep: Deployment, game_id: int) -> dict[str, Any]:
    g = client.contract("DisputeGame", dep.game)
    job, phase, turn, height, pos, leaf, chunk, won = client.call(g.functions.gameInfo(game_id))
    reasons = [e["args"]["reason"] for e in g.events.GameResolved.get_logs(from_block=dep.block)
               if e["args"]["gameId"] == game_id]
    return {"job": job, "phase": phase, "turn": turn, "leaf": leaf, "defender_won": won,
            "reason": reasons[0] if reasons else None,
            "challenger": client.call(g.functions.partyInfo(game_id, 1))[0]}


RESOLVED = 8
REASON_VERIFIER, REASON_MALFORMED, REASON_LENGTH, REASON_TIMEOUT = 0, 1, 2, 3


def node_txs(client: ChainClient, address: str, start: int) -> list[dict[str, Any]]:
    """Every transaction `address` got mined since block `start` (hash, status, method)."""
    out = []
    market_abi = client.artifacts()["JobMarket"]["abi"] + client.artifacts()["DisputeGame"]["abi"]
    from eth_utils import function_abi_to_4byte_selector

    names = {function_abi_to_4byte_selector(f): f["name"] for f in market_abi
             if f.get("type") == "function"}
    for b in range(start, client.block_number() + 1):
        blk = client.w3.eth.get_block(b, full_transactions=True)
        for tx in blk["transactions"]:
            if tx["from"].lower() != address.lower():
                continue
            rc = client.w3.eth.get_transaction_receipt(tx["hash"])
            out.append({"hash": bytes(tx["hash"]), "status": rc["status"],
                        "method": names.get(bytes(tx["input"][:4]), "?")})
    return out


def assert_journal_matches_chain(client: ChainClient, store: Store, address: str,
                                 start: int) -> list[dict[str, Any]]:
    """No double-sent transaction: every tx the node got mined succeeded and is the one
    journaled under its key (keys are unique in the store), none twice."""
    txs = node_txs(client, address, start)
    rows = store.db.query("SELECT key, tx_hash, status FROM txs")
    by_hash = {bytes(r["tx_hash"]): r for r in rows if r["tx_hash"]}
    assert len(by_hash) == len([r for r in rows if r["tx_hash"]]), "a tx hash journaled twice"
    for t in txs:
        assert t["status"] == 1, f"{t['method']} tx {t['hash'].hex()} reverted on chain"
        assert t["hash"] in by_hash, f"{t['method']} tx {t['hash'].hex()} is not journaled"
    assert len({t["hash"] for t in txs}) == len(txs)
    return txs


# ---- the daemon process ---------------------------------------------------------------------


def _arm_kill(store: Store, stage: str, prefix: str, nth: int, marker: Path) -> None:
    """Stop dead at the `nth` journal event `stage` of a key starting with `prefix`: write
    the marker, then wait for the test's SIGKILL (never returning to the daemon)."""
    seen = 0

    def hit(key: str) -> None:
        nonlocal seen
        if not key.startswith(prefix):
            return
        seen += 1
        if seen == nth:
            marker.write_text(key)
            while True:
                time.sleep(1)

    if stage == "prepared":
        inner_prepare = store.prepare_tx

        def prepare_tx(key: str, *a: Any, **kw: Any) -> Any:
            row = inner_prepare(key, *a, **kw)
            hit(key)
            return row

        store.prepare_tx = prepare_tx  # type: ignore[method-assign]
        return
    inner_mark = store.mark_tx

    def mark_tx(tx_id: int, status: str, **kw: Any) -> bool:
        done = inner_mark(tx_id, status, **kw)
        if str(status) == stage:
            hit(store.get_tx(tx_id).key)
        return done

    store.mark_tx = mark_tx  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["executor", "challenger"], required=True)
    ap.add_argument("--rpc", required=True)
    ap.add_argument("--deployment", required=True)
    ap.add_argument("--key", type=int, required=True, help="index into anvil's dev keys")
    ap.add_argument("--db", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fault-leaf", type=int)
    ap.add_argument("--kill-stage", choices=["prepared", "sent", "mined"])
    ap.add_argument("--kill-key", default="")
    ap.add_argument("--kill-nth", type=int, default=1)
    ap.add_argument("--marker")
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--interval", type=float, default=0.1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.role}[{os.getpid()}] %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    model = toy_model(args.seed)
    cls = ExecutorDaemon if args.role == "executor" else ChallengerDaemon
    fault = Fault(leaf=args.fault_leaf, mask=1 << 22) if args.fault_leaf is not None else None
    node = make_node(cls, args.rpc, Deployment.load(args.deployment), DEV_KEYS[args.key], model,
                     Path(args.db), fault=fault)
    if args.kill_stage:
        _arm_kill(node.store, args.kill_stage, args.kill_key, args.kill_nth, Path(args.marker))
    stop = Path(args.stop_file)
    node.run(interval=args.interval, until=stop.exists)


if __name__ == "__main__":
    main()
