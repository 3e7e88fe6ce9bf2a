"""The published commitment vectors are what repops.commit computes, and proofs verify."""

import json

import numpy as np
import pytest

from repops import commit


def test_vectors_are_current():
    published = json.loads(commit.VECTORS_PATH.read_text())
    assert published == json.loads(json.dumps(commit.build_vectors()))


def test_proofs_verify_and_reject_tampering():
    leaves = [commit.keccak256(bytes([i])) for i in range(11)]
    root = commit.merkle_root(leaves)
    for i in range(11):
        proof = commit.merkle_proof(leaves, i)
        assert len(proof) == 4
        assert commit.verify_proof(leaves[i], i, proof, root)
        assert not commit.verify_proof(leaves[i], i ^ 1, proof, root)
        bad = list(proof)
        bad[0] = bytes(32)
        assert not commit.verify_proof(leaves[i], i, bad, root) or proof[0] == bytes(32)


def test_root_binds_shape_and_dtype():
    a = np.arange(6, dtype=np.float32)
    assert commit.tensor_root(a) != commit.tensor_root(a.reshape(2, 3))
    assert commit.tensor_root(a) != commit.tensor_root(a.view(np.int32))


def test_negative_zero_differs():
    assert commit.tensor_root(np.array([0.0], np.float32)) != commit.tensor_root(
        np.array([-0.0], np.float32)
    )


def test_unsupported_dtype():
    with pytest.raises(TypeError, match="no commitment code"):
        commit.tensor_root(np.zeros(3, np.float16))


def test_torch_and_numpy_agree():
    torch = pytest.importorskip("torch")
    t = torch.randn(5, 300)
    assert commit.tensor_root(t) == commit.tensor_root(t.numpy())
