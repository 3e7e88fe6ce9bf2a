"""Measure the p2p layer on localhost: `python -m node.p2p.bench [--ops N] [--json]`.

Two real nodes; the executor serves a synthetic trace shaped like a SmolLM2 job (N ops, one
49152-float logits tensor). Prints what a challenger pays to pull and verify trace data.
Numbers depend on the machine; they are for sizing, not for tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from repops.commit import keccak256, tensor_root_np, trace_root

from .bridge import P2PNode
from .gossip import JOBS_TOPIC
from .messages import MAX_OP_ROOTS
from .source import InMemoryTraceSource, TraceRecords


def _timed(fn):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(n_ops: int) -> dict:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((1, 49152), dtype=np.float32)
    ops = [keccak256(i.to_bytes(4, "big")) for i in range(n_ops)]
    roots = [keccak256(b"r" + i.to_bytes(4, "big")) for i in range(n_ops)]
    roots[-1] = tensor_root_np(logits)
    root = trace_root(ops, roots)
    src = InMemoryTraceSource()
    src.put_trace(1, TraceRecords(ops, roots))
    src.add_job(2, [ops[0]], [logits])
    res: dict = {"machine": platform.processor() or platform.machine(), "n_ops": n_ops}
    a, t_start = _timed(lambda: P2PNode(source=src).start())
    b = P2PNode(bootstrap=a.addrs).start()
    try:
        res["node_start_s"] = round(t_start, 3)
        deadline = time.monotonic() + 20
        while b.peer_id not in a.topic_peers(JOBS_TOPIC) and time.monotonic() < deadline:
            time.sleep(0.02)
        sub = b.subscribe(JOBS_TOPIC)
        lat = []
        for i in range(20):
            t0 = time.perf_counter()
            a.publish(JOBS_TOPIC, {"job": i})
            sub.get(timeout=10)
            lat.append(time.perf_counter() - t0)
        res["gossip_latency_ms_median"] = round(1000 * float(np.median(lat)), 2)
        peer = a.peer_id
        # cold: the server hashes the whole trace tree once; warm: served from its cache
        _, cold = _timed(lambda: b.op_roots(peer, 1, 0, 1, trace_root=root, trace_length=n_ops))
        res["trace_tree_cold_s"] = round(cold, 3)

        def all_roots() -> int:
            got = 0
            while got < n_ops:
                r = b.op_roots(peer, 1, got, MAX_OP_ROOTS, trace_root=root, trace_length=n_ops)
                got += len(r.op_hashes)
            return got

        _, t_all = _timed(all_roots)
        res["all_op_roots_verified_s"] = round(t_all, 3)
        res["op_roots_per_s"] = int(n_ops / t_all)
        _, t_leaf = _timed(
            lambda: [b.op_roots(peer, 1, i * 97 % n_ops, 1, trace_root=root, trace_length=n_ops)
                     for i in range(50)]
        )
        res["single_op_root_verified_ms"] = round(1000 * t_leaf / 50, 2)
        t, t_tensor = _timed(lambda: b.fetch_tensor(peer, 2, 0, roots[-1]))
        assert np.array_equal(t, logits)
        res["fetch_logits_49152_f32_verified_s"] = round(t_tensor, 3)
    finally:
        b.close()
        a.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=48_000, help="trace length (default ~64 tokens)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = run(args.ops)
    lines = [f"{k}: {v}" for k, v in res.items()]
    print(json.dumps(res, indent=1) if args.json else "\n".join(lines))


if __name__ == "__main__":
    main()
