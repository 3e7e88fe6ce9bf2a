"""Triton kernels under TRITON_INTERPRET=1 (CI, no GPU): indexing, masks, padding, batching.

Inputs are chosen so that numpy's float32 arithmetic is exact or IEEE (small integers for the
fma chains, which the interpreter does not fuse; plain add/mul/div elsewhere), so index errors
show up as exact mismatches. Transcendental composites are checked to a tolerance only.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from gpu_exact import bits, canon, fold_sum


def _ints(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randint(-8, 9, shape, generator=g).float()


def _eq(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(bits(a), bits(b))


@pytest.fixture
def g() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.mark.parametrize("m,k,n", [(1, 7, 5), (3, 9, 17), (20, 40, 33), (2, 64, 1), (5, 3, 70)])
def test_matmul_both_kernels_index_exactly(gpu_interp, g, m, k, n):
    a, b = _ints(g, m, k), _ints(g, k, n)
    want = (a.double() @ b.double()).float()
    assert _eq(gpu_interp.matmul(a, b), want)
    assert _eq(gpu_interp.matmul(a, b, gemv=False), want)
    assert _eq(gpu_interp.matmul(a, b, gemv=True), want)


def test_matmul_batch_broadcast_vectors_and_strides(gpu_interp, g):
    mm = gpu_interp.matmul
    a, b = _ints(g, 2, 3, 5, 6), _ints(g, 3, 6, 4)
    assert _eq(mm(a, b), (a.double() @ b.double()).float())
    a2, b2 = _ints(g, 5, 6), _ints(g, 2, 6, 4)
    assert _eq(mm(a2, b2), (a2.double() @ b2.double()).float())
    v = _ints(g, 6)
    assert _eq(mm(v, b2[0]), (v.double() @ b2[0].double()).float())
    assert _eq(mm(a2, v), (a2.double() @ v.double()).float())
    w = _ints(g, 7, 6)  # linear: w stored [N, K], passed transposed without a copy
    assert _eq(gpu_interp.linear(a2, w), (a2.double() @ w.double().t()).float())
    assert _eq(mm(a2.t().contiguous().t(), b2[1]), (a2.double() @ b2[1].double()).float())


def test_matmul_empty_k_is_plus_zero(gpu_interp):
    out = gpu_interp.matmul(torch.empty(3, 0), torch.empty(0, 2))
    assert _eq(out, torch.zeros(3, 2))


def test_causal_chain_excludes_masked_keys(gpu_interp, g):
    cm = importlib.import_module("repops.gpu.matmul").causal_matmul
    p, v = _ints(g, 2, 3, 6), _ints(g, 2, 6, 4)
    v[:, 5, :] = float("inf")  # only visible to the last row: others must not see inf*0
    out = cm(p, v, 3)
    for t in range(3):
        lim = 3 + t + 1
        want = (p[:, t:t + 1, :lim].double() @ v[:, :lim, :].double()).float()[:, 0]
        assert _eq(out[:, t], want)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 33, 100])
def test_fold_sum_register_and_memory_levels(gpu_interp, g, n):
    x = torch.randn(6, n, generator=g) * 1e3
    x[0, 0] = -0.0
    assert _eq(gpu_interp.sum(x, -1), fold_sum(x))
    assert _eq(gpu_interp.sum(x.t(), 0), fold_sum(x))
    assert _eq(gpu_interp.sum(x.reshape(2, 3, n), -1, keepdim=True),
               fold_sum(x).reshape(2, 3, 1))


def test_fold_sum_signed_zeros_and_empty(gpu_interp):
    assert _eq(gpu_interp.sum(torch.full((3, 5), -0.0)), torch.full((3,), -0.0))
    assert _eq(gpu_interp.sum(torch.empty(4, 0)), torch.full((4,), -0.0))


def test_max_min_argmax_rules(gpu_interp, g):
    x = torch.randn(5, 37, generator=g)
    x[1, 3] = float("nan")
    x[2, :] = -0.0
    x[2, 5] = 0.0
    x[3, :] = float("-inf")
    mx, mn, am = gpu_interp.max(x), gpu_interp.min(x), gpu_interp.argmax(x)
    assert torch.isnan(mx[1]) and torch.isnan(mn[1]) and bits(mx[1:2])[0] == 0x7FC00000
    assert bits(mx[2:3])[0] == 0 and bits(mn[2:3])[0] == -2**31  # +0 / -0
    assert _eq(mx[[0, 3, 4]], x[[0, 3, 4]].max(-1).values)
    assert _eq(mn[[0, 3, 4]], x[[0, 3, 4]].min(-1).values)
    assert am.tolist() == [int(x[0].argmax()), 3, 0, 0, int(x[4].argmax())]
    assert _eq(gpu_interp.max(torch.empty(2, 0)), torch.full((2,), float("-inf")))


@pytest.mark.parametrize("op,ref", [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul),
                                    ("div", torch.div)])
def test_binary_broadcast(gpu_interp, g, op, ref):
    a, b = torch.randn(4, 1, 6, generator=g), torch.randn(3, 1, generator=g)
    assert _eq(getattr(gpu_interp, op)(a, b), canon(ref(a, b)))


def test_neg_maximum_minimum_where_casts_embedding(gpu_interp, g):
    z = torch.tensor([0.0, -0.0, 1.0, float("nan"), float("-inf")])
    assert _eq(gpu_interp.neg(z), canon(torch.tensor([-0.0, 0.0, -1.0, float("nan"),
                                                      float("inf")])))
    a = torch.tensor([-0.0, 0.0, float("nan"), 1.0])
    b = torch.tensor([0.0, -0.0, 1.0, 2.0])
    assert bits(gpu_interp.maximum(a, b)).tolist() == [0, 0, 0x7FC00000, 0x40000000]
    assert bits(gpu_interp.minimum(a, b)).tolist() == [-2**31, -2**31, 0x7FC00000, 0x3F800000]
    c = torch.tensor([1, 0, 2, 0], dtype=torch.uint8)
    assert _eq(gpu_interp.where(c, a, b), torch.where(c != 0, a, b))
    assert gpu_interp.float_to_int(torch.tensor([1.7, -1.7, float("nan"), float("inf"),
                                                 -3e20])).tolist() == [1, -1, 0, 2**63 - 1,
                                                                       -2**63]
    assert _eq(gpu_interp.int_to_float(torch.tensor([3, -5, 2**24 + 1])),
               torch.tensor([3.0, -5.0, 16777216.0]))
    ids = torch.tensor([[3, 1], [0, 2]])
    tab = torch.randn(4, 20, generator=g)
    assert _eq(gpu_interp.embedding(ids, tab), tab[ids])
    with pytest.raises(ValueError, match="embedding"):
        gpu_interp.embedding(torch.tensor([4]), tab)


@pytest.mark.parametrize("pairing", ["adjacent", "half"])
def test_rope_pairs_and_passthrough(gpu_interp, g, pairing):
    x = torch.randn(2, 5, 8, generator=g)
    cos, sin = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    y = gpu_interp.rope(x, cos, sin, pairing)
    ia, ib = ([0, 2, 4], [1, 3, 5]) if pairing == "adjacent" else ([0, 1, 2], [3, 4, 5])
    a, b = x[..., ia], x[..., ib]
    assert _eq(y[..., ia], a * cos - b * sin)
    assert _eq(y[..., ib], a * sin + b * cos)
    assert _eq(y[..., 6:], x[..., 6:])


def _ref_attention(q, k, v, scale):
    rep = q.shape[-3] // k.shape[-3]
    k = k.repeat_interleave(rep, -3).double()
    v = v.repeat_interleave(rep, -3).double()
    s = q.double() @ k.transpose(-1, -2) * scale
    tq, tk = q.shape[-2], k.shape[-2]
    mask = torch.arange(tk)[None, :] > (tk - tq + torch.arange(tq))[:, None]
    return (s.masked_fill(mask, float("-inf")).softmax(-1) @ v).float()


@pytest.mark.parametrize("shape", [(1, 3, 1, 5, 5, 8), (2, 4, 2, 1, 7, 8), (1, 2, 2, 3, 20, 4)])
def test_attention_gqa_prefix(gpu_interp, g, shape):
    b, hq, hkv, tq, tk, d = shape
    q = torch.randn(b, hq, tq, d, generator=g)
    k, v = torch.randn(b, hkv, tk, d, generator=g), torch.randn(b, hkv, tk, d, generator=g)
    out = gpu_interp.attention(q, k, v, 0.35)
    torch.testing.assert_close(out, _ref_attention(q, k, v, 0.35), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n", [7, 50])  # one fused program / composed long-row path
def test_softmax_and_norms_close(gpu_interp, g, n):
    x = torch.randn(3, n, generator=g)
    w, bb = torch.randn(n, generator=g), torch.randn(n, generator=g)
    torch.testing.assert_close(gpu_interp.softmax(x), x.double().softmax(-1).float())
    torch.testing.assert_close(gpu_interp.log_softmax(x), x.double().log_softmax(-1).float())
    rms = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(gpu_interp.rms_norm(x, w, 1e-5), rms)
    torch.testing.assert_close(gpu_interp.layer_norm(x, w, bb, 1e-5),
                               torch.nn.functional.layer_norm(x, (n,), w, bb, 1e-5))


def test_errors_name_op_and_shapes(gpu_interp):
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        gpu_interp.matmul(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(TypeError, match="add"):
        gpu_interp.add(torch.zeros(2, dtype=torch.float64), torch.zeros(2))


@pytest.mark.parametrize("sizes", [[4, 1024, 2048 + 8, 3 * 1024, 5 * 1024 - 4, 36],
                                   [0, 1, 135, 136, 137, 1023, 271, 272, 8]])
def test_device_roots_equal_the_c_roots(gpu_interp, sizes):
    """Commitments C4 from the Triton keccak (C2 leaves, every C3 level, header ‖ root) over
    tensors of 1, 2, 3 and 5 chunks and every padding case (empty, the 135/136 rate edges,
    short chunks) at unaligned offsets of one buffer, against the C keccak's roots."""
    import numpy as np

    from repops import commit
    from repops.gpu.keccak import device_roots, tensor_rows

    rng = np.random.default_rng(9)
    sizes = np.array(sizes)
    offs = np.cumsum(sizes + 3) - sizes - 3
    buf = rng.integers(0, 256, int(offs[-1] + sizes[-1]), dtype=np.uint8)
    shapes = [(int(s),) if i % 2 else (1, 1, int(s)) for i, s in enumerate(sizes)]
    dims = np.zeros((len(sizes), 3), dtype=np.int64)
    for i, sh in enumerate(shapes):
        dims[i, :len(sh)] = sh
    rows = tensor_rows(offs, sizes, np.full(len(sizes), commit.DTYPE_CODES["uint8"]),
                       np.array([len(sh) for sh in shapes]), dims)
    got = device_roots(torch.from_numpy(buf), rows).numpy()
    want = commit.tensor_roots_at([buf.ctypes.data + int(o) for o in offs], sizes.tolist(),
                                  [commit.header("uint8", sh) for sh in shapes])
    assert [bytes(r) for r in got] == want


def test_graph_roots_kernels_equal_the_c_roots(gpu_interp):
    """The CUDA-graph pair (slot_leaves_kernel, tree_kernel): tensors laid out for larger
    sizes than they have now (unused slots and stale nodes in their regions must not count),
    headers built in the kernel from the dims, against the C keccak's roots; then the same
    buffers again at other sizes, as a graph replays them step after step."""
    import numpy as np

    from repops import commit
    from repops.gpu.keccak import graph_roots, slot_layout

    rng = np.random.default_rng(4)
    maxd = 6
    shapes_max = [(4,), (9, 300), (2, 1, 600), (1,), (3, 1024), (1100,), (2, 2, 2, 2, 2, 40)]
    slots, base, n_nodes = slot_layout(np.array([4 * int(np.prod(s)) for s in shapes_max]))
    nodes = torch.zeros((n_nodes, 4), dtype=torch.int64)
    nodes.view(torch.uint8).copy_(torch.from_numpy(
        rng.integers(0, 256, (n_nodes, 32), dtype=np.uint8)))  # stale nodes of "earlier steps"
    for shapes in ([(4,), (9, 300), (2, 1, 600), (1,), (3, 1024), (1100,), (2, 2, 2, 2, 2, 40)],
                   [(0,), (9, 257), (2, 1, 256), (1,), (1, 1), (1024,), (1, 1, 1, 1, 1, 1)]):
        nbytes = np.array([4 * int(np.prod(s)) for s in shapes])
        offs = np.cumsum(nbytes + 12) - nbytes - 12
        buf = rng.integers(0, 256, int(offs[-1] + nbytes[-1] + 8), dtype=np.uint8)
        tens = np.zeros((len(shapes), 5 + maxd), dtype=np.int32)
        tens[:, 0], tens[:, 1], tens[:, 2] = offs, nbytes, base
        tens[:, 3] = commit.DTYPE_CODES["float32"]
        tens[:, 4] = [len(s) for s in shapes]
        for i, s in enumerate(shapes):
            tens[i, 5:5 + len(s)] = s
        roots = torch.empty((len(shapes), 32), dtype=torch.uint8)
        graph_roots(torch.from_numpy(buf), torch.from_numpy(tens), torch.from_numpy(slots),
                    nodes, roots)
        want = commit.tensor_roots_at([buf.ctypes.data + int(o) for o in offs], nbytes.tolist(),
                                      [commit.header("float32", s) for s in shapes])
        assert [bytes(r) for r in roots.numpy()] == want, shapes
