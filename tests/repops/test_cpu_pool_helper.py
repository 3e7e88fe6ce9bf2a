"""repops_pool.c: a thread hashing a trace (repops_keccak.c) takes chunks of the executor's
products between its message batches (`repops_pool_help`). Which thread runs a chunk must
change no bit, and the hash must not change either."""

from __future__ import annotations

import ctypes
import threading
import time

import numpy as np
import pytest
import torch
from test_cpu_quantized_linear import _blocks

import repops
from repops.commit import tensor_roots_raw
from repops.cpu import kernels
from repops.cpu.build import load
from repops.cpu.packed import QTYPES


def _helped() -> int:
    fn = load().repops_pool_helped
    fn.restype = ctypes.c_int64
    return int(fn())


def test_products_beside_hashing_equal_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    n, k, ends = 512, 576, [64 * (s + 1) for s in range(9)]
    packed = repops.pack_linear_quantized(_blocks(rng, "q4_1", n, k), "q4_1", n, k)
    code = QTYPES["q4_1"][0]
    x = torch.from_numpy(rng.standard_normal((1, k)).astype(np.float32))

    def product() -> torch.Tensor:
        return kernels.linear_q_segments(x, packed.panels, code, n, ends)

    monkeypatch.setenv("REPOPS_CPU_THREADS", "1")
    want = product()
    data = rng.integers(0, 256, 4 << 20, dtype=np.uint8)
    hdr = np.frombuffer(b"\x02\x04\x01" + (4 << 20).to_bytes(4, "big"), np.uint8).copy()
    args = (np.array([data.ctypes.data], np.uint64), np.array([data.nbytes], np.int64),
            np.array([hdr.ctypes.data], np.uint64), np.array([hdr.nbytes], np.int64))
    root = tensor_roots_raw(*args, 1)
    stop, roots = threading.Event(), []

    def hash_loop() -> None:
        while not stop.is_set():
            roots.append(tensor_roots_raw(*args, 1))

    monkeypatch.setenv("REPOPS_CPU_THREADS", "2")
    before = _helped()
    hasher = threading.Thread(target=hash_loop)
    hasher.start()
    try:
        deadline, runs = time.monotonic() + 20, 0
        while runs < 200 or (_helped() == before and time.monotonic() < deadline):
            got = product()
            assert torch.equal(got.view(torch.int32), want.view(torch.int32)), runs
            runs += 1
    finally:
        stop.set()
        hasher.join()
    assert _helped() > before, "the hashing thread never took a chunk"
    assert roots and all(r == root for r in roots)
