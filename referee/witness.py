"""Builds the one-step witness (calldata for `OneStepVerifier.verify`) from a stored trace.

The witness carries exactly what the contract re-checks (docs/trace-layout.md §L7): the
program header and the disputed op's record with its proof, the job input and config bytes,
and for every input slot its C4 header, data root, trace-leaf proof and the 1 KiB chunks the
element reads. Which chunks: the builder runs the element once through `referee.ops` with
views that record every index read, so the chunk set is the computation's own, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from eth_abi import encode

from referee.execute import ArrayView, Trace
from referee.layout import JobConfig, Src, Symbols, reads_self
from referee.ops import ChainRequired, EvalContext, dot_chain, element_bits, holds
from repops.commit import (
    CHUNK_BYTES,
    canonical_bytes,
    chunk_leaves,
    header,
    merkle_levels,
    tokens_bytes,
)

WITNESS_ABI = ("(uint32,uint32,uint32,bytes32,bytes,bytes32[],bytes,bytes,"
               "(bytes,bytes32,bytes32,bytes32[],(uint256,bytes,bytes32[])[])[])")
CONFIG_ABI = list(JobConfig.ABI)
NO_TOKEN = 2**256 - 1
EMPTY_TENSOR = (b"", b"\x00" * 32, b"\x00" * 32, [], [])


@dataclass
class StepContext:
    """IOneStepVerifier.StepContext (field order is the ABI's)."""

    job_id: int = 0
    model_hash: bytes = b"\x00" * 32
    program_root: bytes = b"\x00" * 32
    input_hash: bytes = b"\x00" * 32
    config_hash: bytes = b"\x00" * 32
    trace_root: bytes = b"\x00" * 32
    trace_length: int = 0
    leaf_index: int = 0
    op_hash: bytes = b"\x00" * 32
    output_root: bytes = b"\x00" * 32
    element_index: int = 0
    claimed_bits: int = 0
    claim: bytes = field(default=b"")

    def as_tuple(self) -> tuple:
        return (self.job_id, self.model_hash, self.program_root, self.input_hash,
                self.config_hash, self.trace_root, self.trace_length, self.leaf_index,
                self.op_hash, self.output_root, self.element_index, self.claimed_bits,
                self.claim)


def config_bytes(max_tokens: int, temperature: int = 0, top_k: int = 0, top_p: int = 0x3F800000,
                 seed: int = 0) -> bytes:
    """abi.encode(JobMarket.JobConfig): the preimage of the job's config hash."""
    return JobConfig(max_tokens, temperature, top_k, top_p, seed).encode()


def link_claim(link: int, start: int) -> bytes:
    """§L9 `ctx.claim` of a link claim: abi.encode(uint256 link, uint256 startBits)."""
    return encode(["uint256", "uint256"], [link, start])


class RecordingView(ArrayView):
    """An ArrayView that remembers which elements were read."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__(array)
        self.read: set[int] = set()

    def get(self, idx: np.ndarray) -> np.ndarray:
        self.read.update(int(i) for i in np.asarray(idx).reshape(-1))
        return super().get(idx)


def proof_from_levels(levels: list[list[bytes]], index: int) -> list[bytes]:
    """C3 proof read off precomputed levels (`merkle_levels`), bottom-up."""
    proof = []
    for level in levels[:-1]:
        proof.append(level[index ^ 1])
        index //= 2
    return proof


class TensorTree:
    """A tensor's canonical bytes and C3 levels, computed once, proofs read off them."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.data = canonical_bytes(array)
        self.levels = merkle_levels(chunk_leaves(self.data))
        self.header = header(array.dtype.name, array.shape)

    def entry(self, elems: set[int], leaf_op_hash: bytes = b"\x00" * 32,
              leaf_proof: Sequence[bytes] = ()) -> tuple:
        """One `Tensor` of the witness: header, data root, leaf proof, chunks of `elems`."""
        size = self.array.dtype.itemsize
        chunks = sorted({(e * size) // CHUNK_BYTES for e in elems})
        return (self.header, self.levels[-1][0], leaf_op_hash, list(leaf_proof),
                [(c, self.data[c * CHUNK_BYTES:(c + 1) * CHUNK_BYTES],
                  proof_from_levels(self.levels, c)) for c in chunks])


@dataclass
class WitnessBuilder:
    """Witnesses for one job's trace (the defender's, as the game sees it)."""

    trace: Trace
    weights: Mapping[bytes, np.ndarray]
    config: bytes

    def __post_init__(self) -> None:
        # what SAMPLE ops read: the config bytes the contract reads, or (no valid bytes, e.g.
        # a trace only hashed) the config the trace ran under
        self._job_config = (JobConfig.decode(self.config) if len(self.config) == 160
                            else self.trace.config)
        self._leaves = self.trace.leaves()
        self._levels = merkle_levels(self._leaves)
        self._op_hashes = self.trace.program.op_hashes()
        self._op_levels = merkle_levels(self._op_hashes)
        self._program_root = self.trace.program.root()
        self._trees: dict[int, TensorTree] = {}
        self._weight_trees: dict[bytes, TensorTree] = {}

    def tree(self, leaf: int) -> TensorTree:
        if leaf not in self._trees:
            self._trees[leaf] = TensorTree(self.trace.outputs[leaf])
        return self._trees[leaf]

    def weight_tree(self, root: bytes) -> TensorTree:
        if root not in self._weight_trees:
            self._weight_trees[root] = TensorTree(self.weights[root])
        return self._weight_trees[root]

    def _program_part(self, j: int) -> list:
        prog = self.trace.program
        return [prog.n_ops, prog.token_op, prog.eos, self._op_levels[-1][0],
                prog.ops[j].record(), proof_from_levels(self._op_levels, j),
                tokens_bytes(self.trace.job_tokens), self.config]

    def _leaf_tensor(self, leaf: int, elems: set[int]) -> tuple:
        p = self.trace.program.n_ops
        return self.tree(leaf).entry(elems, self._op_hashes[leaf % p],
                                     proof_from_levels(self._levels, leaf))

    def context(self, leaf: int = 0, element: int = 0, claimed: int = 0,
                claim: bytes = b"") -> StepContext:
        from repops.commit import keccak256

        n = self.trace.program.n_ops
        in_trace = leaf < self.trace.length
        return StepContext(
            program_root=self._program_root,
            input_hash=keccak256(tokens_bytes(self.trace.job_tokens)),
            config_hash=keccak256(self.config),
            trace_root=self._levels[-1][0],
            trace_length=self.trace.length,
            leaf_index=leaf,
            op_hash=self._op_hashes[leaf % n] if in_trace else b"\x00" * 32,
            output_root=self.trace.roots[leaf] if in_trace else b"\x00" * 32,
            element_index=element,
            claimed_bits=claimed,
            claim=claim,
        )

    def _views(self, leaf: int) -> tuple[list[RecordingView | None], EvalContext]:
        """The op's inputs at `leaf` as recording views of this trace's own tensors (§L4),
        and the step's evaluation context."""
        prog = self.trace.program
        step, j = prog.locate(leaf)
        views: list[RecordingView | None] = []
        for inp in prog.ops[j].inputs:
            if inp.src == Src.OP:
                at = inp.leaf(step, prog.n_ops)
                views.append(None if at is None else RecordingView(self.trace.outputs[at]))
            elif inp.src == Src.WEIGHT:
                views.append(RecordingView(self.weights[inp.root]))
            else:
                views.append(None)
        cx = EvalContext(Symbols.for_step(len(self.trace.job_tokens), step), step,
                         self.trace.job_tokens, self._job_config)
        return views, cx

    def element(self, leaf: int, element: int, link: int | None = None) -> bytes:
        """Witness for Claim.Element at (leaf, element) — also serves OpHash/OutputHeader.

        `link` (§L9): the witness of link `link` of a DOT element's accumulation chain,
        carrying only the chunks that link reads (≤ LINK elements of each operand row). A DOT
        element with links > 0 asked whole gets no chunks: the verifier refuses it
        (ChainRequired) before reading any, and this is the witness `revealChain` hands to
        `chainLength`."""
        prog = self.trace.program
        step, j = prog.locate(leaf)
        op = prog.ops[j]
        views, cx = self._views(leaf)
        out = self.trace.outputs[leaf]
        me = RecordingView(out) if reads_self(op) else None
        flat = out.reshape(-1)
        value = flat.view(np.uint32)[element] if out.dtype == np.float32 else flat[element]
        try:
            holds(op, views, me, element, element_bits(int(value), out.dtype.name), cx,
                  link=None if link is None else (link, 0))  # the start changes no read
        except ChainRequired:
            pass
        tensors = []
        for inp, v in zip(op.inputs, views, strict=True):
            if v is None:
                tensors.append(EMPTY_TENSOR)
            elif inp.src == Src.OP:
                tensors.append(self._leaf_tensor(inp.leaf(step, prog.n_ops), v.read))
            else:
                tensors.append(self.weight_tree(inp.root).entry(v.read))
        if me is not None:  # §L7: the defender's own output, after the input slots
            tensors.append(self.tree(leaf).entry(me.read))
        return encode([WITNESS_ABI], [tuple(self._program_part(j) + [tensors])])

    def chain(self, leaf: int, element: int) -> list[int]:
        """§L9 chain of output element `element` at `leaf`, from this trace's own inputs
        ([] unless it is a DOT element with links > 0). Its last value is the element as the
        inputs give it, not necessarily the leaf's stored output (a faulty trace's)."""
        prog = self.trace.program
        views, cx = self._views(leaf)
        return dot_chain(prog.ops[prog.locate(leaf)[1]], views, element, cx)

    def header_only(self, leaf: int) -> bytes:
        """Witness for Claim.OpHash / Claim.OutputHeader (no tensors needed)."""
        prog = self.trace.program
        _, j = prog.locate(leaf)
        tensors = [EMPTY_TENSOR] * len(prog.ops[j].inputs)
        return encode([WITNESS_ABI], [tuple(self._program_part(j) + [tensors])])

    def token_step(self, step: int | None) -> bytes:
        """Witness for Claim.TraceEnd / Claim.OutputToken: the token leaf of `step` (if any)."""
        prog = self.trace.program
        tensors = []
        if step is not None:
            tensors = [self._leaf_tensor(step * prog.n_ops + prog.token_op, {0})]
        return encode([WITNESS_ABI], [tuple(self._program_part(0) + [tensors])])
