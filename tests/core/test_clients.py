"""The PostgREST client keeps at most POSTGREST_CONCURRENCY requests in flight."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storyq.clients import BoundedTransport
from storyq_local.stack.servers import serve_in_thread


async def test_requests_beyond_the_limit_wait_and_all_complete() -> None:
    # Given a server that counts the requests it is answering at once
    in_flight = 0
    most = 0

    async def slow(_: Request) -> JSONResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return JSONResponse({"ok": True})

    server = serve_in_thread(Starlette(routes=[Route("/", slow)]))
    try:
        # When 60 requests go at once through a transport limited to 4
        async with httpx.AsyncClient(transport=BoundedTransport(4), base_url=server.url) as client:
            answers = await asyncio.gather(*(client.get("/") for _ in range(60)))
    finally:
        server.stop()

    # Then every one is answered, and never more than 4 were in flight
    assert [a.json() for a in answers] == [{"ok": True}] * 60
    assert most == 4
