"""Plays one side of a DisputeGame from a local trace, one move per call to `step()`.

Why one move per call: a daemon interleaves many games and jobs, persists after every move,
and must be able to die between any two moves and carry on (the chain holds the game state;
`step()` re-reads it each time, so it is idempotent).

The moves mirror contracts/protocol/DisputeGame.sol: level 1 dissects the two trace trees
(commitments C3/C5, lifted to a common depth with ZERO leaves), the leaves are opened
(op hash, C4 header, data root), level 2 dissects the output tensors' chunk trees, the
defender reveals the chunk, the challenger picks the first element where the chunks differ,
and the one-step verifier decides with a witness built by the referee. A DOT element longer
than one link (docs/trace-layout.md §L9, level 3) first goes through its accumulation chain:
the defender reveals it, the challenger names the first link where it differs from its own.
A game over compact traces (docs/trace-layout.md §L10) first dissects the compact ones; where
that ends, each party expands its commitment to its full trace (`expand`) and the game above
is played on the full traces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from node.chain.client import ChainClient, TxResult, TxReverted
from node.chain.contracts import Claim, Phase  # noqa: F401 - Claim re-exported for players
from referee.bisection import lift
from referee.onestep import depth_of
from repops.commit import CHUNK_BYTES, merkle_levels, merkle_proof

log = logging.getLogger("judge.game")

BITS = 4  # DisputeGame.BITS: 16 children per reveal
D, C = 0, 1


class TraceView(Protocol):
    """What a player needs from its own execution of the job."""

    def leaves(self) -> list[bytes]:
        """C5 trace leaves in execution order."""

    def opening(self, leaf: int) -> tuple[bytes, bytes, bytes]:
        """(op_hash, C4 header bytes, C3 data root) of the op at `leaf`."""

    def chunk_leaves(self, leaf: int) -> list[bytes]:
        """C2/C3 chunk leaves of the output tensor at `leaf`."""

    def chunk(self, leaf: int, index: int) -> bytes:
        """Bytes of chunk `index` of the output tensor at `leaf`."""

    def witness(self, kind: int, ctx: Any) -> bytes:
        """One-step witness for a pending claim, given the on-chain StepContext."""

    def chain(self, leaf: int, element: int) -> list[int]:
        """docs/trace-layout.md §L9: C1 bits of the accumulator after each link of DOT
        element `element` at `leaf`, from our own inputs ([] when checked whole)."""

    def compact_leaves(self) -> list[bytes]:
        """§L10: C5 leaves of our compact trace (games over compact commitments)."""

    def expansion(self, leaf: int, token: int | None = None) -> tuple:
        """§L10: `DisputeGame.expand`'s arguments after the game id, for compact leaf
        `leaf`, or in an output game for the token op's leaf of step `token`."""


@dataclass
class GameState:
    job_id: int
    phase: Phase
    turn: int
    height: int
    pos: int
    leaf_index: int
    chunk_index: int
    defender_won: bool


class GamePlayer:
    """One party of one game. `side` is D (defending executor) or C (challenger)."""

    def __init__(self, client: ChainClient, game: Any, game_id: int, side: int,
                 trace: TraceView, key_prefix: str | None = None) -> None:
        self.client = client
        # journal keys "<prefix>:<move>:<position>": a node killed after recording a move
        # re-sends that exact tx on restart instead of signing a second one (DESIGN §7)
        self.key_prefix = key_prefix
        self.game = game
        self.game_id = game_id
        self.side = side
        self.trace = trace
        self._trace_levels: dict[tuple[bool, int], list[list[bytes]]] = {}
        self._compact_root: bytes | None = None
        self._tensor_levels: dict[int, list[list[bytes]]] = {}
        self.moves: list[tuple[str, TxResult]] = []

    # ---- reading the chain ----------------------------------------------------------------

    def state(self) -> GameState:
        job, phase, turn, height, pos, leaf, chunk, won = self.client.call(
            self.game.functions.gameInfo(self.game_id))
        return GameState(job, Phase(phase), turn, height, pos, leaf, chunk, won)

    def party(self, side: int) -> tuple[str, bytes, int, int, bytes]:
        return tuple(self.client.call(self.game.functions.partyInfo(self.game_id, side)))

    def _trace_height(self) -> int:
        lengths = [self.party(s)[2] for s in (D, C)]
        return max(depth_of(n) for n in lengths)

    def compact_game(self) -> bool:
        """Does this game start on compact commitments (§L10)?"""
        if self._compact_root is None:
            self._compact_root = bytes(self.client.call(
                self.game.functions.compactInfo(self.game_id))[0])
        return self._compact_root != bytes(32)

    def _compact_stage(self) -> bool:
        """Still dissecting the compact traces (before both parties expanded)?"""
        return self.compact_game() and not self.client.call(
            self.game.functions.compactInfo(self.game_id))[1]

    def _levels_trace(self) -> list[list[bytes]]:
        """Our trace tree lifted to the game's height: the compact trace's before the
        expansion, the full trace's after (the committed lengths change with it)."""
        key = (self._compact_stage(), self._trace_height())
        if key not in self._trace_levels:
            leaves = self.trace.compact_leaves() if key[0] else self.trace.leaves()
            self._trace_levels[key] = lift(merkle_levels(leaves), key[1])
        return self._trace_levels[key]

    def _levels_tensor(self, leaf: int) -> list[list[bytes]]:
        if leaf not in self._tensor_levels:
            self._tensor_levels[leaf] = merkle_levels(self.trace.chunk_leaves(leaf))
        return self._tensor_levels[leaf]

    @staticmethod
    def _children(levels: list[list[bytes]], height: int, pos: int) -> list[bytes]:
        b = min(BITS, height)
        lvl = levels[height - b]
        return lvl[pos << b:(pos << b) + (1 << b)]

    def _last_event(self, name: str) -> dict:
        """The args of this game's latest `name` event (the revealed data moves carry)."""
        head = self.client.block_number()
        logs = self.client.events(self.game, name, max(0, head - 5000), head)
        mine = [e for e in logs if e["args"]["gameId"] == self.game_id]
        if not mine:
            raise RuntimeError(f"game {self.game_id}: no {name} event found")
        return mine[-1]["args"]

    def _last_reveal(self) -> list[bytes]:
        """D's children of the current round, from the ChildrenRevealed event."""
        return [bytes(c) for c in self._last_event("ChildrenRevealed")["children"]]

    def _chunk_revealed(self) -> bytes:
        return bytes(self._last_event("ChunkRevealed")["chunk"])

    # ---- moves ---------------------------------------------------------------------------

    def _key(self, what: str) -> str | None:
        """A journal key naming the game position the move answers; positions never repeat
        (heights shrink, phases only advance, each turn's deadline is new), so one key is one
        intended move."""
        if self.key_prefix is None:
            return None
        st = self.state()
        deadline = self.client.call(self.game.functions.pending(self.game_id))[5]
        return open_key(self.client.journal,
                        f"{self.key_prefix}:{what}:{int(st.phase)}:{st.turn}:{st.height}:"
                        f"{st.pos}:{st.leaf_index}:{st.chunk_index}:{deadline}")

    def _send(self, what: str, fn: Any) -> TxResult:
        res = self.client.transact(fn, what=f"game {self.game_id} {what}", key=self._key(what))
        self.moves.append((what, res))
        log.info("game %d: %s (gas %d)", self.game_id, what, res.gas_used)
        return res

    def step(self) -> str | None:
        """Make our move if it is our turn (or a resolution anyone may make); returns its name.

        Returns None when there is nothing for us to do right now.
        """
        st = self.state()
        if st.phase == Phase.RESOLVED:
            return None
        f = self.game.functions
        if st.phase in (Phase.TRACE_BISECT, Phase.TENSOR_BISECT):
            levels = (self._levels_trace() if st.phase == Phase.TRACE_BISECT
                      else self._levels_tensor(st.leaf_index))
            mine = self._children(levels, st.height, st.pos)
            if st.turn == D and self.side == D:
                self._send("reveal", f.reveal(self.game_id, mine))
                return "reveal"
            if st.turn == C and self.side == C:
                theirs = self._last_reveal()
                self._send("respond", f.respond(self.game_id, mine, theirs))
                return "respond"
            return None
        if st.phase == Phase.LEAF_OPEN and st.turn == self.side:
            op_hash, header, data_root = self.trace.opening(st.leaf_index)
            self._send("openLeaf", f.openLeaf(self.game_id, op_hash, header, data_root))
            return "openLeaf"
        if st.phase == Phase.CHUNK_REVEAL and self.side == D:
            chunk = self.trace.chunk(st.leaf_index, st.chunk_index)
            self._send("revealChunk", f.revealChunk(self.game_id, chunk))
            return "revealChunk"
        if st.phase == Phase.ELEMENT_PICK and self.side == C:
            theirs = self._chunk_revealed()
            mine = self.trace.chunk(st.leaf_index, st.chunk_index)
            header = self.trace.opening(st.leaf_index)[1]
            element = first_difference(theirs, mine, element_size(header))
            self._send("pickElement", f.pickElement(self.game_id, element, theirs))
            return "pickElement"
        if st.phase == Phase.PROOF:
            return self._prove()
        if st.phase == Phase.LINK_PICK and self.side == C:
            return self._pick_link(st)
        if st.phase == Phase.EXPAND and st.turn == self.side:
            return self._expand()
        if st.phase == Phase.LENGTH_PROOF:
            kind = self.client.call(f.pending(self.game_id))
            index = kind[3]
            levels = self._levels_trace()
            leaves = levels[0]
            proof = merkle_proof(leaves, index)
            self._send("proveLength", f.proveLength(self.game_id, leaves[index], proof))
            return "proveLength"
        return None

    def _expand(self) -> str:
        """§L10: reveal our full trace root, binding it at the compact leaf the dissection
        reached (in an output game: the disputed token's leaf, proven against our compact
        root)."""
        _root, _expanded, leaf, output_game = self.client.call(
            self.game.functions.compactInfo(self.game_id))
        token = None
        if output_game:
            token = int(self.client.call(self.game.functions.stepContext(self.game_id))[10])
        args = self.trace.expansion(int(leaf), token)
        self._send("expand", self.game.functions.expand(self.game_id, *args))
        return "expand"

    def _prove(self) -> str | None:
        """Phase.Proof. An Element claim on a DOT element with links (§L9) cannot be decided
        whole: until its chain is revealed, D reveals it and C waits; every other claim, and a
        picked link, is resolved."""
        f = self.game.functions
        kind = self.client.call(f.pending(self.game_id))[0]
        if kind == Claim.ELEMENT:
            ctx = self.client.call(f.stepContext(self.game_id))
            chain = self.trace.chain(int(ctx[7]), int(ctx[10]))
            if chain and self.client.call(f.chainInfo(self.game_id))[1] == 0:
                return self._reveal_chain(kind, ctx, chain) if self.side == D else None
        return self._resolve()

    def _reveal_chain(self, kind: int, ctx: Any, chain: list[int]) -> str:
        """§L9 step 1 (D): our chain, ending at our claimed element (the on-chain
        claimedBits: equal to our chain's end when honest; a faulty trace's output still
        has to be defended by a chain ending there). The element witness (no chunks: the
        verifier reads the chain length from the record and input headers) goes along."""
        accs = chain[:-1] + [int(ctx[11])]
        witness = self.trace.witness(kind, ctx)
        self._send("revealChain", self.game.functions.revealChain(self.game_id, accs, witness))
        return "revealChain"

    def _pick_link(self, st: GameState) -> str:
        """§L9 step 2 (C): name the first link where D's revealed chain differs from ours
        (our chain from the agreed inputs, ending at our own element). Its start, D's previous
        accumulator, is then the true one, so an honest C wins the link's one-step."""
        theirs = self._chain_revealed()
        ctx = self.client.call(self.game.functions.stepContext(self.game_id))
        leaf, element = int(ctx[7]), int(ctx[10])
        mine = self.trace.chain(leaf, element)
        if mine:
            mine[-1] = self._own_element(leaf, element)
        if len(mine) != len(theirs):  # the verifier derives the length: never on-chain
            log.warning("game %d: revealed chain has %d links, ours %d", self.game_id,
                        len(theirs), len(mine))
        link = next((j for j, (a, b) in enumerate(zip(theirs, mine, strict=False)) if a != b),
                    max(0, len(theirs) - 1))
        log.info("game %d: link %d of %d disputed (revealed %d, ours %s)", self.game_id, link,
                 len(theirs), theirs[link], mine[link] if link < len(mine) else None)
        self._send("pickLink", self.game.functions.pickLink(self.game_id, link, theirs))
        return "pickLink"

    def _own_element(self, leaf: int, element: int) -> int:
        """C1 bits of our own output element (the value our side claims for it)."""
        size = element_size(self.trace.opening(leaf)[1])
        per = CHUNK_BYTES // size
        chunk = self.trace.chunk(leaf, element // per)
        off = (element % per) * size
        return int.from_bytes(chunk[off:off + size], "little")

    def _chain_revealed(self) -> list[int]:
        """D's chain from the ChainRevealed event (§L9)."""
        return [int(a) for a in self._last_event("ChainRevealed")["accs"]]

    def _resolve(self) -> str | None:
        ctx = self.client.call(self.game.functions.stepContext(self.game_id))
        kind = self.client.call(self.game.functions.pending(self.game_id))[0]
        witness = self.trace.witness(kind, ctx)
        try:
            self._send("resolve", self.game.functions.resolve(self.game_id, witness))
        except TxReverted as e:
            log.warning("game %d: resolve reverted (%s)", self.game_id, e.error)
            return None
        return "resolve"

    def try_timeout(self) -> str | None:
        """Claim the game if the side to move has run out of time."""
        st = self.state()
        if st.phase == Phase.RESOLVED or st.turn == self.side:
            return None
        deadline = self.client.call(self.game.functions.pending(self.game_id))[5]
        if self.client.timestamp() <= deadline:
            return None
        self._send("claimTimeout", self.game.functions.claimTimeout(self.game_id))
        return "claimTimeout"


def open_key(journal: Any, key: str) -> str:
    """The journal key to use for an intent: `key`, or `key#n` past every recorded attempt
    that can never be mined any more (mined and reverted, or its nonce taken).

    Why: a key pins an intent to one signed tx so a restart never sends a second one; but
    once that tx is known dead (e.g. a move a reorg dropped whose re-broadcast then reverted)
    the intent must be free to be signed again, or the game is lost on the clock.
    """
    if journal is None:
        return key
    k, n = key, 1
    while (row := journal.tx_by_key(k)) is not None and row.status in ("failed", "dropped"):
        n += 1
        k = f"{key}#{n}"
    return k


def element_size(header: bytes) -> int:
    """Bytes per element from a C4 header's dtype code (commitments C1)."""
    sizes = {1: 4, 2: 4, 3: 8, 4: 1}
    return sizes[header[1]]


def first_difference(a: bytes, b: bytes, size: int) -> int:
    """Index of the first element where two chunks differ (the challenger's pick)."""
    n = min(len(a), len(b)) // size
    for i in range(n):
        if a[i * size:(i + 1) * size] != b[i * size:(i + 1) * size]:
            return i
    raise ValueError("chunks are equal: nothing to dispute")
