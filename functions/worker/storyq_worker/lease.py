"""Keeping a claimed attempt alive: a heartbeat every lease_seconds / 3 to Redis (the lease)
and to Postgres (liveness and the words written so far).

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
        interval = self._ctx.settings.lease_seconds / 3
        while not await self._stopped_within(interval):
            if not await self._beat():
                self.lost = True
                on_lost()
                return

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _beat(self) -> bool:
        """False only when Postgres says this attempt no longer owns the job."""
        claim, ctx = self._claim, self._ctx
        lease, row = await asyncio.gather(
            ctx.dispatcher.heartbeat(
                claim.job_id, claim.fence, lease_seconds=ctx.settings.lease_seconds
            ),
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
