"""Range proofs, response verification and message validation (node/p2p PROTOCOL.md §2-§5),
without a network: the parts every byte from a peer goes through."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node.p2p.errors import ProtocolError, RemoteError
from node.p2p.framing import FrameError, FrameTooLarge, encode_frame, read_frame
from node.p2p.messages import (
    MAX_CHUNKS,
    OpRootsRequest,
    TensorChunksRequest,
    TensorNodeRequest,
    TraceNodeRequest,
    encode_error,
    encode_request,
    parse_request,
    parse_response,
)
from node.p2p.server import TraceServer
from node.p2p.source import InMemoryTraceSource, TensorBlob
from node.p2p.verify import (
    VerificationError,
    depth_of,
    range_proof,
    real_nodes_at,
    root_from_range,
    verify_op_roots,
    verify_tensor_chunks,
    verify_tensor_nodes,
    verify_trace_nodes,
)
from repops.commit import keccak256, merkle_levels, tensor_root_np, trace_root


def _leaves(n: int) -> list[bytes]:
    return [keccak256(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_range_proof_every_range_every_level(n: int) -> None:
    levels = merkle_levels(_leaves(n))
    root = levels[-1][0]
    depth = depth_of(n)
    for level in range(depth + 1):
        width = len(levels[level])
        for lo in range(width):
            for hi in range(lo + 1, width + 1):
                proof = range_proof(levels, level, lo, hi)
                assert root_from_range(levels[level][lo:hi], level, lo, depth, proof) == root


def test_range_proof_detects_tampering() -> None:
    levels = merkle_levels(_leaves(11))
    root, depth = levels[-1][0], depth_of(11)
    proof = range_proof(levels, 0, 3, 7)
    nodes = levels[0][3:7]
    bad = list(nodes)
    bad[2] = keccak256(b"x")
    assert root_from_range(bad, 0, 3, depth, proof) != root
    try:  # the same nodes claimed at another position
        assert root_from_range(nodes, 0, 4, depth, proof) != root
    except VerificationError:
        pass
    with pytest.raises(VerificationError, match="too short"):
        root_from_range(nodes, 0, 3, depth, proof[:-1])
    with pytest.raises(VerificationError, match="too long"):
        root_from_range(nodes, 0, 3, depth, proof + [root])


def _job(n_ops: int = 21, seed: int = 1) -> tuple[InMemoryTraceSource, list, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    outs = [rng.standard_normal((3, 100 * (i % 4) + 1), dtype=np.float32) for i in range(n_ops)]
    outs[min(5, n_ops - 1)] = np.arange(7, dtype=np.int64)
    ops = [keccak256(b"op%d" % i) for i in range(n_ops)]
    src = InMemoryTraceSource()
    src.add_job(9, ops, outs)
    return src, ops, outs


def _roundtrip(server: TraceServer, request) -> object:  # noqa: ANN001
    """What a client gets: server encoding + client-side validation."""
    return parse_response(server.answer(request), request)


def test_server_answers_verify_against_commitments() -> None:
    src, ops, outs = _job()
    server = TraceServer(src)
    roots = [tensor_root_np(a) for a in outs]
    root, n = trace_root(ops, roots), len(ops)
    for lo in range(n):
        resp = _roundtrip(server, OpRootsRequest(9, lo, 5))
        verify_op_roots(resp, root, n)
        assert list(resp.output_roots) == roots[lo : lo + 5]
    for level in range(depth_of(n) + 1):
        resp = _roundtrip(server, TraceNodeRequest(9, level, 0, 4096))
        assert len(resp.nodes) == real_nodes_at(n, level)
        verify_trace_nodes(resp, root, n)
    for op in (0, 3, 5):
        resp = _roundtrip(server, TensorChunksRequest(9, op, 0, MAX_CHUNKS))
        verify_tensor_chunks(resp, roots[op])
        assert b"".join(resp.chunks) == outs[op].tobytes()
        level = min(1, depth_of(len(resp.chunks)))
        resp = _roundtrip(server, TensorNodeRequest(9, op, level, 0, 10))
        verify_tensor_nodes(resp, roots[op])


def test_verification_rejects_lies() -> None:
    src, ops, outs = _job()
    roots = [tensor_root_np(a) for a in outs]
    root, n = trace_root(ops, roots), len(ops)
    server = TraceServer(src)
    good = _roundtrip(server, OpRootsRequest(9, 4, 6))
    with pytest.raises(VerificationError, match="chain says"):
        verify_op_roots(good, root, n + 1)  # the chain's length wins
    lying = type(good)(good.length, good.start, good.op_hashes,
                       (keccak256(b"lie"),) + good.output_roots[1:], good.proof)
    with pytest.raises(VerificationError):
        verify_op_roots(lying, root, n)
    # a lying executor serving a tensor that is not the one it committed
    fake = outs[3].copy()
    fake[1, 2] = np.float32(1.5)
    src.put_tensor(9, 3, TensorBlob.from_array(fake))
    resp = _roundtrip(server, TensorChunksRequest(9, 3, 0, MAX_CHUNKS))
    with pytest.raises(VerificationError):
        verify_tensor_chunks(resp, roots[3])
    # a truncated last chunk
    resp = _roundtrip(server, TensorChunksRequest(9, 1, 0, MAX_CHUNKS))
    short = type(resp)(resp.dtype, resp.shape, resp.start, resp.chunks[:-1] + (b"\0",), resp.proof)
    with pytest.raises(VerificationError, match="C2 says"):
        verify_tensor_chunks(short, roots[1])
    # the same bytes under another shape do not match the header (C4)
    resp = _roundtrip(server, TensorChunksRequest(9, 0, 0, MAX_CHUNKS))
    other = type(resp)(resp.dtype, (resp.shape[1], resp.shape[0]), 0, resp.chunks, resp.proof)
    with pytest.raises(VerificationError):
        verify_tensor_chunks(other, roots[0])


def test_server_refusals() -> None:
    src, ops, _ = _job()
    server = TraceServer(src)
    cases = [
        (OpRootsRequest(8, 0, 1), "unknown_job"),
        (OpRootsRequest(9, len(ops), 1), "out_of_range"),
        (TraceNodeRequest(9, 6, 0, 1), "out_of_range"),
        (TensorChunksRequest(9, len(ops), 0, 1), "out_of_range"),
        (TensorChunksRequest(9, 0, 99, 1), "out_of_range"),
        (TensorNodeRequest(8, 0, 0, 0, 1), "unknown_job"),
    ]
    for request, code in cases:
        with pytest.raises(ProtocolError) as err:
            server.answer(request)
        assert err.value.code == code
    with pytest.raises(RemoteError) as remote:
        parse_response(encode_error("unknown_job", "nope"), OpRootsRequest(8, 0, 1))
    assert remote.value.code == "unknown_job"


@pytest.mark.parametrize(
    "body, code",
    [
        (b"\xc1", "bad_request"),  # never-used msgpack byte
        (msgpack.packb([1, 2]), "bad_request"),
        (msgpack.packb({"kind": "nope"}), "bad_request"),
        (msgpack.packb({"kind": "op_roots", "job": 1, "from": 0}), "bad_request"),
        (msgpack.packb({"kind": "op_roots", "job": 1, "from": 0, "count": 1, "x": 1}),
         "bad_request"),
        (msgpack.packb({"kind": "op_roots", "job": -1, "from": 0, "count": 1}), "bad_request"),
        (msgpack.packb({"kind": "op_roots", "job": True, "from": 0, "count": 1}), "bad_request"),
        (msgpack.packb({"kind": "op_roots", "job": 1, "from": 0, "count": 0}), "bad_request"),
        (msgpack.packb({"kind": "op_roots", "job": 1, "from": "0", "count": 1}), "bad_request"),
        (msgpack.packb({"kind": "op_roots", "job": 1, "from": 0, "count": 10**6}), "too_large"),
        (msgpack.packb({1: 2}), "bad_request"),
        (b"\x00" * 5000, "too_large"),
    ],
)
def test_parse_request_rejects(body: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_request(body)
    assert err.value.code == code


def test_request_roundtrip() -> None:
    for req in (OpRootsRequest(2**64 - 1, 3, 4), TensorChunksRequest(1, 2, 3, 4),
                TensorNodeRequest(1, 2, 3, 4, 5), TraceNodeRequest(1, 2, 3, 4)):
        assert parse_request(encode_request(req)) == req


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_requests_never_escape_as_other_errors(raw: bytes) -> None:
    src, _, _ = _job(n_ops=3)
    server = TraceServer(src)
    try:
        server.answer(parse_request(raw))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_responses_are_protocol_errors(raw: bytes) -> None:
    try:
        parse_response(raw, OpRootsRequest(1, 0, 4))
    except (ProtocolError, RemoteError):
        pass


class _FakeStream:
    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.step = data, step

    async def read(self, n: int | None = None) -> bytes:
        k = min(n or self.step, self.step)
        part, self.data = self.data[:k], self.data[k:]
        return part

    async def write(self, data: bytes) -> None:  # pragma: no cover - not used
        raise AssertionError


def test_framing() -> None:
    async def read(data: bytes, limit: int) -> bytes:
        return await read_frame(_FakeStream(data), limit)

    assert trio.run(read, encode_frame(b"hello world", 100), 100) == b"hello world"
    assert trio.run(read, encode_frame(b"", 100), 100) == b""
    with pytest.raises(FrameTooLarge):
        trio.run(read, (2**31).to_bytes(4, "big"), 100)
    with pytest.raises(FrameError, match="ended"):
        trio.run(read, encode_frame(b"hello world", 100)[:-2], 100)
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 101, 100)


def test_stored_trace_source_serves_and_refuses_corrupt_dumps(tmp_path) -> None:
    from node.p2p.stored_source import StoredTraceSource
    from node.store import Store, Trace

    _, ops, outs = _job(n_ops=6)
    roots = [tensor_root_np(a) for a in outs]
    dumps = {i: TensorBlob.from_array(a) for i, a in enumerate(outs)}
    loads: list[int] = []

    def load(path: str | None, op: int) -> TensorBlob | None:
        assert path == "/dumps/9"
        loads.append(op)
        return dumps.get(op)

    with Store(tmp_path / "n.sqlite") as store:
        store.put_trace(Trace(9, trace_root(ops, roots), ops, roots, "/dumps/9"))
        server = TraceServer(StoredTraceSource(store, load))
        resp = _roundtrip(server, OpRootsRequest(9, 0, 6))
        verify_op_roots(resp, trace_root(ops, roots), 6)
        resp = _roundtrip(server, TensorChunksRequest(9, 2, 0, 8))
        verify_tensor_chunks(resp, roots[2])
        with pytest.raises(ProtocolError) as err:
            server.answer(OpRootsRequest(10, 0, 1))
        assert err.value.code == "unknown_job"
        bad = outs[4].copy()
        bad.flat[0] += 1
        dumps[4] = TensorBlob.from_array(bad)
        with pytest.raises(Exception, match="does not match"):
            server.answer(TensorChunksRequest(9, 4, 0, 1))


def test_identity_is_stable_across_restarts(tmp_path) -> None:
    from node.p2p.host import make_key_pair

    path = str(tmp_path / "p2p.key")
    first = make_key_pair(key_path=path)
    again = make_key_pair(key_path=path)
    assert first.public_key.serialize() == again.public_key.serialize()
    seed = keccak256(b"seed")
    assert (make_key_pair(seed=seed).public_key.serialize()
            == make_key_pair(seed=seed).public_key.serialize())
    assert make_key_pair().public_key.serialize() != first.public_key.serialize()
