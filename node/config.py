"""Node configuration: a TOML file, overridden by JUDGE_* environment variables, then flags.

Why this order: operators keep a file per node, CI and containers set env, and a flag is the
most specific intent. Secrets never live here: keys come from node/keys.py.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass
class NodeConfig:
    rpc_url: str = "http://127.0.0.1:8545"
    deployment: str = "deployment.json"  # addresses written by `judge deploy`
    confirmations: int = 0  # act only on blocks this deep (reorg safety)
    poll_interval: float = 1.0
    data_dir: str = "~/.local/share/judge-ree"
    device: str = "cpu"
    keystore: str = ""
    p2p_listen: str = "/ip4/127.0.0.1/tcp/0"
    p2p_bootstrap: list[str] = field(default_factory=list)
    metrics_port: int = 0  # 0: metrics off
    challenge_share: float = 1.0  # challenger: fraction of commitments re-executed
    log_level: str = "INFO"

    def data_path(self, *parts: str) -> Path:
        p = Path(self.data_dir).expanduser().joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def _coerce(name: str, typ: Any, value: Any) -> Any:
    try:
        if typ in (int, "int"):
            return int(value)
        if typ in (float, "float"):
            return float(value)
        if typ in (list[str], "list[str]"):
            if isinstance(value, str):
                return [v for v in (x.strip() for x in value.split(",")) if v]
            return [str(v) for v in value]
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config {name}: cannot use {value!r} as {typ}") from None


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> NodeConfig:
    """File (if given) < JUDGE_<NAME> env vars < explicit overrides (non-None values)."""
    cfg = NodeConfig()
    known = {f.name: f.type for f in fields(NodeConfig)}
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p}: {e}") from None
        flat: dict[str, Any] = {}
        for k, v in data.items():
            if isinstance(v, dict):  # sections are just grouping: [chain] rpc_url = ...
                flat.update(v)
            else:
                flat[k] = v
        for k, v in flat.items():
            if k not in known:
                raise ConfigError(f"config file {p}: unknown key {k!r}")
            setattr(cfg, k, _coerce(k, known[k], v))
    for k, typ in known.items():
        env = os.environ.get(f"JUDGE_{k.upper()}")
        if env is not None:
            setattr(cfg, k, _coerce(k, typ, env))
    for k, v in (overrides or {}).items():
        if v is not None:
            if k not in known:
                raise ConfigError(f"unknown setting {k!r}")
            setattr(cfg, k, _coerce(k, known[k], v))
    return cfg
