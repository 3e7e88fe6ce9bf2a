"""`P2PNode`: the thread-safe, synchronous face of the p2p layer for the daemons.

The executor and challenger are plain synchronous loops (web3.py polling, sqlite); libp2p is
trio. The bridge runs the trio host in one background thread and forwards calls with
`trio.from_thread.run`; gossip is fanned out to per-subscription queues, drained by the
caller (`Subscription.get` / iteration) or by a callback thread. `close()` cancels the host
(listener and connections closed) and joins every thread it started.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import trio

from repops.commit import CHUNK_BYTES

from .errors import NodeClosed, P2PError
from .gossip import DEFAULT_TOPICS, GossipMessage, PayloadCheck
from .host import AsyncP2PNode
from .messages import (
    MAX_CHUNKS,
    OpRootsRequest,
    OpRootsResponse,
    Request,
    Response,
    TensorChunksRequest,
    TensorChunksResponse,
    TensorNodeRequest,
    TensorNodeResponse,
    TraceNodeRequest,
    TraceNodeResponse,
)
from .source import TraceSource
from .verify import (
    VerificationError,
    verify_op_roots,
    verify_tensor_chunks,
    verify_tensor_nodes,
    verify_trace_nodes,
)

log = logging.getLogger(__name__)


class Subscription:
    """Gossip messages of one topic, in arrival order; bounded (oldest dropped when full)."""

    def __init__(self, node: P2PNode, topic: str, maxsize: int) -> None:
        self.topic = topic
        self.dropped = 0
        self._node = node
        self._queue: queue.Queue[GossipMessage | None] = queue.Queue(maxsize)
        self._closed = False
        self._thread: threading.Thread | None = None

    def _offer(self, msg: GossipMessage) -> None:
        while True:
            try:
                self._queue.put_nowait(msg)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> GossipMessage:
        """Next message; raises queue.Empty after `timeout` seconds, NodeClosed once closed."""
        if self._closed:
            raise NodeClosed("subscription closed")
        msg = self._queue.get(timeout=timeout)
        if msg is None:
            raise NodeClosed("subscription closed")
        return msg

    def __iter__(self) -> Iterator[GossipMessage]:
        while True:
            try:
                yield self.get()
            except NodeClosed:
                return

    def _run_callback(self, callback: Callable[[GossipMessage], None]) -> None:
        for msg in self:
            try:
                callback(msg)
            except Exception:
                log.exception("gossip callback for %s failed", self.topic)

    def close(self) -> None:
        if self._closed:
            return
        self._node._unsubscribe(self)
        self._closed = True
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            self._queue.get_nowait()
            self._queue.put_nowait(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


class P2PNode:
    """A libp2p node for synchronous code. Use as a context manager or call start()/close()."""

    def __init__(
        self,
        *,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        bootstrap: Sequence[str] = (),
        source: TraceSource | None = None,
        topics: Sequence[str] = DEFAULT_TOPICS,
        key_seed: bytes | None = None,
        key_path: str | None = None,
        validators: dict[str, PayloadCheck] | None = None,
        request_timeout: float = 10.0,
        server_timeout: float = 10.0,
        redial_interval: float = 2.0,
        gossip_rate_limit: float = 100.0,
    ) -> None:
        self.request_timeout = request_timeout
        self._subs: dict[str, list[Subscription]] = {}
        self._subs_lock = threading.Lock()
        self._node = AsyncP2PNode(
            listen_host=listen_host,
            port=port,
            bootstrap=bootstrap,
            source=source,
            topics=topics,
            key_seed=key_seed,
            key_path=key_path,
            validators=validators,
            server_timeout=server_timeout,
            redial_interval=redial_interval,
            gossip_rate_limit=gossip_rate_limit,
            on_gossip=self._fan_out,
        )
        self._thread: threading.Thread | None = None
        self._token: Any = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> P2PNode:
        if self._thread is not None:
            raise RuntimeError("P2PNode already started")
        self._thread = threading.Thread(target=self._thread_main, name="p2p-trio", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.close()
            raise P2PError(f"p2p node failed to start: {_root_cause(self._error)}")
        return self

    def _thread_main(self) -> None:
        try:
            trio.run(self._trio_main)
        except BaseException as exc:  # reported to start() or logged; the thread must end
            self._error = exc
            if self._ready.is_set():
                log.exception("p2p node stopped with an error")
        finally:
            self._ready.set()

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._node.run)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def close(self, timeout: float = 15.0) -> None:
        """Stop the host and join every thread this node started; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with self._subs_lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub.close()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
            thread.join(timeout)
            if thread.is_alive():
                log.warning("p2p thread did not stop within %ss", timeout)

    def __enter__(self) -> P2PNode:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run an async function on the trio thread and wait for its result."""
        if self._closed or self._token is None or self._error is not None:
            raise NodeClosed("p2p node is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking P2PNode call from the p2p thread (use the async node)")
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise NodeClosed("p2p node stopped") from None

    def _call_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed or self._token is None:
            raise NodeClosed("p2p node is not running")
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise NodeClosed("p2p node stopped") from None

    # -- identity and peers --------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self._call_sync(lambda: self._node.peer_id)

    @property
    def addrs(self) -> list[str]:
        """Full multiaddrs (with /p2p/<peer id>) for other nodes' bootstrap lists."""
        return self._call_sync(self._node.addrs)

    def connect(self, addr: str) -> str:
        return self._call(self._node.connect, addr)

    def disconnect(self, peer_id: str) -> None:
        self._call(self._node.disconnect, peer_id)

    def connected_peers(self) -> list[str]:
        return self._call_sync(self._node.connected_peers)

    def topic_peers(self, topic: str) -> list[str]:
        """Peers known to be subscribed to `topic` (gossip reaches them)."""
        return self._call_sync(self._node.topic_peers, topic)

    def stats(self) -> dict[str, int]:
        """Counters for metrics: gossip published/received/rejected, trace requests by kind."""
        def snapshot() -> dict[str, int]:
            out = dict(self._node.stats)
            out.update({f"trace_{k}": v for k, v in self._node.server_stats.items()})
            return out

        return self._call_sync(snapshot)

    # -- gossip --------------------------------------------------------------------------------

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        self._call(self._node.publish, topic, data)

    def subscribe(
        self,
        topic: str,
        callback: Callable[[GossipMessage], None] | None = None,
        maxsize: int = 1024,
    ) -> Subscription:
        """Messages other peers publish on `topic` from now on (the node joined at start)."""
        if topic not in self._node.topics:
            raise ValueError(f"topic {topic!r} not in this node's topics {self._node.topics}")
        sub = Subscription(self, topic, maxsize)
        with self._subs_lock:
            self._subs.setdefault(topic, []).append(sub)
        if callback is not None:
            sub._thread = threading.Thread(
                target=sub._run_callback, args=(callback,), name=f"gossip {topic}", daemon=True
            )
            sub._thread.start()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._subs_lock:
            group = self._subs.get(sub.topic, [])
            if sub in group:
                group.remove(sub)

    def _fan_out(self, msg: GossipMessage) -> None:
        with self._subs_lock:
            targets = list(self._subs.get(msg.topic, ()))
        for sub in targets:
            sub._offer(msg)

    # -- trace requests ------------------------------------------------------------------------

    def request(self, peer_id: str, request: Request, timeout: float | None = None) -> Response:
        """Raw validated (but not root-checked) response; raises P2PError subclasses."""
        return self._call(self._node.request, peer_id, request, timeout or self.request_timeout)

    def op_roots(
        self,
        peer_id: str,
        job: int,
        start: int,
        count: int,
        *,
        trace_root: bytes | None = None,
        trace_length: int | None = None,
    ) -> OpRootsResponse:
        """Trace leaves from a peer; checked against trace_root when given (PROTOCOL.md §5)."""
        resp = self.request(peer_id, OpRootsRequest(job, start, count))
        assert isinstance(resp, OpRootsResponse)
        if trace_root is not None:
            verify_op_roots(resp, trace_root, _need(trace_length, "trace_length"))
        return resp

    def trace_nodes(
        self,
        peer_id: str,
        job: int,
        level: int,
        start: int,
        count: int,
        *,
        trace_root: bytes | None = None,
        trace_length: int | None = None,
    ) -> TraceNodeResponse:
        resp = self.request(peer_id, TraceNodeRequest(job, level, start, count))
        assert isinstance(resp, TraceNodeResponse)
        if trace_root is not None:
            verify_trace_nodes(resp, trace_root, _need(trace_length, "trace_length"))
        return resp

    def tensor_chunks(
        self,
        peer_id: str,
        job: int,
        op: int,
        start: int,
        count: int,
        *,
        tensor_root: bytes | None = None,
    ) -> TensorChunksResponse:
        resp = self.request(peer_id, TensorChunksRequest(job, op, start, count))
        assert isinstance(resp, TensorChunksResponse)
        if tensor_root is not None:
            verify_tensor_chunks(resp, tensor_root)
        return resp

    def tensor_nodes(
        self,
        peer_id: str,
        job: int,
        op: int,
        level: int,
        start: int,
        count: int,
        *,
        tensor_root: bytes | None = None,
    ) -> TensorNodeResponse:
        resp = self.request(peer_id, TensorNodeRequest(job, op, level, start, count))
        assert isinstance(resp, TensorNodeResponse)
        if tensor_root is not None:
            verify_tensor_nodes(resp, tensor_root)
        return resp

    def fetch_tensor(self, peer_id: str, job: int, op: int, tensor_root: bytes) -> np.ndarray:
        """A whole op output tensor, every batch checked against tensor_root (commitments C4)."""
        first = self.tensor_chunks(peer_id, job, op, 0, MAX_CHUNKS, tensor_root=tensor_root)
        n_bytes = np.dtype(first.dtype).itemsize * int(np.prod(first.shape, dtype=np.int64))
        n_chunks = max(1, -(-n_bytes // CHUNK_BYTES))
        parts = list(first.chunks)
        while len(parts) < n_chunks:
            more = self.tensor_chunks(
                peer_id, job, op, len(parts), MAX_CHUNKS, tensor_root=tensor_root
            )
            if (more.dtype, more.shape) != (first.dtype, first.shape):
                raise VerificationError("peer changed the tensor's dtype/shape between batches")
            parts.extend(more.chunks)
        data = b"".join(parts)
        dtype = np.dtype(first.dtype).newbyteorder("<")
        return np.frombuffer(data, dtype=dtype).astype(first.dtype).reshape(first.shape)


def _root_cause(exc: BaseException | None) -> str:
    """Trio nests errors in ExceptionGroups; the innermost one says what went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if exc is not None else "timed out"


def _need(value: int | None, name: str) -> int:
    if value is None:
        raise ValueError(f"{name} is required to verify against a root")
    return value
