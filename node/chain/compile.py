"""Compile the Solidity sources with the real compiler (solc 0.8.37 via py-solc-x + tools/solc).

The optimizer settings are read from foundry.toml so forge tests and the bytecode that nodes
deploy come from one configuration. Results are cached by a hash of the sources and settings,
because solcjs is slow and every test and demo needs the artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path

from node.chain import toolchain

ROOT = toolchain.ROOT
CONTRACTS = ROOT / "contracts"


class CompileError(RuntimeError):
    pass


def _settings() -> dict:
    cfg = tomllib.loads((ROOT / "foundry.toml").read_text())["profile"]["default"]
    settings = {
        "optimizer": {"enabled": bool(cfg.get("optimizer", True)),
                      "runs": int(cfg.get("optimizer_runs", 200))},
        "evmVersion": cfg.get("evm_version", "cancun"),
        "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object",
                                        "evm.deployedBytecode.object"]}},
    }
    if cfg.get("via_ir"):
        settings["viaIR"] = True
    return settings


def source_files(include_tests: bool = False) -> list[Path]:
    files = sorted(CONTRACTS.rglob("*.sol"))
    if not include_tests:
        files = [f for f in files if "test" not in f.relative_to(CONTRACTS).parts[:1]]
    return files


def _cache_dir() -> Path:
    base = os.environ.get("JUDGE_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "judge-ree") / "solc"


def compile_contracts(files: list[Path] | None = None) -> dict[str, dict]:
    """`{ContractName: {"abi": [...], "bytecode": "0x...", "source": "contracts/..."}}`.

    Raises CompileError with the compiler's messages on failure; a name defined in two files
    is reported rather than silently shadowed.
    """
    files = files if files is not None else source_files()
    sources = {str(f.relative_to(ROOT)): {"content": f.read_text()} for f in files}
    std_input = {"language": "Solidity", "sources": sources, "settings": _settings()}
    key = hashlib.sha256(json.dumps(std_input, sort_keys=True).encode()).hexdigest()[:24]
    cache = _cache_dir() / f"{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())

    import solcx  # imported here: the GPU path never needs it

    try:
        out = solcx.compile_standard(std_input, solc_binary=str(toolchain.solc()),
                                     allow_paths=str(ROOT))
    except solcx.exceptions.SolcError as e:
        raise CompileError(str(e)) from None
    errors = [m for m in out.get("errors", []) if m.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(m.get("formattedMessage", m["message"]) for m in errors))
    result: dict[str, dict] = {}
    for src, contracts in out.get("contracts", {}).items():
        for name, c in contracts.items():
            bytecode = c["evm"]["bytecode"]["object"]
            if name in result and bytecode:
                raise CompileError(f"contract name {name} defined in {result[name]['source']} "
                                   f"and {src}")
            if bytecode or name not in result:
                result[name] = {"abi": c["abi"], "bytecode": "0x" + bytecode, "source": src}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, cache)
    return result
