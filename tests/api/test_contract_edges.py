"""HTTP contract edges found in other job APIs' bug reports: HEAD on every GET route, lengths in
characters whatever the JSON encoding, truthful idempotent replays, and the RateLimit-* headers
on every answer of a limited request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from storyq.config import Settings
from storyq_api.app import MAX_BODY_BYTES
from tests.api.conftest import GENERATE_BODY, assert_problem, client_for
from tests.support.sql import Db
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]
UKRAINIAN = "ї"  # one character, six bytes as \u0457
EMOJI = "\U0001f30a"  # one character, twelve bytes as \ud83c\udf0a


async def _queue(client: httpx.AsyncClient, user: ApiUser, **headers: str) -> dict[str, Any]:
    response = await client.post(
        "/api/generate", json=GENERATE_BODY, headers={**user.headers, **headers}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def get_routes(app: FastAPI) -> list[str]:
    """Every GET path the API documents (its OpenAPI document is the contract)."""
    return sorted(
        path for path, operations in app.openapi()["paths"].items() if "get" in operations
    )


async def test_every_get_route_answers_head_as_get_without_a_body(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    # Given an admin's job and story, and every GET route of the API with real ids
    admin = make_user(credits=1, admin=True)
    job = await _queue(client, admin)
    ids = {"{jobId}": job["jobId"], "{storyId}": job["storyId"]}
    paths = get_routes(app)
    assert "/api/health" in paths
    assert len(paths) >= 6

    for template in paths:
        path = template
        for name, value in ids.items():
            path = path.replace(name, value)
        # When it is asked with GET, then with HEAD
        got = await client.get(path, headers=admin.headers)
        head = await client.head(path, headers=admin.headers)

        # Then HEAD has GET's status and headers, Content-Length included, and no body
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b""
        for name in ("content-type", "content-length"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)


async def test_head_needs_the_same_token_as_get(client: httpx.AsyncClient) -> None:
    for path in ("/api/me", "/api/jobs", "/api/admin/queue"):
        response = await client.head(path)
        assert response.status_code == 401
        assert response.content == b""
    # And a route without GET still refuses HEAD
    assert (await client.head("/api/admin/queue/empty")).status_code == 405


async def test_head_counts_toward_the_read_limit_like_get(
    settings: Settings, make_user: MakeUser
) -> None:
    # Given a read limit of 2 a minute
    user = make_user()
    limited = settings.model_copy(update={"read_rate_limit": 2})
    async with client_for(limited) as client:
        # When a user probes with HEAD, HEAD, then GET
        first = await client.head("/api/me", headers=user.headers)
        second = await client.head("/api/me", headers=user.headers)
        third = await client.get("/api/me", headers=user.headers)

    # Then both HEADs counted: the GET is over the limit
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["RateLimit-Remaining"] == "1"
    assert_problem(third, 429, "rate_limited")


@pytest.mark.parametrize("character", [UKRAINIAN, EMOJI], ids=["ukrainian", "emoji"])
async def test_a_4000_character_prompt_is_accepted_however_it_is_escaped(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db, character: str
) -> None:
    # Given a 4000-character prompt, sent as Python's json (and requests) send it by default
    user = make_user(credits=1)
    body = json.dumps({"prompt": character * 4000}).encode()
    assert len(body) > 16 * 1024

    # When it is posted
    response = await client.post(
        "/api/generate", content=body, headers={**user.headers, "Content-Type": "application/json"}
    )

    # Then it is queued, and the story holds the 4000 characters
    assert response.status_code == 202, response.text
    prompt = db.value("select prompt from stories where id = %s", (response.json()["storyId"],))
    assert prompt == character * 4000


async def test_lengths_are_counted_in_characters_not_bytes(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    # One character too many is a validation error (422), not a body too large (413)
    too_long = json.dumps({"prompt": EMOJI * 4001}).encode()
    assert len(too_long) < MAX_BODY_BYTES
    response = await client.post(
        "/api/generate",
        content=too_long,
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "validation_error")
    # And a 200-character title of emoji is a valid title
    titled = {**GENERATE_BODY, "title": EMOJI * 200, "genre": UKRAINIAN * 50}
    response = await client.post(
        "/api/generate",
        content=json.dumps(titled).encode(),
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    assert db.balance(user.id) == 0


async def test_a_replay_reports_the_job_as_it_is_now(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a keyed job the user then cancelled (refunded)
    user = make_user(credits=1)
    first = await _queue(client, user, **{"Idempotency-Key": "edge-replay"})
    assert first["creditsRemaining"] == 0
    assert (
        await client.delete(f"/api/job/{first['jobId']}", headers=user.headers)
    ).status_code == 200

    # When the same request is sent again with the same key
    again = await client.post(
        "/api/generate",
        json=GENERATE_BODY,
        headers={**user.headers, "Idempotency-Key": "edge-replay"},
    )

    # Then the answer is the first job, as it is now: cancelled, refunded, no queue position
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    body = again.json()
    assert body["jobId"] == first["jobId"]
    assert body["status"] == "cancelled"
    assert "cancelled" in body["message"]
    assert body["estimatedWaitTime"] is None
    assert body["creditsRemaining"] == 1 == db.balance(user.id)


async def test_every_answer_of_a_limited_request_carries_its_ratelimit_headers(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    # Given a user without credits
    user = make_user(credits=0)

    # When POST /api/generate is refused for credits, and a read finds no such job
    broke = await client.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    missing = await client.get(
        "/api/job/00000000-0000-4000-8000-000000000000", headers=user.headers
    )

    # Then both answers say where the user stands in their window
    assert_problem(broke, 402, "insufficient_credits")
    assert_problem(missing, 404, "not_found")
    for response in (broke, missing):
        assert int(response.headers["RateLimit-Limit"]) > 0
        assert "RateLimit-Remaining" in response.headers
        assert "RateLimit-Reset" in response.headers


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every operation the API documents but health (no token)."""
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path != "/api/health"
    )


async def test_a_deleted_account_gets_one_answer_on_every_route(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given an admin (admins reach every route) with a job, whose account is then deleted
    owner = make_user(credits=1, admin=True)
    job = await _queue(client, owner)
    app.state.services.accounts.forget(owner.id)  # as a container that never served them
    db.run("delete from auth.users where id = %s", (owner.id,))
    ids = {"{jobId}": job["jobId"], "{storyId}": job["storyId"]}

    routes = every_route(app)
    assert len(routes) >= 10
    for method, template in routes:
        path = template
        for name, value in ids.items():
            path = path.replace(name, value)
        # When the still-valid token calls it (a body that would be valid, where one is taken)
        body = {"amount": 1, "userId": str(owner.id)} if path.endswith("/credits") else None
        if path == "/api/generate":
            body = GENERATE_BODY
        response = await client.request(method, path, json=body, headers=owner.headers)
        # Then it is refused the same way everywhere
        assert_problem(response, 401, "user_not_found")
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"], path


async def test_a_deletion_is_noticed_at_once_by_generate_then_everywhere(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a user the app has just served (so it remembers the account exists)
    user = make_user(credits=2)
    assert (await client.get("/api/me", headers=user.headers)).status_code == 200

    # When the account is deleted, generating is refused at once and debits nothing
    db.run("delete from auth.users where id = %s", (user.id,))
    response = await client.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    assert_problem(response, 401, "user_not_found")
    assert db.value("select count(*) from public.story_jobs where user_id = %s", (user.id,)) == 0

    # And from then on the other routes give the same answer
    assert_problem(await client.get("/api/me", headers=user.headers), 401, "user_not_found")
