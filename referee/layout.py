"""The trace layout: trace-op records, op hashes, the trace program root and leaf ↔ (step, op).

Why a second record format beside `node/runtime/program.py`: the one-step contract must parse
the op it re-executes, and it must do so cheaply and without ambiguity. These records are
word-aligned (32-byte words, big-endian), have no recursion and no names, so Solidity reads
them with `calldataload`/`mload`. Every rule cites docs/trace-layout.md (§L1–§L6).

Record (§L2):

    word 0   = u8 version (1) ‖ u8 code ‖ u8 out dtype (C1) ‖ u8 ndim ‖ u8 n_in ‖ u8 n_attr
               ‖ u8 source kind × n_in ‖ zero padding to 32 bytes
    ndim     × dim word        (§L3: int64 c0, int64 c_seq, int64 c_past in the low 24 bytes)
    n_in     × input word      (OP: (uint64 op index << 64) | uint64 steps back;
                                WEIGHT: the weight's C4 tensor root; JOB: 0)
    n_attr   × attribute word  (uint256; per code, §L5)

    op_hash      = keccak256(record)
    ops_root     = MerkleRoot(op hashes)                                    (C3)
    program_root = keccak256(0x04 ‖ u32 P ‖ u32 token_op ‖ u32 eos ‖ ops_root)   (§L1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from repops.commit import DTYPE_CODES, header, keccak256, merkle_proof, merkle_root

VERSION = 1
PROGRAM_TAG = 0x04
NO_EOS = 0xFFFFFFFF
MAX_INPUTS = 4


class Code(IntEnum):
    """Trace-op codes (§L5). Appending is fine; renumbering changes every program root."""

    TOKENS = 1
    GATHER = 2
    DOT = 3
    FOLD = 4
    ARGFOLD = 5
    EW = 6
    ROPE = 7
    MOVE = 8
    CONCAT = 9
    SAMPLE = 10


class Stage(IntEnum):
    """SAMPLE stages (§L5.10), attribute word 0 of a SAMPLE record: RepOps spec §7.3 cut into
    trace ops whose every element is one cheap one-step. Renumbering changes program roots."""

    SCALE = 1  # z' = div(z, T)
    SORT = 2  # order within blocks of `block` tokens (attr 1)
    EXP = 3  # e[j] = exp(sub(z'[order[j]], z'[order[0]])) for j < K, else -0
    SCAN = 4  # c = running sum of p (reads its own output)
    TOPP = 5  # f[j] = 1.0 where top_p < 1, j < K and c[j] >= top_p
    DRAW = 6  # g[j] = 1.0 where j <= J and c[j] > r
    JSTAR = 7  # j* from the first 1.0 of g, else J
    PICK = 8  # the token: greedy argmax or order[j*]
    MERGE = 9  # two sorted half-blocks of `half` (attr 1) merged (reads its own output)


SELF_STAGES = (Stage.SCAN, Stage.MERGE)  # §L5.10: their witness carries the defender's output


class Claim(IntEnum):
    """What a one-step check decides (IOneStepVerifier.Claim; §L1: TraceEnd and OutputToken
    follow from the step rules, §L7 witnesses carry one)."""

    ELEMENT = 0
    OP_HASH = 1
    OUTPUT_HEADER = 2
    TRACE_END = 3
    OUTPUT_TOKEN = 4


class Src(IntEnum):
    """Where an input comes from (§L4)."""

    OP = 1
    WEIGHT = 2
    JOB = 3


class Fn(IntEnum):
    """Element functions of the EW op (§L5.6): binary below 16, unary from 16."""

    ADD = 1
    SUB = 2
    MUL = 3
    DIV = 4
    MAX = 5
    MIN = 6
    NEG = 16
    SQRT = 17
    EXP = 18
    LOG = 19
    SIGMOID = 20
    SILU = 21
    COPY = 22


def is_binary(fn: int) -> bool:
    return fn < 16


def reads_self(op: TraceOp) -> bool:
    """§L7: the one-step of this op reads the defender's own output (`self` tensor)."""
    return op.code == Code.SAMPLE and bool(op.attrs) and op.attrs[0] in SELF_STAGES


F32_ONE = 0x3F800000


def f32_word(v: float) -> int:
    """binary32 bits of v (round to nearest even, as numpy.float32 does)."""
    import struct

    return struct.unpack(">I", struct.pack(">f", v))[0]


@dataclass(frozen=True)
class JobConfig:
    """JobMarket.JobConfig (§L1, §L5.10): what SAMPLE ops read besides tensors. Floats are
    binary32 bit patterns; `seed` is the uint64 the market stores, read as bytes32(uint256(seed))
    by the PRNG (RepOps spec §7.2)."""

    max_tokens: int = 1
    temperature: int = 0
    top_k: int = 0
    top_p: int = F32_ONE
    seed: int = 0

    ABI = ("uint32", "uint32", "uint32", "uint32", "uint64")

    def encode(self) -> bytes:
        """abi.encode(JobConfig): the preimage of the job's config hash."""
        from eth_abi import encode

        return encode(list(self.ABI), [self.max_tokens, self.temperature, self.top_k,
                                       self.top_p, self.seed])

    @classmethod
    def decode(cls, data: bytes) -> JobConfig:
        from eth_abi import decode

        return cls(*decode(list(cls.ABI), data))

    @classmethod
    def of(cls, max_tokens: int, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
           seed: int = 0) -> JobConfig:
        """From the requester's numbers (floats rounded once to binary32)."""
        return cls(max_tokens, f32_word(temperature), top_k, f32_word(top_p), seed)

    @property
    def greedy(self) -> bool:
        """RepOps spec §7.3 step 1: T == 0 (IEEE: -0 too)."""
        return self.temperature & 0x7FFFFFFF == 0


_I64 = 1 << 64


def _u64(v: int) -> int:
    if not -(1 << 63) <= v < (1 << 63):
        raise ValueError(f"dim coefficient {v} does not fit int64")
    return v % _I64


def _s64(u: int) -> int:
    return u - _I64 if u >= 1 << 63 else u


@dataclass(frozen=True)
class Dim:
    """§L3: an affine size c0 + c_seq·seq + c_past·past over the step's symbols."""

    c0: int = 0
    seq: int = 0
    past: int = 0

    def word(self) -> int:
        return (_u64(self.c0) << 128) | (_u64(self.seq) << 64) | _u64(self.past)

    @classmethod
    def from_word(cls, w: int) -> Dim:
        return cls(_s64((w >> 128) % _I64), _s64((w >> 64) % _I64), _s64(w % _I64))

    def eval(self, sym: Symbols) -> int:
        return self.c0 + self.seq * sym.seq + self.past * sym.past


def D(c0: int = 0, seq: int = 0, past: int = 0) -> Dim:
    return Dim(c0, seq, past)


SEQ = Dim(0, 1, 0)
CTX = Dim(0, 1, 1)  # past + seq: the keys visible to the step


@dataclass(frozen=True)
class Symbols:
    """§L1: the step's sizes, derived from the job input length L0 and the step s."""

    seq: int
    past: int

    @property
    def ctx(self) -> int:
        return self.seq + self.past

    @classmethod
    def for_step(cls, prompt_len: int, step: int) -> Symbols:
        if step == 0:
            return cls(prompt_len, 0)
        return cls(1, prompt_len + step - 1)


@dataclass(frozen=True)
class Input:
    """§L4: one input reference of a trace op."""

    src: Src
    op: int = 0  # Src.OP: index of the producing op within the step's program
    back: int = 0  # Src.OP: how many steps back (0: this step, the op must come earlier)
    root: bytes = b""  # Src.WEIGHT: C4 tensor root of the constant tensor

    def word(self) -> int:
        if self.src == Src.OP:
            return (self.op << 64) | self.back
        if self.src == Src.WEIGHT:
            if len(self.root) != 32:
                raise ValueError("weight input needs a 32-byte tensor root")
            return int.from_bytes(self.root, "big")
        return 0

    def leaf(self, step: int, n_ops: int) -> int | None:
        """Trace leaf holding this input at `step`, None when it refers before step 0 (§L4)."""
        if self.src != Src.OP:
            raise ValueError("only OP inputs live in the trace")
        if self.back > step:
            return None
        return (step - self.back) * n_ops + self.op


def op_input(op: int, back: int = 0) -> Input:
    return Input(Src.OP, op=op, back=back)


def weight_input(root: bytes) -> Input:
    return Input(Src.WEIGHT, root=root)


JOB_INPUT = Input(Src.JOB)


@dataclass(frozen=True)
class TraceOp:
    """One op of the trace program (§L2); `name` is diagnostics only, never hashed."""

    code: Code
    dtype: str
    dims: tuple[Dim, ...]
    inputs: tuple[Input, ...]
    attrs: tuple[int, ...] = ()
    name: str = field(default="", compare=False)

    def record(self) -> bytes:
        if len(self.inputs) > MAX_INPUTS:
            raise ValueError(f"{self.name}: at most {MAX_INPUTS} inputs")
        if len(self.dims) > 255 or len(self.attrs) > 255:
            raise ValueError(f"{self.name}: too many dims or attributes")
        w0 = bytes([VERSION, int(self.code), DTYPE_CODES[self.dtype], len(self.dims),
                    len(self.inputs), len(self.attrs)])
        w0 += bytes(int(i.src) for i in self.inputs)
        words = [w0.ljust(32, b"\x00")]
        words += [d.word().to_bytes(32, "big") for d in self.dims]
        words += [i.word().to_bytes(32, "big") for i in self.inputs]
        for a in self.attrs:
            if not 0 <= a < 1 << 256:
                raise ValueError(f"{self.name}: attribute {a} is not a uint256")
            words.append(int(a).to_bytes(32, "big"))
        return b"".join(words)

    def op_hash(self) -> bytes:
        return keccak256(self.record())

    def shape(self, sym: Symbols) -> tuple[int, ...]:
        out = tuple(d.eval(sym) for d in self.dims)
        if any(n < 0 for n in out):
            raise ValueError(f"{self.name}: negative dimension {out} at {sym}")
        return out

    def header(self, sym: Symbols) -> bytes:
        """§L6: the C4 header the program gives this op's output at a step."""
        return header(self.dtype, self.shape(sym))


def parse_record(rec: bytes) -> TraceOp:
    """Inverse of TraceOp.record (the contract's parser, mirrored; §L2)."""
    if len(rec) < 32 or len(rec) % 32 or rec[0] != VERSION:
        raise ValueError("bad trace-op record")
    code, dt, ndim, nin, nattr = rec[1], rec[2], rec[3], rec[4], rec[5]
    if len(rec) != 32 * (1 + ndim + nin + nattr) or nin > MAX_INPUTS:
        raise ValueError("bad trace-op record length")
    dtype = {v: k for k, v in DTYPE_CODES.items()}[dt]
    words = [int.from_bytes(rec[32 * k: 32 * k + 32], "big") for k in range(len(rec) // 32)]
    dims = tuple(Dim.from_word(w) for w in words[1: 1 + ndim])
    ins = []
    for k in range(nin):
        w = words[1 + ndim + k]
        src = Src(rec[6 + k])
        if src == Src.OP:
            ins.append(Input(src, op=w >> 64, back=w % _I64))
        elif src == Src.WEIGHT:
            ins.append(Input(src, root=w.to_bytes(32, "big")))
        else:
            ins.append(Input(src))
    attrs = tuple(words[1 + ndim + nin:])
    return TraceOp(Code(code), dtype, dims, tuple(ins), attrs)


@dataclass
class TraceProgram:
    """The registered program of the one-step (§L1): P ops per step, the token op, EOS."""

    ops: list[TraceOp]
    token_op: int
    eos: int = NO_EOS

    @property
    def n_ops(self) -> int:
        return len(self.ops)

    def op_hashes(self) -> list[bytes]:
        return [op.op_hash() for op in self.ops]

    def ops_root(self) -> bytes:
        return merkle_root(self.op_hashes())

    def root(self) -> bytes:
        return program_root(self.n_ops, self.token_op, self.eos, self.ops_root())

    def op_proof(self, j: int) -> list[bytes]:
        return merkle_proof(self.op_hashes(), j)

    def locate(self, leaf: int) -> tuple[int, int]:
        """§L1: trace leaf i is op i mod P of step i div P."""
        return divmod(leaf, self.n_ops)

    def validate(self) -> None:
        """Every OP input of step-local ops refers to an earlier op (§L4)."""
        for j, op in enumerate(self.ops):
            for inp in op.inputs:
                if inp.src == Src.OP and (inp.op >= self.n_ops or (inp.back == 0 and inp.op >= j)):
                    raise ValueError(f"op {j} ({op.name}): input op {inp.op} is not earlier")
        if not 0 <= self.token_op < self.n_ops:
            raise ValueError("token op outside the program")


def program_root(n_ops: int, token_op: int, eos: int, ops_root: bytes) -> bytes:
    """§L1."""
    return keccak256(bytes([PROGRAM_TAG]) + n_ops.to_bytes(4, "big") + token_op.to_bytes(4, "big")
                     + eos.to_bytes(4, "big") + ops_root)


def n_steps_of(trace_length: int, n_ops: int) -> int:
    if trace_length % n_ops:
        raise ValueError("trace length is not a whole number of steps")
    return trace_length // n_ops


def dims_of(shape: Sequence[int]) -> tuple[Dim, ...]:
    return tuple(Dim(int(n)) for n in shape)
