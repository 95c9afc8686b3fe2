"""A local stand-in for Supabase's REST API (PostgREST), over a real PostgreSQL.

Owns the HTTP side of PostgREST's protocol that storyq uses, so that the unchanged supabase-py
client (sync and async) works against a local database:

- `POST /rest/v1/rpc/<fn>` with a JSON object of named arguments (also `GET`/`HEAD` with the
  arguments in the query string, in a read-only transaction); overloads resolved as PostgREST
  does, results rendered in SQL as PostgREST renders them, `void` → 204;
- `GET /rest/v1/<table>?select=&col=op.value&order=&limit=&offset=` table reads (plus
  `Prefer: count=exact` and `Accept: application/vnd.pgrst.object+json`); writes → 405;
- HS256 JWTs (`Authorization: Bearer`, else `apikey`), verified with 30 s leeway and no audience;
  the `role` claim (anon if absent) and the claims are set per request, in one transaction with
  the call, with `request.method`, `request.path`, `request.headers`, `request.cookies`;
- PostgREST's error bodies and status codes (`errors`), and the `response.status`/
  `response.headers` GUCs a function may set;
- `Content-Profile`/`Accept-Profile` schema selection among the exposed schemas;
- `GET /healthz` and `GET /auth/v1/.well-known/jwks.json` (no keys: HS256) without a token.

PostgreSQL down → 503 within the pool timeout (1 s while it stays down), never a hang; the pool
checks each connection before use and reconnects, so a restart heals on its own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from storyq_local.emulators.supabase.emulator import POOL_TIMEOUT_S, Emulator
from storyq_local.emulators.supabase.errors import PostgrestError

logger = logging.getLogger(__name__)


async def _healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


async def _jwks(_: Request) -> Response:
    return JSONResponse({"keys": []})


async def _root(_: Request) -> Response:
    return JSONResponse({})


async def _unexpected(_: Request, exc: Exception) -> Response:
    """A bug of the emulator still answers in PostgREST's shape, so clients raise APIError."""
    logger.exception("supabase emulator failed", exc_info=exc)
    return PostgrestError(500, "PGRSTX00", f"{type(exc).__name__}: {exc}").response()


async def _no_route(_: Request) -> Response:
    return PostgrestError(404, "PGRST125", "Invalid path specified in request URL").response()


def create_app(
    *, database_url: str, jwt_secret: str, pool_size: int = 20, pool_timeout: float = POOL_TIMEOUT_S
) -> Starlette:
    """The emulator as an ASGI app; its connection pool lives for the app's lifespan."""
    emulator = Emulator(
        database_url=database_url,
        jwt_secret=jwt_secret,
        pool_size=pool_size,
        pool_timeout=pool_timeout,
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await emulator.start()
        try:
            yield
        finally:
            await emulator.close()

    every_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/auth/v1/.well-known/jwks.json", _jwks, methods=["GET"]),
        Route("/rest/v1/", _root, methods=["GET", "HEAD"]),
        Route("/rest/v1/rpc/{fn}", emulator.rpc, methods=every_method),
        Route("/rest/v1/{table}", emulator.table, methods=every_method),
        Route("/rest/v1/{path:path}", _no_route, methods=every_method),
    ]
    cors = Middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Content-Range", "Content-Profile", "Range"],
    )
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[cors],
        exception_handlers={Exception: _unexpected},
    )
