"""ONNX-compiled program → trace program (referee.from_program): the same program root as
`llama_program` for the same weights (so the ONNX path and the trace the nodes run are one
computation, op by op), the lowered program runs to the compiled program's tokens, and a
perturbed program gives another root or a named error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from node.ree.model import ModelLoadError, build_program, role_weights
from node.runtime.compiler import compile_onnx
from node.runtime.execute import run_program, weights_to_torch
from node.runtime.llama import Llama, _param_map
from node.runtime.program import F32, Op, Program, Ref
from node.runtime.program_json import program_from_json, program_to_json
from referee.execute import run
from referee.from_program import LoweringError, lower_program
from referee.layout import Code
from repops.commit import tensor_root_np
from tests.runtime.test_compiler import CFG, tiny_compiled

MAX_CTX = CFG.context_length  # the module's RoPE tables have this many rows
SEGMENT = 16
EOS = 7


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_compiled(tmp_path_factory, 1)


def _gguf_roots(net: Llama) -> dict[str, bytes]:
    """C4 roots of the module's tensors under their GGUF names (what node.ree.model uses)."""
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    named = {g: sd[m] for m, g in _param_map(CFG).items()}
    named["rope_cos"], named["rope_sin"] = sd["rope_cos"], sd["rope_sin"]
    return {k: tensor_root_np(np.ascontiguousarray(v)) for k, v in named.items()}


def _lower(prog: Program, weights: dict[str, np.ndarray], **kw):
    return lower_program(prog, weights, MAX_CTX, eos=EOS, segment=SEGMENT, **kw)


def _copy(prog: Program) -> Program:
    return program_from_json(json.loads(json.dumps(program_to_json(prog))))


def _first(prog: Program, code: str) -> int:
    return next(i for i, op in enumerate(prog.ops) if op.code == code)


def test_tiny_lowered_program_is_llama_program(tiny):
    net, prog, weights = tiny
    lowered = _lower(prog, weights)
    llama = build_program(CFG, _gguf_roots(net), EOS, MAX_CTX, SEGMENT)
    assert lowered.n_ops == llama.n_ops and lowered.token_op == llama.token_op
    assert lowered.op_hashes() == llama.op_hashes()
    assert lowered.root() == llama.root()
    codes = {op.code for op in lowered.ops}
    assert Code.ROPE in codes and Code.CONCAT in codes and Code.SAMPLE in codes


def test_tiny_lowered_program_runs_to_the_compiled_programs_tokens(tiny):
    """The lowered trace, executed by the reference executor, gives the greedy tokens and the
    logits bits of the compiled program run by the runtime executor (prefill + decode)."""
    net, prog, weights = tiny
    lowered = _lower(prog, weights)
    store = {tensor_root_np(np.ascontiguousarray(w)): w for w in weights.values()}
    prompt, steps = [5, 9, 11], 3
    trace = run(lowered, store, prompt, steps)
    w = weights_to_torch(weights)
    toks, past, want = torch.tensor([prompt]), net.empty_cache(1), []
    for _ in range(steps):
        n, p = toks.shape[1], past[0][0].shape[2]
        ins = {"tokens": toks}
        for i, (k, v) in enumerate(past):
            ins[f"past_k_{i}"], ins[f"past_v_{i}"] = k, v
        out = run_program(prog, w, ins, {"batch": 1, "seq": n, "past": p})
        past = [(out[f"present_k_{i}"], out[f"present_v_{i}"]) for i in range(CFG.n_layers)]
        want.append((int(torch.argmax(out["logits"][0, -1])), out["logits"].reshape(-1)))
        toks = torch.tensor([[want[-1][0]]])
    assert trace.output_tokens() == [t for t, _ in want]
    logits_op = lowered.ops[lowered.token_op].inputs[0].op  # PICK reads the logits row z
    for s, (_, logits) in enumerate(want):
        got = trace.outputs[s * lowered.n_ops + logits_op].reshape(-1)
        assert np.array_equal(got.view(np.uint32), logits.numpy().view(np.uint32))


def test_program_json_round_trip_keeps_the_root(tiny):
    _, prog, weights = tiny
    again = _copy(prog)
    assert again.root() == prog.root() and again.io_record() == prog.io_record()
    assert _lower(again, weights).root() == _lower(prog, weights).root()


def test_perturbed_attribute_changes_the_root(tiny):
    _, prog, weights = tiny
    base = _lower(prog, weights).root()
    eps = _copy(prog)
    i = _first(eps, "rms_norm")
    eps.ops[i].attrs["eps"] = F32(2e-5)
    scale = _copy(prog)
    j = _first(scale, "attention")
    scale.ops[j].attrs["scale"] = F32(0.5)
    act = _copy(prog)
    k = _first(act, "silu")
    act.ops[k].code = "sigmoid"
    roots = {_lower(p, weights).root() for p in (eps, scale, act)}
    assert len(roots) == 3 and base not in roots


def test_swapped_rope_pairs_are_not_lowered_as_rope(tiny):
    """Swapping the even/odd gather indices of the RoPE tree is another function: it must not
    become the ROPE op (here the rotated k is no longer a trace tensor the KV append can take,
    so the lowering names the node)."""
    _, prog, weights = tiny
    names = [n for n in prog.weights if n.endswith("Gather_6:indices")]
    w = dict(weights)
    for n in names:
        other = n.replace("Gather_6", "Gather_7")
        w[n], w[other] = weights[other], weights[n]
    with pytest.raises(LoweringError, match="ONNX node"):
        _lower(prog, w)


def test_unsupported_op_is_named(tiny):
    _, prog, weights = tiny
    bad = _copy(prog)
    k = _first(bad, "silu")
    bad.ops[k] = Op("relu", bad.ops[k].inputs, {}, bad.ops[k].shape, "float32", "my_relu")
    with pytest.raises(LoweringError, match=r"op \d+ \(relu, ONNX node 'my_relu'\).*not "
                                            "supported"):
        _lower(bad, weights)


def test_kv_input_read_outside_its_append_is_named(tiny):
    _, prog, weights = tiny
    bad = _copy(prog)
    past = next(k for k, (n, _, _) in enumerate(bad.inputs) if n == "past_v_0")
    i = _first(bad, "attention")
    bad.ops[i].inputs[2] = Ref("input", past)
    with pytest.raises(LoweringError, match="past_v_0"):
        _lower(bad, weights)


def test_given_roots_are_used(tiny):
    """Roots passed in (the model cache's) are what the records bind."""
    _, prog, weights = tiny
    fake = {n: bytes([k + 1]) * 32 for k, n in enumerate(prog.weights)}
    lowered = _lower(prog, weights, roots=fake)
    bound = {i.root for op in lowered.ops for i in op.inputs if i.root}
    used = {fake[n] for n in prog.weights if not n.endswith(":indices")}
    assert bound == used


# ---------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def smollm2():
    from node.models import ModelError
    from node.ree.model import load_model

    try:
        return load_model("smollm2", max_ctx=2048)
    except (ModelError, ModelLoadError) as e:  # pragma: no cover - only without `make setup`
        pytest.skip(f"SmolLM2 GGUF not available: {e}")


def test_smollm2_runs_the_onnx_lowered_program(smollm2):
    """The program a node loads (lowered from the cached ONNX compile) is llama_program's."""
    m = smollm2
    assert m.program_source == "onnx"
    llama = build_program(m.config, m.roots, m.eos, m.max_ctx, m.segment)
    assert m.program.root() == llama.root()


@pytest.mark.slow
def test_smollm2_onnx_compile_lowers_to_llama_program(gguf_model):
    """The whole path from the GGUF: Llama module → ONNX → compile → lower (≈2 min)."""
    from node.runtime.build import compile_gguf
    from repops.cpu.rope_tables import rope_tables

    max_ctx = 256
    cm = compile_gguf(max_pos=max_ctx, gguf=gguf_model)
    eos = int(gguf_model.metadata["tokenizer.ggml.eos_token_id"])
    lowered = lower_program(cm.program, cm.weights, max_ctx, eos=eos, roots=cm.roots)
    cfg = gguf_model.config
    cos, sin = rope_tables(max_ctx, cfg.rope_dim, cfg.rope_base)
    named = {**gguf_model.weights, "rope_cos": cos, "rope_sin": sin}
    glob, layers = role_weights(cfg)
    needed = set(glob.values()) | {n for lay in layers for n in lay.values()}
    roots = {n: tensor_root_np(np.ascontiguousarray(named[n])) for n in needed}
    assert lowered.root() == build_program(cfg, roots, eos, max_ctx).root()


def _toy_graph():
    """tokens → embedding → softmax → ·x → last row → ·Wᵀ: no KV cache, other op kinds."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    e = onnx.numpy_helper.from_array(rng.standard_normal((12, 8)).astype(np.float32), "E")
    w = onnx.numpy_helper.from_array(rng.standard_normal((12, 8)).astype(np.float32), "W")
    ints = [onnx.numpy_helper.from_array(np.array(v, np.int64), n)
            for n, v in (("s0", [-1]), ("s1", [2**62]), ("ax", [1]))]
    nodes = [helper.make_node("Gather", ["E", "tokens"], ["x"], name="embed"),
             helper.make_node("Softmax", ["x"], ["p"], name="soft", axis=-1),
             helper.make_node("Mul", ["p", "x"], ["y"], name="gate"),
             helper.make_node("Slice", ["y", "s0", "s1", "ax"], ["last"], name="last"),
             helper.make_node("Transpose", ["W"], ["wt"], name="wt", perm=[1, 0]),
             helper.make_node("MatMul", ["last", "wt"], ["logits"], name="head")]
    tok = helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "seq"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, 12])
    g = helper.make_graph(nodes, "toy", [tok], [out], [e, w, *ints])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_graph_without_kv_cache_lowers_and_runs_to_the_same_bits():
    prog, weights = compile_onnx(_toy_graph())
    lowered = lower_program(prog, weights, 16, segment=4)
    codes = [op.code for op in lowered.ops]
    assert Code.MOVE in codes and Code.CONCAT not in codes  # the last row is a copy
    store = {tensor_root_np(np.ascontiguousarray(w)): w for w in weights.values()}
    prompt = [3, 1, 4]
    trace = run(lowered, store, prompt, 3)
    w = weights_to_torch(weights)
    logits_op = lowered.ops[lowered.token_op].inputs[0].op
    toks = prompt
    for s, tok in enumerate(trace.output_tokens()):
        out = run_program(prog, w, {"tokens": torch.tensor([toks])},
                          {"batch": 1, "seq": len(toks), "past": 0})["logits"]
        got = trace.outputs[s * lowered.n_ops + logits_op].reshape(-1)
        assert np.array_equal(got.view(np.uint32), out.reshape(-1).numpy().view(np.uint32))
        assert tok == int(torch.argmax(out.reshape(-1)))
        toks = [tok]
