"""The figures the reliability tests measure. Every run writes them to
tests/artifacts/reliability.json; with STORYQ_RECORD_RESULTS=1 (`make reliability-results`)
they go to bench/results/reliability.json, the committed file the README's Reliability table
is made from. Scenarios run in this session replace their old entries; the others are kept."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storyq_local.config import project_root

RESULTS_FILE = (
    Path(os.environ["STORYQ_RESULTS_FILE"])  # `make stress`: one file per run
    if os.environ.get("STORYQ_RESULTS_FILE")
    else project_root() / "bench" / "results" / "reliability.json"
    if os.environ.get("STORYQ_RECORD_RESULTS") == "1"
    else project_root() / "tests" / "artifacts" / "reliability.json"
)

_measured: dict[str, dict[str, Any]] = {}


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1], 3)


def record(scenario: str, **figures: Any) -> None:
    """Keep one scenario's figures for the results file."""
    _measured[scenario] = {"scenario": scenario, **figures}


def write(path: Path = RESULTS_FILE) -> None:
    if not _measured:
        return
    scenarios: dict[str, Any] = {}
    if path.exists():
        try:
            scenarios = {
                entry["scenario"]: entry for entry in json.loads(path.read_text())["scenarios"]
            }
        except (ValueError, KeyError, TypeError):
            scenarios = {}
    scenarios.update(_measured)
    document = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "scenarios": list(scenarios.values()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
