"""Keeping a running attempt alive, and stopping it the moment it may no longer run.

Liveness is decided in Postgres: an attempt is live while its heartbeat there is younger than
LEASE_SECONDS; older, a sweep or another worker's start counts it as lost and the job may run
again. So the keeper:

- sends a Postgres heartbeat (with the words written so far) every min(1 s, lease / 4)
  (`context.PROGRESS_SECONDS`), in the one request the process sends for all its attempts at
  each tick (`heartbeats.HeartbeatBatcher`); an answer that the attempt no longer owns its
  job (another fence owns it), or that a cancel of the job was requested, stops the
  generation at once;
- stops the generation itself when SELF_FENCE of a lease has passed since the last heartbeat
  Postgres confirmed (measured from when it was sent, so never later than Postgres's own
  clock): a worker cut off from Postgres, or too slow to hear back, has stopped before anyone
  may count its attempt as dead;
- leaves Redis alone: the lease was taken at the claim for `Settings.dispatch_lease_seconds`,
  one lease longer than the generation timeout allows any attempt, so it never needs renewing
  (renewing it every lease / 3 cost about 70 billed Upstash commands per 270 s story: issue
  18). Redis only holds the slot; the sweep frees the slot of an attempt Postgres counts as
  dead and gives a live one a lease Redis lost back.

`stop()` returns only after the last heartbeat has been answered (or timed out), or withdrawn
before it was sent, so no heartbeat can extend a lease after its generation is over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from enum import StrEnum

from storyq.generation import count_words
from storyq.queue import Claim
from storyq_worker.context import WorkerContext
from storyq_worker.telemetry import logger

# The share of a lease after which an attempt without a confirmed heartbeat stops itself. The
# rest (a third of the lease: 20 s at the default 60 s) is the margin against clock rate,
# scheduling delay and the time a cancelled generation takes to end.
SELF_FENCE = 2 / 3


class StopReason(StrEnum):
    SUPERSEDED = "superseded"  # Postgres knows a newer fence: another attempt owns it
    UNCONFIRMED = "unconfirmed"  # no heartbeat confirmed in time: it may be counted as dead
    CANCELLED = "cancelled"  # a user or an admin asked to cancel the job


class LeaseKeeper:
    """Heartbeats for one attempt; `progress` is the generator's on_progress callback.

    `confirmed_at` is the event-loop time at which the request that last proved the attempt
    live was sent (the start). After `stop()`, `stopped` says why the keeper ended the
    generation, or is None when it did not.
    """

    def __init__(self, ctx: WorkerContext, claim: Claim, *, confirmed_at: float) -> None:
        self._ctx = ctx
        self._claim = claim
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._confirmed_at = confirmed_at
        self._fence_after = ctx.settings.lease_seconds * SELF_FENCE
        self.words = 0
        self.stopped: StopReason | None = None

    def progress(self, text: str) -> None:
        """The generator's on_progress: the text so far, streamed to the story by the writer;
        its word count goes with the next heartbeat."""
        self.words = count_words(text)
        self._ctx.writer.offer(self._claim.job_id, self._claim.fence, text)

    def start(self, on_stop: Callable[[], object]) -> None:
        self._task = asyncio.create_task(self._keep(on_stop), name=f"lease-{self._claim.job_id}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def _time_left(self) -> float:
        """Seconds until the attempt must have stopped unless a heartbeat is confirmed."""
        return self._confirmed_at + self._fence_after - asyncio.get_running_loop().time()

    async def _keep(self, on_stop: Callable[[], object]) -> None:
        while not self._stop.is_set():
            reason = await self._beat()
            if reason is not None:
                self.stopped = reason
                on_stop()
                return

    async def _beat(self) -> StopReason | None:
        """The Postgres heartbeat at the next tick: why the generation must stop, or None."""
        claim, ctx = self._claim, self._ctx
        extra = {"job_id": claim.job_id, "fence": claim.fence}
        try:
            async with asyncio.timeout(max(0.0, self._time_left())):
                answer = await ctx.heartbeats.beat(
                    claim.job_id, claim.fence, lambda: self.words, stop=self._stop
                )
        except Exception as exc:  # StoreError, a timeout, anything: not confirmed
            if self._time_left() > 0:
                logger.warning("database heartbeat failed", extra=extra, exc_info=exc)
                await self._pause()
                return None
            logger.warning("no heartbeat confirmed in time; stopping the generation", extra=extra)
            return StopReason.UNCONFIRMED
        if answer is None:  # stopped before the beat was sent
            return None
        if not answer.owned:
            logger.warning("attempt superseded; stopping its generation", extra=extra)
            return StopReason.SUPERSEDED
        self._confirmed_at = answer.sent_at
        if answer.cancel:
            logger.info("cancel requested; stopping the generation", extra=extra)
            return StopReason.CANCELLED
        return None

    async def _pause(self) -> None:
        """After a failed request, until the next tick (or the stop, or the self-fence)."""
        seconds = min(self._ctx.heartbeats.every_seconds, max(0.0, self._time_left()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
