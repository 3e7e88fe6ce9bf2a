"""Load a Llama-architecture GGUF file into exact float32 weights and a config.

Why our own dequantization instead of `gguf.quants.dequantize`: the dequantized values are
model constants bound by the model hash (DESIGN §4.8), so the rule that produces them is part of
the spec and is written down in docs/decisions/0003-dequantization.md. The gguf package's
result is used only as a cross-check in the tests (it agrees bit for bit).

Layout facts of this file (llama.cpp converter): a GGUF tensor of shape [ne0, ne1] is a
row-major (ne1, ne0) array, i.e. a PyTorch `nn.Linear.weight` of (out, in). The Q and K
projection rows are permuted by the converter so that RoPE rotates *adjacent* pairs
(2i, 2i+1) of each head (llama.cpp "NORM" rope); we keep that layout (no re-permutation), so
the runtime uses adjacent-pair RoPE (see `rope_pairing` in `LlamaConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QK = 32  # elements per Q4_1 / Q8_0 block (ggml QK4_1 = QK8_0 = 32)
Q4_1_BLOCK_BYTES = 20  # fp16 d, fp16 m, 16 bytes of nibbles
Q8_0_BLOCK_BYTES = 34  # fp16 d, 32 int8


class GGUFError(ValueError):
    """The file is not a usable GGUF for this runtime; the message names what is wrong."""


@dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters read from the GGUF metadata (never hard-coded)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int
    context_length: int
    rope_base: float
    rope_dim: int
    rms_eps: float  # the exact float32 value stored in the file
    tied_embeddings: bool
    rope_pairing: str = "adjacent"  # pairs (2i, 2i+1) of each head, see module docstring

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class GGUFModel:
    """Dequantized weights (GGUF names), config and tokenizer metadata of one GGUF file."""

    path: Path
    config: LlamaConfig
    weights: dict[str, np.ndarray]
    quant_types: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)


def _f16_to_f32(raw: np.ndarray) -> np.ndarray:
    """binary16 -> binary32 is exact (every half value, subnormals included, is a float)."""
    return raw.view("<f2").astype(np.float32)


def dequantize_q4_1(raw: np.ndarray, n_elements: int) -> np.ndarray:
    """ADR 0003: x = RNE_f32(f32(d) * q + f32(m)); q in 0..15, low nibbles first.

    `f32(d) * q` is exact (11-bit significand times a 4-bit integer fits in 24 bits; no
    underflow because the smallest half subnormal times 15 is a normal float32), so the only
    rounding is the add — which is why the separate-multiply and the fma readings of ggml's
    `x*d + m` give the same bits.
    """
    d, m, q = q4_1_parts(raw, n_elements)
    out = d[:, None] * q.astype(np.float32)  # exact
    out = out + m[:, None]  # the one RNE rounding (numpy float32 add is IEEE, no FTZ)
    return out.reshape(-1)


def q4_1_parts(raw: np.ndarray, n_elements: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_1 blocks as f32(d) [B], f32(m) [B] and q [B, 32] (uint8, 0..15, in element order:
    low nibbles first): what `dequantize_q4_1` combines, and what a kernel that keeps the
    blocks (node/ree/step_plan_cuda.py `CudaChain.q4`) lays out for itself."""
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, Q4_1_BLOCK_BYTES)
    if blocks.shape[0] * QK != n_elements:
        raise GGUFError(f"Q4_1 data holds {blocks.shape[0] * QK} elements, expected {n_elements}")
    d = _f16_to_f32(blocks[:, 0:2].copy()).reshape(-1)
    m = _f16_to_f32(blocks[:, 2:4].copy()).reshape(-1)
    qs = blocks[:, 4:]
    return d, m, np.concatenate([qs & 0x0F, qs >> 4], axis=1)  # elements 0..15, 16..31


def dequantize_q8_0(raw: np.ndarray, n_elements: int) -> np.ndarray:
    """ADR 0003: x = f32(d) * q, q int8; exact (11 + 7 significant bits)."""
    d, q = q8_0_parts(raw, n_elements)
    return (d[:, None] * q.astype(np.float32)).reshape(-1)


def q8_0_parts(raw: np.ndarray, n_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """Q8_0 blocks as f32(d) [B] and q [B, 32] (int8, in element order): what
    `dequantize_q8_0` multiplies, and what a kernel that keeps the blocks
    (node/ree/step_plan_cuda.py `CudaChain.quant`) lays out for itself."""
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, Q8_0_BLOCK_BYTES)
    if blocks.shape[0] * QK != n_elements:
        raise GGUFError(f"Q8_0 data holds {blocks.shape[0] * QK} elements, expected {n_elements}")
    return _f16_to_f32(blocks[:, 0:2].copy()).reshape(-1), blocks[:, 2:].view(np.int8)


def dequantize(type_name: str, raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Exact float32 values of one GGUF tensor, as a row-major array of `shape`."""
    n = int(np.prod(shape)) if shape else 1
    if type_name == "F32":
        out = np.ascontiguousarray(raw).view("<f4").astype(np.float32).reshape(-1)
        if out.size != n:
            raise GGUFError(f"F32 data holds {out.size} elements, expected {n}")
    elif type_name == "Q4_1":
        out = dequantize_q4_1(raw, n)
    elif type_name == "Q8_0":
        out = dequantize_q8_0(raw, n)
    else:
        raise GGUFError(f"tensor type {type_name} is not supported (Q4_1, Q8_0, F32 are)")
    return out.reshape(shape)


def _field(reader: Any, key: str, required: bool = True) -> Any:
    f = reader.fields.get(key)
    if f is None:
        if required:
            raise GGUFError(f"GGUF metadata key {key!r} is missing")
        return None
    return f.contents()


def _f32_field(reader: Any, key: str) -> float:
    """The stored float32 bits as a Python float (exact), so eps is the file's eps."""
    f = reader.fields.get(key)
    if f is None:
        raise GGUFError(f"GGUF metadata key {key!r} is missing")
    return float(np.asarray(f.parts[-1]).view(np.float32)[0])


def read_config(reader: Any) -> LlamaConfig:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise GGUFError(f"architecture {arch!r} is not supported (only 'llama')")
    names = {t.name for t in reader.tensors}
    n_heads = int(_field(reader, "llama.attention.head_count"))
    d_model = int(_field(reader, "llama.embedding_length"))
    rope_dim = _field(reader, "llama.rope.dimension_count", required=False)
    vocab = _field(reader, "llama.vocab_size", required=False)
    if vocab is None:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return LlamaConfig(
        n_layers=int(_field(reader, "llama.block_count")),
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        d_ff=int(_field(reader, "llama.feed_forward_length")),
        vocab_size=int(vocab),
        context_length=int(_field(reader, "llama.context_length")),
        rope_base=_f32_field(reader, "llama.rope.freq_base"),
        rope_dim=int(rope_dim) if rope_dim is not None else d_model // n_heads,
        rms_eps=_f32_field(reader, "llama.attention.layer_norm_rms_epsilon"),
        tied_embeddings="output.weight" not in names,
    )


TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.chat_template",
)


def open_reader(path: Path) -> Any:
    """A gguf.GGUFReader, or a GGUFError for a missing/corrupt file."""
    import gguf  # local import: keeps `import node.runtime` cheap

    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"GGUF file not found: {path}")
    try:
        return gguf.GGUFReader(str(path))
    except Exception as e:  # the reader raises assorted errors on truncated/garbled files
        raise GGUFError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e})") from e


def read_metadata(reader: Any) -> dict[str, Any]:
    """The tokenizer/template fields as plain Python values."""
    out: dict[str, Any] = {}
    for key in TOKENIZER_KEYS:
        value = _field(reader, key, required=False)
        if value is not None:
            out[key] = value
    return out


def load_gguf(path: Path | None = None) -> GGUFModel:
    """Read and dequantize a whole GGUF (default: the pinned SmolLM2 file)."""
    if path is None:
        from node.models import smollm2_path

        path = smollm2_path()
    reader = open_reader(Path(path))
    config = read_config(reader)
    weights: dict[str, np.ndarray] = {}
    quant: dict[str, str] = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(list(t.shape)))  # GGUF lists ne0 (innermost) first
        type_name = t.tensor_type.name
        weights[t.name] = dequantize(type_name, np.asarray(t.data), shape)
        quant[t.name] = type_name
    _check_shapes(config, weights)
    return GGUFModel(Path(path), config, weights, quant, read_metadata(reader))


def _check_shapes(cfg: LlamaConfig, w: dict[str, np.ndarray]) -> None:
    """Refuse a file whose tensors do not match its own metadata (a corrupt or odd GGUF)."""
    hd = cfg.head_dim
    expected = {
        "token_embd.weight": (cfg.vocab_size, cfg.d_model),
        "output_norm.weight": (cfg.d_model,),
    }
    for i in range(cfg.n_layers):
        p = f"blk.{i}."
        expected |= {
            p + "attn_norm.weight": (cfg.d_model,),
            p + "attn_q.weight": (cfg.n_heads * hd, cfg.d_model),
            p + "attn_k.weight": (cfg.n_kv_heads * hd, cfg.d_model),
            p + "attn_v.weight": (cfg.n_kv_heads * hd, cfg.d_model),
            p + "attn_output.weight": (cfg.d_model, cfg.n_heads * hd),
            p + "ffn_norm.weight": (cfg.d_model,),
            p + "ffn_gate.weight": (cfg.d_ff, cfg.d_model),
            p + "ffn_up.weight": (cfg.d_ff, cfg.d_model),
            p + "ffn_down.weight": (cfg.d_model, cfg.d_ff),
        }
    if not cfg.tied_embeddings:
        expected["output.weight"] = (cfg.vocab_size, cfg.d_model)
    for name, shape in expected.items():
        if name not in w:
            raise GGUFError(f"tensor {name} is missing from the GGUF")
        if w[name].shape != shape:
            raise GGUFError(f"tensor {name} has shape {w[name].shape}, expected {shape}")
