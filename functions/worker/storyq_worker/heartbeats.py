"""One Postgres heartbeat request per tick for every attempt a worker process runs.

Each running attempt proves it is alive with a Postgres heartbeat every min(1 s, lease / 4)
(`lease.LeaseKeeper`). Sent one by one, MAX_ACTIVE_JOBS = 500 attempts made 250 PostgREST
calls, each its own transaction, a second, and the queue's slot refill slowed behind them
(`make bench-scale`). The batcher gathers the attempts waiting for the next tick and sends
them in one `heartbeat_story_jobs` call; each attempt learns whether it still owns its job,
whether its cancel was requested, and when the request was sent, which its self-fence counts
from (never later than Postgres's own clock).

An attempt that stops before its beat was sent is taken out of the batch, so no heartbeat is
recorded for a generation that is over; one whose beat is already on its way waits for the
answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from storyq.store import Heartbeat, Store


@dataclass(frozen=True)
class BeatAnswer:
    """Postgres's answer to one attempt's beat: whether the attempt still owns its job, whether
    a cancel of the job was requested, and the event-loop time at which the request carrying
    it was sent."""

    owned: bool
    sent_at: float
    cancel: bool = False


type _Key = tuple[UUID, int]
type _Batch = dict[_Key, tuple[Callable[[], int], asyncio.Future[BeatAnswer]]]


class HeartbeatBatcher:
    """Sends the beats of every attempt registered for a tick in one request, `every_seconds`
    apart while any attempt waits. Close it with `close()`."""

    def __init__(
        self, store: Store, *, every_seconds: float, request_timeout_seconds: float
    ) -> None:
        self._store = store
        self.every_seconds = every_seconds
        self.request_timeout_seconds = request_timeout_seconds
        self._next: _Batch = {}
        self._ticker: asyncio.Task[None] | None = None

    async def beat(
        self, job_id: UUID, fence: int, words: Callable[[], int], *, stop: asyncio.Event
    ) -> BeatAnswer | None:
        """Join the next tick's request for the attempt `fence` of `job_id` (`words()` is read
        when it is sent); its answer, or None when `stop` was set before it was sent (the beat
        was withdrawn). Raises what the request raised (StoreError, httpx's errors)."""
        key = (job_id, fence)
        entry = self._next.get(key)
        if entry is None:
            future: asyncio.Future[BeatAnswer] = asyncio.get_running_loop().create_future()
            # An answer nobody waits for any more (its attempt timed out) is not an error.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._next[key] = (words, future)
        else:
            future = entry[1]
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="heartbeats")
        stopped: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
        waiters: set[asyncio.Future[object]] = {future, stopped}  # type: ignore[arg-type]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not future.done() and self._withdraw(key, future):
                return None
            return await asyncio.shield(future)
        finally:
            stopped.cancel()
            if not future.done():  # a timeout of the caller's: not sent yet, it goes
                self._withdraw(key, future)

    def _withdraw(self, key: _Key, future: asyncio.Future[BeatAnswer]) -> bool:
        """Take a beat not sent yet out of the next request; False when it is on its way."""
        entry = self._next.get(key)
        if entry is None or entry[1] is not future:
            return False
        del self._next[key]
        future.cancel()
        return True

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self._next:
            await asyncio.sleep(self.every_seconds)
            batch, self._next = self._next, {}
            if not batch:
                break
            sent_at = loop.time()
            beats = [
                Heartbeat(job_id=job_id, fence=fence, words=words())
                for (job_id, fence), (words, _) in batch.items()
            ]
            try:
                # One slow request holds every attempt's beat: bounded well inside the
                # self-fence, so the next tick can still confirm them.
                async with asyncio.timeout(self.request_timeout_seconds):
                    replies = await self._store.jobs.heartbeat_many(beats)
            except asyncio.CancelledError:  # closed while the request was on its way
                _fail(batch, ConnectionError("the worker's clients are closed"))
                raise
            except Exception as exc:  # every attempt in the batch decides what it means
                _fail(batch, exc)
                continue
            for key, (_, future) in batch.items():
                if not future.done():
                    reply = replies.get(key)
                    future.set_result(
                        BeatAnswer(
                            owned=reply is not None,
                            sent_at=sent_at,
                            cancel=reply is not None and reply.cancel,
                        )
                    )

    async def close(self) -> None:
        """Stop ticking; beats still waiting fail (ConnectionError), as a request would."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        _fail(self._next, ConnectionError("the worker's clients are closed"))
        self._next.clear()


def _fail(batch: _Batch, exc: Exception) -> None:
    for _, future in batch.values():
        if not future.done():
            future.set_exception(exc)
