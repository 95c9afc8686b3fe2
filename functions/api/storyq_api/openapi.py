"""The OpenAPI document: FastAPI's, with every error as the Problem schema.

`python -m storyq_api.openapi` rewrites the committed functions/api/openapi.json (a test fails
when it drifts from what the app serves at /openapi.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from storyq_api.bodies import DOCUMENTED
from storyq_api.errors import PROBLEM_JSON

COMMITTED = Path(__file__).resolve().parent.parent / "openapi.json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` is stable, switch on it.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {
            "type": "string",
            "examples": [
                "unauthorized",
                "forbidden",
                "not_found",
                "insufficient_credits",
                "idempotency_conflict",
                "job_not_cancellable",
                "job_not_retryable",
                "payload_too_large",
                "validation_error",
                "rate_limited",
                "database_unavailable",
                "auth_unavailable",
                "internal_error",
            ],
        },
        "errors": {
            "type": "array",
            "description": "validation_error only: what is wrong, where",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}

_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the Problem schema, the bodies routes read themselves (see
    bodies.py) and FastAPI's default 422 replaced by the problem it really is."""
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name, model in sorted(DOCUMENTED.items()):
        components[name] = model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "Unprocessable Content",
                    "content": _PROBLEM_CONTENT,
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def render(app: FastAPI) -> str:
    """The document as committed: stable key order, two-space indent, final newline."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    from storyq.config import Settings
    from storyq_api.app import create_app

    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else COMMITTED
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # defaults only, no .env
    target.write_text(render(create_app(settings)), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
