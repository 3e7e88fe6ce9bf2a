"""Shared fixtures: the SmolLM2 GGUF is loaded once per session (≈10 s, 0.6 GB)."""

from __future__ import annotations

import pytest

from node.models import ModelError


@pytest.fixture(scope="session")
def gguf_model():
    from node.runtime.gguf_loader import load_gguf

    try:
        return load_gguf()
    except ModelError as e:  # pragma: no cover - only without `make setup`
        pytest.skip(f"SmolLM2 GGUF not available: {e}")
