"""Linear weights stored once in the CPU kernels' panel layouts (RepOps spec §3.3, §6.15).

Why: `linear(x, w)` with w row-major [N, K] keeps one weight row per output, but the fast way to
run many outputs' ascending-k chains at once wants, for each k, the weights of consecutive
outputs side by side. Transposing at every call is a second pass over the weights, and decode
(M <= 4 rows) is bound by reading them. The spec fixes values, not storage, so weights are
packed once at load time and the kernels stream them contiguously:

- fp32 panels [ceil(N/NR), K, NR] (`pack_linear`);
- GGUF Q4_1 / Q8_0 blocks re-laid into 32-output panels (`pack_linear_quantized`), dequantized
  exactly inside the kernel by the rule of docs/decisions/0003-dequantization.md, so decode
  reads 5 (Q4_1) or 8.5 (Q8_0) bits per weight instead of 32.

Either way `linear(x, packed)` gives the bits of `linear(x, w)` on the dequantized fp32 w.
"""

from __future__ import annotations

import numpy as np
import torch

from repops.cpu.build import load

QTYPES = {"q4_1": (0, 20), "q8_0": (1, 34)}  # name -> (kernel code, GGUF bytes per 32 weights)
QBLOCK = 32


class PackedLinear:
    """A linear layer's weight W[N, K] in a kernel layout; pass it where `repops.linear` takes w.

    `weight` is the caller's fp32 tensor (kept for other devices and commitments), or None for a
    quantized handle (`dequantize()` rebuilds it exactly). `panels` is the CPU layout, or None
    for a weight on another device. `qtype` is None (fp32) or "q4_1" / "q8_0".
    """

    __slots__ = ("weight", "panels", "width", "qtype", "n", "k")

    def __init__(
        self,
        weight: torch.Tensor | None,
        panels: torch.Tensor | None,
        n: int,
        k: int,
        width: int = 0,
        qtype: str | None = None,
    ) -> None:
        self.weight, self.panels, self.n, self.k = weight, panels, n, k
        self.width, self.qtype = width, qtype

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> PackedLinear:
        n, k = weight.shape
        if weight.device.type != "cpu":
            return cls(weight, None, n, k)
        panels, width = pack_nk(weight)
        return cls(weight, panels, n, k, width)

    @classmethod
    def from_gguf_blocks(cls, raw: np.ndarray, qtype: str, n: int, k: int) -> PackedLinear:
        code = QTYPES[qtype][0]
        lib = load()
        panels = torch.empty(
            (-(-n // 32), int(lib.repops_qpanel_bytes(code, k))), dtype=torch.uint8
        )
        src = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
        lib.repops_qpack(code, n, k, src.ctypes.data, panels.data_ptr())
        return cls(None, panels, n, k, 32, qtype)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, self.k))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self.weight.device if self.weight is not None else torch.device("cpu")

    def dequantize(self) -> torch.Tensor:
        """The fp32 weight W[N, K] these panels hold (exact; ADR 0003 for quantized blocks)."""
        if self.qtype is None:
            return self.weight
        out = torch.empty((self.n, self.k), dtype=torch.float32)
        load().repops_qdequant(
            QTYPES[self.qtype][0], self.n, self.k, self.panels.data_ptr(), out.data_ptr()
        )
        return out

    def __repr__(self) -> str:
        kind = self.qtype or "f32"
        return f"PackedLinear(N={self.n}, K={self.k}, {kind}, device={self.device})"


def pack_nk(w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Panels P[p, k, j] = w[p*NR + j, k] (bits copied), NR = the library's pack width."""
    lib = load()
    width = int(lib.repops_pack_width())
    w = w.contiguous()
    n, k = w.shape
    panels = torch.empty(((n + width - 1) // width, k, width), dtype=torch.float32)
    lib.repops_pack_nk(n, k, w.data_ptr(), k, panels.data_ptr())
    return panels, width
