"""Causal grouped-query attention with a KV prefix on the GPU (RepOps spec §6.10), composed
from the spec's own steps: S = mul(dot(q, k), scale) (matmul chain over d), causal softmax over
the visible keys, and the P·V chain over the visible keys only (matmul.causal_matmul).
"""

from __future__ import annotations

import torch

from repops.gpu import elementwise as ew
from repops.gpu.launch import check_f32_cuda
from repops.gpu.matmul import causal_matmul, matmul
from repops.gpu.norm import _f32_scalar, f32_bits
from repops.gpu.softmax import softmax_rows


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """RepOps spec §6.10: q[..., Hq, Tq, D], k/v[..., Hkv, Tk, D] -> [..., Hq, Tq, D]."""
    check_f32_cuda("attention", q, k, v)
    if q.dim() < 3 or k.shape != v.shape or k.dim() != q.dim():
        raise ValueError(f"repops.attention: need q[..., Hq, Tq, D], k = v[..., Hkv, Tk, D]; got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    *lead, hq, tq, d = q.shape
    *lead_k, hkv, tk, dk = k.shape
    if (list(lead) != list(lead_k) or dk != d or hkv == 0 or hq % hkv or tk < tq):
        raise ValueError(f"repops.attention: incompatible q {tuple(q.shape)}, k {tuple(k.shape)}"
                         " (need equal batch dims and D, Hq a multiple of Hkv, Tk >= Tq)")
    rep = hq // hkv
    # query head h reads kv head h div rep (HF repeat_kv): a bit copy
    k_e = k.unsqueeze(-3).expand(*lead, hkv, rep, tk, d).reshape(-1, tk, d)
    v_e = v.unsqueeze(-3).expand(*lead, hkv, rep, tk, d).reshape(-1, tk, d)
    q3 = q.reshape(-1, tq, d)
    nb = q3.shape[0]
    if nb == 0 or tq == 0:
        return torch.empty(q.shape, dtype=torch.float32, device=q.device)
    scores = matmul(q3, k_e.transpose(1, 2))  # §3.1 chain over d, from +0.0
    scores = ew.mul(scores, _f32_scalar(f32_bits(scale), q.device))
    probs = softmax_rows(scores.reshape(-1, tk), causal=(tq, tk - tq)).reshape(nb, tq, tk)
    out = causal_matmul(probs, v_e, tk - tq)
    return out.reshape(q.shape)
