"""Shared fixtures: the SmolLM2 REE model is loaded once per session (disk cache keyed by the
GGUF sha256; the first run on a fresh machine builds it, later runs memory-map it)."""

from __future__ import annotations

import pytest

from node.models import ModelError

MAX_CTX = 2048


@pytest.fixture(scope="session")
def ree_model():
    from node.ree.model import ModelLoadError, load_model

    try:
        return load_model("smollm2", max_ctx=MAX_CTX)
    except (ModelError, ModelLoadError) as e:  # pragma: no cover - only without `make setup`
        pytest.skip(f"SmolLM2 GGUF not available: {e}")


@pytest.fixture(scope="session")
def ree_session(ree_model):
    from node.ree.session import Session

    with Session(loaded=ree_model) as sess:
        yield sess


@pytest.fixture(scope="session")
def capital_run(ree_session):
    """Greedy answer to the test question (shared by several tests)."""
    from node.ree.session import JobSpec

    spec = JobSpec("What is the capital of France?", max_new_tokens=4)
    return spec, ree_session.run(spec)
