"""The FastAPI application: routers, middleware and shared services, built from Settings."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from storyq import __version__
from storyq.config import Settings, get_settings
from storyq_api.deps import Services
from storyq_api.routes import health


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="storyq",
        version=__version__,
        summary="Queue long story generations and read them back when they are ready.",
    )
    app.state.services = Services.from_settings(settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
        max_age=600,
    )
    app.include_router(health.router)
    return app
