"""`judge`: deploy the protocol, register models, post and read jobs, run the daemons, demo.

Settings come from `--config FILE` (TOML), then JUDGE_* environment variables, then flags
(node/config.py). Keys come from `--keystore FILE` (password in JUDGE_KEYSTORE_PASSWORD) or
JUDGE_PRIVATE_KEY, and are never printed. `--json` prints one JSON object for machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any

from node.cli.trace_options import DEFAULT_SEGMENT, SEGMENT_HELP, TRACE_KINDS
from node.config import ConfigError, NodeConfig, load_config


class CliError(RuntimeError):
    pass


def _out(args: argparse.Namespace, human: str, data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data, default=str))
    else:
        print(human)


def _cfg(args: argparse.Namespace) -> NodeConfig:
    return load_config(args.config, {"rpc_url": args.rpc, "deployment": args.deployment,
                                     "keystore": getattr(args, "keystore", None),
                                     "confirmations": getattr(args, "confirmations", None),
                                     "device": getattr(args, "device", None),
                                     "data_dir": getattr(args, "data_dir", None),
                                     "metrics_port": getattr(args, "metrics_port", None)})


def _client(cfg: NodeConfig, need_key: bool = True, journal: Any = None):  # noqa: ANN202
    from node.chain.client import ChainClient
    from node.keys import load_key

    key = None
    if need_key:
        acct = load_key(cfg.keystore or None, interactive=sys.stdin.isatty())
        key = acct.key.hex()
    return ChainClient(cfg.rpc_url, key, confirmations=cfg.confirmations, journal=journal)


# ---- commands ----------------------------------------------------------------------------


def cmd_deploy(args: argparse.Namespace) -> int:
    from node.deployment import deploy_protocol

    cfg = _cfg(args)
    client = _client(cfg)
    dep = deploy_protocol(client, clock_budget_s=args.clock_budget,
                          log=(lambda m: print(m, file=sys.stderr)))
    path = dep.save(cfg.deployment)
    _out(args, f"deployed; addresses in {path}", {"deployment": str(path), **dep.__dict__})
    return 0


def cmd_model_register(args: argparse.Namespace) -> int:
    from node.deployment import Deployment, register_model, served_entry
    from node.served import load_served_model

    cfg = _cfg(args)
    client = _client(cfg)
    dep = Deployment.load(cfg.deployment)
    served = load_served_model(args.model, max_ctx=args.max_ctx, segment=args.segment,
                               log=lambda m: print(m, file=sys.stderr))
    reg = client.contract("ModelRegistry", dep.registry)
    if client.call(reg.functions.isRegistered(served.model_hash)):
        _out(args, f"model {args.model} already registered: 0x{served.model_hash.hex()}",
             {"model_hash": "0x" + served.model_hash.hex(), "registered": True})
        return 0
    entry = served_entry(served, compact=args.trace == "compact")
    res = register_model(client, dep.registry, entry)
    _out(args, f"registered {args.model}: model hash 0x{served.model_hash.hex()} "
               f"program root 0x{served.program_root.hex()} vocabulary {entry.vocab_size} "
               f"context {entry.max_context} (gas {res.gas_used})",
         {"model_hash": "0x" + served.model_hash.hex(),
          "program_root": "0x" + served.program_root.hex(), "vocab_size": entry.vocab_size,
          "max_context": entry.max_context, "trace": args.trace,
          "compact_root": "0x" + entry.compact_root.hex(), "tx": res.tx_hash})
    return 0


def cmd_job_submit(args: argparse.Namespace) -> int:
    from node.deployment import Deployment
    from node.requester import JobRefused, JobSpec, submit_job
    from node.served import load_served_model

    cfg = _cfg(args)
    client = _client(cfg)
    dep = Deployment.load(cfg.deployment)
    served = load_served_model(args.model, max_ctx=args.max_ctx, segment=args.segment,
                               log=lambda m: print(m, file=sys.stderr))
    tokens = served.chat_tokens(args.prompt)
    if not (0 <= args.top_k < 2**32 and 0 <= args.seed < 2**64):
        raise CliError("--top-k must fit a uint32 and --seed a uint64 (JobMarket.JobConfig)")
    spec = JobSpec(model_hash=served.model_hash, input_tokens=tokens, max_tokens=args.max_tokens,
                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   seed=args.seed, reward_wei=args.reward, bond_wei=args.bond,
                   deadline_s=args.deadline, challenge_window_s=args.window,
                   n_executors=args.executors)
    market = client.contract("JobMarket", dep.market)
    try:
        job_id, res = submit_job(client, market, spec)
    except JobRefused as e:  # the contract's own reason, found before anything was sent
        raise CliError(f"job refused, nothing sent: {e}") from None
    _out(args, f"job {job_id} posted ({len(tokens)} input tokens, tx {res.tx_hash})",
         {"job": job_id, "tx": res.tx_hash, "input_tokens": tokens})
    return 0


def cmd_job_status(args: argparse.Namespace) -> int:
    from node.deployment import Deployment
    from node.requester import job_status

    cfg = _cfg(args)
    client = _client(cfg, need_key=False)
    dep = Deployment.load(cfg.deployment)
    st = job_status(client, client.contract("JobMarket", dep.market), args.job)
    if args.cmd2 == "result" and st["status"] == "Finalized" and args.model:
        from node.served import load_served_model

        served = load_served_model(args.model, max_ctx=args.max_ctx)
        st["text"] = served.decode(st["output_tokens"])
    human = f"job {args.job}: {st['status']}"
    if st["status"] == "Finalized":
        human += f" output {st['output_tokens']}" + (f" {st['text']!r}" if "text" in st else "")
    _out(args, human, st)
    return 0


def _daemon(args: argparse.Namespace, role: str) -> int:
    from node.daemon import ChallengerDaemon, ExecutorDaemon, Fault
    from node.deployment import Deployment
    from node.metrics import NodeMetrics
    from node.served import load_served_model
    from node.store import Store

    cfg = _cfg(args)
    store = Store(cfg.data_path(f"{role}.db"))
    client = _client(cfg, journal=store)
    dep = Deployment.load(cfg.deployment)
    served = load_served_model(args.model, max_ctx=args.max_ctx, device=cfg.device,
                               segment=args.segment,
                               log=lambda m: logging.getLogger("judge").info(m))
    metrics = NodeMetrics(role)
    metrics.serve(cfg.metrics_port)
    kw: dict[str, Any] = {}
    cls = ChallengerDaemon
    if role == "executor":
        cls = ExecutorDaemon
        if args.fault_leaf is not None:
            kw["fault"] = Fault(leaf=args.fault_leaf, element=args.fault_element)
    p2p = None
    outcomes: dict = {}  # shared: the daemon fills it, the p2p trace source serves it
    if not args.no_p2p:
        from node.network import start_node

        port = int(cfg.p2p_listen.rstrip("/").rsplit("/", 1)[-1] or 0)
        p2p = start_node(outcomes, port=port, bootstrap=cfg.p2p_bootstrap)
        logging.getLogger("judge").info("p2p listening on %s", ", ".join(p2p.addrs))
    node = cls(client, dep, store, served.runner, served_models={served.model_hash},
               metrics=metrics, p2p=p2p, **kw)
    node.outcomes = outcomes
    signal.signal(signal.SIGTERM, lambda *_: node.stop())
    try:
        node.run(interval=cfg.poll_interval)
    except KeyboardInterrupt:
        pass
    finally:
        if p2p is not None:
            p2p.close()
        metrics.close()
        store.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from node.demo import main as demo_main

    return demo_main(args)


# ---- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="judge",
        description="Optimistic verification of AI inference on an EVM chain: deploy the "
        "protocol, register models, post jobs, run executor and challenger daemons.")
    p.add_argument("--config", help="TOML config file (keys as in node/config.py)")
    p.add_argument("--rpc", help="JSON-RPC URL (default http://127.0.0.1:8545)")
    p.add_argument("--deployment", help="deployment file (default deployment.json)")
    p.add_argument("--keystore", help="eth-account keystore file (else JUDGE_PRIVATE_KEY)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-json", action="store_true", help="structured (JSON lines) logs")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("deploy", help="deploy registry, market, dispute game, verifier")
    d.add_argument("--clock-budget", type=int, default=3600,
                   help="seconds each party may spend on its moves in one game")
    d.set_defaults(fn=cmd_deploy)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", default="smollm2", help="model name (default smollm2)")
        sp.add_argument("--max-ctx", type=int, default=256, help="context positions compiled")
        sp.add_argument("--segment", type=int, default=DEFAULT_SEGMENT,
                        help=SEGMENT_HELP + " Every party of a network uses the one its "
                             "registered model hash binds.")

    m = sub.add_parser("model", help="model registry")
    msub = m.add_subparsers(dest="cmd2", required=True)
    mr = msub.add_parser("register", help="compile a model and register its hash on-chain")
    model_args(mr)
    mr.add_argument("--trace", choices=TRACE_KINDS, default="full",
                    help="what results for the model commit: full traces, or compact ones "
                         "(docs/trace-layout.md §L10; a dispute expands them to full "
                         "traces on-chain). Nodes follow the registry; the model hash is the "
                         "same either way, so register one or the other.")
    mr.set_defaults(fn=cmd_model_register)

    j = sub.add_parser("job", help="post jobs and read results")
    jsub = j.add_subparsers(dest="cmd2", required=True)
    js = jsub.add_parser("submit", help="post a job (the prompt goes through the chat template)")
    model_args(js)
    js.add_argument("--prompt", required=True)
    js.add_argument("--max-tokens", type=int, default=16)
    js.add_argument("--temperature", type=float, default=0.0,
                    help="0 = greedy (the v1 trace programs decode greedily); finite, >= 0")
    js.add_argument("--top-k", type=int, default=0, help="0 = disabled")
    js.add_argument("--top-p", type=float, default=1.0, help="in (0, 1]; 1 = disabled")
    js.add_argument("--seed", type=int, default=0, help="sampling seed (RepOps spec §7.2)")
    js.add_argument("--reward", type=int, default=10**16, help="reward in wei")
    js.add_argument("--bond", type=int, default=10**17, help="bond required of each party (wei)")
    js.add_argument("--deadline", type=int, default=3600, help="seconds to commit")
    js.add_argument("--window", type=int, default=600, help="challenge window in seconds")
    js.add_argument("--executors", type=int, default=1, help="1 optimistic, n refereed")
    js.set_defaults(fn=cmd_job_submit)
    for name in ("status", "result"):
        jx = jsub.add_parser(name, help=f"job {name}")
        jx.add_argument("job", type=int)
        jx.add_argument("--model", default="smollm2" if name == "result" else None,
                        help="decode the output tokens with this model's tokenizer")
        jx.add_argument("--max-ctx", type=int, default=256)
        jx.set_defaults(fn=cmd_job_status)

    for role in ("executor", "challenger"):
        r = sub.add_parser(role, help=f"run the {role} daemon")
        model_args(r)
        r.add_argument("--device", help="cpu or cuda")
        r.add_argument("--data-dir", help="where the node keeps its sqlite state")
        r.add_argument("--confirmations", type=int, help="act only on blocks this deep")
        r.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0 = off)")
        r.add_argument("--no-p2p", action="store_true",
                       help="do not start libp2p (no trace serving / gossip)")
        if role == "executor":
            r.add_argument("--fault-leaf", type=int, help="TESTING: corrupt this trace leaf")
            r.add_argument("--fault-element", type=int, default=0)
        r.set_defaults(fn=lambda a, role=role: _daemon(a, role))

    dm = sub.add_parser("demo", help="the whole story on a local anvil chain")
    dm.add_argument("--max-tokens", type=int, default=8)
    dm.add_argument("--port", type=int, help="anvil port (default: a free one)")
    dm.set_defaults(fn=cmd_demo)
    return p


class _JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers (`--log-json` / JUDGE_LOG_FORMAT=json)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": round(record.created, 3), "level": record.levelname,
                           "logger": record.name, "msg": record.getMessage()})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if args.log_json or os.environ.get("JUDGE_LOG_FORMAT") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        handlers=[handler])
    for noisy in ("libp2p", "web3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("judge: interrupted", file=sys.stderr)
        return 130
    except (CliError, ConfigError) as e:
        print(f"judge: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # every node error class carries an actionable message
        name = type(e).__name__
        if name in ("ChainError", "TxReverted", "KeyError_", "DeploymentError", "ModelError",
                    "ModelLoadError", "ToolchainError", "AnvilError", "ReceiptError"):
            print(f"judge: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
