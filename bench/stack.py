"""The server side of the benchmarks, in processes apart from the load generator.

`python -m bench.stack emulators --redis-url U --database-url D` serves the Upstash and
Supabase emulators (one uvicorn each, on threads), each wrapped in a counter of the HTTP
requests it answers (one Upstash request or one PostgREST round trip each), readable at
`GET /__bench__/counts`. It prints one JSON line with both URLs once they accept connections
and serves until its stdin closes.

`python -m bench.stack api --port P` serves `storyq_api.app.create_app(Settings())` under
uvicorn, configured by the environment the parent gives it (emulator URLs, raised rate limits).

`ServerSide` (used by `python -m bench`) starts both, optionally pinned to one CPU, and stops
them by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from storyq.config import DEV_JWT_SECRET

UPSTASH_TOKEN = "storyq-bench-upstash-token"
JWT_SECRET = DEV_JWT_SECRET
COUNTS_PATH = "/__bench__/counts"

# Quiet, local Powertools (as the tests run it): no traces, no metrics flush, warnings only.
POWERTOOLS_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "StoryqBench",
    "POWERTOOLS_METRICS_DISABLED": "1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": "eu-central-1",
}


class CountingApp:
    """Counts the HTTP requests an emulator answers, by path, and reports them as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.by_path: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope["path"])
            if path == COUNTS_PATH:
                await _send_json(send, {"requests": self.by_path.total(), "by_path": self.by_path})
                return
            self.by_path[path] += 1
        await self.app(scope, receive, send)


async def _send_json(send: Send, payload: Mapping[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _serve_emulators(args: argparse.Namespace) -> None:
    from storyq_local import supabase_emulator, upstash_emulator
    from storyq_local.servers import serve_in_thread

    upstash = serve_in_thread(
        CountingApp(upstash_emulator.create_app(redis_url=args.redis_url, token=UPSTASH_TOKEN))
    )
    supabase = serve_in_thread(
        CountingApp(
            supabase_emulator.create_app(database_url=args.database_url, jwt_secret=JWT_SECRET)
        )
    )
    print(json.dumps({"upstash": upstash.url, "supabase": supabase.url}), flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        supabase.stop()
        upstash.stop()


def _serve_api(args: argparse.Namespace) -> None:
    import uvicorn

    from storyq.config import Settings
    from storyq_api.app import create_app

    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings option
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stack")
    roles = parser.add_subparsers(dest="role", required=True)
    emulators = roles.add_parser("emulators")
    emulators.add_argument("--redis-url", required=True)
    emulators.add_argument("--database-url", required=True)
    api = roles.add_parser("api")
    api.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.role == "emulators":
        _serve_emulators(args)
    else:
        _serve_api(args)


# -- the parent's side ----------------------------------------------------------------------


def api_environment(upstash_url: str, supabase_url: str) -> dict[str, str]:
    """Settings for the API under load: the bench's emulators, limits out of the way."""
    return {
        **POWERTOOLS_ENV,
        "STORYQ_ENV": "dev",
        "UPSTASH_REDIS_REST_URL": upstash_url,
        "UPSTASH_REDIS_REST_TOKEN": UPSTASH_TOKEN,
        "UPSTASH_REST_RETRIES": "0",
        "SUPABASE_URL": supabase_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "GENERATE_RATE_LIMIT": "1000000",
        "READ_RATE_LIMIT": "1000000",
        "MAX_ACTIVE_JOBS": "5",
    }


@dataclass
class ServerSide:
    """The emulator and API processes; `cpus` pins them (the load generator takes the rest)."""

    redis_url: str
    database_url: str
    api_port: int
    cpus: set[int] | None = None
    # Where the server processes' output goes (Powertools logs to stdout, uvicorn and the
    # emulators' tracebacks to stderr), out of the benchmark's table.
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="storyq-bench-")) / "server.log"
    )
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    upstash_url: str = ""
    supabase_url: str = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(
        self, args: list[str], env: Mapping[str, str], *, pipe_stdout: bool = False
    ) -> subprocess.Popen[str]:
        cpus = self.cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with self.log_path.open("a", encoding="utf-8") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.stack", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if pipe_stdout else log,
                stderr=log,
                text=True,
                env={**os.environ, **env},
                preexec_fn=pin,  # noqa: PLW1509  # only sets the CPU affinity of the child
            )
        self.processes.append(process)
        return process

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> ServerSide:
        emulators = self._spawn(
            ["emulators", "--redis-url", self.redis_url, "--database-url", self.database_url],
            POWERTOOLS_ENV,
            pipe_stdout=True,
        )
        assert emulators.stdout is not None
        line = emulators.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulators did not start:\n{self.log_tail()}")
        urls = json.loads(line)
        self.upstash_url, self.supabase_url = urls["upstash"], urls["supabase"]
        self._spawn(
            ["api", "--port", str(self.api_port)],
            api_environment(self.upstash_url, self.supabase_url),
        )
        self._wait_for_api()
        return self

    def _wait_for_api(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.api_url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"the API did not come up:\n{self.log_tail()}")
            time.sleep(0.1)

    def counts(self) -> dict[str, Counter[str]]:
        """Requests each emulator has answered so far, by path."""
        found: dict[str, Counter[str]] = {}
        for name, url in (("upstash", self.upstash_url), ("supabase", self.supabase_url)):
            answer = httpx.get(url + COUNTS_PATH, timeout=5).json()
            found[name] = Counter(answer["by_path"])
        return found

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                if process.stdin is not None:
                    process.stdin.close()
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()


if __name__ == "__main__":
    main()
