"""Redis calls made after Postgres has committed: they may fail, the request may not.

Postgres is the truth and the sweeper rebuilds Redis from it, so a Redis outage after a commit
costs a queue position or an ETA, never an answer: the failure is logged, counted, and the
caller gets None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from storyq_api import telemetry

T = TypeVar("T")


async def unless_redis_down(
    operation: str, call: Awaitable[T], *, within_seconds: float
) -> T | None:
    """`await call`, or None (logged) when Redis fails or does not answer within the time."""
    try:
        async with asyncio.timeout(within_seconds):
            return await call
    except Exception:  # any failure here is Redis's; the committed work must still be answered
        telemetry.dispatch_degraded(operation)
        telemetry.logger.warning(
            "redis call failed after commit", extra={"operation": operation}, exc_info=True
        )
        return None
