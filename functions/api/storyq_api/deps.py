"""What every route needs, built once per app (per Lambda container) and shared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from postgrest import AsyncPostgrestClient
from upstash_redis.asyncio import Redis

from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings
from storyq.kick import WorkerKicker
from storyq.operations import JobOperations, redis_budget
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_api import telemetry
from storyq_api.accounts import AccountCheck
from storyq_api.ratelimit import UserRateLimiter
from storyq_api.tokens import TokenVerifier


@dataclass
class Services:
    settings: Settings
    redis: Redis
    db: AsyncPostgrestClient
    store: Store
    dispatcher: Dispatcher
    verifier: TokenVerifier
    accounts: AccountCheck
    generate_limiter: UserRateLimiter
    request_limiter: UserRateLimiter
    kicker: WorkerKicker
    operations: JobOperations

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        # Building the clients opens no connection; the first request does.
        redis = async_redis(settings)
        db = async_postgrest(settings)
        # Redis and the kick are never what a request waits for: Postgres has the truth and the
        # sweeper repairs Redis, so each gets a short budget and then the answer goes without.
        timeout = redis_budget(settings)
        store = Store(db)
        dispatcher = Dispatcher(redis, max_active=settings.max_active_jobs)
        kicker = WorkerKicker(settings.worker_function_name, timeout=timeout)
        operations = JobOperations(
            store=store,
            dispatcher=dispatcher,
            kicker=kicker,
            settings=settings,
            on_degraded=telemetry.dispatch_degraded,
        )
        return cls(
            settings=settings,
            redis=redis,
            db=db,
            store=store,
            dispatcher=dispatcher,
            verifier=TokenVerifier(settings),
            accounts=AccountCheck(store.users),
            generate_limiter=UserRateLimiter(
                redis,
                name="generate",
                max_requests=settings.generate_rate_limit,
                window_seconds=settings.generate_rate_window_seconds,
                timeout=timeout,
            ),
            request_limiter=UserRateLimiter(
                redis,
                name="read",
                max_requests=settings.read_rate_limit,
                window_seconds=settings.read_rate_window_seconds,
                timeout=timeout,
                # Reads are what clients poll: half the billed commands of a sliding window
                # (Upstash bills each, issue 18); an edge burst of twice the limit is harmless.
                window="fixed",
            ),
            kicker=kicker,
            operations=operations,
        )


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
