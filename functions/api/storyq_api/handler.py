"""The Lambda entry point: API Gateway HTTP API (payload v2) → Mangum → FastAPI.

Thin on purpose: Powertools' decorators (logs correlated by the API Gateway request id,
metrics flushed per invocation, a trace segment), then Mangum. The app is built on the first
invocation, from Settings validated then, so importing this module connects to nothing.

Under a named stage API Gateway puts the stage in the path (`/dev/api/...`); the base path is
taken from the event's stage unless one is given, so `$default`, named stages and custom
domains (no stage in the path) all route alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from mangum import Mangum

from storyq import snapstart
from storyq.config import Settings, get_settings
from storyq_api.app import create_app
from storyq_api.telemetry import logger, metrics, tracer

# The core (storyq.*) logs through the standard library: its lines get this Logger's JSON
# handler, level and keys (the correlation id included), like the function's own.
logging.getLogger("storyq")
copy_config_to_registered_loggers(source_logger=logger, include={"storyq"})

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def stage_base_path(event: dict[str, Any]) -> str:
    """`/<stage>` when the request path starts with the event's named stage, else `/`."""
    context = event.get("requestContext") or {}
    stage = context.get("stage")
    path = event.get("rawPath") or (context.get("http") or {}).get("path") or ""
    if not stage or stage == "$default":
        return "/"
    prefix = f"/{stage}"
    return prefix if path == prefix or path.startswith(prefix + "/") else "/"


def make_handler(settings: Settings, *, base_path: str | None = None) -> LambdaHandler:
    """A Lambda handler over an app built from `settings` (tests call it with theirs)."""
    app = create_app(settings)
    adapters: dict[str, Mangum] = {}

    def adapter(path: str) -> Mangum:
        if path not in adapters:
            adapters[path] = Mangum(app, lifespan="off", api_gateway_base_path=path)
        return adapters[path]

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        path = base_path if base_path is not None else stage_base_path(event)
        response: dict[str, Any] = adapter(path)(event, context)
        return response

    return handle


_handler: LambdaHandler | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """What template.yaml names: storyq_api.handler.handler."""
    global _handler  # noqa: PLW0603  # one app per container, built on first use
    if _handler is None:
        _handler = make_handler(get_settings())
    return _handler(event, context)


def _forget_app() -> None:
    """Before a SnapStart snapshot: no app, so no settings, secrets or clients, in it."""
    global _handler  # noqa: PLW0603
    _handler = None


def _build_app() -> None:
    """After a restore: settings and secrets read now, new clients (connections open on use)."""
    global _handler  # noqa: PLW0603
    _handler = make_handler(get_settings())


snapstart.register(before_snapshot=_forget_app, after_restore=_build_app)
