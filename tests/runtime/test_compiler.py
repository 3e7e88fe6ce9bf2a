"""ONNX -> RepOps program: fusions, symbolic shapes, prefill/decode bit equality, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from node.runtime.compiler import CompileError, compile_onnx
from node.runtime.execute import run_program, weights_to_torch
from node.runtime.gguf_loader import LlamaConfig
from node.runtime.llama import Llama
from node.runtime.onnx_export import export_onnx

CFG = LlamaConfig(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=96, vocab_size=100,
                  context_length=64, rope_base=10000.0, rope_dim=16, rms_eps=1e-5,
                  tied_embeddings=True)


def tiny_compiled(tmp_path_factory, seed: int):  # noqa: ANN001, ANN201
    """A random tiny Llama (norm weights near 1), exported to ONNX and compiled: the net, the
    RepOps program and its weights (also used by test_from_program)."""
    torch.manual_seed(seed)
    net = Llama(CFG).eval()
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    path = export_onnx(net, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    prog, w = compile_onnx(path)
    return net, prog, w


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    net, prog, w = tiny_compiled(tmp_path_factory, 0)
    return net, prog, weights_to_torch(w)


def _inputs(tokens, past):
    d = {"tokens": tokens}
    for i, (k, v) in enumerate(past):
        d[f"past_k_{i}"], d[f"past_v_{i}"] = k, v
    return d


def _present(out, n):
    return [(out[f"present_k_{i}"], out[f"present_v_{i}"]) for i in range(n)]


def test_fused_ops_recognized(tiny):
    _, prog, _ = tiny
    s = prog.summary()
    assert s["rms_norm"] == 2 * CFG.n_layers + 1
    assert s["attention"] == CFG.n_layers and s["silu"] == CFG.n_layers
    assert s["linear"] == 7 * CFG.n_layers + 1 and s["embedding"] == 1
    assert "softmax" not in s and "sigmoid" not in s and "sqrt" not in s


def test_program_matches_torch_and_prefill_equals_decode_bitwise(tiny):
    net, prog, w = tiny
    toks = torch.tensor([[5, 7, 9, 11]])
    empty = net.empty_cache(1)
    full = run_program(prog, w, _inputs(toks, empty), {"batch": 1, "seq": 4, "past": 0})
    ref, _ = net(toks, empty)
    assert torch.allclose(full["logits"], ref, atol=1e-4)
    pre = run_program(prog, w, _inputs(toks[:, :3], empty), {"batch": 1, "seq": 3, "past": 0})
    dec = run_program(prog, w, _inputs(toks[:, 3:], _present(pre, CFG.n_layers)),
                      {"batch": 1, "seq": 1, "past": 3})
    assert torch.equal(dec["logits"].view(torch.int32), full["logits"].view(torch.int32))
    for i in range(CFG.n_layers):
        assert torch.equal(dec[f"present_k_{i}"], full[f"present_k_{i}"])


def test_batch_invariance(tiny):
    net, prog, w = tiny
    toks = torch.tensor([[5, 7, 9], [1, 2, 3]])
    both = run_program(prog, w, _inputs(toks, net.empty_cache(2)),
                       {"batch": 2, "seq": 3, "past": 0})
    one = run_program(prog, w, _inputs(toks[1:], net.empty_cache(1)),
                      {"batch": 1, "seq": 3, "past": 0})
    assert torch.equal(both["logits"][1:].view(torch.int32), one["logits"].view(torch.int32))


def test_program_root_deterministic(tiny):
    _, prog, _ = tiny
    assert prog.root() == prog.root() and len(prog.root()) == 32
    rec = prog.ops[0].record()
    assert rec[0] == 0x10 and prog.ops[0].op_hash() != prog.ops[1].op_hash()


def _graph(node, inputs, outputs, inits=()):
    g = helper.make_graph([node], "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_op_named():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    m = _graph(helper.make_node("Tanh", ["x"], ["y"], name="my_tanh"), [x], [y])
    with pytest.raises(CompileError, match="my_tanh.*Tanh is not supported"):
        compile_onnx(m)


def test_unsupported_attribute_named():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [2, 1])
    m = _graph(helper.make_node("ArgMax", ["x"], ["y"], name="am", axis=1,
                                select_last_index=1), [x], [y])
    with pytest.raises(CompileError, match="'am'.*select_last_index"):
        compile_onnx(m)


def test_gemm_with_transposed_weight_becomes_linear():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    wv = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    w = onnx.numpy_helper.from_array(wv, "W")
    m = _graph(helper.make_node("Gemm", ["x", "W"], ["y"], name="g", transB=1), [x], [y], [w])
    prog, weights = compile_onnx(m)
    assert [op.code for op in prog.ops] == ["linear"]
    xv = np.ones((2, 3), np.float32)
    out = run_program(prog, weights_to_torch(weights), {"x": torch.from_numpy(xv)}, {})
    assert np.allclose(out["y"].numpy(), xv @ wv.T)
