"""GET /api/health reports each dependency, through the real emulators."""

from __future__ import annotations

import httpx

from storyq.config import Settings
from storyq_api.app import create_app
from storyq_local.stack.servers import free_port


async def _get_health(settings: Settings) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get("/api/health")


async def test_health_is_ok_when_redis_and_database_answer(settings: Settings) -> None:
    response = await _get_health(settings)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": "ok", "database": "ok"}


async def test_health_names_redis_when_upstash_is_unreachable(settings: Settings) -> None:
    # Given an Upstash URL where nothing listens
    broken = settings.model_copy(
        update={"upstash_redis_rest_url": f"http://127.0.0.1:{free_port()}"}
    )
    # When the health check runs
    response = await _get_health(broken)
    # Then it answers 503 and names Redis, not the database
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "redis": "down", "database": "ok"}


async def test_health_names_the_database_when_supabase_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(update={"supabase_url": f"http://127.0.0.1:{free_port()}"})
    response = await _get_health(broken)
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "redis": "ok", "database": "down"}
