"""Model hash: deterministic, and sensitive to program, weights, tokenizer and template."""

from __future__ import annotations

import numpy as np
import torch

from node.runtime.compiler import compile_onnx
from node.runtime.gguf_loader import LlamaConfig
from node.runtime.llama import Llama
from node.runtime.model_hash import model_hash, tokenizer_hash
from node.runtime.onnx_export import export_onnx

CFG = LlamaConfig(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, d_ff=48, vocab_size=50,
                  context_length=32, rope_base=10000.0, rope_dim=16, rms_eps=1e-5,
                  tied_embeddings=True)
META = {"tokenizer.ggml.tokens": ["a", "b", "ab"], "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.token_type": [1, 1, 1], "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.pre": "smollm",
        "tokenizer.chat_template": "{{ x }}"}


def _compile(tmp_path, tag):
    torch.manual_seed(3)
    net = Llama(CFG).eval()
    return compile_onnx(export_onnx(net, tmp_path / f"{tag}.onnx"))


def test_same_model_same_hash_and_sensitivity(tmp_path):
    p1, w1 = _compile(tmp_path, "a")
    p2, w2 = _compile(tmp_path, "b")
    h1, h2 = model_hash(p1, w1, META), model_hash(p2, w2, META)
    assert h1 == h2 and len(h1.model_hash) == 32
    w3 = {k: v.copy() for k, v in w2.items()}
    name = p2.weights[1]
    w3[name].reshape(-1).view(np.uint32)[0] ^= 1  # one bit of one weight
    assert model_hash(p2, w3, META).model_hash != h1.model_hash
    meta2 = dict(META, **{"tokenizer.chat_template": "{{ y }}"})
    assert model_hash(p1, w1, meta2).model_hash != h1.model_hash
    meta3 = dict(META, **{"tokenizer.ggml.merges": ["b a"]})
    assert tokenizer_hash(meta3) != tokenizer_hash(META)
    p2.ops[0].attrs["extra"] = 1
    assert model_hash(p2, w2, META).program_root != h1.program_root
