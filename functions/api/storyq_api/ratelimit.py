"""Per-user rate limits (upstash-ratelimit) and their HTTP headers.

Two limits from Settings: one on POST /api/generate, one on every other user request. When
Redis cannot be reached the request is let through (and logged): credits already bound what a
user can spend, and Postgres, not Redis, is what a story depends on.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from upstash_ratelimit.asyncio import FixedWindow, Ratelimit, SlidingWindow
from upstash_redis.asyncio import Redis

from storyq_api.errors import RateLimited
from storyq_api.middleware import RATE_LIMIT_STATE
from storyq_api.telemetry import logger


@dataclass(frozen=True)
class Verdict:
    """One limiter decision; `reset` is when the window turns, in Unix seconds."""

    allowed: bool
    limit: int
    remaining: int
    reset: float

    def headers(self, *, now: float | None = None) -> dict[str, str]:
        """`RateLimit-*` (IETF draft: Reset in seconds from now) and, when refused, Retry-After."""
        seconds = max(1, math.ceil(self.reset - (time.time() if now is None else now)))
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(seconds)
        return headers


class UserRateLimiter:
    """`max_requests` per `window_seconds` for each user id, in a sliding window (exact; 4
    billed Upstash commands a request) or a fixed one (2 a request, and 1 more per window; a
    burst across a window's edge may reach twice the limit), both upstash-ratelimit's."""

    def __init__(
        self,
        redis: Redis,
        *,
        name: str,
        max_requests: int,
        window_seconds: int,
        timeout: float,
        window: Literal["sliding", "fixed"] = "sliding",
    ) -> None:
        self.name = name
        self._timeout = timeout
        kind = SlidingWindow if window == "sliding" else FixedWindow
        self._limiter = Ratelimit(
            redis=redis,
            limiter=kind(max_requests=max_requests, window=window_seconds),
            prefix=f"storyq:ratelimit:{name}",
        )

    async def check(self, user_id: str) -> Verdict | None:
        """The verdict for one more request; None when Redis could not say (let it through)."""
        try:
            response = await asyncio.wait_for(self._limiter.limit(user_id), self._timeout)
        except Exception:  # any Redis or network failure: fail open, see the module docstring
            logger.warning("rate limiter unavailable", extra={"limiter": self.name}, exc_info=True)
            return None
        return Verdict(
            allowed=bool(response.allowed),
            limit=int(response.limit),
            remaining=int(response.remaining),
            reset=float(response.reset),
        )

    async def enforce(self, user_id: str, *, state: Any = None) -> Verdict | None:
        """`check`, raising RateLimited (429 with Retry-After) when the window is full. With a
        request `state`, the verdict's headers are left there for every answer to carry."""
        verdict = await self.check(user_id)
        if verdict is not None and state is not None:
            setattr(state, RATE_LIMIT_STATE, verdict.headers())
        if verdict is not None and not verdict.allowed:
            raise RateLimited(
                f"too many requests; try again in {verdict.headers()['Retry-After']} s",
                headers=verdict.headers(),
            )
        return verdict
