"""A plain Llama (nanoGPT / llama2.c style) in PyTorch: the model we export to ONNX and the
float64 oracle the RepOps program is checked against.

Written so each step is one obvious tensor operation; the ONNX compiler recognizes the
resulting subgraphs (RMSNorm, SiLU, causal attention) and maps them onto the fused RepOps ops
of the spec. The arithmetic order is the spec's wherever a choice exists:

- RMSNorm = x / sqrt(mean(x·x) + eps) · w (RepOps spec §6.7: divide, then multiply by w);
- RoPE pairs adjacent elements (2i, 2i+1) (§6.9 `adjacent`, the layout of GGUF llama Q/K) with
  the correctly rounded tables of `rope_tables.py`, sliced at the absolute positions;
- attention = softmax(q·kᵀ·scale + causal mask)·v with GQA by repeating KV heads (§6.10);
- SwiGLU = silu(gate) · up (§6.4).

The KV cache is explicit: `forward(tokens, past)` takes per-layer (k, v) of shape
[B, Hkv, P, Dh] and returns the new ones with P + T positions, so one function serves prefill
(P = 0) and decode (T = 1) and exports as one ONNX graph.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from node.runtime.gguf_loader import GGUFModel, LlamaConfig
from repops.cpu.rope_tables import rope_tables

KV = tuple[torch.Tensor, torch.Tensor]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ms = torch.mean(x * x, dim=-1, keepdim=True)
        return x / torch.sqrt(ms + self.eps) * self.weight


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D], cos/sin [T, D/2]; adjacent pairs (2i, 2i+1) (RepOps spec §6.9)."""
    b, h, t, d = x.shape
    pairs = x.reshape(b, h, t, d // 2, 2)
    a, bb = pairs[..., 0], pairs[..., 1]
    a2 = a * cos - bb * sin
    b2 = a * sin + bb * cos
    return torch.stack([a2, b2], dim=-1).reshape(b, h, t, d)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, T, D] -> [B, Hkv*n_rep, T, D], head h reads KV head h // n_rep (§6.10)."""
    if n_rep == 1:
        return x
    b, hkv, t, d = x.shape
    return x[:, :, None, :, :].expand(b, hkv, n_rep, t, d).reshape(b, hkv * n_rep, t, d)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * self.hd, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * self.hd, cfg.d_model, bias=False)
        self.scale = 1.0 / math.sqrt(self.hd)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: KV
    ) -> tuple[torch.Tensor, KV]:
        b, t, _ = x.shape
        q = self.wq(x).reshape(b, t, self.n_heads, self.hd).transpose(1, 2)
        k = self.wk(x).reshape(b, t, self.n_kv, self.hd).transpose(1, 2)
        v = self.wv(x).reshape(b, t, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
        n_rep = self.n_heads // self.n_kv
        kr, vr = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        scores = torch.matmul(q, kr.transpose(2, 3)) * self.scale
        scores = scores + causal_mask(t, k.shape[2], scores.dtype)
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, vr).transpose(1, 2).reshape(b, t, self.n_heads * self.hd)
        return self.wo(out), (k, v)


def causal_mask(t: int, total: int, dtype: torch.dtype) -> torch.Tensor:
    """[T, P+T] additive mask: query t (absolute position P+t) sees keys j ≤ P+t (§6.10)."""
    q_pos = torch.arange(t) + (total - t)
    k_pos = torch.arange(total)
    allowed = k_pos[None, :] <= q_pos[:, None]
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.full((), float("-inf"), dtype=dtype))


class FeedForward(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.w_up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.w_down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.w_gate(x)
        return self.w_down(g * torch.sigmoid(g) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.ffn = FeedForward(cfg)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: KV
    ) -> tuple[torch.Tensor, KV]:
        h, present = self.attn(self.attn_norm(x), cos, sin, past)
        x = x + h
        return x + self.ffn(self.ffn_norm(x)), present


class Llama(nn.Module):
    """`forward(tokens [B,T], past) -> (logits, present)`; logits of the last position only
    unless `all_logits` (prefill needs just the last row; the oracle test wants all)."""

    def __init__(self, cfg: LlamaConfig, max_pos: int | None = None,
                 all_logits: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.all_logits = all_logits
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.output = (None if cfg.tied_embeddings
                       else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False))
        max_pos = max_pos or cfg.context_length
        cos, sin = rope_tables(max_pos, cfg.rope_dim, cfg.rope_base)
        if cfg.rope_dim != cfg.head_dim:
            raise ValueError("partial RoPE (rope_dim < head_dim) is not supported by this module")
        self.register_buffer("rope_cos", torch.from_numpy(cos), persistent=True)
        self.register_buffer("rope_sin", torch.from_numpy(sin), persistent=True)

    def empty_cache(self, batch: int = 1) -> list[KV]:
        shape = (batch, self.cfg.n_kv_heads, 0, self.cfg.head_dim)
        dt = self.rope_cos.dtype
        return [(torch.zeros(shape, dtype=dt), torch.zeros(shape, dtype=dt))
                for _ in range(self.cfg.n_layers)]

    def forward(self, tokens: torch.Tensor, past: list[KV]) -> tuple[torch.Tensor, list[KV]]:
        t = tokens.shape[1]
        p = past[0][0].shape[2]
        cos, sin = self.rope_cos[p : p + t], self.rope_sin[p : p + t]
        x = self.tok_embeddings(tokens)
        present = []
        for layer, kv in zip(self.layers, past, strict=True):
            x, new_kv = layer(x, cos, sin, kv)
            present.append(new_kv)
        if not self.all_logits:
            x = x[:, -1:, :]
        x = self.norm(x)
        w = self.tok_embeddings.weight if self.output is None else self.output.weight
        return torch.matmul(x, w.t()), present


def _param_map(cfg: LlamaConfig) -> dict[str, str]:
    """module parameter name -> GGUF tensor name."""
    m = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight"}
    if not cfg.tied_embeddings:
        m["output.weight"] = "output.weight"
    for i in range(cfg.n_layers):
        p, g = f"layers.{i}.", f"blk.{i}."
        m |= {
            p + "attn_norm.weight": g + "attn_norm.weight",
            p + "attn.wq.weight": g + "attn_q.weight",
            p + "attn.wk.weight": g + "attn_k.weight",
            p + "attn.wv.weight": g + "attn_v.weight",
            p + "attn.wo.weight": g + "attn_output.weight",
            p + "ffn_norm.weight": g + "ffn_norm.weight",
            p + "ffn.w_gate.weight": g + "ffn_gate.weight",
            p + "ffn.w_up.weight": g + "ffn_up.weight",
            p + "ffn.w_down.weight": g + "ffn_down.weight",
        }
    return m


def from_gguf(model: GGUFModel, dtype: torch.dtype = torch.float32, max_pos: int | None = None,
              all_logits: bool = False) -> Llama:
    """Build the module from dequantized GGUF weights.

    dtype=float64 gives the oracle: the same float32 weight values, evaluated in float64 with
    float64 RoPE tables from libm (more accurate than any float32 path), so it approximates
    the exact function the float32 program rounds.
    """
    net = Llama(model.config, max_pos=max_pos, all_logits=all_logits)
    with warnings.catch_warnings():
        # the weights are read-only memory maps; load_state_dict only copies from these
        # tensors, so torch's warning about writing to them does not apply
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        state = {k: torch.from_numpy(np.ascontiguousarray(model.weights[g]))
                 for k, g in _param_map(model.config).items()}
    net.load_state_dict(state, strict=False)
    if dtype == torch.float64:
        net = net.double()
        n = net.rope_cos.shape[0]
        half = model.config.rope_dim // 2
        theta = np.arange(n, dtype=np.float64)[:, None] * np.power(
            float(np.float32(model.config.rope_base)),
            -2.0 * np.arange(half, dtype=np.float64) / model.config.rope_dim)[None, :]
        net.rope_cos = torch.from_numpy(np.cos(theta))
        net.rope_sin = torch.from_numpy(np.sin(theta))
    elif dtype != torch.float32:
        net = net.to(dtype)
    return net.eval()


@torch.no_grad()
def greedy_generate(net: Llama, prompt: list[int], max_new_tokens: int,
                    eos_id: int | None = None) -> list[int]:
    """Greedy decoding with the KV cache (a sanity tool; the RepOps executor is the real one)."""
    past = net.empty_cache(1)
    tokens = torch.tensor([prompt], dtype=torch.long)
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits, past = net(tokens, past)
        nxt = int(torch.argmax(logits[0, -1]))
        out.append(nxt)
        if nxt == eos_id:
            break
        tokens = torch.tensor([[nxt]], dtype=torch.long)
    return out
