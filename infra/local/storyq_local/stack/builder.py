"""One builder for every local stack. `storyq dev`, the test fixtures, the browser tests, the
reliability suite and the benchmarks each say what they need in a `StackSpec`; `start_stack`
brings it up in order (PostgreSQL and Redis, migrations, the Upstash and Supabase emulators,
optionally the OpenAI one, the API, a worker) and `LocalStack.stop` takes it down in reverse.

What differs between the callers is a choice here, not another copy of the assembly:
- the database: a migrated scratch database (dropped afterwards) on the server at `server_url`
  or on a private cluster that a test may stop, or the database at `server_url` itself (dev);
- Redis: a private redis-server on a free port (its owner may flush or kill it), or the server
  at `redis_url` (dev);
- the emulators and the API: on threads of this process, or each in a process of its own that a
  test may kill and start again on the same port, optionally pinned to CPUs;
- the reference page at `/`, and a worker on a thread for as long as the stack runs (dev).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
from pydantic import SecretStr
from starlette.types import ASGIApp

from storyq.config import Settings
from storyq_local.emulators.openai import DEV_API_KEY
from storyq_local.stack import apps
from storyq_local.stack.migrate import Migration, migrate
from storyq_local.stack.postgres import (
    PrivatePostgres,
    create_scratch_database,
    drop_database,
    migrations_dir,
)
from storyq_local.stack.processes import ServedProcess, new_log
from storyq_local.stack.redis_server import RedisProcess, SharedRedis
from storyq_local.stack.servers import ThreadedServer, free_port, serve_in_thread
from storyq_local.stack.services import ensure_postgres, ensure_redis
from storyq_local.stack.workers import WorkerThread

Where = Literal["thread", "process"]
Served = ThreadedServer | ServedProcess


@dataclass(frozen=True, kw_only=True)
class DatabaseSpec:
    """Which PostgreSQL database the Supabase emulator serves."""

    server_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # A migrated scratch database named `<prefix>_<random>`, dropped on stop; None: the database
    # in `server_url` itself, migrated and kept (`storyq dev`).
    scratch_prefix: str | None = None
    # A cluster of our own on a free port (initdb), destroyed on stop; `server_url` is unused.
    private_cluster: bool = False


@dataclass(frozen=True, kw_only=True)
class EmulatorSpec:
    where: Where = "thread"
    upstash_port: int = 0  # 0: a free port
    supabase_port: int = 0
    supabase_pool_size: int = 20
    supabase_pool_timeout: float = 5.0
    count_requests: bool = False  # see `apps.RequestCounter`
    # The OpenAI emulator: the stack's settings then say GENERATOR=openai, with its URL and key.
    openai: bool = False
    openai_port: int = 0
    openai_story_seconds: float = 0.0  # how long each of its stories takes to stream


@dataclass(frozen=True, kw_only=True)
class ApiSpec:
    where: Where = "thread"
    port: int = 0  # 0: a free port
    web: Path | None = None  # the reference page's folder, served at /


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """A worker on a thread for the stack's life; on stop, running stories get the grace."""

    grace_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class StackSpec:
    """What to run and where; every caller's differences are fields here."""

    database: DatabaseSpec
    upstash_token: str
    jwt_secret: str
    redis_url: str | None = None  # None: a private redis-server on a free port
    emulators: EmulatorSpec = field(default_factory=EmulatorSpec)
    api: ApiSpec | None = None
    worker: WorkerSpec | None = None
    # Settings fields (timings, limits) for the API and workers: a copy of the Settings on a
    # thread, environment variables (NAME in capitals) in a process.
    settings: Mapping[str, Any] = field(default_factory=dict)
    # What the settings start from on a thread (default: Settings from the environment, no .env).
    base_settings: Settings | None = None
    # Make the API check `iss` against this stack's Supabase URL (the reliability suite).
    check_issuer: bool = False
    # More environment for every process the stack starts (Powertools' log level, say).
    process_env: Mapping[str, str] = field(default_factory=dict)
    cpus: frozenset[int] | None = None  # pins the processes the stack starts
    # uvicorn's on threads (one for the whole process: uvicorn configures logging globally);
    # processes log warnings.
    log_level: str = "warning"
    # Where embedded Redis or PostgreSQL keep their data, when no server can be had.
    state_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "storyq-state")
    # Where the processes log; None: a temporary folder, removed on stop.
    log_dir: Path | None = None


@dataclass
class LocalStack:
    """A running stack. Use it in a `with` or call `stop()`: what it started stops in reverse."""

    spec: StackSpec
    database_url: str
    migrations_applied: list[Migration]
    postgres: PrivatePostgres | None
    redis: RedisProcess | SharedRedis
    log_dir: Path
    upstash: Served
    supabase: Served
    openai: Served | None = None
    api: Served | None = None
    worker: WorkerThread | None = None
    cleanup: ExitStack = field(default_factory=ExitStack, repr=False)

    @property
    def issuer(self) -> str:
        """The `iss` of this stack's access tokens, as Supabase Auth writes it."""
        return f"{self.supabase.url}/auth/v1"

    def _connection(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "storyq_env": "dev",
            "upstash_redis_rest_url": self.upstash.url,
            "upstash_redis_rest_token": SecretStr(self.spec.upstash_token),
            "supabase_url": self.supabase.url,
            "supabase_jwt_secret": SecretStr(self.spec.jwt_secret),
        }
        if self.spec.check_issuer:
            found["supabase_jwt_issuer"] = self.issuer
        if self.openai is not None:
            found["generator"] = "openai"
            found["openai_base_url"] = f"{self.openai.url}/v1"
            found["openai_api_key"] = SecretStr(DEV_API_KEY)
        return found

    def settings(self, **overrides: Any) -> Settings:
        """Settings for code running in this process against this stack: `base_settings` (else
        the environment, without .env) with the stack's URLs, token and secret, the spec's
        settings and `overrides`."""
        base = self.spec.base_settings or Settings(_env_file=None)  # type: ignore[call-arg]
        return base.model_copy(update={**self._connection(), **self.spec.settings, **overrides})

    def env(self, **overrides: Any) -> dict[str, str]:
        """What a process (a worker, a built Lambda, the API) needs to reach this stack, with the
        spec's settings and `overrides` (Settings fields) as environment variables."""
        values = {**self._connection(), **self.spec.settings, **overrides}
        return {**self.spec.process_env, **{name.upper(): _env(v) for name, v in values.items()}}

    def request_counts(self) -> dict[str, Counter[str]]:
        """Requests each emulator has answered so far, by path (with `count_requests`)."""
        found: dict[str, Counter[str]] = {}
        served = {"upstash": self.upstash, "supabase": self.supabase, "openai": self.openai}
        for name, server in served.items():
            if server is None:
                continue
            answer = httpx.get(server.url + apps.COUNTS_PATH, timeout=5).json()
            found[name] = Counter(answer["by_path"])
        return found

    def stop(self) -> None:
        self.cleanup.close()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _env(value: object) -> str:
    """A setting as its environment variable's text (lists and mappings as JSON)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def start_stack(spec: StackSpec) -> LocalStack:
    """Bring every piece of `spec` up; return once each one accepts connections."""
    cleanup = ExitStack()
    try:
        return _start(spec, cleanup)
    except BaseException:
        cleanup.close()
        raise


def _start(spec: StackSpec, cleanup: ExitStack) -> LocalStack:
    log_dir = spec.log_dir or Path(tempfile.mkdtemp(prefix="storyq-stack-logs-"))
    if spec.log_dir is None:
        cleanup.callback(shutil.rmtree, log_dir, ignore_errors=True)
    postgres, database_url, applied = _database(spec, cleanup)
    redis = _redis(spec, cleanup)
    launcher = _Launcher(spec=spec, log_dir=log_dir, cleanup=cleanup)
    upstash, supabase = _emulators(spec, launcher, database_url=database_url, redis_url=redis.url)
    stack = LocalStack(
        spec=spec,
        database_url=database_url,
        migrations_applied=applied,
        postgres=postgres,
        redis=redis,
        log_dir=log_dir,
        upstash=upstash,
        supabase=supabase,
        cleanup=cleanup,
    )
    if spec.emulators.openai:
        stack.openai = _openai(spec, launcher)
    if spec.api is not None:
        stack.api = _api(stack, spec.api, launcher)
    if spec.worker is not None:
        worker = WorkerThread(stack.settings(), grace_seconds=spec.worker.grace_seconds)
        stack.worker = worker.start()
        cleanup.callback(worker.stop)
    return stack


def _database(
    spec: StackSpec, cleanup: ExitStack
) -> tuple[PrivatePostgres | None, str, list[Migration]]:
    wanted = spec.database
    postgres: PrivatePostgres | None = None
    if wanted.private_cluster:
        postgres = PrivatePostgres().init()
        cleanup.callback(postgres.destroy)  # its databases go with it
        server_url = postgres.url
    else:
        server_url = ensure_postgres(wanted.server_url, spec.state_dir)
    if wanted.scratch_prefix is None:
        return postgres, server_url, migrate(server_url, migrations_dir())
    url = create_scratch_database(server_url, prefix=wanted.scratch_prefix)
    if postgres is None:
        cleanup.callback(drop_database, url)
    return postgres, url, []


def _redis(spec: StackSpec, cleanup: ExitStack) -> RedisProcess | SharedRedis:
    if spec.redis_url is not None:
        return SharedRedis(ensure_redis(spec.redis_url, spec.state_dir))
    server = RedisProcess().start()
    cleanup.callback(server.stop)
    return server


@dataclass(frozen=True)
class _Launcher:
    """Serves one app on a thread or in a process (`serve`), and has it stopped with the stack."""

    spec: StackSpec
    log_dir: Path
    cleanup: ExitStack

    def serve(
        self,
        kind: str,
        *,
        where: Where,
        port: int,
        app: Callable[[], ASGIApp],
        args: list[str],
        env: Mapping[str, str],
    ) -> Served:
        """`app()` on a thread, or `python -m storyq_local.stack.serve <kind> <args>` with `env`."""
        served: Served
        if where == "process":
            served = ServedProcess(
                kind=kind,
                args=args,
                env=dict(env),
                log=new_log(self.log_dir, kind),
                port=port or free_port(),
                cpus=self.spec.cpus,
            ).start()
        else:
            served = serve_in_thread(app(), port=port, log_level=self.spec.log_level)
        self.cleanup.callback(served.stop)
        return served


def _emulators(
    spec: StackSpec, launcher: _Launcher, *, database_url: str, redis_url: str
) -> tuple[Served, Served]:
    emulators = spec.emulators
    secrets = {
        **spec.process_env,
        "UPSTASH_REDIS_REST_TOKEN": spec.upstash_token,
        "SUPABASE_JWT_SECRET": spec.jwt_secret,
    }
    counting = ["--count-requests"] if emulators.count_requests else []
    upstash = launcher.serve(
        "upstash",
        where=emulators.where,
        port=emulators.upstash_port,
        app=lambda: apps.upstash_app(
            redis_url=redis_url, token=spec.upstash_token, count_requests=emulators.count_requests
        ),
        args=["--redis-url", redis_url, *counting],
        env=secrets,
    )
    supabase = launcher.serve(
        "supabase",
        where=emulators.where,
        port=emulators.supabase_port,
        app=lambda: apps.supabase_app(
            database_url=database_url,
            jwt_secret=spec.jwt_secret,
            pool_size=emulators.supabase_pool_size,
            pool_timeout=emulators.supabase_pool_timeout,
            count_requests=emulators.count_requests,
        ),
        args=[
            *("--database-url", database_url),
            *("--pool-size", str(emulators.supabase_pool_size)),
            *("--pool-timeout", str(emulators.supabase_pool_timeout)),
            *counting,
        ],
        env=secrets,
    )
    return upstash, supabase


def _openai(spec: StackSpec, launcher: _Launcher) -> Served:
    emulators = spec.emulators
    return launcher.serve(
        "openai",
        where=emulators.where,
        port=emulators.openai_port,
        app=lambda: apps.openai_app(
            story_seconds=emulators.openai_story_seconds, count_requests=emulators.count_requests
        ),
        args=[
            *("--story-seconds", str(emulators.openai_story_seconds)),
            *(["--count-requests"] if emulators.count_requests else []),
        ],
        env=dict(spec.process_env),
    )


def _api(stack: LocalStack, api: ApiSpec, launcher: _Launcher) -> Served:
    return launcher.serve(
        "api",
        where=api.where,
        port=api.port,
        app=lambda: apps.api_app(stack.settings(), web=api.web),
        args=["--web", str(api.web)] if api.web is not None else [],
        env=stack.env(),
    )
