"""The ASGI apps of a local stack, built the same way whether they are served on a thread of
this process or in a process of their own (`serve`).

With `count_requests` an emulator counts the HTTP requests it answers, by path (one Upstash
request, or one PostgREST round trip, each), and reports them at `GET /__stack__/requests`:
the benchmarks' cost per job is counted there.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from storyq.config import Settings

COUNTS_PATH = "/__stack__/requests"


class RequestCounter:
    """Counts the HTTP requests the wrapped app answers, by path, and reports them as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.by_path: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope["path"])
            if path == COUNTS_PATH:
                await self._report(send)
                return
            self.by_path[path] += 1
        await self.app(scope, receive, send)

    async def _report(self, send: Send) -> None:
        body = json.dumps({"requests": self.by_path.total(), "by_path": self.by_path}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def upstash_app(*, redis_url: str, token: str, count_requests: bool = False) -> ASGIApp:
    from storyq_local.emulators.upstash import create_app

    app = create_app(redis_url=redis_url, token=token)
    return RequestCounter(app) if count_requests else app


def supabase_app(
    *,
    database_url: str,
    jwt_secret: str,
    pool_size: int,
    pool_timeout: float,
    count_requests: bool = False,
) -> ASGIApp:
    from storyq_local.emulators.supabase import create_app

    app = create_app(
        database_url=database_url,
        jwt_secret=jwt_secret,
        pool_size=pool_size,
        pool_timeout=pool_timeout,
    )
    return RequestCounter(app) if count_requests else app


def openai_app(*, story_seconds: float = 0.0, count_requests: bool = False) -> ASGIApp:
    from storyq_local.emulators.openai import create_app

    app = create_app(story_seconds=story_seconds)
    return RequestCounter(app) if count_requests else app


def api_app(settings: Settings, *, web: Path | None = None) -> ASGIApp:
    """The API as the Lambda serves it; with `web`, the reference page at `/` as well."""
    from storyq_api.app import create_app  # the API is what the stack exists to serve
    from storyq_local.stack.web import mount_web

    app = create_app(settings)
    if web is not None:
        mount_web(app, web)
    return app


def web_app(web: Path, *, config: Mapping[str, object]) -> ASGIApp:
    """The reference page alone, with `config` as its web/config.js (`make sam-local` serves it
    beside the functions, whose API does not serve it)."""
    from fastapi import FastAPI

    from storyq_local.stack.web import mount_web

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    mount_web(app, web, config=config)
    return app
