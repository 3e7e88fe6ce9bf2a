"""Where the protocol contracts live: a small JSON file written by `judge deploy`.

Nodes, the requester CLI and the demo read it, so one deployment is described once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from node.chain.client import ChainClient


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
