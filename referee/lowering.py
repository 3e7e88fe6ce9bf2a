"""Lowering of RepOps program ops into trace ops whose every element is one cheap one-step
(docs/trace-layout.md §L8).

Why: the game checks one output element whole, and a whole element of a K = 1536 dot, a
softmax row over the vocabulary or an RMSNorm row costs far more than 1M gas on-chain. So the
trace itself exposes the intermediate values the dispute descends through: dot products
become k-segments whose partial accumulators are committed tensors, folds become one level
each, softmax and RMSNorm become max / exp / fold / div steps. A segment longer than 64 fma
steps is disputed one link of 64 at a time inside its element (the game's level 3,
docs/trace-layout.md §L9), so `segment` trades committed bytes against dispute rounds
(ADR 0012). Every rewrite here computes exactly the RepOps spec's bits (the segment
chain is the spec's §3.1 chain cut at fixed k; the fold levels are the spec's §4.1 tree).

The runtime calls `Lowering` methods in its program's order (or `llama_program` for a Llama
model) and executes the resulting `TraceProgram` with `referee.execute` semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from referee.f32 import NEG_INF, POS_ZERO, f32_bits
from referee.layout import (
    CTX,
    JOB_INPUT,
    NO_EOS,
    SEQ,
    Code,
    Dim,
    Fn,
    Input,
    Stage,
    TraceOp,
    TraceProgram,
    op_input,
    weight_input,
)
from repops.api import default_scale

DEFAULT_SEGMENT = 192  # fma steps per committed DOT segment (§L5.3, §L9; ADR 0012)
DEFAULT_SORT_BLOCK = 256  # tokens per SORT block (§L5.10): one 1 KiB chunk of z'


@dataclass(frozen=True)
class T:
    """A tensor of the trace program: an input reference plus its symbolic dims and dtype."""

    ref: Input
    dims: tuple[Dim, ...]
    dtype: str = "float32"


def _pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def _d(*sizes: int | Dim) -> tuple[Dim, ...]:
    return tuple(s if isinstance(s, Dim) else Dim(int(s)) for s in sizes)


class Lowering:
    """Builds a trace program op by op (§L8)."""

    def __init__(self, segment: int = DEFAULT_SEGMENT, max_ctx: int = 2048) -> None:
        if segment < 1 or max_ctx < 1:
            raise ValueError("segment and max_ctx must be positive")
        self.segment = segment
        self.max_ctx = max_ctx
        self.ops: list[TraceOp] = []

    # ------------------------------------------------------------------ plumbing

    def emit(self, op: TraceOp) -> T:
        self.ops.append(op)
        return T(op_input(len(self.ops) - 1), op.dims, op.dtype)

    @staticmethod
    def weight(root: bytes, shape: Sequence[int], dtype: str = "float32") -> T:
        return T(weight_input(root), _d(*shape), dtype)

    @staticmethod
    def previous_step(t: T) -> Input:
        """The same op's output one step earlier (§L4: KV caches)."""
        if t.ref.back != 0:
            raise ValueError("previous_step of a reference that already looks back")
        return Input(t.ref.src, op=t.ref.op, back=1)

    def program(self, token: T, eos: int = NO_EOS) -> TraceProgram:
        prog = TraceProgram(list(self.ops), token_op=token.ref.op, eos=eos)
        prog.validate()
        return prog

    # ------------------------------------------------------------------ §L8.1 tokens, gather

    def tokens(self, token_op_index: int) -> T:
        """The step's token ids: the job input at step 0, the previous step's token after."""
        return self.emit(TraceOp(Code.TOKENS, "int32", (SEQ,),
                                 (JOB_INPUT, op_input(token_op_index, back=1)), (), "tokens"))

    def embedding(self, ids: T, table: T, name: str = "embedding") -> T:
        """RepOps spec §6.12."""
        return self.emit(TraceOp(Code.GATHER, "float32", ids.dims + (table.dims[-1],),
                                 (ids.ref, table.ref), (), name))

    # ------------------------------------------------------------------ §L8.2 dot chains

    def dot(self, a: T, b: T, k: int, out_dims: tuple[Dim, ...], group: int = 1,
            causal: int = 0, name: str = "dot") -> T:
        """RepOps spec §3.1 chain, cut into segments of `segment` fma steps (§L5.3).

        `k` is the largest chain length (max_ctx for attention's chain over keys); segments
        past the step's real length copy the accumulator.
        """
        acc: T | None = None
        for k0 in range(0, max(k, 1), self.segment):
            k1 = min(k0 + self.segment, k)
            ins = (a.ref, b.ref) + ((acc.ref,) if acc is not None else ())
            acc = self.emit(TraceOp(Code.DOT, "float32", out_dims, ins,
                                    (k0, k1, group, causal), f"{name}[{k0}:{k1}]"))
        assert acc is not None
        return acc

    def linear(self, x: T, w: T, name: str = "linear") -> T:
        """RepOps spec §3.3: x[..., K] · W[N, K]ᵀ."""
        n, k = w.dims[0].c0, w.dims[1].c0
        return self.dot(x, w, k, x.dims[:-1] + (Dim(n),), name=name)

    # ------------------------------------------------------------------ §L8.3 elementwise

    def ew(self, fn: Fn, a: T, b: T | None = None, scalar: float | None = None,
           mask_fill: int | None = None, dims: tuple[Dim, ...] | None = None,
           name: str = "") -> T:
        """RepOps spec §6.1/§6.2 with broadcasting; optional causal mask (§L5.6)."""
        ins = (a.ref,) + ((b.ref,) if b is not None else ())
        sbits = f32_bits(scalar) if scalar is not None else 0
        out = dims if dims is not None else (a.dims if b is None or len(a.dims) >= len(b.dims)
                                              else b.dims)
        attrs = (int(fn), sbits, 1 if mask_fill is not None else 0, mask_fill or 0)
        return self.emit(TraceOp(Code.EW, "float32", out, ins, attrs, name or fn.name.lower()))

    # ------------------------------------------------------------------ §L8.4 folds

    def fold(self, x: T, max_width: int, n: Dim, combine: int = 0, causal: bool = False,
             name: str = "fold") -> T:
        """RepOps spec §4.1 tree (combine 0) or §4.2 max (combine 1), one level per op."""
        cap = _pow2_at_least(max_width) // 2
        while cap >= 1:
            x = self.emit(TraceOp(Code.FOLD, "float32", x.dims[:-1] + (Dim(cap),), (x.ref,),
                                  (combine, cap, int(causal), n.word()), f"{name}/{cap}"))
            cap //= 2
        if max_width <= 1:  # a single element: one copy level keeps the op count fixed
            x = self.emit(TraceOp(Code.FOLD, "float32", x.dims[:-1] + (Dim(1),), (x.ref,),
                                  (combine, 1, int(causal), n.word()), f"{name}/1"))
        return x

    def argmax(self, x: T, width: int, name: str = "argmax") -> T:
        """RepOps spec §6.11 as a tree of pairwise winners (§L5.5)."""
        cap = max(_pow2_at_least(width) // 2, 1)
        idx: T | None = None
        while cap >= 1:
            ins = (x.ref,) + ((idx.ref,) if idx is not None else ())
            idx = self.emit(TraceOp(Code.ARGFOLD, "int32", x.dims[:-1] + (Dim(cap),), ins,
                                    (cap,), f"{name}/{cap}"))
            cap //= 2
        assert idx is not None
        return idx

    # ------------------------------------------------------------------ §L8.5 sampling

    def _sample(self, stage: Stage, dtype: str, dims: tuple[Dim, ...], ins: Sequence[T],
                extra: tuple[int, ...] = (), name: str = "") -> T:
        return self.emit(TraceOp(Code.SAMPLE, dtype, dims, tuple(t.ref for t in ins),
                                 (int(stage),) + extra, name or f"sample/{stage.name.lower()}"))

    def sample(self, z: T, greedy: T, vocab: int, block: int = DEFAULT_SORT_BLOCK,
               name: str = "sample") -> T:
        """RepOps spec §7.3 on the logits row z [1, V] (§L5.10): the token, greedy when T = 0.

        `greedy` is the argmax of z (its last ARGFOLD level), which PICK returns for T = 0 or a
        NaN logit. The sort is a SORT of blocks of `block` tokens then MERGE levels doubling
        the sorted runs until one covers the row, so every element is O(block) or O(1) work."""
        if block < 1:
            raise ValueError("sort block must be positive")
        row = z.dims
        one = z.dims[:-1] + (Dim(1),)
        zp = self._sample(Stage.SCALE, "float32", row, (z,), name=f"{name}/scale")
        order = self._sample(Stage.SORT, "int32", row, (zp,), (block,), f"{name}/sort")
        h = block
        while h < vocab:
            order = self._sample(Stage.MERGE, "int64", row, (order, zp), (h,),
                                 f"{name}/merge{2 * h}")
            h *= 2
        e = self._sample(Stage.EXP, "float32", row, (zp, order), name=f"{name}/exp")
        s = self.fold(e, vocab, Dim(vocab), combine=0, name=f"{name}/sum")
        p = self.ew(Fn.DIV, e, s, dims=row, name=f"{name}/p")
        c = self._sample(Stage.SCAN, "float32", row, (p,), name=f"{name}/scan")
        f = self._sample(Stage.TOPP, "float32", row, (c,), name=f"{name}/topp")
        big_j = self.argmax(f, vocab, f"{name}/J0")
        g = self._sample(Stage.DRAW, "float32", row, (c, f, big_j), name=f"{name}/draw")
        j0 = self.argmax(g, vocab, f"{name}/j0")
        jstar = self._sample(Stage.JSTAR, "int32", one, (g, j0, f, big_j), name=f"{name}/jstar")
        return self._sample(Stage.PICK, "int32", one, (z, greedy, order, jstar),
                            name=f"{name}/pick")

    # ------------------------------------------------------------------ §L8.6 composites

    def rms_norm(self, x: T, w: T | None, n: int, eps: float, name: str = "rms_norm") -> T:
        """RepOps spec §6.7, step by step."""
        q = self.ew(Fn.MUL, x, x, name=f"{name}/sq")
        ss = self.fold(q, n, Dim(n), name=f"{name}/sum")
        ms = self.ew(Fn.DIV, ss, scalar=float(n), name=f"{name}/mean")
        v = self.ew(Fn.ADD, ms, scalar=eps, name=f"{name}/eps")
        r = self.ew(Fn.SQRT, v, name=f"{name}/sqrt")
        y = self.ew(Fn.DIV, x, r, dims=x.dims, name=f"{name}/div")
        return y if w is None else self.ew(Fn.MUL, y, w, dims=x.dims, name=f"{name}/w")

    def softmax_rows(self, s: T, max_width: int, n: Dim, causal: bool,
                     name: str = "softmax") -> T:
        """RepOps spec §6.5 (and §6.10's causal softmax, masked keys excluded)."""
        neg_inf = NEG_INF if causal else None
        zero = POS_ZERO if causal else None
        m = self.fold(s, max_width, n, combine=1, causal=causal, name=f"{name}/max")
        d = self.ew(Fn.SUB, s, m, mask_fill=neg_inf, dims=s.dims, name=f"{name}/sub")
        e = self.ew(Fn.EXP, d, mask_fill=zero, name=f"{name}/exp")
        tot = self.fold(e, max_width, n, combine=0, causal=causal, name=f"{name}/sum")
        return self.ew(Fn.DIV, e, tot, mask_fill=zero, dims=s.dims, name=f"{name}/div")

    def rope(self, x: T, cos: T, sin: T, head_dim: int, rot: int, half: bool,
             name: str = "rope") -> T:
        """RepOps spec §6.9 on x[..., seq, H·D]."""
        return self.emit(TraceOp(Code.ROPE, "float32", x.dims, (x.ref, cos.ref, sin.ref),
                                 (head_dim, rot, int(half)), name))

    def move(self, x: T, dims: tuple[Dim, ...], offset: Dim, strides: Sequence[Dim],
             name: str = "move") -> T:
        """RepOps spec §6.13: a strided view copied bit for bit (§L5.8)."""
        attrs = (offset.word(),) + tuple(s.word() for s in strides)
        return self.emit(TraceOp(Code.MOVE, x.dtype, dims, (x.ref,), attrs, name))

    def append(self, cache: T, new: T, name: str = "kv_append") -> T:
        """KV-cache append along axis 0: last step's cache ‖ this step's rows (§L5.9)."""
        dims = (CTX,) + new.dims[1:]
        op = TraceOp(Code.CONCAT, new.dtype, dims, (cache.ref, new.ref), (0,), name)
        return self.emit(op)

    def attention(self, q: T, k_cache: T, v_cache: T, hq: int, hkv: int, head_dim: int,
                  scale: float, name: str = "attn") -> T:
        """RepOps spec §6.10 on q[seq, Hq·D] and caches [ctx, Hkv·D] → [seq, Hq·D]."""
        dq, dkv = hq * head_dim, hkv * head_dim
        hd = Dim(head_dim)
        qh = self.move(q, (Dim(hq), SEQ, hd), Dim(0), (hd, Dim(dq), Dim(1)), f"{name}/qh")
        kh = self.move(k_cache, (Dim(hkv), CTX, hd), Dim(0), (hd, Dim(dkv), Dim(1)),
                       f"{name}/kh")
        vt = self.move(v_cache, (Dim(hkv), hd, CTX), Dim(0), (hd, Dim(1), Dim(dkv)),
                       f"{name}/vt")
        group = hq // hkv
        sdims = (Dim(hq), SEQ, CTX)
        dots = self.dot(qh, kh, head_dim, sdims, group=group, causal=2, name=f"{name}/qk")
        s = self.ew(Fn.MUL, dots, scalar=scale, mask_fill=NEG_INF, name=f"{name}/scale")
        p = self.softmax_rows(s, self.max_ctx, CTX, causal=True, name=f"{name}/softmax")
        o = self.dot(p, vt, self.max_ctx, (Dim(hq), SEQ, hd), group=group, causal=1,
                     name=f"{name}/pv")
        ot = self.move(o, (SEQ, Dim(hq), hd), Dim(0), (hd, Dim(0, head_dim, 0), Dim(1)),
                       f"{name}/ot")
        return self.move(ot, (SEQ, Dim(dq)), Dim(0), (Dim(dq), Dim(1)), f"{name}/merge")


@dataclass(frozen=True)
class LlamaShape:
    """The hyperparameters `llama_program` needs (SmolLM2-135M: `LlamaShape.smollm2()`)."""

    vocab: int
    dim: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    eps: float = 1e-5
    rope_half: bool = False  # GGUF llama: adjacent pairs (RepOps spec §6.9)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @classmethod
    def smollm2(cls) -> LlamaShape:
        return cls(vocab=49152, dim=576, layers=30, heads=9, kv_heads=3, ffn=1536)


@dataclass(frozen=True)
class LlamaWeights:
    """Tensor roots (C4) of the weights, by role; `layers[i]` maps a role to a root."""

    embed: bytes
    norm: bytes
    output: bytes  # == embed for tied embeddings
    rope_cos: bytes
    rope_sin: bytes
    layers: tuple[dict[str, bytes], ...]


LAYER_ROLES = ("attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w_gate", "w_up", "w_down")


def llama_program(cfg: LlamaShape, w: LlamaWeights, max_ctx: int, eos: int = NO_EOS,
                  segment: int = DEFAULT_SEGMENT,
                  sort_block: int = DEFAULT_SORT_BLOCK) -> TraceProgram:
    """The trace program of a Llama model (§L8), one step per token; the token op is the
    sampling tail's PICK (greedy argmax when the job's temperature is 0)."""
    lw = Lowering(segment=segment, max_ctx=max_ctx)
    d, hd = cfg.dim, cfg.head_dim
    dkv = cfg.kv_heads * hd
    rot = lw.weight(w.rope_cos, (max_ctx, hd // 2))
    ros = lw.weight(w.rope_sin, (max_ctx, hd // 2))
    # The token op is the last op; its index is known once the program is built, so the
    # TOKENS op is emitted with a placeholder and fixed at the end (the record must name it).
    toks = lw.tokens(0)
    x = lw.embedding(toks, lw.weight(w.embed, (cfg.vocab, d)))
    scale = default_scale(hd)
    for i, layer in enumerate(w.layers):
        p = f"L{i}"
        h = lw.rms_norm(x, lw.weight(layer["attn_norm"], (d,)), d, cfg.eps, f"{p}/attn_norm")
        q = lw.linear(h, lw.weight(layer["wq"], (d, d)), f"{p}/q")
        k = lw.linear(h, lw.weight(layer["wk"], (dkv, d)), f"{p}/k")
        v = lw.linear(h, lw.weight(layer["wv"], (dkv, d)), f"{p}/v")
        q = lw.rope(q, rot, ros, hd, hd, cfg.rope_half, f"{p}/rope_q")
        k = lw.rope(k, rot, ros, hd, hd, cfg.rope_half, f"{p}/rope_k")
        k_slot = len(lw.ops)
        kc = lw.append(T(op_input(k_slot, back=1), (CTX, Dim(dkv))), k, f"{p}/k_cache")
        v_slot = len(lw.ops)
        vc = lw.append(T(op_input(v_slot, back=1), (CTX, Dim(dkv))), v, f"{p}/v_cache")
        a = lw.attention(q, kc, vc, cfg.heads, cfg.kv_heads, hd, scale, f"{p}/attn")
        x = lw.ew(Fn.ADD, x, lw.linear(a, lw.weight(layer["wo"], (d, d)), f"{p}/o"),
                  name=f"{p}/res1")
        h = lw.rms_norm(x, lw.weight(layer["ffn_norm"], (d,)), d, cfg.eps, f"{p}/ffn_norm")
        g = lw.linear(h, lw.weight(layer["w_gate"], (cfg.ffn, d)), f"{p}/gate")
        u = lw.linear(h, lw.weight(layer["w_up"], (cfg.ffn, d)), f"{p}/up")
        m = lw.ew(Fn.MUL, lw.ew(Fn.SILU, g, name=f"{p}/silu"), u, name=f"{p}/swiglu")
        x = lw.ew(Fn.ADD, x, lw.linear(m, lw.weight(layer["w_down"], (d, cfg.ffn)),
                                       f"{p}/down"), name=f"{p}/res2")
    last = lw.move(x, (Dim(1), Dim(d)), Dim(-d, d, 0), (Dim(d), Dim(1)), "last_row")
    h = lw.rms_norm(last, lw.weight(w.norm, (d,)), d, cfg.eps, "out_norm")
    logits = lw.linear(h, lw.weight(w.output, (cfg.vocab, d)), "lm_head")
    greedy = lw.argmax(logits, cfg.vocab, "argmax")
    token = lw.sample(logits, greedy, cfg.vocab, sort_block)
    lw.ops[0] = TraceOp(Code.TOKENS, "int32", (SEQ,), (JOB_INPUT, op_input(token.ref.op, 1)),
                        (), "tokens")
    return lw.program(token, eos)
