"""`judge demo` / `make demo`: the whole story on a local anvil chain, told as it happens.

1. anvil starts on a free port; the protocol is deployed through the real toolchain.
2. SmolLM2-135M-Instruct is compiled (cached after the first run) and registered.
3. A requester asks a YES/NO question; a prediction market is opened on the job.
4. An honest executor answers and commits; a challenger re-executes and agrees; the window
   passes; the result finalizes; the market settles from the model's answer.
5. A cheating executor commits a trace with one corrupted op in the middle; the challenger
   disputes; the game bisects to the op and the element; the contract's one-step verifier
   re-computes that element and the cheater is slashed.
anvil is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.client import ChainClient
from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
from node.deployment import Deployment, deploy_protocol, register_model, served_entry
from node.network import start_node
from node.requester import JobSpec, job_status, submit_job
from node.served import ServedModel, load_served_model
from node.store import Store

QUESTION = "Is the Earth flat? Answer with Yes or No."
BOND = 10**18
REWARD = 10**17
WINDOW = 600
ETH = 10**18


def say(msg: str = "") -> None:
    print(msg, flush=True)


def _advance(client: ChainClient, seconds: int) -> None:
    client.w3.provider.make_request("evm_increaseTime", [seconds])
    client.w3.provider.make_request("evm_mine", [])


def _answer_tokens(served: ServedModel) -> tuple[list[int], list[int]]:
    tok = served.model.tokenizer()
    yes = sorted({t for w in ("Yes", " Yes", "YES", " YES", "yes", " yes")
                  for t in tok.encode(w)[:1]})[:8]
    no = sorted({t for w in ("No", " No", "NO", " NO", "no", " no")
                 for t in tok.encode(w)[:1]})[:8]
    return yes, no


def _run_until(nodes: list[Any], client: ChainClient, done: Any, max_rounds: int = 200,
               advance: int = WINDOW + 1) -> None:
    idle = 0
    for _ in range(max_rounds):
        if done():
            return
        before = client.block_number()
        for n in nodes:
            n.poll_once()
        if client.block_number() == before:
            idle += 1
            if idle >= 2:
                _advance(client, advance)
                idle = 0
        else:
            idle = 0
    raise RuntimeError("the demo did not converge")


def honest_round(chain: Anvil, dep: Deployment, served: ServedModel, requester: ChainClient,
                 data: Path, max_tokens: int) -> None:
    say("\n== 1. An honest job ==")
    market = requester.contract("JobMarket", dep.market)
    pm = requester.contract("PredictionMarket", dep.consumer)
    tokens = served.chat_tokens(QUESTION)
    spec = JobSpec(model_hash=served.model_hash, input_tokens=tokens, max_tokens=max_tokens,
                   reward_wei=REWARD, bond_wei=BOND, challenge_window_s=WINDOW)
    job_id, res = submit_job(requester, market, spec)
    say(f"requester posts job {job_id}: {QUESTION!r} ({len(tokens)} tokens, reward "
        f"{REWARD / ETH} ETH, bond {BOND / ETH} ETH, window {WINDOW}s; gas {res.gas_used})")
    yes, no = _answer_tokens(served)
    closes = requester.timestamp() + 60
    requester.transact(pm.functions.createMarket(job_id, closes, yes, no))
    bettor_yes = ChainClient(chain.rpc_url, DEV_KEYS[4])
    bettor_no = ChainClient(chain.rpc_url, DEV_KEYS[5])
    bettor_yes.transact(bettor_yes.contract("PredictionMarket", dep.consumer)
                        .functions.bet(1, True), value=ETH)
    bettor_no.transact(bettor_no.contract("PredictionMarket", dep.consumer)
                       .functions.bet(1, False), value=ETH)
    say("prediction market 1 opened on the job: one bettor stakes 1 ETH on YES, one on NO")

    ex = _node(ExecutorDaemon, chain, dep, served, DEV_KEYS[1], data / "honest-ex.db")
    ch = _node(ChallengerDaemon, chain, dep, served, DEV_KEYS[2], data / "honest-ch.db")
    t0 = time.time()
    _run_until([ex, ch], requester,
               lambda: job_status(requester, market, job_id)["status"] == "Finalized")
    st = job_status(requester, market, job_id)
    text = served.decode(st["output_tokens"])
    say(f"executor answered {text!r}; the challenger re-executed and agreed; after the window "
        f"the job finalized ({time.time() - t0:.1f}s wall)")
    requester.transact(pm.functions.settle(1))
    outcome = requester.call(pm.functions.marketOf(1))
    names = {1: "YES", 2: "NO", 3: "INVALID"}
    say(f"the prediction market settled {names.get(outcome[2], outcome[2])} from the verified "
        f"answer")
    paid = ex.withdraw()
    say(f"executor withdrew {paid / ETH} ETH (bond back + reward)")


def cheating_round(chain: Anvil, dep: Deployment, served: ServedModel, requester: ChainClient,
                   data: Path, max_tokens: int, question: str = QUESTION,
                   leaf: int | None = None) -> dict[str, Any]:
    """A job whose executor corrupts one bit of element 0 of trace leaf `leaf` (default: an
    op in the middle of the first step), disputed and settled on-chain."""
    say("\n== 2. A cheating executor ==")
    market = requester.contract("JobMarket", dep.market)
    tokens = served.chat_tokens(question)
    spec = JobSpec(model_hash=served.model_hash, input_tokens=tokens, max_tokens=max_tokens,
                   reward_wei=REWARD, bond_wei=BOND, challenge_window_s=WINDOW)
    job_id, _ = submit_job(requester, market, spec)
    n_ops = served.model.program.n_ops
    if leaf is None:
        leaf = n_ops // 2  # an op in the middle of the first step's trace
    op = served.model.program.ops[leaf]
    say(f"job {job_id} posted; the executor will corrupt trace leaf {leaf} "
        f"({op.name}) by one bit of element 0")
    ex = _node(ExecutorDaemon, chain, dep, served, DEV_KEYS[1], data / "cheat-ex.db",
               fault=Fault(leaf=leaf, element=0, mask=1 << 20))
    ex.p2p = start_node(ex.outcomes)
    ch = _node(ChallengerDaemon, chain, dep, served, DEV_KEYS[3], data / "cheat-ch.db",
               p2p=start_node({}, bootstrap=ex.p2p.addrs))
    say(f"executor and challenger connected over libp2p ({ex.p2p.addrs[0]})")
    try:
        return _cheat_game(ex, ch, served, requester, dep, job_id, n_ops, max_tokens)
    finally:
        ex.p2p.close()
        ch.p2p.close()


def _cheat_game(ex: Any, ch: Any, served: ServedModel, requester: ChainClient,
                dep: Deployment, job_id: int, n_ops: int, max_tokens: int) -> dict[str, Any]:
    t0 = time.time()
    market = requester.contract("JobMarket", dep.market)
    game = requester.contract("DisputeGame", dep.game)
    ch_before = requester.call(market.functions.balanceOf(ch.client.address))

    def resolved() -> bool:
        n = requester.call(game.functions.gameCount())
        return n > 0 and requester.call(game.functions.gameInfo(n))[1] == 8

    t_run = time.time()
    ex.poll_once()  # the executor runs the job and commits
    t_exec = time.time() - t_run
    t_run = time.time()
    ch.poll_once()  # the challenger re-executes and disputes
    t_chal = time.time() - t_run
    t_game = time.time()
    _run_until([ex, ch], requester, resolved, advance=5)
    t_game = time.time() - t_game
    gid = requester.call(game.functions.gameCount())
    info = requester.call(game.functions.gameInfo(gid))
    moves = sorted(ex.players[gid].moves + ch.players[gid].moves,
                   key=lambda m: (m[1].block, m[1].receipt["transactionIndex"]))
    gas = {"executor": sum(r.gas_used for _, r in ex.players[gid].moves),
           "challenger": sum(r.gas_used for _, r in ch.players[gid].moves)}
    biggest = max(moves, key=lambda m: m[1].gas_used)
    found = ch.located.get(job_id)
    if found:
        say(f"the challenger re-executed, fetched the executor's op roots over libp2p (each "
            f"batch proven against the committed root) and found the first divergent op, "
            f"leaf {found[0]}, in {found[1]:.2f}s; then it disputed on-chain (game {gid})")
    else:
        say(f"the challenger re-executed, found a trace root mismatch and disputed (game {gid})")
    say(f"bisection: {len(moves)} moves; located leaf {info[5]} "
        f"({served.model.program.ops[info[5] % n_ops].name}), chunk {info[6]}")
    ex_moves = {id(r) for _, r in ex.players[gid].moves}
    for what, r in moves:
        who = "executor  " if id(r) in ex_moves else "challenger"
        say(f"   {who} {what:<12} gas {r.gas_used:>9,}")
    say(f"gas: executor {gas['executor']:,}, challenger {gas['challenger']:,}; largest tx "
        f"{biggest[0]} {biggest[1].gas_used:,}; wall time {time.time() - t0:.1f}s")
    verdict = "executor was right" if info[7] else "executor LIED: slashed by the one-step"
    say(f"the contract re-computed the disputed element itself: {verdict}")
    won = requester.call(market.functions.balanceOf(ch.client.address)) - ch_before
    burned = requester.call(market.functions.totalBurned())
    say(f"challenger is owed {won / ETH} ETH (its bond back + the cheater's bond minus the "
        f"burn); burned so far {burned / ETH} ETH")
    ch.withdraw()
    return {"job": job_id, "game": gid, "max_tokens": max_tokens,
            "trace_length": ex.outcomes[job_id].trace_length,
            "tokens": len(ex.outcomes[job_id].tokens), "ops_per_token": n_ops,
            "leaf": int(info[5]), "op": served.model.program.ops[info[5] % n_ops].name,
            "moves": [(what, r.gas_used, "executor" if id(r) in ex_moves else "challenger")
                      for what, r in moves],
            "gas_executor": gas["executor"], "gas_challenger": gas["challenger"],
            "largest": (biggest[0], biggest[1].gas_used),
            "seconds_executor_run": t_exec, "seconds_challenger_run_and_dispute": t_chal,
            "seconds_game": t_game, "defender_won": bool(info[7]),
            "p2p_located_leaf": found[0] if found else None,
            "p2p_seconds_to_locate": found[1] if found else None}


def _node(cls: Any, chain: Anvil, dep: Deployment, served: ServedModel, key: str, db: Path,
          **kw: Any) -> Any:  # noqa: D103
    store = Store(db)
    client = ChainClient(chain.rpc_url, key, journal=store)
    return cls(client, dep, store, served.runner, served_models={served.model_hash}, **kw)


def main(args: argparse.Namespace | None = None) -> int:
    max_tokens = getattr(args, "max_tokens", 8) if args else 8
    port = getattr(args, "port", None) if args else None
    logging.getLogger("judge").setLevel(logging.WARNING)
    say("judge-ree demo: verifiable SmolLM2 inference settled on a local chain")
    t0 = time.time()
    chain = Anvil(port=port)
    try:
        _story(chain, max_tokens)
    except Exception:
        if chain.interrupted:  # Ctrl-C: anvil is already stopped, the RPC errors are its echo
            say("\ninterrupted; anvil stopped")
            return 130
        raise
    say(f"\ndone in {time.time() - t0:.0f}s; anvil stopped")
    return 0


def _story(chain: Anvil, max_tokens: int) -> None:
    with chain, tempfile.TemporaryDirectory(prefix="judge-demo-") as tmp:
        say(f"anvil listening on {chain.rpc_url}")
        owner = ChainClient(chain.rpc_url, DEV_KEYS[0])
        say("compiling and deploying the contracts (solc 0.8.37) …")
        dep = deploy_protocol(owner, clock_budget_s=3600, log=lambda m: say("  " + m))
        say("loading SmolLM2-135M-Instruct (compiled once, then cached) …")
        served = load_served_model("smollm2", max_ctx=256, log=lambda m: say("  " + m))
        register_model(owner, dep.registry, served_entry(served))
        say(f"registered model 0x{served.model_hash.hex()} (trace program: "
            f"{served.model.program.n_ops} ops per token)")
        honest_round(chain, dep, served, owner, Path(tmp), max_tokens)
        cheating_round(chain, dep, served, owner, Path(tmp), max_tokens)


if __name__ == "__main__":
    sys.exit(main())
