"""The Python mirror of `contracts/verifier/OneStepVerifier.sol`: the same decision, or the same
refusal, for any claim and witness.

A node uses it before it spends gas (will my witness be accepted, and who wins?), and the
differential tests hold the two implementations to each other. Checks are in the contract's
order; each raises `InvalidWitness` where the contract reverts. The arithmetic goes through
`referee.ops`, the single definition of every trace op (docs/trace-layout.md §L5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from eth_abi import decode

from referee.layout import (
    Claim,
    Code,
    JobConfig,
    Src,
    Symbols,
    TraceOp,
    parse_record,
    program_root,
    reads_self,
)
from referee.ops import EvalContext, OpError, dot_links, holds, numel
from referee.witness import NO_TOKEN, WITNESS_ABI, StepContext, element_bits
from repops.commit import (
    CHUNK_BYTES,
    DTYPE_CODES,
    keccak256,
    trace_leaf,
    verify_proof,
)

_DTYPES = {v: k for k, v in DTYPE_CODES.items()}
_SIZES = {"float32": 4, "int32": 4, "int64": 8, "uint8": 1}


class InvalidWitness(ValueError):
    """The contract reverts on this witness."""


def depth_of(n: int) -> int:
    """C3: log2 of the padded leaf count."""
    d, p = 0, 1
    while p < n:
        p, d = p * 2, d + 1
    return d


def _proves(leaf: bytes, index: int, proof: list[bytes], root: bytes, depth: int) -> bool:
    """Merkle.verify: exact depth, index inside the tree, siblings re-hash to the root."""
    if len(proof) != depth or index >> depth:
        return False
    return verify_proof(leaf, index, proof, root)


@dataclass
class ChunkView:
    """An input rebuilt from its proven header and the chunks the witness opened."""

    shape: tuple[int, ...]
    dtype: str
    chunks: dict[int, bytes]

    def get(self, idx: np.ndarray) -> np.ndarray:
        size = _SIZES[self.dtype]
        out = []
        for e in np.asarray(idx).reshape(-1):
            off = int(e) * size
            c = off // CHUNK_BYTES
            if c not in self.chunks:
                raise InvalidWitness(f"missing chunk {c}")
            raw = self.chunks[c][off % CHUNK_BYTES: off % CHUNK_BYTES + size]
            v = int.from_bytes(raw, "little")
            if self.dtype in ("int32", "int64") and v >> (8 * size - 1):
                v -= 1 << (8 * size)
            out.append(v)
        arr = np.array(out, dtype=np.int64).reshape(np.asarray(idx).shape)
        return arr.astype(np.uint32) if self.dtype == "float32" else arr


def _parse_header(h: bytes) -> tuple[str, tuple[int, ...]]:
    """Commitments.parseHeader (C4)."""
    if len(h) < 3 or h[0] != 0x02 or len(h) != 3 + 4 * h[2]:
        raise InvalidWitness("bad header")
    if h[1] not in _DTYPES:
        raise InvalidWitness("unknown dtype")
    dims = tuple(int.from_bytes(h[3 + 4 * i: 7 + 4 * i], "big") for i in range(h[2]))
    return _DTYPES[h[1]], dims


def _tensor(t: tuple) -> ChunkView:
    hdr, data_root, _, _, chunks = t
    dtype, dims = _parse_header(hdr)
    nbytes = numel(dims) * _SIZES[dtype]
    n_chunks = max(1, -(-nbytes // CHUNK_BYTES))
    opened = {}
    for index, data, proof in chunks:
        want = max(0, min(CHUNK_BYTES, nbytes - index * CHUNK_BYTES))
        if (index >= n_chunks or len(data) != want
                or not _proves(keccak256(b"\x00" + data), index, list(proof), data_root,
                               depth_of(n_chunks))):
            raise InvalidWitness(f"bad chunk {index}")
        opened[index] = data
    return ChunkView(dims, dtype, opened)


def _root(t: tuple) -> bytes:
    return keccak256(t[0] + t[1])


def _trace_tensor(t: tuple, leaf: int, ctx: StepContext) -> ChunkView:
    view = _tensor(t)
    h = trace_leaf(leaf, t[2], _root(t))
    if not _proves(h, leaf, list(t[3]), ctx.trace_root, depth_of(ctx.trace_length)):
        raise InvalidWitness(f"bad leaf proof for leaf {leaf}")
    return view


def _token(w: tuple, ctx: StepContext, step: int) -> int:
    n_ops, token_op = w[0], w[1]
    tensors = w[8]
    if len(tensors) != 1:
        raise InvalidWitness("token witness needs exactly one tensor")
    view = _trace_tensor(tensors[0], step * n_ops + token_op, ctx)
    if numel(view.shape) < 1:
        raise InvalidWitness("empty token tensor")
    return element_bits(int(view.get(np.array([0]))[0]), view.dtype)


def verify(kind: int, ctx: StepContext, witness: bytes) -> bool:
    """OneStepVerifier.verify: True when the defender's claim is correct.

    Claim.Element with a non-empty `ctx.claim` is a link claim of an accumulation chain
    (§L9): `abi.encode(uint256 link, uint256 startBits)`."""
    w = _program(ctx, witness)
    n_ops = w[0]
    if kind == Claim.OUTPUT_TOKEN:
        n_steps = ctx.trace_length // n_ops
        if ctx.element_index >= n_steps:
            return ctx.claimed_bits == NO_TOKEN
        return _token(w, ctx, ctx.element_index) == ctx.claimed_bits
    if kind == Claim.TRACE_END:
        return _trace_end(w, ctx)
    h = _program_op(w, ctx)
    if kind == Claim.OP_HASH:
        return h == ctx.op_hash
    if h != ctx.op_hash:
        return False
    op, cx = _op_env(w, ctx)
    try:
        if kind == Claim.OUTPUT_HEADER:
            return ctx.claim == op.header(cx.sym)
        link = _link_claim(ctx.claim)
        if op.code == Code.SAMPLE:
            cx.config = _config(w[7], ctx)
        views = _inputs(op, w[8], ctx, cx.step, n_ops)
        me = _self(op, w[8], ctx)
        return holds(op, views, me, ctx.element_index, ctx.claimed_bits, cx, link=link)
    except OpError as e:
        raise InvalidWitness(str(e)) from e


def chain_length(ctx: StepContext, witness: bytes) -> int:
    """OneStepVerifier.chainLength (§L9): the number of links of the disputed DOT element,
    0 when it is checked whole. The game reads it in `revealChain`; the witness is checked as
    for `verify` (program, op proof, job input, input headers and leaf proofs), but no element
    is read, so its chunks may be absent."""
    w = _program(ctx, witness)
    if _program_op(w, ctx) != ctx.op_hash:
        return 0
    op, cx = _op_env(w, ctx)
    if op.code != Code.DOT:
        return 0
    try:
        views = _inputs(op, w[8], ctx, cx.step, w[0])
        return dot_links(op, views, ctx.element_index, cx)
    except OpError as e:
        raise InvalidWitness(str(e)) from e


def _program(ctx: StepContext, witness: bytes) -> tuple:
    """The decoded witness, its program header bound by `ctx.programRoot` (§L1)."""
    try:
        (w,) = decode([WITNESS_ABI], witness)
    except Exception as e:  # noqa: BLE001 - abi.decode reverts on any malformed input
        raise InvalidWitness(f"undecodable witness: {e}") from None
    n_ops, token_op, eos, ops_root = w[:4]
    if (program_root(n_ops, token_op, eos, ops_root) != ctx.program_root or n_ops == 0
            or token_op >= n_ops):
        raise InvalidWitness("bad program")
    return w


def _program_op(w: tuple, ctx: StepContext) -> bytes:
    """§L2: the record's hash, proven as program op `leaf mod P` under ops_root."""
    n_ops, ops_root, record, op_proof = w[0], w[3], w[4], w[5]
    h = keccak256(record)
    if not _proves(h, ctx.leaf_index % n_ops, list(op_proof), ops_root, depth_of(n_ops)):
        raise InvalidWitness("bad op proof")
    return h


def _op_env(w: tuple, ctx: StepContext) -> tuple[TraceOp, EvalContext]:
    """§L1–§L3: the parsed record and the step's symbols from the job input."""
    n_ops, record, job = w[0], w[4], w[6]
    if keccak256(job) != ctx.input_hash or len(job) % 4:
        raise InvalidWitness("bad job input")
    step = ctx.leaf_index // n_ops
    tokens = [int.from_bytes(job[4 * i: 4 * i + 4], "big") for i in range(len(job) // 4)]
    try:
        op = parse_record(record)
    except (ValueError, KeyError) as e:
        raise InvalidWitness(f"bad record: {e}") from None
    return op, EvalContext(Symbols.for_step(len(tokens), step), step, tokens)


def _link_claim(claim: bytes) -> tuple[int, int] | None:
    """§L9: an empty `ctx.claim` asks the element whole; else abi.encode(uint256 link,
    uint256 startBits)."""
    if not claim:
        return None
    if len(claim) != 64:
        raise InvalidWitness("BadLink: a link claim is two words")
    link, start = decode(["uint256", "uint256"], claim)
    return int(link), int(start)


def _config(config: bytes, ctx: StepContext) -> JobConfig:
    """The job's config bytes, bound by its config hash (§L7; SAMPLE reads it, §L5.10)."""
    if keccak256(config) != ctx.config_hash or len(config) != 160:
        raise InvalidWitness("bad config")
    return JobConfig.decode(config)


def _self(op, tensors: list, ctx: StepContext) -> ChunkView | None:
    """§L7: SCAN and MERGE read the defender's own output, the Tensor after the input slots;
    its C4 root must be the disputed leaf's output root."""
    if not reads_self(op):
        return None
    t = tensors[len(op.inputs)]
    view = _tensor(t)
    if _root(t) != ctx.output_root:
        raise InvalidWitness("self is not the defender's output")
    return view


def _inputs(op, tensors: list, ctx: StepContext, step: int, n_ops: int) -> list:
    """§L4, in the contract's order of checks (one more tensor, `self`, for §L5.10's SCAN and
    MERGE)."""
    if len(tensors) != len(op.inputs) + (1 if reads_self(op) else 0):
        raise InvalidWitness("one witness tensor per input slot")
    views: list[ChunkView | None] = []
    for inp, t in zip(op.inputs, tensors[:len(op.inputs)], strict=True):
        if inp.src == Src.OP:
            if inp.back > step or inp.op >= n_ops:
                views.append(None)
                continue
            leaf = (step - inp.back) * n_ops + inp.op
            if leaf >= ctx.leaf_index:
                raise InvalidWitness(f"input leaf {leaf} is not agreed")
            views.append(_trace_tensor(t, leaf, ctx))
        elif inp.src == Src.WEIGHT:
            view = _tensor(t)
            if _root(t) != inp.root:
                raise InvalidWitness("weight root differs from the op record")
            views.append(view)
        else:
            views.append(None)
    return views


def _trace_end(w: tuple, ctx: StepContext) -> bool:
    n_ops, eos, config = w[0], w[2], w[7]
    max_tokens = _config(config, ctx).max_tokens
    i = ctx.leaf_index
    s = i // n_ops
    max_steps = max_tokens or 1
    ends = False
    if i % n_ops == 0 and 1 <= s <= max_steps:
        ends = True if s == max_steps else _token(w, ctx, s - 1) == eos
    return (ctx.claimed_bits == 1) == ends
