"""Deploy the protocol contracts to any RPC: `python -m node.chain.deploy --rpc URL --key KEY`.

Deploys ModelRegistry (curated, append-only), the one-step verifier, DisputeGame, JobMarket
and the example PredictionMarket, binds the game to the market, optionally registers a model
(with its vocabulary size and context, which postJob checks jobs against), and writes the
deployment JSON that nodes read (node.deployment.Deployment). The deployment order and wiring
live in node.deployment.deploy_protocol; this module is the command around it.
The key comes from --key or the JUDGE_PRIVATE_KEY environment variable and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from node.chain.client import ChainClient
from node.chain.contracts import ModelEntry
from node.deployment import Deployment, deploy_protocol, register_model


def _bytes32(s: str) -> bytes:
    b = bytes.fromhex(s.removeprefix("0x"))
    if len(b) != 32:
        raise argparse.ArgumentTypeError(f"{s!r} is not 32 bytes of hex")
    return b


def deploy(rpc_url: str, private_key: str, clock_budget_s: int = 3600, curator: str | None = None,
           model: ModelEntry | None = None, with_consumer: bool = True,
           log=lambda msg: None) -> Deployment:  # noqa: ANN001
    """Deploys and wires everything; with `model` also registers it, limits included (the
    deployer must then be the curator)."""
    client = ChainClient(rpc_url, private_key)
    dep = deploy_protocol(client, clock_budget_s=clock_budget_s, curator=curator,
                          with_consumer=with_consumer, log=log)
    if model is not None:
        res = register_model(client, dep.registry, model)
        log(f"registered model 0x{model.model_hash.hex()} (vocabulary {model.vocab_size}, "
            f"context {model.max_context})  gas {res.gas_used}")
    return dep


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m node.chain.deploy",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rpc", required=True, help="JSON-RPC URL")
    p.add_argument("--key", default=None, help="deployer private key (default: $JUDGE_PRIVATE_KEY)")
    p.add_argument("--clock", type=int, default=3600, help="per-party game clock, seconds")
    p.add_argument("--curator", default=None, help="registry curator (default: the deployer)")
    p.add_argument("--no-consumer", action="store_true", help="skip the example PredictionMarket")
    p.add_argument("--model-hash", type=_bytes32, help="register this model hash too")
    p.add_argument("--program-root", type=_bytes32, help="its program root")
    p.add_argument("--vocab-size", type=int,
                   help="its vocabulary size (job token ids must be below it)")
    p.add_argument("--max-context", type=int,
                   help="the context positions its program was compiled for")
    p.add_argument("--spec-version", type=int, default=1)
    p.add_argument("--model-name", default="")
    p.add_argument("--model-uri", default="")
    p.add_argument("--out", type=Path, default=None, help="write the deployment JSON here")
    a = p.parse_args(argv)
    key = a.key or os.environ.get("JUDGE_PRIVATE_KEY")
    if not key:
        p.error("no deployer key: pass --key or set JUDGE_PRIVATE_KEY")
    model = None
    if a.model_hash is not None:
        missing = [f for f, v in (("--program-root", a.program_root),
                                  ("--vocab-size", a.vocab_size),
                                  ("--max-context", a.max_context)) if v is None]
        if missing:
            p.error(f"--model-hash needs {', '.join(missing)}")
        model = ModelEntry(a.model_hash, a.program_root, a.vocab_size, a.max_context,
                           a.spec_version, a.model_name, a.model_uri)
        try:
            model.as_args()
        except ValueError as e:
            p.error(str(e))
    dep = deploy(a.rpc, key, a.clock, a.curator, model, not a.no_consumer,
                 log=lambda m: print(m, file=sys.stderr))
    if a.out:
        dep.save(a.out)
    print(json.dumps(asdict(dep), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
