"""Cold start: each handler module's import time in a fresh interpreter, and the built size of
each function and of the layer.

Import time is taken around the `import` statement in a new `python` process, CPU and wall
clock (median of RUNS, after one unmeasured run; the target is judged on CPU time, which a busy
machine does not inflate the way it inflates the wall clock), with the environment variables
Lambda sets (LAMBDA_TASK_ROOT and friends, tracing on: Powertools' Tracer patches what X-Ray
supports at import, as it does in Lambda). The handlers read no settings and connect to
nothing at import.

With a build (`make build` / `make sam-build`: `sam build`, then the bytecode compiled with
`--invalidation-mode unchecked-hash`), the function dir and the layer are copied to a scratch
folder and imported from there alone (no site-packages, no bytecode written: Lambda's
/var/task is read-only), twice:
- `shipped`: as the build ships them, bytecode included: what the target is judged on;
- `no_bytecode`: with every __pycache__ removed, as a plain `sam build` would ship them (it
  compiles nothing, so Lambda would compile every module at every cold start).
Without a build, the checkout's venv is measured instead (its dev-only packages are imported
too: X-Ray's patcher finds psycopg, httpx's CLI module finds rich and click).

`-X importtime` of the judged set attributes the time to top-level packages (self time summed
per package, so the parts add up to the whole).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storyq_local.config import project_root

HANDLERS = {
    "api": ("storyq_api.handler", "ApiFunction"),
    "worker": ("storyq_worker.handler", "WorkerFunction"),
}
LAYER = "CoreLayer"
RUNS = 5
HEAVIEST = 8

_PROBE = (
    "import time; w = time.perf_counter(); c = time.process_time(); import {module}; "
    "print(time.perf_counter() - w, time.process_time() - c)"
)
LAMBDA_ENV = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "storyq-bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_REGION": "eu-central-1",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "POWERTOOLS_SERVICE_NAME": "storyq",
    "POWERTOOLS_METRICS_NAMESPACE": "storyq",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "STORYQ_ENV": "prod",
}


class Target:
    """Where a handler is imported from: the checkout's venv, or a function dir + layer, and
    by which interpreter (this one unless told)."""

    def __init__(self, paths: list[Path] | None = None, *, python: str | None = None) -> None:
        self.paths = paths
        self.python = python or sys.executable

    @property
    def flags(self) -> list[str]:
        return [] if self.paths is None else ["-s", "-S"]

    @property
    def env(self) -> dict[str, str]:
        if self.paths is None:
            inherited = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
            return {**inherited, **LAMBDA_ENV}
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in self.paths),
            "PYTHONDONTWRITEBYTECODE": "1",
            **LAMBDA_ENV,
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, *self.flags, *args],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
            cwd=project_root() if self.paths is None else "/",
        )


def _probe(module: str, target: Target) -> tuple[float, float]:
    wall, cpu = target.run("-c", _PROBE.format(module=module)).stdout.split()[-2:]
    return float(wall), float(cpu)


def _runs(module: str, target: Target) -> dict[str, Any]:
    _probe(module, target)  # the first run may compile (checkout) or warm the page cache
    runs = [_probe(module, target) for _ in range(RUNS)]
    return {
        "wall_runs_ms": [round(w * 1000, 1) for w, _ in runs],
        "median_ms": round(statistics.median(w for w, _ in runs) * 1000, 1),
        "cpu_median_ms": round(statistics.median(c for _, c in runs) * 1000, 1),
    }


def import_breakdown(module: str, target: Target) -> list[dict[str, Any]]:
    """Self import time summed per top-level package, heaviest first (`-X importtime`)."""
    totals: dict[str, int] = {}
    for line in target.run("-X", "importtime", "-c", f"import {module}").stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, _, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        package = name.split(".")[0]
        totals[package] = totals.get(package, 0) + int(self_us)
    ordered = sorted(totals.items(), key=lambda item: item[1], reverse=True)
    return [{"package": name, "ms": round(us / 1000, 1)} for name, us in ordered[:HEAVIEST]]


def _megabytes(folder: Path) -> float:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return round(total / 1_000_000, 2)


def _copy_build(build: Path, scratch: Path) -> None:
    """The functions and the layer as built (file times and bytecode kept)."""
    for name in [LAYER, *(function for _, function in HANDLERS.values())]:
        if (build / name).is_dir():
            shutil.copytree(build / name, scratch / name)


def _strip_bytecode(scratch: Path) -> None:
    for cache in list(scratch.rglob("__pycache__")):
        shutil.rmtree(cache)


def _from_checkout() -> dict[str, Any]:
    result: dict[str, Any] = {"built": False, "judged": "checkout"}
    for key, (module, _) in HANDLERS.items():
        target = Target()
        result[key] = {
            "module": module,
            "checkout": _runs(module, target),
            "breakdown": import_breakdown(module, target),
        }
    return result


def shipped(build: Path, *, python: str | None = None) -> dict[str, Any]:
    """Each handler's import as `build` ships it (bytecode included), by `python`."""
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="storyq-bench-build-") as folder:
        scratch = Path(folder)
        _copy_build(build, scratch)
        for key, (module, function) in HANDLERS.items():
            target = Target([scratch / function, scratch / LAYER / "python"], python=python)
            found[key] = {
                "module": module,
                "shipped": _runs(module, target),
                "breakdown": import_breakdown(module, target),
            }
    return found


def measure() -> dict[str, Any]:
    build = project_root() / ".aws-sam" / "build"
    if not (build / LAYER / "python").is_dir():
        return _from_checkout()
    result: dict[str, Any] = {
        "built": True,
        "judged": "shipped",
        "build_time": datetime.fromtimestamp((build / LAYER).stat().st_mtime, UTC).isoformat(
            timespec="seconds"
        ),
        "layer_size_mb": _megabytes(build / LAYER),
    }
    with tempfile.TemporaryDirectory(prefix="storyq-bench-build-") as folder:
        scratch = Path(folder)
        _copy_build(build, scratch)
        targets = {
            key: Target([scratch / function, scratch / LAYER / "python"])
            for key, (_, function) in HANDLERS.items()
        }
        for key, (module, function) in HANDLERS.items():
            result[key] = {
                "module": module,
                "function_size_mb": _megabytes(build / function),
                "shipped": _runs(module, targets[key]),
                "breakdown": import_breakdown(module, targets[key]),
            }
        _strip_bytecode(scratch)
        for key, (module, _) in HANDLERS.items():
            result[key]["no_bytecode"] = _runs(module, targets[key])
    return result
