"""Where the protocol contracts live: a small JSON file written by `judge deploy`.

Nodes, the requester CLI and the demo read it, so one deployment is described once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from node.chain.client import ChainClient, TxResult
from node.chain.contracts import ModelEntry


class DeploymentError(RuntimeError):
    pass


@dataclass
class Deployment:
    chain_id: int
    registry: str
    market: str
    game: str
    verifier: str
    consumer: str = ""
    block: int = 0  # deployment block: watchers start scanning here

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        tmp = p.with_name(p.name + ".partial")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        p = Path(path)
        if not p.is_file():
            raise DeploymentError(f"deployment file {p} not found; run `judge deploy` first")
        try:
            return cls(**json.loads(p.read_text()))
        except (ValueError, TypeError) as e:
            raise DeploymentError(f"deployment file {p} is malformed: {e}") from None

    def contracts(self, client: ChainClient) -> dict[str, Any]:
        names = {"registry": "ModelRegistry", "market": "JobMarket", "game": "DisputeGame",
                 "verifier": "OneStepVerifier"}
        out = {k: client.contract(n, getattr(self, k)) for k, n in names.items()}
        if self.consumer:
            out["consumer"] = client.contract("PredictionMarket", self.consumer)
        return out


def deploy_protocol(client: ChainClient, clock_budget_s: int = 3600,
                    curator: str | None = None, with_consumer: bool = True,
                    log=lambda msg: None) -> Deployment:  # noqa: ANN001
    """Deploy registry, verifier, game and market (and the example consumer), wire them."""
    start = client.block_number()
    registry, r1 = client.deploy("ModelRegistry", curator or client.address)
    log(f"ModelRegistry    {registry.address}  gas {r1.gas_used}")
    verifier, r2 = client.deploy("OneStepVerifier")
    log(f"OneStepVerifier  {verifier.address}  gas {r2.gas_used}")
    game, r3 = client.deploy("DisputeGame", verifier.address, clock_budget_s)
    log(f"DisputeGame      {game.address}  gas {r3.gas_used}")
    market, r4 = client.deploy("JobMarket", registry.address, game.address)
    log(f"JobMarket        {market.address}  gas {r4.gas_used}")
    client.transact(game.functions.setMarket(market.address), what="setMarket")
    consumer = ""
    if with_consumer:
        pm, r5 = client.deploy("PredictionMarket", market.address)
        consumer = pm.address
        log(f"PredictionMarket {pm.address}  gas {r5.gas_used}")
    return Deployment(chain_id=client.w3.eth.chain_id, registry=registry.address,
                      market=market.address, game=game.address, verifier=verifier.address,
                      consumer=consumer, block=start)


def register_model(client: ChainClient, registry_address: str, entry: ModelEntry) -> TxResult:
    """ModelRegistry.register with the model's limits (the client must be the curator)."""
    registry = client.contract("ModelRegistry", registry_address)
    return client.transact(registry.functions.register(*entry.as_args()), what="register model")


def served_entry(served: Any, spec_version: int = 1, compact: bool = False) -> ModelEntry:
    """The registry entry of a node.served.ServedModel. The limits come from the config the
    model hash was computed from: the GGUF's vocabulary size (the program's embedding rows)
    and the `max_ctx` the program and its RoPE tables were compiled for. `compact`: results
    for the model commit compact traces (docs/trace-layout.md §L10, ADR 0013)."""
    from referee.compact import Compact

    croot = Compact.of(served.model.program).root if compact else bytes(32)
    return ModelEntry(model_hash=served.model_hash, program_root=served.program_root,
                      vocab_size=int(served.model.config.vocab_size),
                      max_context=int(served.max_ctx), spec_version=spec_version,
                      name=served.name, uri=served.uri, compact_root=croot)
