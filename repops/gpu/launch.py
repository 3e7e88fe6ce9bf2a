"""Shared host-side helpers for the Triton backend: input checks and compile flags.

Every RepOps kernel is launched with ``enable_fp_fusion=False`` (RepOps spec §2: no contraction
of ``a*b+c`` into an FMA unless the spec says ``fma``); Triton's default fuses.
"""

from __future__ import annotations

import os

import torch

# RepOps spec §2: mul+add must not be contracted; passed to every kernel launch.
FP_FLAGS: dict[str, bool] = {"enable_fp_fusion": False}

CANONICAL_NAN_BITS = 0x7FC00000

# -0.0, passed to kernels as a run-time argument (`NEG0`) wherever a -0.0 fill is needed. As a
# compile-time constant it is not safe: Triton 3.6 treats a load's `other=-0.0` like +0.0
# (measured on H100/H200: the K-tail of a pipelined matmul then turned a -0.0 chain into +0.0),
# presumably because its zero-fill path matches "any zero" constants.
NEG_ZERO = -0.0


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (CI): kernels then run on CPU tensors, via numpy."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _device_ok(t: torch.Tensor) -> bool:
    return t.device.type == "cuda" or (interpreting() and t.device.type == "cpu")


def next_pow2(n: int) -> int:
    """Smallest power of two >= max(n, 1) (the fold width P of RepOps spec §4 / DESIGN §4.4)."""
    return 1 << max(0, (max(n, 1) - 1).bit_length())


def check_f32_cuda(op: str, *tensors: torch.Tensor) -> None:
    """Clear errors for bad inputs (issue 3 acceptance: name the op and the shapes)."""
    shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"repops.{op}: expected torch tensors, got {type(t).__name__}")
        if t.dtype != torch.float32:
            raise TypeError(f"repops.{op}: expected float32, got {t.dtype} (shapes {shapes})")
        if not _device_ok(t):
            raise ValueError(f"repops.{op}: Triton backend needs cuda tensors, got {t.device} "
                             f"(shapes {shapes})")
    devs = {t.device for t in tensors}
    if len(devs) > 1:
        raise ValueError(f"repops.{op}: tensors on different devices {sorted(map(str, devs))} "
                         f"(shapes {shapes})")


def check_cuda(op: str, t: torch.Tensor, dtypes: tuple[torch.dtype, ...]) -> None:
    """Like check_f32_cuda for non-float inputs (ids, positions)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"repops.{op}: expected a torch tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"repops.{op}: expected dtype in {dtypes}, got {t.dtype} "
                        f"(shape {tuple(t.shape)})")
    if not _device_ok(t):
        raise ValueError(f"repops.{op}: Triton backend needs cuda tensors, got {t.device}")


def norm_dim(op: str, x: torch.Tensor, dim: int) -> int:
    """Resolve a possibly negative dim, with an error naming the op."""
    nd = max(x.dim(), 1)
    if not -nd <= dim < nd:
        raise IndexError(f"repops.{op}: dim {dim} out of range for shape {tuple(x.shape)}")
    return dim % nd


def rows_last(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, list[int]]:
    """Move `dim` last and flatten the rest: kernels see a contiguous [R, n] matrix.

    Data movement is exact (DESIGN §4.6), so this copy cannot change any result bit.
    """
    xt = x.movedim(dim, -1).contiguous()
    lead = list(xt.shape[:-1])
    if xt.dim() == 0:
        return xt.reshape(1, 1), lead
    rows = 1
    for d in lead:
        rows *= d
    return xt.reshape(rows, xt.shape[-1]), lead
