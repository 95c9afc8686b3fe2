"""The dispatch queue in Redis: fair-share order, a global cap on leases, fenced leases,
delayed retries, and a job's position and ETA in O(log n).

Postgres is the truth; everything here can be rebuilt from its pending jobs (`sweep`,
`rebuild`). Each operation is one Lua script, so one EVALSHA: one Upstash request (see
`scripts`); `waiting_count`, `mark_not_ready`, `is_ready` and `active_job_ids` are one plain
command each. Upstash bills the EVALSHA and every command a script runs (`make bench-cost`
counts them per story and per idle hour).
Time is Redis's own clock (TIME inside the scripts), never the caller's.

Fencing: every job entry carries the fencing token Postgres issued for the job's next (pending)
or running attempt (`story_jobs.fence`, only ever grows). Scripts compare tokens, so an entry
written by a stale caller never replaces a newer one, and a stale attempt cannot touch the
lease of its successor. Redis is the fast path for the global cap; Postgres enforces it when an
attempt starts (`start_story_job`), so a lost or wrong lease here costs a refused start, never
a sixth generation.

API (`Dispatcher(redis, *, max_active, prefix="storyq", timeout_seconds=None)`, all methods
async; each method's docstring gives its contract):
`enqueue`, `position`, `claim`, `unclaim`, `heartbeat`, `ack`, `retry_later`, `remove`,
`counts`, `waiting_count`, `empty`, `sweep`, `rebuild`, `mark_not_ready`, `is_ready`,
`active_job_ids`, and the provider's back-pressure: `pause`, `resume`, `end_probe`,
`provider_pause`.

Back-pressure: a provider that refuses work for load (429, overloaded) refuses it for every
worker, so the first refusal pauses claims for all of them (`pause`, honouring the
provider's Retry-After). While the pause lasts `claim` leases nothing (ProviderPaused, with
when to ask again), so no attempt is spent and no request is sent; when it ends, one claim at
a time is a probe (`Claim.probe`), and the probe's answer ends the pause (`resume`) or renews
it. The whole fleet sends at most one probe per pause.

Key layout: `keys.QueueKeys`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from upstash_redis.asyncio import Redis

from storyq.queue import scripts
from storyq.queue.eta import Position, estimated_minutes
from storyq.queue.keys import QueueKeys
from storyq.queue.models import (
    Claim,
    PendingJob,
    ProviderPause,
    ProviderPaused,
    QueueCounts,
    QueueNotReady,
    RunningJob,
    SweepReport,
)
from storyq.queue.replies import as_claims, as_int, as_list, as_mean, chunks

# Due retries a claim promotes before it leases (the sweep promotes the rest).
PROMOTE_ON_CLAIM = 100
# Jobs per rebuild script call: bounded script run time and request size.
REBUILD_BATCH = 1000
# Due retries a sweep promotes at most.
PROMOTE_ON_SWEEP = 100
# Fields of the jobs hash a sweep looks at for orphans (five per job).
ORPHAN_SCAN = 500
# Jobs one claim may hold (their users at their running cap) before it gives up for this call:
# bounds the script's run time when one capped user's backlog fills the head of the queue.
HOLD_MAX = 5000
# Priorities beyond +-PRIORITY_MAX give no more head start, or delay (common.lua).
PRIORITY_MAX = 10
# A provider pause without a Retry-After: this long at the first strike, doubled at each pause
# whose probe was refused too, never longer than PAUSE_MAX_SECONDS.
PAUSE_BASE_SECONDS = 5.0
PAUSE_MAX_SECONDS = 300.0
# A probe that has not been answered (or refused) this long is taken as lost: the next claim
# may probe. Workers waiting on a probe ask again at least this often.
PROBE_SECONDS = 30.0
PROBE_RECHECK_SECONDS = 1.0
# How long the pause's hash outlives its end when no answer ended it.
PAUSE_LINGER_SECONDS = 600.0


class Dispatcher:
    """The queue's operations over one Upstash Redis client (see the module docstring).

    Each method runs one Lua script, named at the end of its docstring: the script's header
    lists every KEYS[i] and ARGV[i] and its reply. Every method raises TimeoutError when Redis
    does not answer within `timeout_seconds`, upstash_redis's UpstashError when Redis refuses,
    and httpx's errors when it cannot be reached; fences must be positive (ValueError). Ids
    are UUIDs, as in Postgres; Redis holds their text.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        max_active: int,
        prefix: str = "storyq",
        timeout_seconds: float | None = None,
    ) -> None:
        """`timeout_seconds` bounds every script call (the Upstash SDK's HTTP client has no
        timeout of its own): a hung Redis raises TimeoutError instead of stalling the caller."""
        if max_active < 1:
            raise ValueError("max_active must be at least 1")
        self._redis = redis
        self.max_active = max_active
        self.keys = QueueKeys(prefix)
        self._timeout = timeout_seconds

    async def _run(self, script: scripts.Script, keys: list[str], args: list[str]) -> object:
        async with asyncio.timeout(self._timeout):
            return await script.run(self._redis, keys, args)

    async def enqueue(
        self,
        job_id: UUID,
        *,
        user_id: UUID,
        fence: int,
        weight: float = 1.0,
        max_active_per_user: int | None = None,
        priority: int = 0,
    ) -> Position | None:
        """Queue a pending job under `fence` (its next attempt's token) with a start-time fair
        queuing score: max(virtual time - priority head start, the user's last tag) + 1/weight,
        so users interleave and one user's jobs stay FIFO. The user's plan gives `weight`
        (their share, meaningful from 0.01 to 1000), `max_active_per_user` (their running cap,
        None for none; see `claim`) and `priority` (a head start: a new arrival goes ahead of
        jobs tagged up to `priority` weight-1 jobs later, or starts that much behind for a
        negative one; counted up to +-PRIORITY_MAX).
        Idempotent: the job's position, also when it was already waiting or held; None when
        it is delayed or leased, or Redis knows a newer fence (nothing changes). Raises
        ValueError for a weight that is not a positive number or a cap below 1.

        Script: `enqueue.lua`.
        """
        k = self.keys
        reply = await self._run(
            scripts.ENQUEUE,
            [
                k.waiting,
                k.delayed,
                k.active,
                k.jobs,
                k.finish,
                k.fair,
                k.stats,
                k.held_by_user,
            ],
            [
                str(job_id),
                str(user_id),
                str(_fence(fence)),
                _weight(weight),
                _cap(max_active_per_user),
                _priority(priority),
            ],
        )
        return self._position(reply)

    async def position(self, job_id: UUID) -> Position | None:
        """Rank (0-based), queue length, active leases and ETA minutes, in O(log n), also for
        a held job (see `Position`); None when the job is neither waiting nor held (delayed,
        leased or unknown).

        Script: `position.lua`.
        """
        k = self.keys
        reply = await self._run(
            scripts.POSITION,
            [k.waiting, k.active, k.stats, k.jobs, k.held_by_user],
            [str(job_id)],
        )
        return self._position(reply)

    async def claim(self, limit: int, *, lease_seconds: float) -> list[Claim]:
        """Promote due retries, then lease up to `limit` jobs in score order while fewer than
        `max_active` leases exist (a lease counts until it is acked, retried or reaped). The
        claimer must then start the attempt in Postgres with `Claim.fence`.

        Per-user running cap (the job's `max_active_per_user`): a job whose user already holds
        that many leases is held, not leased, and the next job is looked at, so a capped user
        never blocks anyone. A held job waits behind every job not held (`keys.waiting`) and
        goes back to its own place, oldest first, once its user is under the cap again: one of
        their leases ends (`ack`, `retry_later`, a lease the sweep removes), a job of theirs
        leaves the queue, their cap changes (a sweep), or a claim reaches a newer job of theirs
        while they are under the cap (their oldest held job is leased first). Work-conserving:
        when nothing else waits, held jobs take the free slots, oldest first (borrowing); a
        borrowed slot is not taken back from a running job, it goes to whoever waits once that
        job ends. One claim holds at most HOLD_MAX jobs.

        Raises QueueNotReady when Redis has not been rebuilt since it was flushed (or is new):
        a sweep's `rebuild` must run first. Raises ProviderPaused while the provider is paused
        (see the module docstring); after the pause, at most one job, a probe
        (`Claim.probe`), until the probe is answered.

        Script: `claim.lua`.
        """
        if limit <= 0:
            return []
        k = self.keys
        reply = await self._run(
            scripts.CLAIM,
            [
                k.waiting,
                k.delayed,
                k.active,
                k.jobs,
                k.finish,
                k.fair,
                k.ready,
                k.pause,
                k.held_by_user,
            ],
            [
                str(limit),
                _ms(lease_seconds),
                str(self.max_active),
                str(PROMOTE_ON_CLAIM),
                _ms(PROBE_SECONDS),
                _ms(PROBE_RECHECK_SECONDS),
                str(HOLD_MAX),
            ],
        )
        if reply == -1:
            raise QueueNotReady("the queue must be rebuilt from Postgres before claims")
        items = as_list(reply)
        if items and items[0] == -2:
            raise ProviderPaused(as_int(items[1]) / 1000)
        if items and items[0] == -3:
            return as_claims(items[1:], width=4, probe=True)
        return as_claims(items, width=4)

    async def unclaim(self, claim: Claim) -> bool:
        """Give a claim back untouched (Postgres refused the start: the cap is reached): the
        lease goes and the job waits again at its old score. False when the lease is gone.

        Script: `unclaim.lua`.
        """
        k = self.keys
        reply = await self._run(
            scripts.UNCLAIM,
            [k.waiting, k.active, k.jobs, k.finish, k.fair],
            [str(claim.job_id), str(claim.fence), claim.score or "0"],
        )
        return reply == 1

    async def heartbeat(
        self, job_id: UUID, fence: int, *, lease_seconds: float, user_id: UUID | None = None
    ) -> bool:
        """Hold the lease of the running attempt `fence` for `lease_seconds` from now. Call it
        only once Postgres has confirmed the attempt (a heartbeat there): a lease that lapsed,
        was reaped or was forgotten is re-created and stale entries of the job go. False when
        Redis knows a newer fence: the attempt is superseded and must stop.

        Script: `heartbeat.lua`.
        """
        k = self.keys
        reply = await self._run(
            scripts.HEARTBEAT,
            [k.active, k.jobs, k.waiting, k.delayed, k.finish, k.fair, k.held_by_user],
            [str(job_id), str(fence), _ms(lease_seconds), "" if user_id is None else str(user_id)],
        )
        return reply == 1

    async def ack(self, job_id: UUID, fence: int, *, generation_seconds: float | None) -> bool:
        """The attempt `fence` is over with the job (completed, failed for good, refused or
        found stale): unless Redis knows a newer fence, every entry of the job and its
        bookkeeping go, and `generation_seconds` (when given) feeds the rolling mean; the
        user's held jobs go back to waiting as far as their cap now allows. True when the
        attempt's lease was still held.

        Script: `ack.lua`.
        """
        seconds = "" if generation_seconds is None else repr(max(0.0, float(generation_seconds)))
        k = self.keys
        reply = await self._run(
            scripts.ACK,
            [
                k.active,
                k.jobs,
                k.stats,
                k.waiting,
                k.delayed,
                k.finish,
                k.fair,
                k.held_by_user,
            ],
            [str(job_id), str(fence), seconds],
        )
        return reply == 1

    async def retry_later(
        self, job_id: UUID, *, user_id: UUID, fence: int, delay_seconds: float
    ) -> bool:
        """Move the job to the delayed set for `delay_seconds` (see `backoff.retry_delay`)
        under `fence`, the token Postgres issued for its next attempt; older entries of the
        job (the failed attempt's lease) go. `claim`/`sweep` put it back in the waiting
        set when due, scored as a new arrival of its user; the user's held jobs go back to
        waiting as far as their cap now allows. False when Redis knows a newer fence (nothing
        changes).

        Script: `retry_later.lua`.
        """
        k = self.keys
        reply = await self._run(
            scripts.RETRY_LATER,
            [k.waiting, k.delayed, k.active, k.jobs, k.finish, k.fair, k.held_by_user],
            [str(job_id), str(user_id), str(_fence(fence)), _ms(max(0.0, delay_seconds))],
        )
        return reply == 1

    async def remove(self, job_id: UUID) -> bool:
        """Cancel: drop a waiting, held or delayed job (True), forget its bookkeeping and give
        its user back the fair-share time it was charged; a leased job is left alone (False).

        Script: `remove.lua`.
        """
        k = self.keys
        reply = await self._run(
            scripts.REMOVE,
            [k.waiting, k.delayed, k.active, k.jobs, k.finish, k.fair, k.held_by_user],
            [str(job_id)],
        )
        return as_int(reply) > 0

    async def counts(self) -> QueueCounts:
        """Waiting (held jobs included, and counted apart), active (leases), delayed, and the
        rolling mean generation time.

        Script: `counts.lua`.
        """
        k = self.keys
        reply = as_list(
            await self._run(scripts.COUNTS, [k.waiting, k.active, k.delayed, k.stats], [])
        )
        waiting, active, delayed, mean, held = reply
        return QueueCounts(
            waiting=as_int(waiting),
            active=as_int(active),
            delayed=as_int(delayed),
            avg_generation_seconds=as_mean(mean),
            held=as_int(held),
        )

    async def pause(self, retry_after: float | None, *, reason: str) -> float:
        """The provider refused work for load: no claims for `retry_after` seconds (what it
        asked for, at most PAUSE_MAX_SECONDS; None: PAUSE_BASE_SECONDS doubled per strike, at
        most PAUSE_MAX_SECONDS), then one probe at a time. A running pause is only lengthened.
        Returns the seconds until it ends.

        Script: `pause.lua`.
        """
        # A provider asking for longer (a Retry-After a day ahead) gets a probe every
        # PAUSE_MAX_SECONDS instead: a probe is one request, a day-long pause a stalled queue.
        wait = "-1" if retry_after is None else _ms(min(max(0.0, retry_after), PAUSE_MAX_SECONDS))
        reply = await self._run(
            scripts.PAUSE,
            [self.keys.pause],
            [
                wait,
                _ms(PAUSE_BASE_SECONDS),
                _ms(PAUSE_MAX_SECONDS),
                reason,
                _ms(PAUSE_LINGER_SECONDS),
            ],
        )
        return as_int(reply) / 1000

    async def resume(self) -> None:
        """The provider answered (a probe got its first chunk): the pause is over for every
        worker. One DEL, one billed command."""
        async with asyncio.timeout(self._timeout):
            await self._redis.delete(self.keys.pause)

    async def end_probe(self) -> None:
        """A probe claim that never reached the provider (its start was refused): the next
        claim may probe at once. One HDEL."""
        async with asyncio.timeout(self._timeout):
            await self._redis.hdel(self.keys.pause, "probe")

    async def provider_pause(self) -> ProviderPause | None:
        """The provider's pause, None when there is none (for operators; one HGETALL)."""
        async with asyncio.timeout(self._timeout):
            fields = await self._redis.hgetall(self.keys.pause)
        if not fields or "until" not in fields:
            return None
        since = fields.get("since")
        return ProviderPause(
            until=datetime.fromtimestamp(int(fields["until"]) / 1000, UTC),
            since=datetime.fromtimestamp(int(since) / 1000, UTC) if since else None,
            strikes=int(fields.get("strikes") or 0),
            reason=fields.get("reason") or "",
            # a probe out, its time not run out (this side's clock: for display only)
            probing=int(fields.get("probe") or 0) > time.time() * 1000,
        )

    async def waiting_count(self) -> int:
        """How many jobs wait, held ones included (a free slot can take them: borrowing): one
        ZCARD, one billed command (`counts` costs six)."""
        async with asyncio.timeout(self._timeout):
            return as_int(await self._redis.zcard(self.keys.waiting))

    async def empty(self) -> list[UUID]:
        """Remove every waiting, held and delayed job (leases stay) and reset the fair-share
        clock; their ids, waiting ones first.

        Script: `empty.lua`.
        """
        k = self.keys
        reply = await self._run(
            scripts.EMPTY,
            [k.waiting, k.delayed, k.jobs, k.finish, k.fair, k.held_by_user],
            [],
        )
        return [UUID(str(job_id)) for job_id in as_list(reply)]

    async def sweep(
        self,
        *,
        pending: Sequence[PendingJob],
        running: Sequence[RunningJob],
        lease_seconds: float,
        judge_after_seconds: float | None,
        promote_limit: int = PROMOTE_ON_SWEEP,
        orphan_scan: int = ORPHAN_SCAN,
    ) -> SweepReport:
        """Make Redis follow one Postgres snapshot (`running` attempts, `pending` jobs in queue
        order, both from `JobStore.dispatch_snapshot`) and tidy up, in one script call:

        1. when Redis lost its state (no ready mark; decided atomically in the script), the
           running jobs it holds nothing of get their leases back (`lease_seconds`), and
           `was_ready` is False: the caller must then put back every pending job from the head
           of the queue (`rebuild`), which this call does not do (they would go in out of
           order);
        2. otherwise the pending jobs Redis lacks go in (a future `next_attempt_at`: delayed),
           and those it holds under the same fence take their plan's weight, cap and priority
           (an operator's plan change reaches jobs already queued);
        3. unless `judge_after_seconds` is None, the leases follow the running attempts: a
           lease not backed by one, held at least `judge_after_seconds` (assuming leases taken
           for `lease_seconds`) or expired, is removed and reported in `unbacked`; an expired
           lease of a running job is extended; a running job without a lease whose bookkeeping
           Redis keeps under that fence or an older one gets its lease back;
        4. up to `promote_limit` due retries are promoted;
        5. about `orphan_scan` fields of the jobs hash are walked for orphaned bookkeeping
           (resuming where the last sweep stopped);

        and the ready mark is set. Costs seven billed commands idle, plus about one per step
        with work to do and per job put back, whatever the backlog.

        Script: `sweep.lua`.
        """
        k = self.keys
        lease = _ms(lease_seconds)
        judge = "" if judge_after_seconds is None else _ms(judge_after_seconds)
        args = [lease, judge, lease, str(max(0, promote_limit)), str(max(0, orphan_scan))]
        running_jobs = list({job.job_id: job for job in running}.values())
        args.append(str(len(running_jobs)))
        args += [
            a for job in running_jobs for a in (str(job.job_id), str(job.user_id), str(job.fence))
        ]
        args += [a for job in _in_queue_order(pending) for a in _pending_args(job)]
        reply = as_list(
            await self._run(
                scripts.SWEEP,
                [
                    k.waiting,
                    k.delayed,
                    k.active,
                    k.jobs,
                    k.finish,
                    k.fair,
                    k.ready,
                    k.held_by_user,
                ],
                args,
            )
        )
        ready, added, restored, promoted, orphans, waiting = (as_int(x) for x in reply[:6])
        return SweepReport(
            was_ready=bool(ready),
            added=added,
            restored=restored,
            promoted=promoted,
            orphans=orphans,
            waiting=waiting,
            unbacked=as_claims(reply[6:]),
        )

    async def rebuild(
        self,
        jobs: Sequence[PendingJob],
        *,
        running: Sequence[RunningJob] = (),
        lease_seconds: float = 60.0,
        continuing: bool = False,
    ) -> int:
        """Put back the pending jobs Redis lacks, in queue order, in calls of REBUILD_BATCH
        jobs, each with `running`: a call that finds the ready mark gone restores their leases
        and sets the mark (steps 1 and 2 of `sweep`, no audit, promotion or walk). Returns how
        many went in.

        Raises QueueNotReady when Redis lost its state after the first batch, or at all when
        `continuing` (this call goes on with a walk from the head that earlier calls began):
        the jobs put back before are gone, so the caller must start again from the head (the
        leases and the mark are back already).

        Script: `sweep.lua`.
        """
        ordered = _in_queue_order(jobs)
        batches = list(chunks(ordered, REBUILD_BATCH)) or [ordered]
        added = 0
        for index, batch in enumerate(batches):
            report = await self._put_back(batch, running=running, lease_seconds=lease_seconds)
            if not report.was_ready:
                if continuing or index > 0:
                    raise QueueNotReady("Redis lost its state while the queue was rebuilt")
                report = await self._put_back(batch, running=running, lease_seconds=lease_seconds)
            added += report.added
        return added

    async def _put_back(
        self, batch: Sequence[PendingJob], *, running: Sequence[RunningJob], lease_seconds: float
    ) -> SweepReport:
        return await self.sweep(
            pending=batch,
            running=running,
            lease_seconds=lease_seconds,
            judge_after_seconds=None,
            promote_limit=0,
            orphan_scan=0,
        )

    async def mark_not_ready(self) -> None:
        """Take the ready mark away (one DEL): claims wait until a sweep has put back every
        pending job again (after a rebuild that could not finish)."""
        async with asyncio.timeout(self._timeout):
            await self._redis.delete(self.keys.ready)

    async def is_ready(self) -> bool:
        """Whether claims are allowed (False after a FLUSHALL until `rebuild`)."""
        return bool(await self._redis.exists(self.keys.ready))

    async def active_job_ids(self) -> set[UUID]:
        """The jobs holding a lease (live or lapsed, not yet reaped)."""
        reply = await self._redis.zrange(self.keys.active, 0, -1)
        return {UUID(str(job_id)) for job_id in reply}

    def _position(self, reply: object) -> Position | None:
        if reply is None:
            return None
        rank, waiting, active, mean, own, cap, held, at_cap = as_list(reply)
        position = as_int(rank)
        user_cap = None if cap in ("", None) else as_int(cap)
        own_ahead = as_int(own)
        is_held, at_user_cap = as_int(held) == 1, as_int(at_cap) == 1
        return Position(
            position=position,
            queue_length=as_int(waiting),
            active_jobs=as_int(active),
            estimated_minutes=estimated_minutes(
                position,
                max_active=self.max_active,
                mean_seconds=as_mean(mean),
                own_ahead=own_ahead,
                user_cap=user_cap,
                at_user_cap=at_user_cap,
            ),
            may_be_overtaken=is_held
            or at_user_cap
            or position >= max(0, self.max_active - as_int(active)),
            held=is_held,
            at_user_cap=at_user_cap,
            own_ahead=own_ahead,
        )


def _fence(fence: int) -> int:
    if fence < 1:
        raise ValueError("a fence is a positive token issued by Postgres")
    return fence


def _weight(weight: float) -> str:
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError("weight must be a positive number")
    return repr(float(weight))


def _cap(cap: int | None) -> str:
    if cap is None:
        return ""
    if cap < 1:
        raise ValueError("a running cap is at least 1 (None: no cap)")
    return str(int(cap))


def _priority(priority: int) -> str:
    return str(min(max(int(priority), -PRIORITY_MAX), PRIORITY_MAX))


def _ms(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite, non-negative number of seconds")
    return str(round(seconds * 1000))


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (Postgres timestamptz always carries its offset)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _in_queue_order(jobs: Sequence[PendingJob]) -> list[PendingJob]:
    """Each job once (as its first entry says), in `queued_at` order."""
    unique = {job.job_id: job for job in reversed(jobs)}.values()
    return sorted(unique, key=lambda job: (_utc(job.queued_at), job.job_id))


def _pending_args(job: PendingJob) -> list[str]:
    due = "" if job.next_attempt_at is None else str(_epoch_ms(job.next_attempt_at))
    return [
        str(job.job_id),
        str(job.user_id),
        str(_fence(job.fence)),
        _weight(job.weight),
        _cap(job.max_active_per_user),
        _priority(job.priority),
        due,
    ]


def _epoch_ms(moment: datetime) -> int:
    return round(_utc(moment).timestamp() * 1000)
