"""RepOps Triton backend: every op of docs/repops-spec.md on CUDA tensors, bit-identical to the
CPU reference (`repops.cpu`). `repops.api` dispatches cuda tensors here.

Importing this package needs Triton; kernels compile on first use. Under TRITON_INTERPRET=1 the
same kernels run on CPU tensors through numpy (indexing/masking checks only, not bit evidence).
"""

from repops.gpu.attention import attention
from repops.gpu.casts import float_to_int, int_to_float
from repops.gpu.elementwise import (
    add,
    div,
    exp,
    log,
    maximum,
    minimum,
    mul,
    neg,
    sigmoid,
    silu,
    sqrt,
    sub,
    where,
)
from repops.gpu.embedding import embedding
from repops.gpu.matmul import linear, matmul
from repops.gpu.norm import layer_norm, rms_norm
from repops.gpu.reduce import argmax
from repops.gpu.reduce import reduce_max as max  # noqa: A004
from repops.gpu.reduce import reduce_min as min  # noqa: A004
from repops.gpu.reduce import reduce_sum as sum  # noqa: A004
from repops.gpu.rope import rope
from repops.gpu.softmax import log_softmax, softmax

__all__ = [
    "add", "argmax", "attention", "div", "embedding", "exp", "float_to_int", "int_to_float",
    "layer_norm", "linear", "log", "log_softmax", "matmul", "max", "maximum", "min", "minimum",
    "mul", "neg", "rms_norm", "rope", "sigmoid", "silu", "softmax", "sqrt", "sub", "sum", "where",
]
