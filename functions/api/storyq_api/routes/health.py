"""GET /api/health: no auth; 200 when Redis and the database answer, 503 naming what is down."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from storyq.health import probe
from storyq_api.deps import ServicesDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: Literal["ok", "down"]
    database: Literal["ok", "down"]


@router.get(
    "/api/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "a dependency is down"}},
)
async def health(services: ServicesDep) -> JSONResponse:
    report = await probe(redis=services.redis, db=services.db)
    body = Health(
        status="ok" if report.ok else "degraded", redis=report.redis, database=report.database
    )
    return JSONResponse(body.model_dump(), status_code=200 if report.ok else 503)
