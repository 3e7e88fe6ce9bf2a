"""The trio side of a node: libp2p host, gossipsub and the trace protocol (PROTOCOL.md).

`AsyncP2PNode.run` owns every libp2p object; cancelling it tears all of them down (listener
closed, connections dropped). Synchronous code uses it through `bridge.P2PNode`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import multiaddr
import trio

from .client import request_trace
from .errors import P2PError, ProtocolError, TransportError
from .gossip import DEFAULT_TOPICS, GossipMessage, PayloadCheck, decode_gossip, encode_gossip
from .messages import PROTOCOL_ID, Request, Response
from .server import TraceServer
from .source import InMemoryTraceSource, TraceSource

log = logging.getLogger(__name__)

GOSSIP_PROTOCOLS = ("/meshsub/1.1.0", "/meshsub/1.0.0")

GossipHandler = Callable[[GossipMessage], None]


def make_key_pair(seed: bytes | None = None, key_path: str | None = None) -> Any:
    """A stable libp2p identity: from a 32-byte seed, or loaded/created at key_path.

    A node that restarts keeps its peer id, so the multiaddrs in others' bootstrap lists stay
    valid.
    """
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.identity_utils import create_identity_from_seed, load_identity, save_identity

    if seed is not None:
        return create_identity_from_seed(seed)
    if key_path is not None:
        try:
            return load_identity(key_path)
        except FileNotFoundError:
            pair = create_new_key_pair()
            save_identity(pair, key_path)
            return pair
    return create_new_key_pair()


class AsyncP2PNode:
    """One libp2p host with gossip on `topics` and `/judge/trace/1` served from `source`."""

    def __init__(
        self,
        *,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        bootstrap: Sequence[str] = (),
        source: TraceSource | None = None,
        topics: Iterable[str] = DEFAULT_TOPICS,
        key_seed: bytes | None = None,
        key_path: str | None = None,
        validators: dict[str, PayloadCheck] | None = None,
        server_timeout: float = 10.0,
        redial_interval: float = 2.0,
        heartbeat_interval: int = 1,
        gossip_rate_limit: float = 100.0,
        on_gossip: GossipHandler | None = None,
    ) -> None:
        self.listen_addr = f"/ip4/{listen_host}/tcp/{port}"
        self.bootstrap = list(bootstrap)
        self.topics = tuple(topics)
        self.validators = dict(validators or {})
        self.redial_interval = redial_interval
        self.on_gossip = on_gossip
        self.stats: Counter[str] = Counter()
        self._key_pair = make_key_pair(key_seed, key_path)
        self._heartbeat = heartbeat_interval
        self._rate_limit = gossip_rate_limit
        # A node without trace data still speaks the protocol: peers get `unknown_job`, a
        # clear answer, instead of a failed protocol negotiation.
        self._server = TraceServer(
            source if source is not None else InMemoryTraceSource(), timeout=server_timeout
        )
        self.host: Any = None
        self.pubsub: Any = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, report started, then serve until cancelled."""
        from libp2p import new_host
        from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
        from libp2p.custom_types import TProtocol
        from libp2p.pubsub.gossipsub import GossipSub
        from libp2p.pubsub.pubsub import Pubsub
        from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
        from libp2p.security.noise.transport import Transport as NoiseTransport
        from libp2p.tools.anyio_service import background_trio_service

        # Noise only: libp2p's default list also offers plaintext, which would let a peer
        # skip authentication of its peer id.
        noise = NoiseTransport(self._key_pair, noise_privkey=create_x25519().private_key)
        self.host = new_host(key_pair=self._key_pair, sec_opt={NOISE_PROTOCOL_ID: noise})
        router = GossipSub(
            [TProtocol(p) for p in GOSSIP_PROTOCOLS],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=self._heartbeat,
            # per peer and topic; libp2p's default of 10/s silently drops bursts of receipts
            max_messages_per_topic_per_second=self._rate_limit,
        )
        self.pubsub = Pubsub(self.host, router, strict_signing=True)
        self.host.set_stream_handler(TProtocol(PROTOCOL_ID), self._server.handle_stream)
        for topic in self.topics:
            self.pubsub.set_topic_validator(topic, self._validator_for(topic), False)
        try:
            async with (
                self.host.run([multiaddr.Multiaddr(self.listen_addr)]),
                background_trio_service(self.pubsub),
                background_trio_service(router),
                trio.open_nursery() as nursery,
            ):
                if not self.host.get_addrs():  # libp2p logs a failed listen and carries on
                    raise TransportError(f"cannot listen on {self.listen_addr} (port in use?)")
                await self.pubsub.wait_until_ready()
                for topic in self.topics:
                    sub = await self.pubsub.subscribe(topic)
                    nursery.start_soon(self._pump, topic, sub)
                for addr in self.bootstrap:
                    await self._try_connect(addr)
                if self.bootstrap:
                    nursery.start_soon(self._redial_loop)
                task_status.started()
                await trio.sleep_forever()
        finally:
            # Pubsub's seen-message cache sweeps in its own thread and nothing in libp2p
            # stops it; without this every closed node leaks a thread.
            self.pubsub.seen_messages.stop()

    @property
    def peer_id(self) -> str:
        return self.host.get_id().to_base58()

    def addrs(self) -> list[str]:
        """Full multiaddrs (with /p2p/<id>) others can put in their bootstrap list."""
        return [str(a) for a in self.host.get_addrs()]

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_connected_peers()]

    def topic_peers(self, topic: str) -> list[str]:
        return [p.to_base58() for p in self.pubsub.peer_topics.get(topic, ())]

    @property
    def server_stats(self) -> Counter[str]:
        return self._server.stats

    # -- peers ---------------------------------------------------------------------------------

    async def connect(self, addr: str) -> str:
        """Dial a full multiaddr; returns the peer id."""
        from libp2p.peer.peerinfo import info_from_p2p_addr

        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise ProtocolError("bad_request", f"bad multiaddr {addr!r}: {exc}") from None
        try:
            await self.host.connect(info)
        except Exception as exc:
            raise TransportError(f"cannot connect to {addr}: {exc!r}") from None
        return info.peer_id.to_base58()

    async def disconnect(self, peer_id: str) -> None:
        from libp2p.peer.id import ID

        await self.host.disconnect(ID.from_base58(peer_id))

    async def _try_connect(self, addr: str) -> None:
        try:
            with trio.fail_after(5):
                await self.connect(addr)
            self.stats["dial_ok"] += 1
        except (P2PError, trio.TooSlowError) as exc:
            self.stats["dial_failed"] += 1
            log.info("bootstrap peer %s unreachable: %s", addr, exc)

    async def _redial_loop(self) -> None:
        """Keep bootstrap peers connected: a dropped peer is redialled every redial_interval."""
        while True:
            await trio.sleep(self.redial_interval)
            connected = set(self.connected_peers())
            for addr in self.bootstrap:
                peer = multiaddr.Multiaddr(addr).get_peer_id()
                if peer not in connected:
                    await self._try_connect(addr)

    # -- gossip --------------------------------------------------------------------------------

    def _validator_for(self, topic: str) -> Callable[[Any, Any], bool]:
        check = self.validators.get(topic)

        def validate(_forwarder: Any, msg: Any) -> bool:
            try:
                data = decode_gossip(msg.data)
                ok = check(data) if check is not None else True
            except Exception:
                ok = False
            if not ok:
                self.stats["gossip_rejected"] += 1
            return bool(ok)

        return validate

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        if topic not in self.topics:
            raise ProtocolError("bad_request", f"not joined to topic {topic!r}")
        raw = encode_gossip(data)
        check = self.validators.get(topic)
        if check is not None and not check(data):
            raise ProtocolError("bad_request", f"payload fails the {topic} validator")
        await self.pubsub.publish(topic, raw)
        self.stats["gossip_published"] += 1

    async def _pump(self, topic: str, sub: Any) -> None:
        """Hand validated messages from other peers to on_gossip (the validator ran already)."""
        from libp2p.peer.id import ID

        me = self.host.get_id()
        async for msg in sub:
            sender = ID(msg.from_id)
            if sender == me:
                continue
            try:
                data = decode_gossip(msg.data)
            except ProtocolError:
                self.stats["gossip_rejected"] += 1
                continue
            self.stats["gossip_received"] += 1
            if self.on_gossip is not None:
                try:
                    self.on_gossip(GossipMessage(topic, data, sender.to_base58(), msg.data))
                except Exception:
                    log.exception("gossip handler failed")

    # -- trace requests ------------------------------------------------------------------------

    async def request(self, peer_id: str, request: Request, timeout: float) -> Response:
        from libp2p.peer.id import ID

        try:
            peer = ID.from_base58(peer_id)
        except Exception as exc:
            raise ProtocolError("bad_request", f"bad peer id {peer_id!r}: {exc}") from None
        return await request_trace(self.host, peer, request, timeout)
