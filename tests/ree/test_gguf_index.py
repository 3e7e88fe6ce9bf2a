"""`_gguf_index`: what `load_model` reads from the GGUF (config, tokenizer metadata, the
quantized tensors' places in the file) comes from a JSON index keyed by the file's sha256
after the first load, and equals what gguf-py's reader gives (the reader takes ~6 s)."""

from __future__ import annotations

import numpy as np
import pytest

from node.models import ModelError
from node.ree import model as M


@pytest.fixture
def gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_REE_CACHE", str(tmp_path))
    try:
        path = M.resolve_gguf("smollm2")
    except (ModelError, M.ModelLoadError) as e:  # pragma: no cover - only without `make setup`
        pytest.skip(f"SmolLM2 GGUF not available: {e}")
    return path, M._sha256(path), tmp_path


def test_the_index_gives_what_the_reader_gives(gguf):
    from node.runtime.gguf_loader import open_reader, read_config, read_metadata

    path, digest, cache = gguf
    first = M._gguf_index(path, digest)  # reads the GGUF, writes the index
    index = cache / f"{digest[:24]}-gguf.json"
    assert index.is_file()
    again = M._gguf_index(path, digest)  # from the index alone
    reader = open_reader(path)
    assert first[0] == again[0] == read_config(reader)
    assert first[1] == again[1] == read_metadata(reader)
    want = {t.name: (t.tensor_type.name.lower(), np.asarray(t.data).reshape(-1).view(np.uint8))
            for t in reader.tensors
            if t.tensor_type.name.lower() in ("q4_1", "q8_0") and len(t.shape) == 2}
    got = M._quantized(path, again[2])
    assert got.keys() == want.keys() and len(got) > 200
    for name, (qtype, raw) in got.items():
        assert qtype == want[name][0] and np.array_equal(raw, want[name][1]), name


def test_a_garbled_or_foreign_index_is_not_used(gguf):
    path, digest, cache = gguf
    good = M._gguf_index(path, digest)
    index = cache / f"{digest[:24]}-gguf.json"
    index.write_text("{not json")
    assert M._gguf_index(path, digest) == good  # read from the GGUF again, and rewritten
    text = index.read_text()
    index.write_text(text.replace(digest, "0" * 64))  # another file's index under this name
    assert M._gguf_index(path, digest) == good
    assert index.read_text() == text


def test_an_unwritable_cache_only_costs_time(gguf, monkeypatch):
    path, digest, cache = gguf
    blocker = cache / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("JUDGE_REE_CACHE", str(blocker / "ree"))
    cfg, meta, quant = M._gguf_index(path, digest)
    assert cfg.n_layers == 30 and "tokenizer.ggml.tokens" in meta and len(quant) > 200
