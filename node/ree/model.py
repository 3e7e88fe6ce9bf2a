"""The model an REE session runs: dequantized GGUF weights, RoPE tables, tokenizer, model hash
and the trace program of docs/trace-layout.md, cached on disk keyed by the GGUF's sha256.

Why a cache: dequantizing the GGUF (~12 s), the correctly rounded RoPE tables, the tensor roots
of 540 MB of weights and the ONNX compile behind the model hash (DESIGN §5) all take long and
are pure functions of the file, so a second `ree run` should only memory-map one flat file.

Where the trace program comes from: the ONNX path (GGUF → Llama module → ONNX → RepOps program,
`node.runtime.build.compile_gguf`) compiles once per cache entry; the compiled program is
cached as JSON and lowered on every load (`referee.from_program.lower_program`, about a second),
so the program the nodes run and register is the ONNX graph's. At build time the lowered
program is checked against `referee.lowering.llama_program` of the same weights (same program
root, op for op), and the load fails if they differ. Loads that skip the ONNX compile
(`with_model_hash=False`, for benchmarks) on an entry without the compiled program use
`llama_program` — the same program by that check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from referee.layout import TraceProgram
from referee.lowering import DEFAULT_SEGMENT, LlamaShape, LlamaWeights, llama_program
from repops.commit import tensor_root_np

CACHE_VERSION = 1
DEFAULT_MAX_CTX = 2048

# trace-program role -> GGUF tensor name suffix (per layer)
ROLE_NAMES = {
    "attn_norm": "attn_norm.weight", "wq": "attn_q.weight", "wk": "attn_k.weight",
    "wv": "attn_v.weight", "wo": "attn_output.weight", "ffn_norm": "ffn_norm.weight",
    "w_gate": "ffn_gate.weight", "w_up": "ffn_up.weight", "w_down": "ffn_down.weight",
}


NETWORK_HASH_TAG = b"judge-ree/model/v1"


def network_model_hash(runtime_hash: bytes, program_root: bytes) -> bytes:
    """keccak256(tag ‖ runtime model hash ‖ trace program root) (DESIGN §5 model hash)."""
    from repops.commit import keccak256

    return keccak256(NETWORK_HASH_TAG + runtime_hash + program_root)


class ModelLoadError(RuntimeError):
    """The model cannot be loaded (unknown name, missing or corrupt file); says what to do."""


def _log_nothing(msg: str) -> None:
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_root() -> Path:
    """`$JUDGE_REE_CACHE`, else `<model cache>/ree`."""
    env = os.environ.get("JUDGE_REE_CACHE")
    if env:
        return Path(env).expanduser()
    from node.models import cache_dir

    return cache_dir() / "ree"


@dataclass
class Model:
    """Everything a run needs; weights are float32 arrays keyed by GGUF name (+ rope_cos/sin)."""

    name: str
    gguf_sha256: str
    config: Any  # node.runtime.gguf_loader.LlamaConfig
    metadata: dict[str, Any]
    weights: dict[str, np.ndarray]
    roots: dict[str, bytes]
    model_hash: dict[str, str]
    max_ctx: int
    segment: int
    program: TraceProgram
    program_source: str = "onnx"  # "onnx": lowered from the compiled ONNX graph; "llama_program"
    # GGUF name -> (type name, raw bytes): memory-mapped views of the file's quantized 2-D
    # tensors (the reader load_model opens anyway; parsing a second one costs ~3 s)
    gguf_blocks: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def eos(self) -> int:
        return int(self.metadata.get("tokenizer.ggml.eos_token_id", -1))

    def tokenizer(self):  # noqa: ANN201 - node.runtime.tokenizer.Tokenizer
        from node.runtime.tokenizer import Tokenizer

        return Tokenizer.from_metadata(self.metadata)

    @property
    def network_hash(self) -> str:
        """The model hash used on-chain and in receipts (0x-hex): binds the runtime's model hash
        (program, weights, tokenizer, template, spec version) and the trace program root that
        the one-step verifier checks ops against."""
        runtime = bytes.fromhex(str(self.model_hash.get("model_hash", "")))
        if len(runtime) != 32:
            raise ModelLoadError("the model hash was not computed for this model")
        return "0x" + network_model_hash(runtime, self.program.root()).hex()

    def weights_by_root(self) -> dict[bytes, np.ndarray]:
        """The trace program's WEIGHT inputs (layout §L4) resolved by C4 root."""
        return {self.roots[n]: w for n, w in self.weights.items()}

    def quant_blocks(self) -> dict[bytes, Any]:
        """The GGUF Q4_1/Q8_0 blocks of the 2-D weights, keyed by the C4 root the trace program
        uses for the same tensor (`roots[name]`, the root of its dequantized values), as
        `node.ree.linear_chain.QuantBlocks` for `FastExecutor(quant=...)`.

        Why: CPU decode is bound by reading the weights; the kernel that dequantizes the blocks
        exactly in-kernel (ADR 0003) reads ~5x fewer bytes than the fp32 values and gives the
        same bits. The arrays are memory-mapped views of the file (read when packed); the
        executor checks that each one dequantizes to the fp32 weight of its root."""
        from node.ree.linear_chain import QuantBlocks

        out: dict[bytes, Any] = {}
        for name, (qtype, raw) in self.gguf_blocks.items():
            w = self.weights.get(name)
            if w is not None and w.ndim == 2 and name in self.roots:
                out[self.roots[name]] = QuantBlocks(qtype, raw, *w.shape)
        return out

    def shape(self) -> LlamaShape:
        c = self.config
        return LlamaShape(vocab=c.vocab_size, dim=c.d_model, layers=c.n_layers, heads=c.n_heads,
                          kv_heads=c.n_kv_heads, ffn=c.d_ff, eps=float(np.float32(c.rms_eps)),
                          rope_half=c.rope_pairing == "half")


def resolve_gguf(model: str) -> Path:
    """`smollm2` (a registry name, sha256-checked) or a path to a .gguf file."""
    from node.models import MODELS, ModelError, model_path

    if model in MODELS:
        try:
            return model_path(model)
        except ModelError as e:
            raise ModelLoadError(str(e)) from None
    p = Path(model).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelLoadError(f"GGUF file {p} not found")
        return p
    raise ModelLoadError(f"unknown model {model!r}; known models: {', '.join(sorted(MODELS))} "
                         "(or a path to a .gguf file)")


def role_weights(cfg: Any, n_layers: int | None = None) -> tuple[dict[str, str],
                                                                   list[dict[str, str]]]:
    """GGUF names of the global weights and, per layer, of each LlamaWeights role."""
    glob = {"embed": "token_embd.weight", "norm": "output_norm.weight",
            "output": "token_embd.weight" if cfg.tied_embeddings else "output.weight",
            "rope_cos": "rope_cos", "rope_sin": "rope_sin"}
    layers = [{r: f"blk.{i}.{s}" for r, s in ROLE_NAMES.items()}
              for i in range(cfg.n_layers if n_layers is None else n_layers)]
    return glob, layers


def build_program(cfg: Any, roots: dict[str, bytes], eos: int, max_ctx: int,
                  segment: int = DEFAULT_SEGMENT, n_layers: int | None = None) -> TraceProgram:
    """docs/trace-layout.md §L8 via `referee.lowering.llama_program` from the model shape: the
    cross-check of the ONNX path (`onnx_program`), and the program of loads without it."""
    glob, layers = role_weights(cfg, n_layers)
    w = LlamaWeights(embed=roots[glob["embed"]], norm=roots[glob["norm"]],
                     output=roots[glob["output"]], rope_cos=roots["rope_cos"],
                     rope_sin=roots["rope_sin"],
                     layers=tuple({r: roots[n] for r, n in lay.items()} for lay in layers))
    shape = LlamaShape(vocab=cfg.vocab_size, dim=cfg.d_model, layers=len(layers),
                       heads=cfg.n_heads, kv_heads=cfg.n_kv_heads, ffn=cfg.d_ff,
                       eps=float(np.float32(cfg.rms_eps)), rope_half=cfg.rope_pairing == "half")
    return llama_program(shape, w, max_ctx=max_ctx, eos=eos, segment=segment)


# ------------------------------------------------------------------------------ ONNX path

SMALL_CONSTANT = 1024  # program constants not in the GGUF (gather indices) are cached inline


def onnx_entry(cm: Any, gguf_roots: dict[str, bytes]) -> dict[str, Any]:
    """The cache entry of a compiled program (`node.runtime.build.CompiledModel`): the program
    as JSON and, per weight, its C4 root and the GGUF tensor holding the same values (or the
    values themselves for small constants), so a load needs neither ONNX nor rehashing."""
    from node.runtime.program_json import program_to_json

    by_root = {r: n for n, r in gguf_roots.items()}
    table = {}
    for name in cm.program.weights:
        arr, root = np.asarray(cm.weights[name]), cm.roots[name]
        w: dict[str, Any] = {"root": root.hex(), "shape": list(arr.shape),
                             "dtype": arr.dtype.name, "gguf": by_root.get(root)}
        if w["gguf"] is None:
            if arr.size > SMALL_CONSTANT:
                raise ModelLoadError(f"compiled weight {name!r} matches no GGUF tensor")
            w["value"] = arr.reshape(-1).tolist()
        table[name] = w
    return {"program": program_to_json(cm.program), "weights": table,
            "program_root": cm.program.root().hex()}


def onnx_program(entry: dict[str, Any], weights: dict[str, np.ndarray], max_ctx: int, eos: int,
                 segment: int = DEFAULT_SEGMENT) -> TraceProgram:
    """The trace program lowered from the cached compiled ONNX program (docs/trace-layout.md
    §L8, `referee.from_program`)."""
    from node.runtime.program_json import program_from_json
    from referee.from_program import lower_program

    prog = program_from_json(entry["program"])
    if prog.root().hex() != entry["program_root"]:
        raise ModelLoadError("cached compiled program does not match its root; delete the cache")
    arrays, roots = {}, {}
    for name, w in entry["weights"].items():
        if w["gguf"] is not None:
            a = weights[w["gguf"]]
        else:
            a = np.asarray(w["value"], dtype=w["dtype"]).reshape(w["shape"])
        if list(a.shape) != w["shape"]:
            raise ModelLoadError(f"cached weight {name!r} has shape {a.shape}, not {w['shape']}")
        arrays[name], roots[name] = a, bytes.fromhex(w["root"])
    return lower_program(prog, arrays, max_ctx, eos=eos, segment=segment, roots=roots)


def check_same_program(onnx: TraceProgram, llama: TraceProgram) -> None:
    """The ONNX path and `llama_program` must be the same computation, op for op."""
    if onnx.root() == llama.root():
        return
    for j, (a, b) in enumerate(zip(onnx.ops, llama.ops, strict=False)):
        if a != b:
            raise ModelLoadError(f"the ONNX-lowered trace program differs from llama_program "
                                 f"at op {j} ({a.name!r} vs {b.name!r})")
    raise ModelLoadError(f"the ONNX-lowered trace program has {onnx.n_ops} ops (token op "
                         f"{onnx.token_op}), llama_program {llama.n_ops} ({llama.token_op})")


# ------------------------------------------------------------------------------ disk cache


def _write_cache(d: Path, weights: dict[str, np.ndarray], roots: dict[str, bytes],
                 meta: dict[str, Any]) -> None:
    """One flat little-endian float32 file + a JSON index; written to a temp dir, renamed in."""
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=d.name + ".partial-", dir=d.parent))
    try:
        index, off = {}, 0
        with (tmp / "weights.bin").open("wb") as f:
            for name, w in weights.items():
                a = np.ascontiguousarray(w, dtype="<f4")
                f.write(a.tobytes())
                index[name] = {"offset": off, "shape": list(a.shape),
                               "root": roots[name].hex()}
                off += a.nbytes
        (tmp / "index.json").write_text(json.dumps({**meta, "tensors": index}))
        if d.exists() and meta.get("model_hash"):  # an older entry without the model hash
            old = d.with_name(d.name + f".old-{os.getpid()}")
            try:
                d.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        try:
            tmp.rename(d)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_cache(d: Path) -> tuple[dict[str, np.ndarray], dict[str, bytes], dict[str, Any]]:
    idx = json.loads((d / "index.json").read_text())
    if idx.get("cache_version") != CACHE_VERSION:
        raise ValueError("stale cache")
    raw = np.memmap(d / "weights.bin", dtype="<f4", mode="r")
    weights, roots = {}, {}
    for name, t in idx.pop("tensors").items():
        n = int(np.prod(t["shape"])) if t["shape"] else 1
        start = t["offset"] // 4
        weights[name] = np.asarray(raw[start:start + n]).reshape(t["shape"])
        roots[name] = bytes.fromhex(t["root"])
    return weights, roots, idx


def _compute(path: Path, max_ctx: int, log: Callable[[str], None], with_model_hash: bool,
             segment: int = DEFAULT_SEGMENT) -> tuple[dict[str, np.ndarray], dict[str, bytes],
                                                      dict[str, Any]]:
    from node.runtime.gguf_loader import GGUFError, load_gguf
    from repops.cpu.rope_tables import rope_tables

    t0 = time.time()
    try:
        g = load_gguf(path)
    except GGUFError as e:
        raise ModelLoadError(f"corrupt GGUF: {e}") from None
    log(f"dequantized {path.name} in {time.time() - t0:.1f}s")
    cfg = g.config
    if cfg.rope_dim != cfg.head_dim:
        raise ModelLoadError("partial RoPE is not supported by the trace layout")
    cos, sin = rope_tables(max_ctx, cfg.rope_dim, cfg.rope_base)
    weights = dict(g.weights)
    weights["rope_cos"], weights["rope_sin"] = cos, sin
    roots = {n: tensor_root_np(np.ascontiguousarray(w)) for n, w in weights.items()}
    log(f"weight roots done ({time.time() - t0:.1f}s)")
    mh: dict[str, str] = {}
    info: dict[str, Any] = {"cache_version": CACHE_VERSION, "max_ctx": max_ctx}
    if with_model_hash:
        from node.runtime.build import compile_gguf

        cm = compile_gguf(max_pos=max_ctx, gguf=g)
        mh = cm.hash.to_json()
        log(f"ONNX program compiled, model hash done ({time.time() - t0:.1f}s)")
        entry = onnx_entry(cm, roots)
        del cm
        eos = int(g.metadata.get("tokenizer.ggml.eos_token_id", -1))
        check_same_program(onnx_program(entry, weights, max_ctx, eos, segment),
                           build_program(cfg, roots, eos, max_ctx, segment))
        log(f"trace program lowered from ONNX = llama_program ({time.time() - t0:.1f}s)")
        info["onnx_program"] = entry
    return weights, roots, {**info, "model_hash": mh}


GGUF_INDEX_VERSION = 1


def _gguf_index(path: Path, digest: str) -> tuple[Any, dict[str, Any], dict[str, list]]:
    """The GGUF's config, tokenizer metadata and Q4_1/Q8_0 2-D tensors (name → [type, file
    offset, bytes]), from a JSON file keyed by the file's sha256 once one is written. gguf-py's
    reader takes ~6 s on SmolLM2 (a NumPy view per string of the 49k-token vocabulary and the
    48k merges), and every `ree run`, `ree verify` and node start paid it."""
    from dataclasses import asdict

    from node.runtime.gguf_loader import (
        GGUFError,
        LlamaConfig,
        open_reader,
        read_config,
        read_metadata,
    )

    f = cache_root() / f"{digest[:24]}-gguf.json"
    try:
        d = json.loads(f.read_text())
        if d["version"] == GGUF_INDEX_VERSION and d["sha256"] == digest:
            return LlamaConfig(**d["config"]), d["metadata"], d["quantized"]
    except (OSError, ValueError, TypeError, KeyError):
        pass  # none yet, or unreadable: read the GGUF itself and write it again
    try:
        reader = open_reader(path)
        cfg, meta = read_config(reader), read_metadata(reader)
    except GGUFError as e:
        raise ModelLoadError(f"corrupt GGUF: {e}") from None
    quant = {t.name: [t.tensor_type.name.lower(), int(t.data_offset), int(t.n_bytes)]
             for t in reader.tensors
             if t.tensor_type.name.lower() in ("q4_1", "q8_0") and len(t.shape) == 2}
    tmp = f.with_name(f"{f.name}.{os.getpid()}.partial")
    try:  # only a shortcut for the next load: a read-only cache or odd metadata costs time
        text = json.dumps({"version": GGUF_INDEX_VERSION, "sha256": digest,
                           "config": asdict(cfg), "metadata": meta, "quantized": quant})
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, f)
    except (OSError, TypeError, ValueError):
        with contextlib.suppress(OSError):
            tmp.unlink()
    return cfg, meta, quant


def _quantized(path: Path, quant: dict[str, list]) -> dict[str, tuple[str, np.ndarray]]:
    """`Model.gguf_blocks`: views of the GGUF file's Q4_1/Q8_0 2-D tensors (`_gguf_index`)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    return {name: (qtype, np.asarray(raw[off:off + n])) for name, (qtype, off, n) in quant.items()}


# The longest DOT segment (ADR 0012): a segment past a dot's K is that dot whole, and the
# longest SmolLM2 dot is p·v over max_ctx = 2048 keys. A dispute checks 64 fma steps of any
# segment (docs/trace-layout.md §L9); the game takes chains of up to 1,024 such links.
MAX_SEGMENT = 2048


def load_model(model: str = "smollm2", max_ctx: int = DEFAULT_MAX_CTX,
               segment: int = DEFAULT_SEGMENT, log: Callable[[str], None] = _log_nothing,
               use_cache: bool = True, with_model_hash: bool = True) -> Model:
    """Load (from the cache when possible) and lower the model to its trace program."""
    if max_ctx < 2:
        raise ModelLoadError("max_ctx must be at least 2")
    if not 1 <= segment <= MAX_SEGMENT:
        raise ModelLoadError(f"segment must be in [1, {MAX_SEGMENT}] fma steps, got {segment}")
    path = resolve_gguf(model)
    digest = _sha256(path)
    cfg, meta, quant = _gguf_index(path, digest)
    if max_ctx > cfg.context_length:
        raise ModelLoadError(f"max_ctx {max_ctx} exceeds the model context {cfg.context_length}")
    d = cache_root() / f"{digest[:24]}-ctx{max_ctx}"
    cached = None
    if use_cache and (d / "index.json").is_file():
        try:
            cached = _read_cache(d)
            if with_model_hash and not (cached[2].get("model_hash")
                                        and cached[2].get("onnx_program")):
                cached = None
        except (ValueError, OSError, KeyError):
            cached = None
    if cached is None:
        log(f"preparing {path.name} (first run; cached in {d})")
        cached = _compute(path, max_ctx, log, with_model_hash, segment)
        if use_cache:
            _write_cache(d, *cached)
    weights, roots, info = cached
    eos = int(meta.get("tokenizer.ggml.eos_token_id", -1))
    if info.get("onnx_program"):
        prog, source = onnx_program(info["onnx_program"], weights, max_ctx, eos, segment), "onnx"
    else:
        prog, source = build_program(cfg, roots, eos, max_ctx, segment), "llama_program"
    name = model if "/" not in model and not model.endswith(".gguf") else path.name
    return Model(name, digest, cfg, meta, weights, roots, info.get("model_hash") or {},
                 max_ctx, segment, prog, source, _quantized(path, quant))
