"""Bad input raises before computing, naming the op, shapes, dtypes and devices (spec §8);
embedding and the build cache."""

from __future__ import annotations

import threading

import pytest
import torch

import repops
from repops.cpu import build


def test_matmul_shape_mismatch_names_op_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"repops\.matmul.*\(2, 3\).*\(4, 5\)"):
        repops.matmul(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"repops\.matmul: batch dims"):
        repops.matmul(torch.zeros(2, 2, 3), torch.zeros(3, 3, 4))
    with pytest.raises(ValueError, match=r"repops\.linear"):
        repops.linear(torch.zeros(2, 3), torch.zeros(3, 2))


def test_dtype_errors() -> None:
    with pytest.raises(TypeError, match=r"repops\.matmul: b must be float32, got \(3, 4\) float64"):
        repops.matmul(torch.zeros(2, 3), torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"repops\.exp: x must be float32.*float16"):
        repops.exp(torch.zeros(3, dtype=torch.float16))
    with pytest.raises(TypeError, match=r"repops\.softmax: x must be a torch.Tensor"):
        repops.softmax([1.0, 2.0])
    with pytest.raises(TypeError, match=r"repops\.embedding: ids must be int32/int64"):
        repops.embedding(torch.zeros(2), torch.zeros(4, 3))


def test_device_errors() -> None:
    meta = torch.zeros(2, 3, device="meta")
    with pytest.raises(
        ValueError, match=r"repops\.add: tensors are on different devices.*cpu.*meta"
    ):
        repops.add(torch.zeros(2, 3), meta)
    with pytest.raises(ValueError, match=r"repops\.exp: unsupported device meta"):
        repops.exp(meta)


def test_other_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"repops\.add: shapes \(2,\) and \(3,\) do not broadcast"):
        repops.add(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"repops\.sum: dim 2 out of range"):
        repops.sum(torch.zeros(2, 3), dim=2)
    with pytest.raises(ValueError, match=r"repops\.rms_norm: weight must have shape \(4,\)"):
        repops.rms_norm(torch.zeros(2, 4), torch.zeros(3))
    with pytest.raises(ValueError, match=r"repops\.attention: need q"):
        repops.attention(torch.zeros(3, 2, 8), torch.zeros(2, 2, 8), torch.zeros(2, 2, 8))
    with pytest.raises(ValueError, match=r"repops\.attention: need q"):
        repops.attention(torch.zeros(2, 5, 8), torch.zeros(1, 4, 8), torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match=r"repops\.rope: pairing"):
        repops.rope(torch.zeros(2, 4), torch.zeros(2, 2), torch.zeros(2, 2), "interleaved")
    with pytest.raises(ValueError, match=r"repops\.rope: cos/sin"):
        repops.rope(torch.zeros(2, 4), torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"repops\.argmax: empty"):
        repops.argmax(torch.zeros(2, 0))
    with pytest.raises(ValueError, match=r"repops\.softmax: empty"):
        repops.softmax(torch.zeros(2, 0))


def test_embedding_gathers_bits_and_checks_range() -> None:
    table = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    table[1, 0] = -0.0
    got = repops.embedding(torch.tensor([[1, 3], [0, 1]]), table)
    assert got.shape == (2, 2, 3)
    assert got[0, 0].view(torch.int32).tolist() == table[1].view(torch.int32).tolist()
    with pytest.raises(ValueError, match=r"repops\.embedding: ids outside \[0, 4\)"):
        repops.embedding(torch.tensor([4]), table)


def test_tensor_root_reexported() -> None:
    from repops.commit import tensor_root

    t = torch.arange(5, dtype=torch.float32)
    assert repops.tensor_root(t) == tensor_root(t)


def test_concurrent_builds_into_a_fresh_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_CACHE_DIR", str(tmp_path))
    paths, errors = [], []

    def run() -> None:
        try:
            paths.append(build.build())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1 and paths[0].exists()
    assert paths[0].parent == tmp_path / "build"
    assert not list((tmp_path / "build").glob("*.tmp.so"))  # temporaries renamed or removed


def test_build_key_tracks_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    key = build.build_key()
    monkeypatch.setattr(build, "CFLAGS", [*build.CFLAGS, "-DREPOPS_TEST_FLAG"])
    assert build.build_key() != key
