"""Child process of test_step_plan_cuda.py (TRITON_INTERPRET=1 must be set before triton is
imported): the CUDA plan's first layer of records on CPU tensors against the CPU plan."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

assert os.environ.get("TRITON_INTERPRET") == "1"

from node.models import ModelError  # noqa: E402
from node.ree.fastexec import FastExecutor  # noqa: E402
from node.ree.model import ModelLoadError, load_model  # noqa: E402
from node.ree.step_plan import K_CONCAT  # noqa: E402
from node.ree.step_plan_cuda import CudaStepPlan, arena_rows  # noqa: E402
from referee.layout import Symbols  # noqa: E402

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646]
FULL = "--full" in sys.argv  # every record of the step (minutes), not the first two layers


def main() -> int:
    try:
        m = load_model("smollm2", max_ctx=2048)
    except (ModelError, ModelLoadError) as e:
        print(f"skipped: {e}")
        return 0
    w = m.weights_by_root()
    cpu = FastExecutor(m.program, w, quant=m.quant_blocks())
    shaped = FastExecutor(m.program, w, chains="masked", plan=False)  # CUDA's weight layout
    plan = CudaStepPlan(m.program, w, shaped.weights, shaped._chains, shaped._wt,
                        torch.device("cpu"))
    plan.qchain = ("fma", 128, 32, 4, 2, True)  # the weight panels loaded first (`_warm`)
    # records up to the second layer's K-cache append: every record kind once or more
    if not FULL:
        cut = [i for i, r in enumerate(plan.records) if r[0] == K_CONCAT][2]
        plan.records = plan.records[:cut + 1]
    last = plan.records[-1][1] + 1
    prev = cpu.run_step(0, PROMPT)
    want = cpu.run_step(1, PROMPT)
    kernels: list = []
    emit = plan.emit

    def spy(*a, **k):  # noqa: ANN002, ANN003, ANN202 - the launches plan.run makes
        launches = emit(*a, **k)
        kernels.extend(ln.kernel for ln in launches)
        return launches

    plan.emit = spy
    got = plan.run(Symbols.for_step(len(PROMPT), 1), prev, cpu.plan_token(prev, None))
    from repops.gpu import step_kernels as sk
    if sk.norm_kernel not in kernels or sk.softmax_kernel not in kernels:
        print("the RMSNorm and softmax records were not fused (fuse_launches)")
        return 1
    bad = [j for j in range(last)
           if want[j].shape != got[j].shape
           or not np.array_equal(want[j].numpy().view(np.uint32), got[j].numpy().view(np.uint32))]
    if bad:
        print("differ:", [(j, m.program.ops[j].name) for j in bad[:20]])
        return 1
    print(f"{len(plan.records)} records equal ({last} ops)")
    return check_device_roots(got, last) or check_argfold(cpu) or check_qchain_dot()


def check_device_roots(got, last: int) -> int:  # noqa: ANN001 - a StepOutputs
    """The trace's device roots of a plan arena (node/ree/trace.py `_DeviceStep`'s eager
    path: `arena_rows` + `device_roots`) on 40 ops of every kind, against the C keccak's
    roots of the same tensors: headers from the plan's dtype codes, ndims and dims."""
    from repops.commit import tensor_roots
    from repops.gpu.keccak import device_roots

    ops = np.unique(np.linspace(0, last - 1, 40).astype(np.int64))
    rows = arena_rows(got.plan, ops, got.dims, got.nbytes, got.offs)
    have = [bytes(r) for r in device_roots(got.arena, rows).numpy()]
    want = tensor_roots([got[int(j)].numpy() for j in ops])
    if have != want:
        print("device roots differ at ops", [int(j) for j, a, b in zip(ops, have, want,
                                                                      strict=True) if a != b])
        return 1
    print(f"device roots of {len(ops)} ops equal")
    return 0


def check_argfold(cpu: FastExecutor) -> int:
    """`argfold_level_kernel` level by level against the CPU executor's §L5.5 levels, on
    rows with NaNs, ties, ±0 and ±inf (odd widths, caps that pair part of a row)."""
    from referee.layout import Code, TraceOp
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(5)
    x = torch.randint(-3, 4, (3, 1001), generator=g).float()
    x[0, 7], x[1, 500], x[1, 3], x[2, 0] = float("nan"), float("nan"), float("inf"), -0.0
    x[2, 1] = 0.0
    idx, w = None, 1001
    for cap in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
        op = TraceOp(Code.ARGFOLD, "int32", (), (), (cap,), "t")
        want = cpu._argfold(op, [x] if idx is None else [x, idx])
        wout = min(w, cap)
        got = torch.empty((3, wout), dtype=torch.int32)
        sk.argfold_level_kernel[(-(-wout // 64), 3)](
            x, idx if idx is not None else got, got, 1001, w, cap, wout, max(0, w - cap),
            HAS_IDS=idx is not None, BLOCK=64)
        if not torch.equal(want.reshape(3, wout), got):
            print(f"argfold level cap {cap} differs")
            return 1
        idx, w = got, wout
    print("argfold levels equal")
    return 0


def check_qchain_dot() -> int:
    """`qchain_dot_kernel`'s indexing (rows, columns past a tile, a short last segment, the
    segment outputs' stride) on small integers, whose sums are exact in any order: the
    interpreter's tl.dot is NumPy's matmul, so only a GPU shows the k order (test above)."""
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(3)
    for m, n, k, segw, bn, pre in ((1, 40, 200, 64, 16, False), (3, 33, 128, 64, 32, False),
                                   (1, 40, 200, 64, 16, True), (2, 17, 64, 64, 16, True)):
        x = torch.randint(-3, 4, (m, k), generator=g).float()
        wt = torch.randint(-3, 4, (k, n), generator=g).float()
        nseg = -(-k // segw)
        arena = torch.full((7 + m * k + nseg * m * n,), 9.0)
        arena[7:7 + m * k] = x.reshape(-1)
        out = 7 + m * k
        args = torch.zeros((2, sk.ARGW), dtype=torch.int64)
        args[1, :18] = torch.tensor([7, 0, k, 0, 0, 1, n, 0, out, m * n, m, n, 1, nseg, 0, segw,
                                     k, 0])
        sk.qchain_dot_kernel[(-(-n // bn), 1)](arena, wt, arena, args, 1, -0.0, BM=16, BN=bn,
                                               SEGW=segw, NS=1, PRE=pre)
        for s in range(nseg):
            ke = min(k, (s + 1) * segw)
            want = x[:, :ke] @ wt[:ke]
            got = arena[out + s * m * n:out + (s + 1) * m * n].reshape(m, n)
            if not torch.equal(want, got):
                print(f"qchain_dot m={m} n={n} segment {s} differs")
                return 1
    print("qchain_dot tiles equal")
    return check_qchain_vec()


def check_qchain_vec() -> int:
    """`qchain_vec_kernel` (one row, weight [K/TK + 2, N, TK]) on small integers, as above:
    columns past a tile, two blocks of prefetch, K a multiple of the segment."""
    from node.ree.step_plan_cuda import CudaChain
    from repops.gpu import step_kernels as sk

    g = torch.Generator().manual_seed(4)
    for n, k, segw, bn, tk in ((40, 192, 64, 32, 16), (17, 64, 32, 16, 8), (33, 128, 64, 32, 4)):
        x = torch.randint(-3, 4, (k,), generator=g).float()
        wt = torch.randint(-3, 4, (k, n), generator=g).float()
        nseg = -(-k // segw)
        ch = CudaChain.__new__(CudaChain)
        ch.wt, ch._vec, ch.k, ch.n = wt, {}, k, n
        arena = torch.full((5 + k + nseg * n,), 9.0)
        arena[5:5 + k] = x
        out = 5 + k
        args = torch.zeros((1, sk.ARGW), dtype=torch.int64)
        args[0, :18] = torch.tensor([5, 0, k, 0, 0, 1, n, 0, out, n, 1, n, 1, nseg, 0, segw,
                                     k, 0])
        sk.qchain_vec_kernel[(-(-n // bn),)](arena, ch.vec(tk), arena, args, 0, BN=bn, TK=tk,
                                             SEGW=segw)
        for s in range(nseg):
            ke = min(k, (s + 1) * segw)
            if not torch.equal(x[:ke] @ wt[:ke], arena[out + s * n:out + (s + 1) * n]):
                print(f"qchain_vec n={n} k={k} segment {s} differs")
                return 1
    print("qchain_vec tiles equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
