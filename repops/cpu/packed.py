"""Linear weights stored once in the CPU decode kernel's panel layout (RepOps spec §3.3).

Why: `linear(x, w)` with w row-major [N, K] keeps one weight row per output, but the fast way to
run many outputs' ascending-k chains at once wants, for each k, the weights of NR consecutive
outputs side by side. Transposing at every call is a second pass over the weights, and decode
(M <= 4 rows) is bound by reading them. The spec fixes values, not storage, so the weights are
packed once at load time and the kernel streams them contiguously; the results are the same bits
as `linear(x, w)`.
"""

from __future__ import annotations

import torch

from repops.cpu.build import load


class PackedLinear:
    """A linear layer's weight W[N, K] plus, on the CPU, its packed panels.

    Pass it wherever `repops.linear` takes `w`. `weight` stays the caller's tensor (used on other
    devices and for commitments); `panels` is [ceil(N/NR), K, NR] float32 with zero rows past N,
    or None for a weight that is not on the CPU.
    """

    __slots__ = ("weight", "panels", "width")

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight
        self.panels: torch.Tensor | None = None
        self.width = 0
        if weight.device.type == "cpu":
            self.panels, self.width = pack_nk(weight)

    @property
    def shape(self) -> torch.Size:
        return self.weight.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def __repr__(self) -> str:
        return f"PackedLinear(N={self.shape[0]}, K={self.shape[1]}, device={self.device})"


def pack_nk(w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Panels P[p, k, j] = w[p*NR + j, k] (bits copied), NR = the library's pack width."""
    lib = load()
    width = int(lib.repops_pack_width())
    w = w.contiguous()
    n, k = w.shape
    panels = torch.empty(((n + width - 1) // width, k, width), dtype=torch.float32)
    lib.repops_pack_nk(n, k, w.data_ptr(), k, panels.data_ptr())
    return panels, width
