"""The FastAPI application: routers, middleware, the error map and shared services, built from
Settings (nothing connects until the first request)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from storyq import __version__
from storyq.config import Settings, get_settings
from storyq_api import errors
from storyq_api.bodies import longest_body_bytes
from storyq_api.deps import Services
from storyq_api.middleware import (
    BodyLimitMiddleware,
    CatchAllMiddleware,
    HeadMiddleware,
    RateLimitHeadersMiddleware,
)
from storyq_api.openapi import install_openapi
from storyq_api.routes import admin, generate, health, jobs, me, stories
from storyq_api.schemas import GenerateRequest

RATE_LIMIT_HEADERS = ["Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
# The body cap: the longest valid POST /api/generate in its most escaped JSON form (52 KB).
MAX_BODY_BYTES = longest_body_bytes(GenerateRequest)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="storyq",
        version=__version__,
        summary="Queue long story generations and read them back when they are ready.",
    )
    app.state.services = Services.from_settings(settings)
    errors.install(app)
    # Added innermost first: CORS wraps everything, so even a 413 or a 500 carries its headers.
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(HeadMiddleware)
    # The largest body is POST /api/generate's: 4000 characters of prompt can be 48 KB of JSON.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=MAX_BODY_BYTES,
        why="the longest a valid request can be (prompt 4000 characters, however escaped)",
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=[*RATE_LIMIT_HEADERS, "Location", "Idempotent-Replayed"],
        max_age=600,
    )
    for module in (health, generate, jobs, stories, me, admin):
        app.include_router(module.router)
    install_openapi(app)
    return app
