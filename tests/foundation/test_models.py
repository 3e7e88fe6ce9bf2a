"""Model cache: verified path, corrupt and missing files give one clear error, nothing lost."""

import pytest

from node import models


def test_smollm2_verified():
    path = models.smollm2_path()
    assert path.stat().st_size == 98362432


def test_missing_model(monkeypatch, tmp_path):
    monkeypatch.setenv("JUDGE_MODEL_CACHE", str(tmp_path))
    with pytest.raises(models.ModelError, match="make setup"):
        models.model_path("smollm2")


def test_corrupt_model_not_overwritten(monkeypatch, tmp_path):
    monkeypatch.setenv("JUDGE_MODEL_CACHE", str(tmp_path))
    bad = tmp_path / models.MODELS["smollm2"].filename
    bad.write_bytes(b"not a gguf")
    with pytest.raises(models.ModelError, match="--force"):
        models.model_path("smollm2")
    with pytest.raises(models.ModelError, match="corrupt"):
        models.fetch("smollm2")  # without --force it refuses to replace the user's file
    assert bad.read_bytes() == b"not a gguf"


def test_unknown_model():
    with pytest.raises(models.ModelError, match="unknown model"):
        models.model_path("gpt-17")


def test_cli_reports_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JUDGE_MODEL_CACHE", str(tmp_path))
    assert models.main(["verify"]) == 1
    assert "error:" in capsys.readouterr().err
