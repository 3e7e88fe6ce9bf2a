"""The toolchain is found, works, and a missing piece gives an actionable error."""

import subprocess

import pytest

from node.chain import toolchain


def test_binaries_run():
    for tool in (toolchain.anvil, toolchain.forge, toolchain.cast):
        out = subprocess.run([str(tool()), "--version"], capture_output=True, text=True, check=True)
        assert "1.7.1" in out.stdout


def test_solc_wrapper_reports_native_style_version():
    out = subprocess.run([str(toolchain.solc()), "--version"], capture_output=True, text=True,
                         check=True)
    assert "Version: 0.8.37" in out.stdout


def test_missing_tool_error_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(toolchain, "ROOT", tmp_path)
    monkeypatch.delenv("JUDGE_ANVIL", raising=False)

    def fake_anvil():
        return toolchain._find("anvil", "JUDGE_ANVIL", tmp_path / "node_modules/.bin/anvil")

    with pytest.raises(toolchain.ToolchainError, match="make setup"):
        fake_anvil()


def test_bad_override_rejected(monkeypatch, tmp_path):
    monkeypatch.setenv("JUDGE_FORGE", str(tmp_path / "nope"))
    with pytest.raises(toolchain.ToolchainError, match="JUDGE_FORGE"):
        toolchain.forge()


def test_forge_failure_is_a_nonzero_exit(tmp_path):
    """A failing forge test must fail `make test` (the npm .bin shim used to exit 0)."""
    import shutil

    root = toolchain.ROOT
    (tmp_path / "contracts" / "test").mkdir(parents=True)
    shutil.copytree(root / "contracts" / "test" / "lib", tmp_path / "contracts" / "test" / "lib")
    (tmp_path / "contracts" / "test" / "F.t.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n"
        'import {Test} from "./lib/Test.sol";\n'
        "contract FTest is Test {\n"
        "    function test_fails() public pure { assertEq(uint256(1), 2); }\n}\n"
    )
    cfg = (root / "foundry.toml").read_text().replace('"tools/solc"', f'"{toolchain.solc()}"')
    cfg = "\n".join(line for line in cfg.splitlines() if not line.startswith("fs_permissions"))
    (tmp_path / "foundry.toml").write_text(cfg)
    out = subprocess.run([str(toolchain.forge()), "test"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode != 0, out.stdout[-2000:]
    assert "1 failing" in out.stdout or "failed" in out.stdout
