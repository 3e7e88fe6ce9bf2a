"""The trace of a run: per executed trace op its output root, the leaves and the trace root
(commitments C5), and optionally every output tensor on disk so a node can serve any leaf's
data in a dispute (DESIGN §7).

On-disk format of a kept trace (one job = two files, written beside as `.partial` and renamed
in when the run ends, so a killed run leaves nothing that looks complete):

    <name>.bin   the canonical bytes (C1) of every leaf's output, in leaf order
    <name>.json  {"program_root", "n_ops", "job_tokens", "trace_root", "op_hashes": [hex…],
                  "roots": [hex…],
                  "leaves": [[offset, nbytes, dtype, shape], …]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from referee.layout import TraceProgram
from repops.commit import canonical_bytes, merkle_root, tensor_root_np, trace_leaves

NP_DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


def to_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    return t.detach().to("cpu").contiguous().numpy()


class TraceRecorder:
    """Collects output roots step by step; optionally writes every tensor to `keep` files."""

    def __init__(self, program: TraceProgram, job_tokens: Sequence[int],
                 keep: str | Path | None = None) -> None:
        self.program = program
        self.job_tokens = list(job_tokens)
        self.op_hashes = program.op_hashes()
        self.roots: list[bytes] = []
        self.bytes_kept = 0
        self._index: list[list[Any]] = []
        self._keep = Path(keep) if keep is not None else None
        self._f = None
        if self._keep is not None:
            self._keep.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self._partial(".bin"), "wb")  # noqa: SIM115 - closed in close()

    def _partial(self, ext: str) -> Path:
        return self._keep.with_name(self._keep.name + ext + ".partial")

    def add_step(self, outputs: Sequence[torch.Tensor | np.ndarray]) -> list[bytes]:
        """C4 roots of one step's outputs (a tensor object seen twice is hashed once)."""
        memo: dict[int, bytes] = {}
        step_roots = []
        for t in outputs:
            r = memo.get(id(t))
            a = None
            if r is None or self._f is not None:
                a = to_numpy(t)
            if r is None:
                r = tensor_root_np(a)
                memo[id(t)] = r
            if self._f is not None:
                data = canonical_bytes(a)
                self._index.append([self.bytes_kept, len(data), a.dtype.name, list(a.shape)])
                self._f.write(data)
                self.bytes_kept += len(data)
            step_roots.append(r)
        self.roots.extend(step_roots)
        return step_roots

    @property
    def length(self) -> int:
        return len(self.roots)

    def leaves(self) -> list[bytes]:
        p = self.program.n_ops
        return trace_leaves([self.op_hashes[i % p] for i in range(len(self.roots))], self.roots)

    def root(self) -> bytes:
        """C5: Merkle root over the leaves (C3)."""
        return merkle_root(self.leaves())

    def close(self, ok: bool = True) -> Path | None:
        """Finish the kept files (renamed in only when `ok`); returns the index path."""
        if self._f is None:
            return None
        self._f.close()
        self._f = None
        if not ok:
            self._partial(".bin").unlink(missing_ok=True)
            return None
        meta = {"program_root": self.program.root().hex(), "n_ops": self.program.n_ops,
                "job_tokens": self.job_tokens, "trace_root": self.root().hex(),
                "op_hashes": [h.hex() for h in self.op_hashes],
                "roots": [r.hex() for r in self.roots], "leaves": self._index}
        idx = self._partial(".json")
        idx.write_text(json.dumps(meta))
        os.replace(self._partial(".bin"), self._keep.with_name(self._keep.name + ".bin"))
        final = self._keep.with_name(self._keep.name + ".json")
        os.replace(idx, final)
        return final


class KeptTrace:
    """Read access to a kept trace: any leaf's tensor, its root, the trace records."""

    def __init__(self, base: str | Path) -> None:
        base = Path(base)
        if base.suffix in (".json", ".bin"):
            base = base.with_suffix("")
        self.base = base
        meta_path = base.with_name(base.name + ".json")
        if not meta_path.is_file():
            raise FileNotFoundError(f"no kept trace at {meta_path}")
        self.meta = json.loads(meta_path.read_text())
        self._data = np.memmap(base.with_name(base.name + ".bin"), dtype=np.uint8, mode="r") \
            if self.meta["leaves"] and self.meta["leaves"][-1][0] + self.meta["leaves"][-1][1] \
            else np.zeros(0, np.uint8)

    @property
    def length(self) -> int:
        return len(self.meta["leaves"])

    def root(self, leaf: int) -> bytes:
        return bytes.fromhex(self.meta["roots"][leaf])

    def tensor(self, leaf: int) -> np.ndarray:
        """Leaf `leaf`'s output tensor (C1 bytes read back)."""
        if not 0 <= leaf < self.length:
            raise IndexError(f"leaf {leaf} outside the trace of {self.length}")
        off, n, dtype, shape = self.meta["leaves"][leaf]
        raw = np.asarray(self._data[off:off + n]).tobytes()
        return np.frombuffer(raw, dtype=np.dtype(NP_DTYPES[dtype]).newbyteorder("<")) \
            .astype(NP_DTYPES[dtype]).reshape(shape)

    def check(self, leaf: int) -> bool:
        """The stored bytes still hash to the recorded root (C4)."""
        return tensor_root_np(self.tensor(leaf)) == self.root(leaf)

    def records(self):  # noqa: ANN201 - node.p2p.source.TraceRecords
        from node.p2p.source import TraceRecords

        p, hashes = self.meta["n_ops"], self.meta["op_hashes"]
        return TraceRecords([bytes.fromhex(hashes[i % p]) for i in range(self.length)],
                            [self.root(i) for i in range(self.length)])


class KeptTraceSource:
    """`node.p2p.source.TraceSource` over a directory of kept traces named `job-<id>`."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def _open(self, job: int) -> KeptTrace | None:
        try:
            return KeptTrace(self.dir / f"job-{job}")
        except FileNotFoundError:
            return None

    def trace(self, job: int):  # noqa: ANN201 - TraceRecords | None
        kt = self._open(job)
        return None if kt is None else kt.records()

    def tensor(self, job: int, op: int):  # noqa: ANN201 - TensorBlob | None
        from node.p2p.source import TensorBlob

        kt = self._open(job)
        if kt is None or not 0 <= op < kt.length:
            return None
        return TensorBlob.from_array(kt.tensor(op))
