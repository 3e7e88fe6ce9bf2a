"""The executor and challenger daemons (DESIGN §7).

Both are loops of small idempotent steps over durable state:
1. scan new safe blocks for events (node/watch.py) and record what they mean in the store;
2. act on the store: run jobs, commit, challenge, make game moves, finalize, withdraw.
Every transaction is journaled under a key naming its intent ("commit:7", "move:3:12"), so a
node killed at any point re-derives the same step after restart and waits for the recorded
transaction instead of sending a second one. Traces are not stored: the job is re-run (the
runtime is deterministic) when a restarted node needs its trace again.

The cheating executor of the demo and the tests is the same code with a `fault` that changes
one element of one trace leaf before committing (and before later ops read it); a challenger
with a fault is a lying challenger. The fault is part of the node's configuration, not of one
run: a restarted cheater re-runs the job with it, so it keeps defending the root it committed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import eth_abi
import numpy as np
import rlp
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound

from node.chain.client import ChainClient, ChainError, TxReverted
from node.deployment import Deployment
from node.game_player import BITS, C, D, GamePlayer, Phase, open_key
from node.jobs import JobOutcome, JobRunner, JobTrace
from node.metrics import NodeMetrics
from node.requester import config_from_chain, f32_bits, tokens_from_input
from node.store import Store
from node.store.records import Game, Job, JobStatus
from node.watch import EventWatcher, Subscription
from referee.compact import Compact
from repops.commit import keccak256

log = logging.getLogger("judge.daemon")

EXTERNAL = 255
REORG_WINDOW = 64  # blocks within which our own mined txs are re-checked (= watcher rewind)


@dataclass
class Fault:
    """Corrupt element `element` of trace leaf `leaf` by xor-ing `mask` into its bits."""

    leaf: int
    element: int = 0
    mask: int = 1

    def __call__(self, leaf: int, out: np.ndarray) -> np.ndarray:
        if leaf != self.leaf:
            return out
        out = out.copy()
        flat = out.reshape(-1)
        bits = flat.view(np.uint32) if flat.dtype == np.float32 else flat
        bits[self.element % flat.size] ^= self.mask
        return out


class _StoreCursor:
    """Adapter: the watcher's cursor interface over node.store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_cursor(self, name: str) -> tuple[int, str] | None:
        cur = self.store.get_cursor(name)
        if cur is None:
            return None
        return cur.block, "0x" + (cur.block_hash or b"").hex()

    def set_cursor(self, name: str, block: int, block_hash: str) -> None:
        self.store.set_cursor(name, block, bytes.fromhex(block_hash.removeprefix("0x")))


class Daemon:
    """Shared machinery; `role` is "executor" or "challenger"."""

    role = "node"

    def __init__(self, client: ChainClient, deployment: Deployment, store: Store,
                 runner: JobRunner, served_models: set[bytes] | None = None,
                 metrics: NodeMetrics | None = None, fault: Fault | None = None,
                 p2p: Any = None) -> None:
        self.client = client
        self.fault = fault
        self.p2p = p2p  # node.p2p.P2PNode or None (node/network.py: what it is used for)
        self.deployment = deployment
        self.store = store
        self.runner = runner
        self.served = served_models
        self.metrics = metrics or NodeMetrics(self.role)
        c = deployment.contracts(client)
        self.market, self.game, self.registry = c["market"], c["game"], c["registry"]
        self.outcomes: dict[int, JobOutcome] = {}
        self._compact: dict[bytes, bytes] = {}  # model hash -> registered compact root
        self._ran: dict[int, tuple[bytes, bytes, bytes]] = {}  # job id -> what was run
        self.players: dict[int, GamePlayer] = {}
        self.watcher = EventWatcher(client, _StoreCursor(store), f"{self.role}-events",
                                    self.subscriptions(), start_block=deployment.block)
        self._stop = threading.Event()

    # ---- plumbing ----------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(self.market, "JobPosted", self.on_job_posted),
                Subscription(self.market, "Challenged", self.on_challenged)]

    def send(self, fn: Any, key: str, value: int = 0) -> Any:
        res = self.client.transact(fn, value=value, what=key,
                                   key=open_key(self.client.journal, f"{self.role}:{key}"))
        self.metrics.tx(res.gas_used)
        return res

    def on_job_posted(self, ev: Any) -> None:
        a = ev["args"]
        if self.served is not None and bytes(a["modelHash"]) not in self.served:
            return
        cfg_bytes = json.dumps(config_from_chain(a["config"]), sort_keys=True).encode()
        self.store.upsert_job(Job(job=int(a["jobId"]), model=bytes(a["modelHash"]),
                                  input=bytes(a["input"]), config=cfg_bytes,
                                  block=ev["blockNumber"], deadline=int(a["deadline"]),
                                  reward=int(a["reward"]), requester=a["requester"]))
        self.metrics.jobs_seen.labels(self.role).inc()

    def on_challenged(self, ev: Any) -> None:
        """Games are discovered here; subclasses decide whether they are a party."""

    def outcome(self, job_id: int) -> JobOutcome:
        """Run (or re-run after a restart) the job; cached for the life of the process.

        The node's own `fault` (if any) applies to every run, so the trace rebuilt after a
        restart is the one this node committed to (DESIGN §7 persistence).
        """
        job = self.store.get_job(job_id)
        if job is None:
            raise RuntimeError(f"job {job_id} unknown to this node")
        what = (job.model, job.input, job.config)
        if job_id not in self.outcomes or self._ran.get(job_id) != what:
            # (a reorg deeper than our confirmations can replace job `job_id` by another
            # job under the same id: the watcher rescans and the store holds the new one)
            self._ran[job_id] = what
            config = json.loads(job.config)
            t = time.time()
            out = self.runner(job.model, tokens_from_input(job.input), config, self.fault)
            out.compact = self.compact_layout(job.model, out)
            self.outcomes[job_id] = out
            log.info("%s: ran job %d in %.1fs (%d trace leaves)", self.role, job_id,
                     time.time() - t, self.outcomes[job_id].trace_length)
        return self.outcomes[job_id]

    def compact_layout(self, model: bytes, out: JobOutcome) -> Compact | None:
        """The model's compact commitment (docs/trace-layout.md §L10) when the registry has
        one: the node then commits compact roots. Ours must be the registered one, else this
        node cannot play the model's games and refuses its jobs."""
        if model not in self._compact:
            self._compact[model] = bytes(self.client.call(
                self.registry.functions.compactRootOf(model)))
        registered = self._compact[model]
        if registered == bytes(32):
            return None
        cp = Compact.of(out.trace.program)
        if cp.root != registered:
            raise ValueError(f"model 0x{model.hex()[:16]} is registered with compact root "
                             f"0x{registered.hex()[:16]}, our program's is 0x{cp.root.hex()[:16]}")
        return cp

    def same_job(self, job_id: int, j: Any) -> bool:
        """Is job `job_id` on chain (jobOf tuple `j`) the job our store holds and we run?

        Why: a reorg deeper than our confirmations can put another job under the same id; until
        the watcher has delivered it, acting on the stored one would commit (or challenge with)
        another job's trace. Model, input and config are all bound by hashes on chain.
        """
        job = self.store.get_job(job_id)
        if job is None:
            return False
        cfg = json.loads(job.config)
        cfg_hash = keccak256(eth_abi.encode(
            ["uint32", "uint32", "uint32", "uint32", "uint64"],
            [cfg["max_new_tokens"], f32_bits(cfg["temperature"]), cfg["top_k"],
             f32_bits(cfg["top_p"]), cfg["seed"]]))
        ok = (bytes(j[10]) == job.model and bytes(j[12]) == keccak256(job.input)
              and bytes(j[13]) == cfg_hash)
        if not ok:
            log.warning("%s: job %d on chain is not the one in our store (reorg?); waiting",
                        self.role, job_id)
        return ok

    def runnable(self, job_id: int) -> bool:
        """Run the job if it can be run; a job its program cannot execute (token ids outside
        the vocabulary, an empty or too long prompt, an unsupported config) is bad input from
        the requester and must not stop the node (issue 7, bad input)."""
        try:
            self.outcome(job_id)
        except ChainError:
            raise
        except Exception as e:  # noqa: BLE001 - any runner failure means "cannot run this job"
            log.warning("%s: job %d cannot be executed (%s: %s); skipping it", self.role,
                        job_id, e.__class__.__name__, e)
            return False
        return True

    def player(self, game_id: int, side: int, job_id: int) -> GamePlayer:
        if game_id not in self.players:
            trace = JobTrace(self.outcome(job_id))
            self.players[game_id] = GamePlayer(self.client, self.game, game_id, side, trace,
                                               key_prefix=f"{self.role}:move:{game_id}")
        return self.players[game_id]

    def play_games(self) -> None:
        for g in self.store.games("active"):
            side = D if g.role == "defender" else C
            p = self.player(g.game, side, g.job)
            st = p.state()
            if st.phase == Phase.RESOLVED:
                won = st.defender_won == (side == D)
                self.store.update_game(g.game, phase="resolved", status="won" if won else "lost")
                log.info("%s: game %d %s", self.role, g.game, "WON" if won else "LOST")
                continue
            if side == C:
                self._overlay_defender_nodes(p)
            try:
                move = p.step() or p.try_timeout()
            except TxReverted as e:
                log.warning("%s: game %d move reverted: %s", self.role, g.game, e.error)
                continue
            if move:
                self.metrics.game_moves.labels(self.role).inc()
                self.store.update_game(g.game, phase=move)

    def _overlay_defender_nodes(self, p: GamePlayer) -> None:
        """Challenger side: D's trace-tree nodes revealed on-chain, for witnesses (node/jobs).

        The trace-level reveals are complete once the leaf is reached, so this is done once
        per game (it re-hashes the whole tree)."""
        if p.trace.has_defender_nodes:
            return
        head = self.client.block_number()
        start = self.deployment.block

        def mine(name: str) -> list:
            return [e for e in self.client.events(self.game, name, start, head)
                    if e["args"]["gameId"] == p.game_id]

        reveals, reached = mine("ChildrenRevealed"), mine("TraceLeafReached")
        if p.compact_game():  # §L10: only the full trace's dissection, after D's expansion
            expanded = [e for e in mine("Expanded") if e["args"]["side"] == D]
            if not expanded:
                return
            after = (expanded[0]["blockNumber"], expanded[0]["logIndex"])
            reveals = [e for e in reveals if (e["blockNumber"], e["logIndex"]) > after]
            reached = [e for e in reached if (e["blockNumber"], e["logIndex"]) > after]
        if not reached:
            return
        cut = (reached[0]["blockNumber"], reached[0]["logIndex"])
        nodes: dict[tuple[int, int], bytes] = {}
        for e in reveals:
            if (e["blockNumber"], e["logIndex"]) > cut:
                continue
            a = e["args"]
            b = min(BITS, a["height"])
            level = a["height"] - b
            for j, h in enumerate(a["children"]):
                nodes[(level, (a["pos"] << b) + j)] = bytes(h)
        leaf = reached[0]["args"]["index"]
        nodes[(0, leaf)] = bytes(reached[0]["args"]["defenderLeaf"])
        p.trace.with_defender_nodes(nodes)

    def withdraw(self) -> int:
        bal = self.client.call(self.market.functions.balanceOf(self.client.address))
        if bal:
            key = f"withdraw:{self.client.block_number()}"
            self.send(self.market.functions.withdraw(), key)
            log.info("%s: withdrew %d wei", self.role, bal)
        return bal

    def act(self) -> None:
        raise NotImplementedError

    def resend_dropped(self) -> int:
        """Broadcast again our own mined transactions that a reorg dropped (DESIGN §7).

        Why: events are acted on `confirmations` deep, but our own transactions land at the
        head, so even a reorg within that depth can drop a commit, a challenge or a game move
        while the journal says "mined". Without this a dropped challenge lets the cheater
        finalize, and a dropped move (keyed by its game position) is never re-sent and loses
        on the clock. A game move is sent again as the same bytes (same nonce, so never a
        second action) if it still applies. Anything else — and a move that would now revert
        (it answered another party's tx that is gone too), with every later tx of ours (their
        nonces cannot be mined before it) — is given up and its intent acts afresh
        (`on_dropped`) on what the chain now holds: a commit or a challenge depends on the
        job's content, which a deeper reorg may have replaced. Returns how many were sent
        again.
        """
        journal = self.client.journal
        if journal is None:
            return 0
        head = self.client.block_number()
        gone = [tx for tx in journal.mined_txs_since(head - REORG_WINDOW)
                if tx.tx_hash is not None and self._receipt(tx.tx_hash) is None]
        resent, broken = 0, False
        for tx in gone:
            log.warning("%s: tx %s mined in block %s is gone (reorg)", self.role, tx.key,
                        tx.block)
            why = ("an earlier tx of ours was given up" if broken
                   else "acted afresh" if ":move:" not in tx.key
                   else self._would_revert(tx.raw))
            if why is None:
                journal.mark_tx(tx.id, "sent", expect=["mined"])
                try:
                    self.client.rebroadcast(tx.key, tx.purpose)
                    resent += 1
                    continue
                except TxReverted as e:
                    why = e.error
            else:
                journal.mark_tx(tx.id, "dropped", error=why, expect=["mined"])
            broken = True
            log.warning("%s: gave up %s (%s); acting afresh", self.role, tx.key, why)
            self.on_dropped(tx.key.split("#")[0].removeprefix(f"{self.role}:"))
        return resent

    def _would_revert(self, raw: bytes | None) -> str | None:
        """Why the recorded EIP-1559 tx would revert now (eth_call), or None if it would not."""
        if not raw or raw[0] != 2:
            return None
        _chain, _nonce, _tip, _fee, _gas, to, value, data = rlp.decode(raw[1:])[:8]
        call = {"from": self.client.address, "to": Web3.to_checksum_address(to),
                "value": int.from_bytes(value, "big"), "data": "0x" + data.hex()}
        try:
            self.client.retry("eth_call", lambda: self.client.w3.eth.call(call))
        except (ContractLogicError, ContractCustomError) as e:
            rev = self.client.decode_revert(e)
            return rev.error if rev else str(e)
        return None

    def on_dropped(self, key: str) -> None:
        """A tx of ours is gone for good (`key` without role or attempt suffix): make its
        intent act again. Game moves need nothing (each poll re-derives the move)."""

    def _receipt(self, tx_hash: bytes) -> Any:
        try:
            return self.client.retry("receipt",
                                     lambda: self.client.w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None

    def poll_once(self) -> None:
        self.resend_dropped()
        self.watcher.poll()
        self.act()
        self.play_games()

    def run(self, interval: float = 1.0, until: Callable[[], bool] | None = None) -> None:
        log.info("%s %s running on %s", self.role, self.client.address, self.client.rpc_url)
        while not self._stop.is_set() and not (until and until()):
            try:
                self.poll_once()
            except (ConnectionError, TimeoutError, ChainError) as e:
                # ChainError: the client's own retries ran out (RPC down for long) or a move
                # lost a race; state is on chain and in the store, so the next poll carries on.
                log.warning("%s: RPC trouble (%s); retrying", self.role, e)
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()


class ExecutorDaemon(Daemon):
    role = "executor"

    def on_challenged(self, ev: Any) -> None:
        a = ev["args"]
        job_id, slot = int(a["jobId"]), int(a["defenderSlot"])
        c = self.client.call(self.market.functions.commitmentOf(job_id, slot))
        if c[0].lower() != self.client.address.lower():
            return
        self.store.upsert_game(Game(game=int(a["gameId"]), job=job_id, role="defender",
                                    phase="created", opponent=a["challenger"]))
        self.metrics.jobs_disputed.labels(self.role).inc()
        log.info("executor: job %d challenged (game %d)", job_id, int(a["gameId"]))

    def on_dropped(self, key: str) -> None:
        kind, _, job = key.partition(":")
        if kind == "commit":
            self.store.set_job_status(int(job), JobStatus.SEEN)

    def act(self) -> None:
        now = self.client.timestamp()
        for job in self.store.jobs(JobStatus.SEEN):
            if job.deadline is not None and now > job.deadline:
                self.store.set_job_status(job.job, JobStatus.SKIPPED)
                continue
            self.commit(job.job)
        for job in self.store.jobs(JobStatus.COMMITTED):
            self.try_finalize(job.job)

    def commit(self, job_id: int) -> None:
        j = self.client.call(self.market.functions.jobOf(job_id))
        status, n_exec, n_committed, bond = j[7], j[4], j[5], j[-1]
        journal = self.client.journal
        journaled = journal is not None and \
            journal.tx_by_key(open_key(journal, f"{self.role}:commit:{job_id}")) is not None
        if (status not in (1, 2) or n_committed >= n_exec) and not journaled:
            # (a commit of ours recorded before a crash fills a slot too: carry on with it)
            log.info("executor: job %d no longer takes commitments; skipping", job_id)
            self.store.set_job_status(job_id, JobStatus.SKIPPED)
            return
        if not self.same_job(job_id, j):
            return
        if not self.runnable(job_id):
            self.store.set_job_status(job_id, JobStatus.SKIPPED)
            return
        out = self.outcome(job_id)
        from node.receipts import tokens_hash

        tokens = out.tokens
        try:
            self.send(self.market.functions.commit(job_id, tokens, tokens_hash(tokens),
                                                   out.trace_root, out.trace_length),
                      f"commit:{job_id}", value=bond)
        except TxReverted as e:
            log.warning("executor: commit to job %d refused: %s", job_id, e.error)
            self.store.set_job_status(job_id, JobStatus.SKIPPED)
            return
        self.store.set_job_status(job_id, JobStatus.COMMITTED)
        if self.p2p is not None:
            from node.network import announce_commitment

            announce_commitment(self.p2p, job_id, self.client.address, out)
        self.metrics.jobs_committed.labels(self.role).inc()
        self.metrics.bonds_at_stake.labels(self.role).inc(bond)
        log.info("executor: committed job %d: %d tokens, trace %d leaves, root %s", job_id,
                 len(tokens), out.trace_length, "0x" + out.trace_root.hex()[:16])

    def try_finalize(self, job_id: int) -> None:
        status = self.client.call(self.market.functions.resultOf(job_id))[0]
        if status == 3:  # Finalized
            self.store.set_job_status(job_id, JobStatus.FINALIZED)
            return
        if status == 4:
            self.store.set_job_status(job_id, JobStatus.FAILED)
            return
        j = self.client.call(self.market.functions.jobOf(job_id))
        last_commit, window = j[3], j[2]
        if self.client.timestamp() <= last_commit + window:
            return
        try:
            self.send(self.market.functions.finalize(job_id), f"finalize:{job_id}")
            log.info("executor: finalized job %d", job_id)
        except TxReverted as e:
            log.debug("finalize %d not yet: %s", job_id, e.error)


class ChallengerDaemon(Daemon):
    role = "challenger"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener = None
        self.located: dict[int, tuple[int | None, float]] = {}
        if self.p2p is not None:
            from node.network import ReceiptListener

            self.listener = ReceiptListener(self.p2p)

    def locate_off_chain(self, job_id: int, c: dict, theirs: bytes, out: JobOutcome) -> None:
        """Find the first divergent op from the executor's served trace (checked against its
        committed root) before spending gas; the game confirms it on-chain."""
        if self.listener is None:
            return
        from node.network import P2PError, first_divergence

        peer = self.listener.peer_for(job_id, c["executor"])
        if peer is None:
            log.info("challenger: no p2p peer serves job %d's trace; bisecting on-chain only",
                     job_id)
            return
        try:
            leaf, secs = first_divergence(self.p2p, peer, job_id, theirs, c["trace_length"], out)
        except P2PError as e:
            log.warning("challenger: p2p trace fetch for job %d failed: %s", job_id, e)
            return
        self.located[job_id] = (leaf, secs)
        log.info("challenger: job %d diverges at leaf %s (found off-chain in %.2fs)", job_id,
                 leaf, secs)

    def subscriptions(self) -> list[Subscription]:
        return super().subscriptions() + [Subscription(self.market, "Committed",
                                                       self.on_committed)]

    def on_committed(self, ev: Any) -> None:
        a = ev["args"]
        key = f"commitment:{int(a['jobId'])}:{int(a['slot'])}"
        new = {"executor": a["executor"], "trace_root": bytes(a["traceRoot"]).hex(),
               "trace_length": int(a["traceLength"]), "tokens": list(a["tokens"]),
               "block_hash": bytes(ev["blockHash"]).hex()}
        raw = self.store.get(key)
        old = json.loads(raw) if raw is not None else None
        # a replayed event keeps its status; a commitment in another block (the old one was
        # reorged away, DESIGN §7 reorg-aware watching) is checked afresh: the journal keeps
        # a live challenge from being sent twice
        if old is None or {k: old.get(k) for k in new} != new:
            self.store.put(key, json.dumps({**new, "status": "pending"}).encode())

    def on_dropped(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "challenge":
            ckey = f"commitment:{rest}"
            raw = self.store.get(ckey)
            if raw is not None:
                self.store.put(ckey, json.dumps({**json.loads(raw), "status": "pending"})
                               .encode())

    def on_challenged(self, ev: Any) -> None:
        a = ev["args"]
        if a["challenger"].lower() == self.client.address.lower():
            self.store.upsert_game(Game(game=int(a["gameId"]), job=int(a["jobId"]),
                                        role="challenger", phase="created"))

    def act(self) -> None:
        for job in self.store.jobs():
            for slot in range(16):
                key = f"commitment:{job.job}:{slot}"
                raw = self.store.get(key)
                if raw is None:
                    break
                c = json.loads(raw)
                if c["status"] != "pending":
                    continue
                c["status"] = self.check(job.job, slot, c)
                self.store.put(key, json.dumps(c).encode())

    def check(self, job_id: int, slot: int, c: dict) -> str:
        if not self.same_job(job_id, self.client.call(self.market.functions.jobOf(job_id))):
            return "pending"
        if not self.runnable(job_id):
            return "unrunnable"
        out = self.outcome(job_id)
        theirs = bytes.fromhex(c["trace_root"])
        same_trace = theirs == out.trace_root and c["trace_length"] == out.trace_length
        if same_trace and c["tokens"] == out.tokens:
            log.info("challenger: job %d slot %d agrees with our re-execution", job_id, slot)
            return "agreed"
        token_index = 0
        if same_trace:  # DESIGN §6 checklist 4: the committed tokens are not the trace's
            mine, theirs_t = out.tokens, c["tokens"]
            pairs = enumerate(zip(mine, theirs_t, strict=False))
            token_index = next((i for i, (x, y) in pairs if x != y), min(len(mine), len(theirs_t)))
        if not same_trace:
            self.locate_off_chain(job_id, c, theirs, out)
        j = self.client.call(self.market.functions.jobOf(job_id))
        bond = j[-1]
        log.info("challenger: job %d slot %d DISAGREES (their root %s, ours %s): disputing",
                 job_id, slot, theirs.hex()[:16], out.trace_root.hex()[:16])
        try:
            self.send(self.market.functions.challenge(job_id, slot, out.trace_root,
                                                      out.trace_length, token_index),
                      f"challenge:{job_id}:{slot}", value=bond)
        except TxReverted as e:
            log.warning("challenger: challenge of job %d refused: %s", job_id, e.error)
            return "refused"
        self.metrics.jobs_disputed.labels(self.role).inc()
        self.metrics.bonds_at_stake.labels(self.role).inc(bond)
        return "disputed"
