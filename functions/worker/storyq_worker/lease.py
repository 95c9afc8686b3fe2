"""Keeping a claimed attempt alive: a heartbeat every lease_seconds / 3 to Redis (the lease),
and every PROGRESS_SECONDS (or as often as the lease, if that is more often) to Postgres
(liveness and the words written so far, which GET /api/job shows while a story is written).

Redis saying the lease is gone is not fatal: the generation goes on and the SQL fence decides
whether its result still counts. Postgres saying the attempt is no longer current is: another
attempt owns the job, so the generation is cancelled rather than finished for nothing.
`stop()` returns only after the last heartbeat has been answered, so no heartbeat can extend a
lease after its generation is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID

from storyq.queue import Claim
from storyq.store import StoreError
from storyq_worker.context import WorkerContext
from storyq_worker.telemetry import logger

# Postgres is cheap to tell; Upstash bills per command, so the lease is renewed less often.
PROGRESS_SECONDS = 5.0


class LeaseKeeper:
    """Heartbeats for one attempt; `progress` is the generator's on_progress callback."""

    def __init__(self, ctx: WorkerContext, claim: Claim) -> None:
        self._ctx = ctx
        self._claim = claim
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.words = 0
        self.lost = False

    def progress(self, words: int) -> None:
        self.words = words

    def start(self, on_lost: Callable[[], object]) -> None:
        self._task = asyncio.create_task(self._keep(on_lost), name=f"lease-{self._claim.job_id}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _keep(self, on_lost: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        lease_every = self._ctx.settings.lease_seconds / 3
        renew_at = loop.time() + lease_every
        while not await self._stopped_within(min(lease_every, PROGRESS_SECONDS)):
            renew = loop.time() >= renew_at - 0.01
            if renew:
                renew_at = loop.time() + lease_every
            if not await self._beat(renew_lease=renew):
                self.lost = True
                on_lost()
                return

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _renew_lease(self) -> bool:
        ctx = self._ctx
        return await ctx.dispatcher.heartbeat(
            self._claim.job_id,
            self._claim.fence,
            lease_seconds=ctx.settings.lease_seconds,
            user_id=self._claim.user_id,
        )

    async def _nothing(self) -> None:
        return None

    async def _beat(self, *, renew_lease: bool) -> bool:
        """False only when Postgres says this attempt no longer owns the job."""
        claim, ctx = self._claim, self._ctx
        lease, row = await asyncio.gather(
            self._renew_lease() if renew_lease else self._nothing(),
            ctx.store.jobs.heartbeat(UUID(claim.job_id), claim.fence, words=self.words),
            return_exceptions=True,
        )
        extra = {"job_id": claim.job_id, "attempt": claim.fence}
        if lease is False:
            logger.warning("lease lapsed; generating on, the fence will decide", extra=extra)
        elif isinstance(lease, BaseException):
            logger.warning("Redis heartbeat failed", extra=extra, exc_info=lease)
        if isinstance(row, StoreError):
            logger.warning("database heartbeat failed", extra=extra, exc_info=row)
            return True
        if isinstance(row, BaseException):
            raise row
        if not row:
            logger.warning("attempt superseded; cancelling its generation", extra=extra)
        return row
