"""A tiny Llama-shaped model, its trace program and a run, shared by the referee tests."""

from __future__ import annotations

import numpy as np
import torch

from referee.execute import run
from referee.lowering import LAYER_ROLES, LlamaShape, LlamaWeights, llama_program
from repops import api as repops
from repops.commit import tensor_root_np

TOY = LlamaShape(vocab=40, dim=16, layers=1, heads=4, kv_heads=2, ffn=24)
MAX_CTX = 16
SEGMENT = 8


def toy_weights(seed: int = 0, cfg: LlamaShape = TOY, max_ctx: int = MAX_CTX):
    rng = np.random.default_rng(seed)

    def mat(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    cos, sin = repops.rope_tables(max_ctx, cfg.head_dim, 10000.0)
    arrays = {"embed": mat(cfg.vocab, cfg.dim), "norm": mat(cfg.dim) + 1,
              "rope_cos": cos.numpy(), "rope_sin": sin.numpy()}
    dkv = cfg.kv_heads * cfg.head_dim
    shapes = {"attn_norm": (cfg.dim,), "wq": (cfg.dim, cfg.dim), "wk": (dkv, cfg.dim),
              "wv": (dkv, cfg.dim), "wo": (cfg.dim, cfg.dim), "ffn_norm": (cfg.dim,),
              "w_gate": (cfg.ffn, cfg.dim), "w_up": (cfg.ffn, cfg.dim),
              "w_down": (cfg.dim, cfg.ffn)}
    layers = [{r: mat(*shapes[r]) for r in LAYER_ROLES} for _ in range(cfg.layers)]
    store = {}

    def root(a):
        r = tensor_root_np(a)
        store[r] = a
        return r

    w = LlamaWeights(embed=root(arrays["embed"]), norm=root(arrays["norm"]),
                     output=root(arrays["embed"]), rope_cos=root(arrays["rope_cos"]),
                     rope_sin=root(arrays["rope_sin"]),
                     layers=tuple({r: root(a) for r, a in layer.items()} for layer in layers))
    return w, store, arrays, layers


def toy_run(prompt=(3, 7, 1), steps=3, seed=0, eos=None, override=None):
    w, store, arrays, layers = toy_weights(seed)
    prog = llama_program(TOY, w, MAX_CTX, segment=SEGMENT,
                         **({} if eos is None else {"eos": eos}))
    return run(prog, store, list(prompt), steps, override=override), store, arrays, layers


def reference_tokens(prompt, steps, arrays, layers, cfg=TOY):
    """Greedy decoding with the high-level RepOps API (no KV cache: full recompute)."""
    t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    toks = list(prompt)
    out = []
    hd = cfg.head_dim
    for _ in range(steps):
        n = len(toks)
        x = repops.embedding(t(np.array(toks, dtype=np.int64)), t(arrays["embed"]))
        cos, sin = t(arrays["rope_cos"][:n]), t(arrays["rope_sin"][:n])
        for L in layers:
            h = repops.rms_norm(x, t(L["attn_norm"]), eps=cfg.eps)
            q = repops.linear(h, t(L["wq"])).reshape(n, cfg.heads, hd).transpose(0, 1)
            k = repops.linear(h, t(L["wk"])).reshape(n, cfg.kv_heads, hd).transpose(0, 1)
            v = repops.linear(h, t(L["wv"])).reshape(n, cfg.kv_heads, hd).transpose(0, 1)
            q = repops.rope(q.contiguous(), cos, sin, pairing="adjacent")
            k = repops.rope(k.contiguous(), cos, sin, pairing="adjacent")
            a = repops.attention(q, k, v.contiguous())
            a = a.transpose(0, 1).reshape(n, cfg.dim).contiguous()
            x = repops.add(x, repops.linear(a, t(L["wo"])))
            h = repops.rms_norm(x, t(L["ffn_norm"]), eps=cfg.eps)
            g = repops.silu(repops.linear(h, t(L["w_gate"])))
            u = repops.linear(h, t(L["w_up"]))
            x = repops.add(x, repops.linear(repops.mul(g, u), t(L["w_down"])))
        h = repops.rms_norm(x[-1:].contiguous(), t(arrays["norm"]), eps=cfg.eps)
        logits = repops.linear(h, t(arrays["embed"]))
        tok = int(repops.argmax(logits, dim=-1)[0])
        out.append(tok)
        toks.append(tok)
    return out, logits
