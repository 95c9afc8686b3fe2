"""Cold start: each handler's import, and the import plus its first invocation, in a fresh
interpreter; and the built size of each function and of the layer.

Times are taken in a new `python` process, CPU and wall clock (median of RUNS, after one
unmeasured run; the target is judged on CPU time, which a busy machine does not inflate the way
it inflates the wall clock), with the environment variables Lambda sets (LAMBDA_TASK_ROOT and
friends, tracing on: Powertools' Tracer patches httpx for X-Ray at import, as it does in Lambda).
Two figures per handler:
- `import`: `import storyq_api.handler` (or the worker's) alone;
- `first_invocation`: the import, then what the first invocation does before it can answer,
  without network. This is what a cold start pays, and what the targets are judged on: the
  handlers build their app, settings and clients on first use (never at import, for SnapStart),
  so the import alone leaves out the two TLS contexts the clients load (~40 ms each here), the
  FastAPI app and the first request through Mangum. The API answers events/health.json: its app
  is built from Settings, the request runs through Powertools, Mangum and FastAPI, and Redis and
  Postgres refuse the connection at once (a bound port nobody listens on), so the answer is a
  503. The worker builds what each of its invocations works with before its first request
  (`open_context`: Settings, the Upstash and PostgREST clients, the generator) and closes it;
  the sweep and drain that follow are its work, bound by the network. Not measured: reading the
  secrets from SSM (no STORYQ_SECRETS_PATH here, so no boto3 and no network). In AWS that is
  about 300 ms of CPU more on this machine: importing boto3 and making the SSM client (with
  SnapStart the import is in the snapshot; the client is made after each restore).
  Left for the requests that need them, on purpose: the JWKS client (built on the first
  asymmetric token; cryptography itself comes with `import jwt`), boto3 for the worker kick, the
  OpenAI client (GENERATOR=openai only).

With a build (`make build` / `make sam-build`: `sam build`, then the bytecode compiled with
`--invalidation-mode unchecked-hash`), the function dir and the layer are copied to a scratch
folder and used from there alone (no site-packages, no bytecode written: Lambda's /var/task is
read-only), twice:
- `shipped`: as the build ships them, bytecode included: what the target is judged on;
- `no_bytecode`: with every __pycache__ removed, as a plain `sam build` would ship them (it
  compiles nothing, so Lambda would compile every module at every cold start; import only).
Without a build, the checkout's venv is measured instead (its dev-only packages are imported
too: X-Ray's patcher finds psycopg, httpx's CLI module finds rich and click).

`-X importtime` of the judged import attributes its time to top-level packages (self time
summed per package, so the parts add up to the whole).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storyq_local.config import project_root

HANDLERS = {
    "api": ("storyq_api.handler", "ApiFunction"),
    "worker": ("storyq_worker.handler", "WorkerFunction"),
}
LAYER = "CoreLayer"
# Issue 16: CPU of the import plus the first invocation, as shipped, on python3.13.
TARGETS_MS = {"api": 300.0, "worker": 150.0}
RUNS = 5
HEAVIEST = 8

_PROBE = """\
import time
wall, cpu = time.perf_counter(), time.process_time()
import {module}
{first}
print(time.perf_counter() - wall, time.process_time() - cpu)
"""
EVENTS = project_root() / "events"
# What each handler's first invocation does before it can answer (see the module docstring).
FIRST_INVOCATION = {
    "api": f"""\
import json
from {HANDLERS["api"][0]} import handler
class Context:
    function_name = "storyq-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:storyq-bench"
    aws_request_id = "c0ffee00-0000-4000-8000-000000000001"
with open({str(EVENTS / "health.json")!r}, encoding="utf-8") as file:
    answer = handler(json.load(file), Context())
assert answer["statusCode"] == 503, answer  # both dependencies refused, as they should be
""",
    "worker": """\
import asyncio
from storyq.config import get_settings
from storyq_worker.context import open_context
async def first_invocation():
    async with open_context(get_settings()):
        pass
asyncio.run(first_invocation())
""",
}
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


def first_invocation_env(port: int) -> dict[str, str]:
    """Settings a production function would accept (no development secrets), with Upstash and
    Supabase on a local port that refuses connections. Upstash's one retry after a refusal is
    turned off: it would only add its pause to the wall clock."""
    return {
        "UPSTASH_REST_RETRIES": "0",
        "UPSTASH_REDIS_REST_URL": f"http://127.0.0.1:{port}",
        "SUPABASE_URL": f"http://127.0.0.1:{port}",
        "UPSTASH_REDIS_REST_TOKEN": "bench-upstash-token",
        "SUPABASE_SERVICE_ROLE_KEY": "bench-service-role-key",
        "SUPABASE_JWT_SECRET": "bench-jwt-secret-bench-jwt-secret-bench",
    }


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: every connection is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class Target:
    """Where a handler is imported from: the checkout's venv, or a function dir + layer, and
    by which interpreter (this one unless told)."""

    def __init__(
        self,
        paths: list[Path] | None = None,
        *,
        python: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.paths = paths
        self.python = python or sys.executable
        self.extra_env = extra_env or {}

    def with_env(self, extra_env: dict[str, str]) -> Target:
        return Target(self.paths, python=self.python, extra_env={**self.extra_env, **extra_env})

    @property
    def flags(self) -> list[str]:
        return [] if self.paths is None else ["-s", "-S"]

    @property
    def env(self) -> dict[str, str]:
        if self.paths is None:
            inherited = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
            return {**inherited, **LAMBDA_ENV, **self.extra_env}
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in self.paths),
            "PYTHONDONTWRITEBYTECODE": "1",
            **LAMBDA_ENV,
            **self.extra_env,
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


def _probe(module: str, target: Target, first: str) -> tuple[float, float]:
    probe = _PROBE.format(module=module, first=first)
    wall, cpu = target.run("-c", probe).stdout.split()[-2:]
    return float(wall), float(cpu)


def _runs(module: str, target: Target, *, first: str = "") -> dict[str, Any]:
    _probe(module, target, first)  # the first run may compile (checkout) or warm the page cache
    runs = [_probe(module, target, first) for _ in range(RUNS)]
    return {
        "wall_runs_ms": [round(w * 1000, 1) for w, _ in runs],
        "median_ms": round(statistics.median(w for w, _ in runs) * 1000, 1),
        "cpu_median_ms": round(statistics.median(c for _, c in runs) * 1000, 1),
    }


def first_invocation_runs(key: str, target: Target) -> dict[str, Any]:
    """The handler's import plus its first invocation (FIRST_INVOCATION), without network."""
    with refusing_port() as port:
        refused = target.with_env(first_invocation_env(port))
        return _runs(HANDLERS[key][0], refused, first=FIRST_INVOCATION[key])


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
            "first_invocation": first_invocation_runs(key, target),
            "breakdown": import_breakdown(module, target),
        }
    return result


def shipped(build: Path, *, python: str | None = None, first: bool = False) -> dict[str, Any]:
    """Each handler's import as `build` ships it (bytecode included), by `python`; with
    `first`, also the import plus the first invocation."""
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="storyq-bench-build-") as folder:
        scratch = Path(folder)
        _copy_build(build, scratch)
        for key, (module, function) in HANDLERS.items():
            target = Target([scratch / function, scratch / LAYER / "python"], python=python)
            found[key] = {"module": module, "shipped": _runs(module, target)}
            if first:
                found[key]["first_invocation"] = first_invocation_runs(key, target)
            found[key]["breakdown"] = import_breakdown(module, target)
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
                "first_invocation": first_invocation_runs(key, targets[key]),
                "breakdown": import_breakdown(module, targets[key]),
            }
        _strip_bytecode(scratch)
        for key, (module, _) in HANDLERS.items():
            result[key]["no_bytecode"] = _runs(module, targets[key])
    return result
