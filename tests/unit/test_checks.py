"""The mechanical checks, in the fast tier: ruff (lint and format), mypy, and the import-linter layer
contract of pyproject.toml ([tool.importlinter]); and proof that the layer contract can fail.

The tools are the dev extra's, next to this interpreter (`make lint` runs the same commands).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path

from cluster.services import BIN  # the project virtualenv's bin: the dev tools live there
from flashsale.settings import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def tool(name: str, *args: str, cwd: Path = PROJECT_ROOT, env: dict | None = None, timeout: float = 300):
    return subprocess.run([str(BIN / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_ruff_lint_and_format_are_clean():
    lint = tool("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:] + lint.stderr[-2000:]
    fmt = tool("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout[-4000:] + fmt.stderr[-2000:]


def test_mypy_is_clean():
    out = tool("mypy")  # files and options from [tool.mypy]
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_the_layer_contract_is_kept():
    out = tool("lint-imports", "--no-logo")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout, out.stdout[-2000:]


# ---------------------------------------------------------------- the contract can fail
def _layer_tree(root: Path, spark_imports_cluster: bool) -> Path:
    """Empty stand-ins for every root package and layer module, with pyproject's own contract."""
    config = PYPROJECT["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    modules = set(config["root_packages"])
    modules |= {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    for module in sorted(modules):
        package = root.joinpath(*module.split("."))
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()
    if spark_imports_cluster:  # two components, which never import each other
        (root / "spark" / "__init__.py").write_text("import cluster\n")
    cfg = root / "importlinter.toml"
    cfg.write_text(
        "[tool.importlinter]\n"
        f"root_packages = {json.dumps(config['root_packages'])}\n\n"
        "[[tool.importlinter.contracts]]\n"
        f"name = {json.dumps(contract['name'])}\n"
        'type = "layers"\n'
        f"layers = {json.dumps(contract['layers'])}\n"
    )
    return cfg


def _lint_tree(root: Path, cfg: Path):
    env = {**os.environ, "PYTHONPATH": str(root)}  # the stand-ins, not the project's packages
    return tool("lint-imports", "--no-logo", "--no-cache", str(cfg), cwd=root, env=env)


def test_the_layer_contract_fails_when_a_component_imports_another(tmp_path):
    kept = _lint_tree(tmp_path / "kept", _layer_tree(tmp_path / "kept", spark_imports_cluster=False))
    assert kept.returncode == 0 and "1 kept, 0 broken" in kept.stdout, kept.stdout + kept.stderr
    broken = _lint_tree(tmp_path / "broken", _layer_tree(tmp_path / "broken", spark_imports_cluster=True))
    assert broken.returncode != 0, broken.stdout + broken.stderr
    assert "0 kept, 1 broken" in broken.stdout, broken.stdout + broken.stderr
    assert "spark is not allowed to import cluster" in broken.stdout, broken.stdout
