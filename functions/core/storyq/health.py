"""Reachability of the two dependencies, for /api/health and `storyq dev`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from postgrest import AsyncPostgrestClient
from upstash_redis.asyncio import Redis

State = Literal["ok", "down"]


@dataclass(frozen=True)
class HealthReport:
    redis: State
    database: State

    @property
    def ok(self) -> bool:
        return self.redis == "ok" and self.database == "ok"


async def _redis_state(redis: Redis, wait_seconds: float) -> State:
    try:
        answer = await asyncio.wait_for(redis.ping(), wait_seconds)
    except Exception:  # any failure to answer is "down"; the reason goes to the logs, not here
        return "down"
    return "ok" if answer == "PONG" else "down"


async def _database_state(db: AsyncPostgrestClient, wait_seconds: float) -> State:
    try:
        answer = await asyncio.wait_for(db.rpc("health_check", {}).execute(), wait_seconds)
    except Exception:  # as above
        return "down"
    return "ok" if answer.data == "ok" else "down"


async def probe(
    *, redis: Redis, db: AsyncPostgrestClient, wait_seconds: float = 3.0
) -> HealthReport:
    """Ask both at once; each gets `wait_seconds`."""
    redis_state, database_state = await asyncio.gather(
        _redis_state(redis, wait_seconds), _database_state(db, wait_seconds)
    )
    return HealthReport(redis=redis_state, database=database_state)
