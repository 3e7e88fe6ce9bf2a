"""Reorg-aware event scanning: act only on blocks `confirmations` deep, and notice reorgs.

Why: a node that bonds money on an event that a reorg removes can lose the bond or miss a
deadline. The watcher scans (cursor, safe_head] where safe_head = head - confirmations and
records, in the node store, the hash of each block it stops at. When the cursor's block is no
longer on the chain (its hash changed, or the chain got shorter), it rewinds to the fork point:
the highest recorded block whose hash the chain still has (`Store.fork_point`), however deep
the reorg was, and rescans from the block after it. Nothing older than the fork point is read
again, and nothing newer is trusted. With no recorded block left on the chain it rescans from
its start block. Handlers must therefore be idempotent (they are keyed by (tx hash, log index)
in the node store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from node.chain.client import ChainClient

log = logging.getLogger("judge.watch")


class CursorStore(Protocol):
    """What the watcher needs of node.store.Store (which provides exactly this)."""

    def get_cursor(self, name: str) -> Any: ...  # node.store.Cursor or None

    def set_cursor(self, name: str, block: int, block_hash: bytes | None = None) -> None: ...

    def fork_point(self, name: str, chain_hash: Callable[[int], bytes | None]) -> int | None: ...

    def rewind_cursor(self, name: str, block: int) -> None: ...


def cursor_store(store: Any) -> CursorStore:
    """The store itself, or the node.store.Store behind an adapter that only forwards the
    cursor (`.store`), since a fork point needs the recorded block hashes."""
    for s in (store, getattr(store, "store", None)):
        if s is not None and all(hasattr(s, m) for m in ("get_cursor", "set_cursor",
                                                         "fork_point", "rewind_cursor")):
            return s
    raise TypeError(f"{type(store).__name__} cannot find a fork point; pass a node.store.Store")


@dataclass
class Subscription:
    contract: Any
    event: str
    handler: Callable[[Any], None]


class EventWatcher:
    def __init__(self, client: ChainClient, store: Any, name: str,
                 subscriptions: list[Subscription], start_block: int = 0,
                 max_range: int = 2000) -> None:
        self.client = client
        self.store = cursor_store(store)
        self.name = name
        self.subs = subscriptions
        self.start_block = start_block
        self.max_range = max_range

    def _block_hash(self, number: int) -> bytes | None:
        """The chain's hash of block `number` now; None when the chain has no such block."""
        if number < 0 or number > self.client.block_number():
            return None
        blk = self.client.retry("getBlock", lambda: self.client.w3.eth.get_block(number))
        return bytes(blk["hash"]) if blk is not None else None

    def _resume_from(self) -> int:
        """The last block already processed on the chain as it is now (DESIGN §7 reorgs)."""
        cur = self.store.get_cursor(self.name)
        if cur is None:
            return self.start_block - 1
        last = cur.block
        if cur.block_hash is None or last < self.start_block:
            return last  # nothing processed yet that a reorg could have changed
        if self._block_hash(last) == bytes(cur.block_hash):
            return last
        fork = self.store.fork_point(self.name, self._block_hash)
        new_last = self.start_block - 1 if fork is None else max(fork, self.start_block - 1)
        log.warning("reorg: block %d is no longer on the chain; the last recorded block still "
                    "on it is %s; rescanning from %d", last, fork, new_last + 1)
        self.store.rewind_cursor(self.name, new_last)
        return new_last

    def poll(self) -> int:
        """Process all new safe blocks once; returns how many events were handled."""
        safe = self.client.safe_block()
        last = self._resume_from()
        handled = 0
        while last < safe:
            to = min(safe, last + self.max_range)
            # the hash is read before the logs: if a reorg lands in between, the recorded hash
            # is the old chain's and the next poll rewinds (never the other way round)
            to_hash = self._block_hash(to)
            batch = []
            for sub in self.subs:
                for ev in self.client.events(sub.contract, sub.event, last + 1, to):
                    batch.append((ev["blockNumber"], ev["logIndex"], sub, ev))
            batch.sort(key=lambda x: (x[0], x[1]))
            for _, _, sub, ev in batch:
                sub.handler(ev)
                handled += 1
            last = to
            self.store.set_cursor(self.name, last, to_hash)
        return handled
