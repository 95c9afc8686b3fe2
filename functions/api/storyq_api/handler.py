"""The Lambda entry point: API Gateway HTTP API (payload v2) → Mangum → FastAPI."""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from storyq_api.app import create_app

_app = create_app()
_mangum = Mangum(_app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = _mangum(event, context)
    return response
