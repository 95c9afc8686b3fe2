"""What each function ships with is what the project declares: the Lambda layer's
requirements.txt (what `sam build` installs) against pyproject.toml's [project.dependencies]
(what the venv and the tests install)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("api", "worker")


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {str(Requirement(line)) for line in project["dependencies"]}


def _listed(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {str(Requirement(line)) for line in lines if line}


def test_the_layer_installs_exactly_the_declared_dependencies() -> None:
    layer = _listed(ROOT / "functions" / "core" / "requirements.txt")
    declared = _declared()
    assert layer == declared, {
        "only in the layer": sorted(layer - declared),
        "only in pyproject": sorted(declared - layer),
    }


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_functions_add_nothing_to_the_layer(function: str) -> None:
    # A package a function listed itself would be installed twice, possibly in two versions.
    assert _listed(ROOT / "functions" / function / "requirements.txt") == set()
