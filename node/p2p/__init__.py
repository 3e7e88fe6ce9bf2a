"""Node networking: libp2p gossip and the `/judge/trace/1` request/response protocol.

See PROTOCOL.md for the wire format. Synchronous code uses `P2PNode`; received trace data is
checked against on-chain roots with the helpers in `verify`.
"""

from .bridge import P2PNode, Subscription
from .errors import NodeClosed, P2PError, PeerTimeout, ProtocolError, RemoteError, TransportError
from .gossip import DEFAULT_TOPICS, JOBS_TOPIC, RECEIPTS_TOPIC, GossipMessage
from .messages import (
    PROTOCOL_ID,
    OpRootsRequest,
    OpRootsResponse,
    TensorChunksRequest,
    TensorChunksResponse,
    TensorNodeRequest,
    TensorNodeResponse,
    TraceNodeRequest,
    TraceNodeResponse,
)
from .source import InMemoryTraceSource, TensorBlob, TraceRecords, TraceSource
from .stored_source import CorruptDump, StoredTraceSource
from .verify import (
    VerificationError,
    verify_op_roots,
    verify_tensor_chunks,
    verify_tensor_nodes,
    verify_trace_nodes,
)

__all__ = [
    "DEFAULT_TOPICS",
    "JOBS_TOPIC",
    "PROTOCOL_ID",
    "RECEIPTS_TOPIC",
    "CorruptDump",
    "GossipMessage",
    "InMemoryTraceSource",
    "NodeClosed",
    "OpRootsRequest",
    "OpRootsResponse",
    "P2PError",
    "P2PNode",
    "PeerTimeout",
    "ProtocolError",
    "RemoteError",
    "StoredTraceSource",
    "Subscription",
    "TensorBlob",
    "TensorChunksRequest",
    "TensorChunksResponse",
    "TensorNodeRequest",
    "TensorNodeResponse",
    "TraceNodeRequest",
    "TraceNodeResponse",
    "TraceRecords",
    "TraceSource",
    "TransportError",
    "VerificationError",
    "verify_op_roots",
    "verify_tensor_chunks",
    "verify_tensor_nodes",
    "verify_trace_nodes",
]
