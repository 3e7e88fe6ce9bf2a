"""Real libp2p nodes on localhost: gossip, `/judge/trace/1`, garbage, timeouts, disconnects
(node/p2p PROTOCOL.md). Every wait is bounded; nothing sleeps a fixed time hoping for luck."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import msgpack
import numpy as np
import pytest

from node.p2p import (
    JOBS_TOPIC,
    RECEIPTS_TOPIC,
    InMemoryTraceSource,
    P2PNode,
    PeerTimeout,
    ProtocolError,
    RemoteError,
    TransportError,
    VerificationError,
)
from node.p2p.framing import read_frame
from node.p2p.messages import MAX_RESPONSE_BYTES, PROTOCOL_ID
from node.p2p.source import TensorBlob
from repops.commit import keccak256, tensor_root_np, trace_root

N_OPS = 40
JOB = 7


def wait_until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or pred}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlowSource(InMemoryTraceSource):
    """Answers job 99 only after `delay` seconds: a peer that is up but slow."""

    delay = 3.0

    def tensor(self, job: int, op: int) -> TensorBlob | None:
        if job == 99:
            time.sleep(self.delay)
        return super().tensor(job, op)


@pytest.fixture(scope="module")
def trace() -> dict:
    rng = np.random.default_rng(3)
    outs = [rng.standard_normal((2, 150 * (i % 7) + 1), dtype=np.float32) for i in range(N_OPS)]
    outs[10] = rng.standard_normal((5000,), dtype=np.float32)  # 20 chunks
    ops = [keccak256(b"op%d" % i) for i in range(N_OPS)]
    roots = [tensor_root_np(a) for a in outs]
    return {"outs": outs, "ops": ops, "roots": roots, "root": trace_root(ops, roots)}


@pytest.fixture(scope="module")
def net(trace: dict):
    """a: an executor serving trace data; b bootstraps to a; c bootstraps only to b."""
    source = SlowSource()
    source.add_job(JOB, trace["ops"], trace["outs"])
    source.add_job(99, trace["ops"][:2], trace["outs"][:2])
    a = P2PNode(source=source, server_timeout=1.0).start()
    b = P2PNode(bootstrap=a.addrs, request_timeout=5.0).start()
    c = P2PNode(bootstrap=b.addrs).start()
    try:
        wait_until(lambda: a.peer_id in b.connected_peers(), what="b connected to a")
        wait_until(lambda: b.peer_id in c.connected_peers(), what="c connected to b")
        yield {"a": a, "b": b, "c": c, "source": source}
    finally:
        for node in (c, b, a):
            node.close()


def test_gossip_reaches_direct_and_relayed_peers(net: dict) -> None:
    a, b, c = net["a"], net["b"], net["c"]
    sub_b, sub_c = b.subscribe(JOBS_TOPIC), c.subscribe(JOBS_TOPIC)
    got_b, got_c = [], []
    try:
        wait_until(lambda: b.peer_id in a.topic_peers(JOBS_TOPIC), what="a sees b on topic")
        deadline = time.monotonic() + 20
        n = 0
        while (not got_b or not got_c) and time.monotonic() < deadline:
            a.publish(JOBS_TOPIC, {"job": n, "block": 12})
            n += 1
            for sub, got in ((sub_b, got_b), (sub_c, got_c)):
                try:
                    got.append(sub.get(timeout=0.5))
                except Exception:
                    pass
        assert got_b and got_c, "gossip from a did not reach b and c (c only via b)"
        msg = got_c[0]
        assert msg.topic == JOBS_TOPIC and msg.sender == a.peer_id
        assert msg.data["block"] == 12 and isinstance(msg.data["job"], int)
    finally:
        sub_b.close()
        sub_c.close()


def test_gossip_callback_and_receipts_topic(net: dict) -> None:
    a, b = net["a"], net["b"]
    seen: list = []
    event = threading.Event()

    def on_receipt(msg) -> None:  # noqa: ANN001
        seen.append(msg)
        event.set()

    sub = a.subscribe(RECEIPTS_TOPIC, callback=on_receipt)
    try:
        wait_until(lambda: a.peer_id in b.topic_peers(RECEIPTS_TOPIC), what="b sees a on topic")
        for i in range(20):
            b.publish(RECEIPTS_TOPIC, {"job": JOB, "receipt": b"\x01" * 100, "n": i})
            if event.wait(0.5):
                break
        assert seen and seen[0].data["receipt"] == b"\x01" * 100
        assert seen[0].sender == b.peer_id
    finally:
        sub.close()


def test_publish_refuses_bad_payloads(net: dict) -> None:
    b = net["b"]
    with pytest.raises(ProtocolError):
        b.publish(JOBS_TOPIC, {"blob": b"x" * 70_000})
    with pytest.raises(ProtocolError):
        b.publish("/judge/other/1", {"job": 1})
    with pytest.raises(ValueError):
        b.subscribe("/judge/other/1")


def test_trace_requests_verify_end_to_end(net: dict, trace: dict) -> None:
    a, c = net["a"], net["c"]
    # c is not connected to a: the request dials a through the address it learnt.
    c.connect(a.addrs[0])
    resp = c.op_roots(a.peer_id, JOB, 0, N_OPS, trace_root=trace["root"], trace_length=N_OPS)
    assert list(resp.output_roots) == trace["roots"]
    resp = c.op_roots(a.peer_id, JOB, 33, 100, trace_root=trace["root"], trace_length=N_OPS)
    assert len(resp.op_hashes) == N_OPS - 33
    for level in range(7):
        c.trace_nodes(a.peer_id, JOB, level, 0, 64, trace_root=trace["root"], trace_length=N_OPS)
    for op in (0, 10, N_OPS - 1):
        got = c.fetch_tensor(a.peer_id, JOB, op, trace["roots"][op])
        assert got.dtype == trace["outs"][op].dtype and np.array_equal(got, trace["outs"][op])
    nodes = c.tensor_nodes(a.peer_id, JOB, 10, 2, 1, 3, tensor_root=trace["roots"][10])
    assert len(nodes.nodes) == 3
    with pytest.raises(VerificationError):  # op 11's data checked against op 10's root
        c.tensor_chunks(a.peer_id, JOB, 11, 0, 4, tensor_root=trace["roots"][10])
    with pytest.raises(RemoteError) as err:
        c.op_roots(a.peer_id, 12345, 0, 1)
    assert err.value.code == "unknown_job"
    with pytest.raises(RemoteError) as err:
        c.tensor_chunks(a.peer_id, JOB, N_OPS, 0, 1)
    assert err.value.code == "out_of_range"


def _raw(node: P2PNode, peer_id: str, payload: bytes, *, hold: float = 0.0) -> bytes | None:
    """Send raw bytes on a /judge/trace/1 stream; the response frame, or None if reset."""
    import trio
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    async def go() -> bytes | None:
        stream = await node._node.host.new_stream(ID.from_base58(peer_id), [TProtocol(PROTOCOL_ID)])
        try:
            if payload:
                await stream.write(payload)
            if hold:
                await trio.sleep(hold)
            await stream.close_write()
            with trio.fail_after(5):
                return await read_frame(stream, MAX_RESPONSE_BYTES)
        except Exception:
            return None
        finally:
            try:
                await stream.reset()
            except Exception:
                pass

    return node._call(go)


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    "payload, code",
    [
        (_frame(b"\xc1\xc1\xc1"), "bad_request"),
        (_frame(msgpack.packb(["op_roots", 1])), "bad_request"),
        (_frame(msgpack.packb({"kind": "op_roots", "job": 1, "from": -4, "count": 1})),
         "bad_request"),
        (_frame(msgpack.packb({"kind": "steal_keys"})), "bad_request"),
        (_frame(msgpack.packb({"kind": "tensor_chunks", "job": JOB, "op": 0, "from": 0,
                               "count": 10**5})), "too_large"),
        ((2**31).to_bytes(4, "big") + b"x" * 10, "too_large"),
    ],
)
def test_garbage_gets_a_clear_error(net: dict, payload: bytes, code: str) -> None:
    a, b = net["a"], net["b"]
    raw = _raw(b, a.peer_id, payload)
    assert raw is not None
    reply = msgpack.unpackb(raw)
    assert reply["ok"] is False and reply["error"] == code and reply["message"]


def test_broken_streams_do_not_hurt_the_server(net: dict, trace: dict) -> None:
    a, b = net["a"], net["b"]
    assert _raw(b, a.peer_id, (100).to_bytes(4, "big") + b"short") is None  # EOF mid-frame
    assert _raw(b, a.peer_id, b"\x00\x00") is None  # EOF inside the header
    t0 = time.monotonic()
    assert _raw(b, a.peer_id, b"", hold=1.6) is None  # silent past the 1 s server timeout
    assert time.monotonic() - t0 < 6
    stats = a.stats()
    assert stats["trace_bad_frame"] >= 2 and stats["trace_timeout"] >= 1
    # still serving everyone
    resp = b.op_roots(a.peer_id, JOB, 5, 5, trace_root=trace["root"], trace_length=N_OPS)
    assert len(resp.op_hashes) == 5


def test_slow_peer_times_out(net: dict) -> None:
    a, b = net["a"], net["b"]
    t0 = time.monotonic()
    with pytest.raises(PeerTimeout):
        b.request(a.peer_id, __import__("node.p2p").p2p.TensorChunksRequest(99, 0, 0, 1),
                  timeout=0.5)
    assert time.monotonic() - t0 < 2.5


def test_garbage_gossip_is_dropped_not_delivered(net: dict) -> None:
    a = net["a"]
    rogue = P2PNode(bootstrap=a.addrs).start()
    sub = a.subscribe(JOBS_TOPIC)
    try:
        wait_until(lambda: rogue.peer_id in a.topic_peers(JOBS_TOPIC), what="a sees rogue")
        before = a.stats().get("gossip_rejected", 0)

        async def spam() -> None:  # bypass the rogue's own outbound checks
            rogue._node.pubsub.remove_topic_validator(JOBS_TOPIC)
            await rogue._node.pubsub.publish(JOBS_TOPIC, b"\xc1 not msgpack")
            await rogue._node.pubsub.publish(JOBS_TOPIC, msgpack.packb([1, 2, 3]))

        for _ in range(40):
            rogue._call(spam)
            if a.stats().get("gossip_rejected", 0) >= before + 2:
                break
            time.sleep(0.25)
        assert a.stats()["gossip_rejected"] >= before + 2
        with pytest.raises(Exception):  # noqa: B017 - queue.Empty: nothing was delivered
            sub.get(timeout=0.3)
    finally:
        sub.close()
        rogue.close()


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if not t.name.startswith("Trio thread")}


def test_disconnect_redial_and_clean_close() -> None:
    threads_before = _threads()
    port = free_port()
    seed = keccak256(b"stable identity")
    x = P2PNode(port=port, key_seed=seed).start()
    x_addr, x_id = x.addrs[0], x.peer_id
    assert f"/tcp/{port}/" in x_addr
    y = P2PNode(bootstrap=[x_addr], redial_interval=0.3, request_timeout=3.0).start()
    try:
        wait_until(lambda: x_id in y.connected_peers(), what="y connected to x")
        x.close()
        wait_until(lambda: x_id not in y.connected_peers(), what="y notices x is gone")
        with pytest.raises((TransportError, PeerTimeout)):
            y.op_roots(x_id, JOB, 0, 1)
        with socket.socket() as s:  # the closed node released its port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        x = P2PNode(port=port, key_seed=seed).start()  # same identity, same address
        assert x.peer_id == x_id
        wait_until(lambda: x_id in y.connected_peers(), what="y redials x")
        with pytest.raises(RemoteError):  # x serves nothing: a clear refusal, not a hang
            y.op_roots(x_id, JOB, 0, 1)
    finally:
        y.close()
        x.close()
    wait_until(lambda: _threads() <= threads_before, timeout=5, what="threads to end")


def test_closed_node_refuses_calls() -> None:
    node = P2PNode().start()
    node.close()
    node.close()
    from node.p2p import NodeClosed

    with pytest.raises(NodeClosed):
        node.publish(JOBS_TOPIC, {"job": 1})


def test_port_in_use_fails_cleanly() -> None:
    from node.p2p import P2PError

    threads_before = _threads()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(P2PError, match="cannot listen"):
            P2PNode(port=s.getsockname()[1]).start()
    wait_until(lambda: _threads() <= threads_before, timeout=5, what="threads to end")
