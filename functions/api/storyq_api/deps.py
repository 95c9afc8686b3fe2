"""What every route needs, built once per app (per Lambda container) and shared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from postgrest import AsyncPostgrestClient
from upstash_redis.asyncio import Redis

from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings


@dataclass
class Services:
    settings: Settings
    redis: Redis
    db: AsyncPostgrestClient

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        # Building the clients opens no connection; the first request does.
        return cls(settings=settings, redis=async_redis(settings), db=async_postgrest(settings))


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
