"""The dispatch queue in Redis: fair-share order, a global cap on leases, fenced leases,
delayed retries, and a job's position and ETA in O(log n).

Postgres is the truth; everything here can be rebuilt from its pending jobs (`rebuild`).
Each operation is one Lua script, so one EVALSHA: one Upstash request (see `scripts`).
Time is Redis's own clock (TIME inside the scripts), never the caller's.

API (`Dispatcher(redis, *, max_active, prefix="storyq")`, all methods async):

- `enqueue(job_id, *, user_id, attempts=0, weight=1.0) -> Position | None`: idempotent. Adds
  the job to the waiting set with a start-time-fair-queuing score (max(virtual time, the
  user's last tag) + 1/weight), so users interleave and one user's jobs stay FIFO; `weight` is
  the user's share (from the plan; 1 is the default, meaningful from 0.01 to 1000). Returns its
  position (also when it was already waiting); None when it is delayed or leased (untouched).
- `position(job_id) -> Position | None`: rank, queue length, active leases and ETA minutes;
  None when the job is not waiting (delayed, leased or unknown).
- `claim(limit, *, lease_seconds) -> list[Claim]`: promotes due retries, then leases up to
  `limit` jobs in score order while fewer than `max_active` leases exist (a lease counts until
  it is acked, retried or reaped). `Claim.fence` is the attempt number (stored attempts + 1),
  the number the worker's SQL calls are fenced with. Raises `QueueNotReady` when Redis has not
  been rebuilt since it was flushed (or is new): a sweep's `rebuild` must run first.
- `heartbeat(job_id, fence, *, lease_seconds, user_id="") -> bool`: extends the lease from now;
  False when the fence is stale or the lease was reaped. A lease Redis forgot (flush, eviction)
  is re-created, so the generation counts against the cap again.
- `ack(job_id, fence, *, generation_seconds) -> bool`: the job is finished (completed, or failed
  for good): removes the lease and the job's bookkeeping, and feeds `generation_seconds` (when
  given) into the rolling mean. False, and nothing changes, for a stale fence or reaped lease.
- `retry_later(job_id, *, user_id, attempts, delay_seconds, fence=None) -> bool`: moves the job
  to the delayed set for `delay_seconds` (see `backoff.retry_delay`). With `fence`, only the
  live lease's holder may, and its lease goes; without (after `reap_expired`), only while no
  lease is held. `claim`/`promote_due` put it back in the waiting set when due, scored as a
  new arrival of its user at that moment (so behind that user's jobs already waiting).
- `promote_due(limit=100) -> int`: moves due retries to the waiting set; returns how many.
- `reap_expired(limit=100) -> list[Claim]`: removes leases whose expiry passed and returns them,
  each to exactly one caller, who records the failed attempt in Postgres and then calls
  `retry_later` (no fence) or `remove`.
- `remove(job_id) -> bool`: cancel: drops a waiting or delayed job (True) and forgets its
  bookkeeping; a leased job is left alone (False).
- `counts() -> QueueCounts`: waiting, active, delayed, avg_generation_seconds.
- `empty() -> list[str]`: removes every waiting and delayed job; returns their ids.
- `rebuild(jobs, *, running=(), lease_seconds=60) -> int`: adds the pending jobs Redis lacks (in
  none of waiting, delayed, active) in `queued_at` order; a future `next_attempt_at` goes to
  the delayed set. Then, only if Redis lost its state since the last rebuild (no ready mark;
  decided atomically in the script), restores a lease (fenced by its attempt) for each
  `running` job that has none; and marks the queue ready for claims. Pass every job Postgres
  has running each time. Returns how many jobs were added. Costs about one Redis command per
  job already present.
- `is_ready() -> bool`: whether claims are allowed (False after a FLUSHALL until `rebuild`).
- `active_job_ids() -> set[str]`: the jobs holding a lease (live or lapsed, not yet reaped).

Key layout: `keys.QueueKeys`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from upstash_redis.asyncio import Redis

from storyq.queue import scripts
from storyq.queue.eta import DEFAULT_GENERATION_SECONDS, Position, estimated_minutes
from storyq.queue.keys import QueueKeys

# Due retries a claim promotes before it leases (the sweep's promote_due takes the rest).
PROMOTE_ON_CLAIM = 100
# Jobs per rebuild script call: bounded script run time and request size.
REBUILD_BATCH = 200

_T = TypeVar("_T")


class QueueNotReady(RuntimeError):
    """Redis lost its state (flushed, evicted, new) and has not been rebuilt from Postgres."""


@dataclass(frozen=True)
class Claim:
    """A lease on a job: `fence` is the attempt number that holds it."""

    job_id: str
    user_id: str
    fence: int


@dataclass(frozen=True)
class QueueCounts:
    waiting: int
    active: int
    delayed: int
    avg_generation_seconds: float


@dataclass(frozen=True)
class RunningJob:
    """A processing job as Postgres knows it: `attempt` is the fence of its lease."""

    job_id: str
    user_id: str
    attempt: int


@dataclass(frozen=True)
class PendingJob:
    """A pending job as Postgres knows it, for `rebuild`."""

    job_id: str
    user_id: str
    attempts: int
    queued_at: datetime
    next_attempt_at: datetime | None = None
    weight: float = 1.0


class Dispatcher:
    """The queue's operations over one Upstash Redis client (see the module docstring)."""

    def __init__(self, redis: Redis, *, max_active: int, prefix: str = "storyq") -> None:
        if max_active < 1:
            raise ValueError("max_active must be at least 1")
        self._redis = redis
        self.max_active = max_active
        self.keys = QueueKeys(prefix)

    async def enqueue(
        self, job_id: str, *, user_id: str, attempts: int = 0, weight: float = 1.0
    ) -> Position | None:
        k = self.keys
        reply = await scripts.ENQUEUE.run(
            self._redis,
            [k.waiting, k.delayed, k.active, k.jobs, k.finish, k.fair, k.stats],
            [_job(job_id), user_id, str(_count(attempts)), _weight(weight)],
        )
        return self._position(reply)

    async def position(self, job_id: str) -> Position | None:
        k = self.keys
        reply = await scripts.POSITION.run(
            self._redis, [k.waiting, k.active, k.stats], [_job(job_id)]
        )
        return self._position(reply)

    async def claim(self, limit: int, *, lease_seconds: float) -> list[Claim]:
        if limit <= 0:
            return []
        k = self.keys
        reply = await scripts.CLAIM.run(
            self._redis,
            [k.waiting, k.delayed, k.active, k.jobs, k.finish, k.fair, k.ready],
            [str(limit), _ms(lease_seconds), str(self.max_active), str(PROMOTE_ON_CLAIM)],
        )
        if reply == -1:
            raise QueueNotReady("the queue must be rebuilt from Postgres before claims")
        return _claims(reply)

    async def heartbeat(
        self, job_id: str, fence: int, *, lease_seconds: float, user_id: str = ""
    ) -> bool:
        k = self.keys
        reply = await scripts.HEARTBEAT.run(
            self._redis,
            [k.active, k.jobs, k.waiting, k.delayed],
            [_job(job_id), str(fence), _ms(lease_seconds), user_id],
        )
        return reply == 1

    async def ack(self, job_id: str, fence: int, *, generation_seconds: float | None) -> bool:
        seconds = "" if generation_seconds is None else repr(max(0.0, float(generation_seconds)))
        k = self.keys
        reply = await scripts.ACK.run(
            self._redis, [k.active, k.jobs, k.stats], [_job(job_id), str(fence), seconds]
        )
        return reply == 1

    async def retry_later(
        self,
        job_id: str,
        *,
        user_id: str,
        attempts: int,
        delay_seconds: float,
        fence: int | None = None,
    ) -> bool:
        k = self.keys
        reply = await scripts.RETRY_LATER.run(
            self._redis,
            [k.waiting, k.delayed, k.active, k.jobs],
            [
                _job(job_id),
                user_id,
                str(_count(attempts)),
                _ms(max(0.0, delay_seconds)),
                "" if fence is None else str(fence),
            ],
        )
        return reply == 1

    async def promote_due(self, limit: int = 100) -> int:
        k = self.keys
        reply = await scripts.PROMOTE_DUE.run(
            self._redis, [k.delayed, k.waiting, k.jobs, k.finish, k.fair], [str(limit)]
        )
        return _int(reply)

    async def reap_expired(self, limit: int = 100) -> list[Claim]:
        k = self.keys
        reply = await scripts.REAP_EXPIRED.run(self._redis, [k.active, k.jobs], [str(limit)])
        return _claims(reply)

    async def remove(self, job_id: str) -> bool:
        k = self.keys
        reply = await scripts.REMOVE.run(
            self._redis, [k.waiting, k.delayed, k.active, k.jobs], [_job(job_id)]
        )
        return _int(reply) > 0

    async def counts(self) -> QueueCounts:
        k = self.keys
        reply = _list(
            await scripts.COUNTS.run(self._redis, [k.waiting, k.active, k.delayed, k.stats], [])
        )
        waiting, active, delayed, mean = reply
        return QueueCounts(
            waiting=_int(waiting),
            active=_int(active),
            delayed=_int(delayed),
            avg_generation_seconds=_mean(mean),
        )

    async def empty(self) -> list[str]:
        k = self.keys
        reply = await scripts.EMPTY.run(
            self._redis, [k.waiting, k.delayed, k.jobs, k.finish, k.fair], []
        )
        return [str(job_id) for job_id in _list(reply)]

    async def rebuild(
        self,
        jobs: Sequence[PendingJob],
        *,
        running: Sequence[RunningJob] = (),
        lease_seconds: float = 60.0,
    ) -> int:
        ordered = sorted(_unique(jobs), key=lambda job: (_utc(job.queued_at), job.job_id))
        k = self.keys
        keys = [k.waiting, k.delayed, k.active, k.jobs, k.finish, k.fair]
        added = 0
        for batch in _chunks(ordered, REBUILD_BATCH):
            args = [arg for job in batch for arg in _rebuild_args(job)]
            added += _int(await scripts.REBUILD.run(self._redis, keys, args))
        await self._restore_leases(running, lease_seconds=lease_seconds)
        return added

    async def _restore_leases(self, running: Sequence[RunningJob], *, lease_seconds: float) -> int:
        """Leases for running jobs if Redis forgot them, then the ready mark: one call, so the
        script sees the mark and restores every lease, or none, atomically."""
        k = self.keys
        args = [_ms(lease_seconds)]
        args += [a for job in running for a in (_job(job.job_id), job.user_id, str(job.attempt))]
        return _int(
            await scripts.RESTORE_LEASES.run(self._redis, [k.active, k.jobs, k.ready], args)
        )

    async def is_ready(self) -> bool:
        return bool(await self._redis.exists(self.keys.ready))

    async def active_job_ids(self) -> set[str]:
        reply = await self._redis.zrange(self.keys.active, 0, -1)
        return {str(job_id) for job_id in reply}

    def _position(self, reply: object) -> Position | None:
        if reply is None:
            return None
        rank, waiting, active, mean = _list(reply)
        position = _int(rank)
        return Position(
            position=position,
            queue_length=_int(waiting),
            active_jobs=_int(active),
            estimated_minutes=estimated_minutes(
                position, max_active=self.max_active, mean_seconds=_mean(mean)
            ),
        )


def _job(job_id: str) -> str:
    if not job_id:
        raise ValueError("a job id must not be empty")
    return job_id


def _count(attempts: int) -> int:
    if attempts < 0:
        raise ValueError("attempts must not be negative")
    return attempts


def _weight(weight: float) -> str:
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError("weight must be a positive number")
    return repr(float(weight))


def _ms(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite, non-negative number of seconds")
    return str(round(seconds * 1000))


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (Postgres timestamptz always carries its offset)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _unique(jobs: Sequence[PendingJob]) -> list[PendingJob]:
    return list({job.job_id: job for job in reversed(jobs)}.values())


def _rebuild_args(job: PendingJob) -> list[str]:
    due = "" if job.next_attempt_at is None else str(_epoch_ms(job.next_attempt_at))
    return [_job(job.job_id), job.user_id, str(_count(job.attempts)), _weight(job.weight), due]


def _epoch_ms(moment: datetime) -> int:
    return round(_utc(moment).timestamp() * 1000)


def _list(reply: object) -> list[object]:
    if not isinstance(reply, list):
        raise TypeError(f"expected an array from the queue script, got {reply!r}")
    return reply


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value)
    raise TypeError(f"expected an integer from the queue script, got {value!r}")


def _mean(value: object) -> float:
    return float(value) if isinstance(value, str) and value else DEFAULT_GENERATION_SECONDS


def _claims(reply: object) -> list[Claim]:
    items = _list(reply)
    return [
        Claim(job_id=str(job_id), user_id=str(user_id), fence=_int(fence))
        for job_id, user_id, fence in _chunks(items, 3)
    ]


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
