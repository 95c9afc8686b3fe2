"""The committed OpenAPI document is the one the app serves (regenerate it with
`python -m storyq_api.openapi`), and it documents the contract's paths and error shape."""

from __future__ import annotations

import json

import httpx

from storyq.config import Settings
from storyq_api.app import create_app
from storyq_api.openapi import COMMITTED, render


def test_the_committed_document_is_in_sync_with_the_app() -> None:
    served = render(create_app(Settings(_env_file=None)))  # type: ignore[call-arg]
    assert COMMITTED.read_text(encoding="utf-8") == served, (
        "functions/api/openapi.json is stale: run `python -m storyq_api.openapi`"
    )


async def test_the_app_serves_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_it_documents_the_contract() -> None:
    document = json.loads(COMMITTED.read_text(encoding="utf-8"))
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert {
        ("POST", "/api/generate"),
        ("GET", "/api/job/{jobId}"),
        ("DELETE", "/api/job/{jobId}"),
        ("GET", "/api/story/{storyId}"),
        ("GET", "/api/jobs"),
        ("GET", "/api/health"),
        ("GET", "/api/admin/queue"),
        ("GET", "/api/admin/jobs"),
        ("GET", "/api/admin/job/{jobId}"),
        ("POST", "/api/admin/queue/clean"),
        ("POST", "/api/admin/queue/empty"),
        ("POST", "/api/admin/job/{jobId}/retry"),
    } <= operations
    generate = document["paths"]["/api/generate"]["post"]
    assert set(generate["responses"]) >= {"202", "401", "402", "409", "413", "422", "429", "503"}
    problem = generate["responses"]["429"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    body = document["components"]["schemas"]["GenerateRequest"]
    assert set(body["properties"]) == {"prompt", "title", "genre", "language", "targetWords"}
    assert body["additionalProperties"] is False
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
