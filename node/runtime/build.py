"""GGUF -> plain Llama -> ONNX -> RepOps program + weights + model hash, in one call.

Why through ONNX even for our own GGUF: the ONNX path is the general one (any ONNX graph of
supported ops compiles), and running SmolLM2 through it is what tests it on a real model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from node.runtime.compiler import compile_onnx
from node.runtime.gguf_loader import GGUFModel, LlamaConfig, load_gguf
from node.runtime.llama import from_gguf
from node.runtime.model_hash import ModelHash, model_hash, weight_roots
from node.runtime.onnx_export import export_onnx
from node.runtime.program import Program
from node.runtime.tokenizer import Tokenizer


@dataclass
class CompiledModel:
    config: LlamaConfig
    program: Program
    weights: dict[str, np.ndarray]
    tokenizer: Tokenizer
    hash: ModelHash
    max_pos: int
    roots: dict[str, bytes] = field(default_factory=dict)  # C4 root of each program weight


def compile_gguf(path: Path | None = None, max_pos: int | None = None,
                 gguf: GGUFModel | None = None, onnx_path: Path | None = None) -> CompiledModel:
    """Compile a GGUF (default: the pinned SmolLM2) into a RepOps program.

    `max_pos` bounds the RoPE tables (default: the model's context length); it is part of the
    weights and therefore of the model hash.
    """
    g = gguf or load_gguf(path)
    net = from_gguf(g, max_pos=max_pos)
    with tempfile.TemporaryDirectory(prefix="judge-onnx-") as tmp:
        p = export_onnx(net, Path(onnx_path) if onnx_path else Path(tmp) / "model.onnx")
        del net
        prog, weights = compile_onnx(p)
    tok = Tokenizer.from_metadata(g.metadata)
    prog.meta = {"config": g.config.to_dict(), "max_pos": max_pos or g.config.context_length}
    roots = weight_roots(prog, weights)  # hashed once: the model hash and the trace lowering
    return CompiledModel(g.config, prog, weights, tok,
                         model_hash(prog, weights, g.metadata, roots=roots),
                         max_pos or g.config.context_length,
                         dict(zip(prog.weights, roots, strict=True)))


def main() -> None:
    import json
    import time

    t = time.time()
    cm = compile_gguf()
    print(json.dumps({"ops": len(cm.program.ops), "summary": cm.program.summary(),
                      **cm.hash.to_json(), "seconds": round(time.time() - t, 1)}, indent=1))


if __name__ == "__main__":
    main()
