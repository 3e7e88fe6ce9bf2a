"""Export the plain Llama module to ONNX: one graph for a prefill/decode step with KV cache.

Graph signature (dynamic dims: batch B, new tokens T, past length P):
  inputs   tokens int64 [B, T], past_k_{i}, past_v_{i} float32 [B, Hkv, P, Dh] for each layer i
  outputs  logits float32 [B, 1, V] (or [B, T, V] with all_logits), present_k_{i},
           present_v_{i} float32 [B, Hkv, P+T, Dh]

Why the legacy TorchScript exporter (opset 17): it needs no onnxscript, produces plain standard
ops the compiler understands, and with constant folding off it keeps `Transpose(W)` in front of
each MatMul, so every weight reaches the compiler in its GGUF [N, K] layout (RepOps spec §3.3
`linear`) and with its GGUF values, whose roots the model hash binds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from node.runtime.llama import Llama

OPSET = 17


class _FlatStep(nn.Module):
    """Flat tensor signature for the exporter (it cannot take a list of tuples)."""

    def __init__(self, net: Llama) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: torch.Tensor, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        past = [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)]
        logits, present = self.net(tokens, past)
        out: list[torch.Tensor] = [logits]
        for k, v in present:
            out += [k, v]
        return tuple(out)


def io_names(n_layers: int) -> tuple[list[str], list[str]]:
    ins, outs = ["tokens"], ["logits"]
    for i in range(n_layers):
        ins += [f"past_k_{i}", f"past_v_{i}"]
        outs += [f"present_k_{i}", f"present_v_{i}"]
    return ins, outs


def export_onnx(net: Llama, path: Path) -> Path:
    """Write the step graph to `path` (weights > 2 GB would need external data; 135M is fine
    as a single file only up to protobuf's 2 GB limit, so external data is always used)."""
    cfg = net.cfg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ins, outs = io_names(cfg.n_layers)
    tokens = torch.zeros((1, 3), dtype=torch.long)
    past = []
    for _ in range(cfg.n_layers):
        past += [torch.zeros((1, cfg.n_kv_heads, 2, cfg.head_dim))] * 2
    dyn = {"tokens": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
    if net.all_logits:
        dyn["logits"][1] = "seq"
    for i in range(cfg.n_layers):
        dyn[f"past_k_{i}"] = dyn[f"past_v_{i}"] = {0: "batch", 2: "past"}
        dyn[f"present_k_{i}"] = dyn[f"present_v_{i}"] = {0: "batch", 2: "total"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _FlatStep(net).eval(),
            (tokens, *past),
            str(path),
            input_names=ins,
            output_names=outs,
            dynamic_axes=dyn,
            opset_version=OPSET,
            do_constant_folding=False,
            dynamo=False,
            external_data=True,
        )
    return path
