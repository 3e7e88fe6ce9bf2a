"""Reorg-aware event scanning: act only on blocks `confirmations` deep, and notice reorgs.

Why: a node that bonds money on an event that a reorg removes can lose the bond or miss a
deadline. The watcher scans (cursor, safe_head] where safe_head = head - confirmations, and
remembers the hash of the last block it processed; if that hash changes (a reorg deeper than
the configured depth), it rewinds `rewind` blocks and rescans. Handlers must therefore be
idempotent (they are keyed by (tx hash, log index) in the node store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from node.chain.client import ChainClient

log = logging.getLogger("judge.watch")


class CursorStore(Protocol):
    def get_cursor(self, name: str) -> tuple[int, str] | None: ...

    def set_cursor(self, name: str, block: int, block_hash: str) -> None: ...


@dataclass
class Subscription:
    contract: Any
    event: str
    handler: Callable[[Any], None]


class EventWatcher:
    def __init__(self, client: ChainClient, store: CursorStore, name: str,
                 subscriptions: list[Subscription], start_block: int = 0,
                 max_range: int = 2000, rewind: int = 64) -> None:
        self.client = client
        self.store = store
        self.name = name
        self.subs = subscriptions
        self.start_block = start_block
        self.max_range = max_range
        self.rewind = rewind

    def _block_hash(self, number: int) -> str:
        blk = self.client.retry("getBlock", lambda: self.client.w3.eth.get_block(number))
        return "0x" + bytes(blk["hash"]).hex()

    def poll(self) -> int:
        """Process all new safe blocks once; returns how many events were handled."""
        safe = self.client.safe_block()
        cur = self.store.get_cursor(self.name)
        if cur is None:
            last = self.start_block - 1
        else:
            last, last_hash = cur
            if last >= 0 and last <= self.client.block_number() and \
                    self._block_hash(last) != last_hash:
                new_last = max(self.start_block - 1, last - self.rewind)
                log.warning("reorg detected at block %d; rescanning from %d", last, new_last + 1)
                last = new_last
            elif last > self.client.block_number():
                last = max(self.start_block - 1, self.client.block_number() - self.rewind)
        handled = 0
        while last < safe:
            to = min(safe, last + self.max_range)
            batch = []
            for sub in self.subs:
                for ev in self.client.events(sub.contract, sub.event, last + 1, to):
                    batch.append((ev["blockNumber"], ev["logIndex"], sub, ev))
            batch.sort(key=lambda x: (x[0], x[1]))
            for _, _, sub, ev in batch:
                sub.handler(ev)
                handled += 1
            last = to
            self.store.set_cursor(self.name, last, self._block_hash(last))
        return handled
