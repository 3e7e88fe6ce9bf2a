"""Gossip topics and their payloads (PROTOCOL.md §7).

Gossip carries hints (a job appeared, a receipt exists); the chain is the source of truth, so
payloads are small msgpack maps that receivers re-check on chain. Invalid payloads are
rejected by the topic validator and therefore never forwarded through the mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import ProtocolError
from .messages import BAD_REQUEST, TOO_LARGE

JOBS_TOPIC = "/judge/jobs/1"
RECEIPTS_TOPIC = "/judge/receipts/1"
DEFAULT_TOPICS = (JOBS_TOPIC, RECEIPTS_TOPIC)
MAX_GOSSIP_BYTES = 64 * 1024

PayloadCheck = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class GossipMessage:
    topic: str
    data: dict[str, Any]
    sender: str  # base58 peer id of the originator (signed by gossipsub's strict signing)
    raw: bytes


def encode_gossip(data: dict[str, Any]) -> bytes:
    """Pack and check a payload before it leaves, so we never publish what others reject."""
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ProtocolError(BAD_REQUEST, "gossip payload must be a map with string keys")
    raw = msgpack.packb(data, use_bin_type=True)
    if len(raw) > MAX_GOSSIP_BYTES:
        raise ProtocolError(TOO_LARGE, f"gossip payload of {len(raw)} bytes > {MAX_GOSSIP_BYTES}")
    return raw


def decode_gossip(raw: bytes) -> dict[str, Any]:
    """PROTOCOL.md §7: a msgpack map with string keys, at most MAX_GOSSIP_BYTES."""
    if len(raw) > MAX_GOSSIP_BYTES:
        raise ProtocolError(TOO_LARGE, f"gossip payload of {len(raw)} bytes > {MAX_GOSSIP_BYTES}")
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ProtocolError(BAD_REQUEST, f"gossip payload is not msgpack ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ProtocolError(BAD_REQUEST, "gossip payload must be a map with string keys")
    return data
