"""Jobs: the state machine calls the API and the worker make, and the job reads.

Owns the Python side of enqueue, start, heartbeat, complete, fail, release, requeue, cancel,
get, list, the dispatch snapshot, stalled, the idempotency-key purge and the attempts' usage.
Each method is one RPC to the SQL function of the same name, which does the transition
atomically and fenced by the attempt's fencing token (see
supabase/migrations/*_fence_cap_and_liveness.sql); refusals arrive as `storyq.store.errors`
exceptions, except those a worker acts on (a refused start, a lost attempt), which come back as
the job's state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from uuid import UUID

from postgrest import AsyncPostgrestClient

from storyq.results import JobResult
from storyq.store._rpc import call, call_bool, call_int, call_model, call_models
from storyq.store.errors import InvalidArgument
from storyq.store.models import (
    AttemptUsage,
    BeatReply,
    CancelReason,
    CompletedJob,
    DispatchSnapshot,
    EnqueuedJob,
    EnqueueRequest,
    FailOutcome,
    Failure,
    Heartbeat,
    Job,
    JobCursor,
    JobPage,
    JobState,
    JobStatus,
    LostAttempt,
    StalledJob,
    StartedJob,
    StartRefused,
    TextWrite,
    WalkPlace,
)

MAX_PAGE_SIZE = 100
# The error code of an attempt whose worker went silent (its heartbeat outlived the lease).
WORKER_LOST = "worker_lost"


class JobStore:
    """Story jobs in Postgres, through the service-role PostgREST client."""

    def __init__(self, db: AsyncPostgrestClient) -> None:
        self._db = db

    async def enqueue(self, request: EnqueueRequest) -> EnqueuedJob:
        """Debit, story, job and ledger entry in one transaction.

        Raises InsufficientCredits (nothing written), IdempotencyConflict (same key, other
        request), UserNotFound. A replayed key returns the first job with `replayed=True`.
        """
        params = {f"p_{name}": value for name, value in request.model_dump().items()}
        return await call_model(self._db, "enqueue_story_job", params, EnqueuedJob)

    async def start(
        self, job_id: UUID, fence: int, *, max_active: int, live_seconds: float
    ) -> StartedJob | StartRefused:
        """Start the attempt holding `fence`: pending -> processing, one more attempt counted,
        unless `max_active` attempts are processing (those silent for `live_seconds` are counted
        as lost first). Starts are serialised in Postgres, so the cap holds whatever Redis says.

        Returns StartRefused (nothing changed) when the cap is reached or the fence is not the
        job's pending one. Raises JobNotFound.
        """
        params = {
            "p_job_id": job_id,
            "p_fence": fence,
            "p_max_active": max_active,
            "p_live_seconds": live_seconds,
        }
        reply = await call(self._db, "start_story_job", params)
        if isinstance(reply, dict) and reply.get("started") is False:
            return StartRefused.model_validate(reply)
        return StartedJob.model_validate(reply)

    async def heartbeat(self, job_id: UUID, fence: int, *, words: int | None = None) -> bool:
        """Record liveness and progress of the attempt `fence`; False means it no longer owns
        the job (superseded, or finished by someone else): its worker must stop."""
        params = {"p_job_id": job_id, "p_fence": fence, "p_words": words}
        return await call_bool(self._db, "heartbeat_story_job", params)

    async def heartbeat_many(self, beats: Sequence[Heartbeat]) -> dict[tuple[UUID, int], BeatReply]:
        """`heartbeat` for many attempts in one request (one transaction): the answer for each
        attempt (job id, fence) whose beat was recorded (whether a cancel of its job was
        requested); an attempt missing from the answer no longer owns its job."""
        if not beats:
            return {}
        payload = [
            {"job_id": str(beat.job_id), "fence": beat.fence, "words": beat.words} for beat in beats
        ]
        reply = await call(self._db, "heartbeat_story_jobs", {"p_beats": payload})
        answers = [
            BeatReply(
                job_id=UUID(str(row["job_id"])), fence=int(row["fence"]), cancel=bool(row["cancel"])
            )
            for row in reply
        ]
        return {(answer.job_id, answer.fence): answer for answer in answers}

    async def write_texts(self, writes: Sequence[TextWrite]) -> dict[UUID, int]:
        """Stream text into the stories of running attempts, in one request: for each job whose
        attempt (`fence`) still runs it, how many characters its story now holds (where that
        attempt's next write starts). A job missing from the answer no longer runs under that
        fence; its text is not written."""
        if not writes:
            return {}
        payload = [
            {
                "job_id": str(write.job_id),
                "fence": write.fence,
                "text_from": write.text_from,
                "text": write.text,
            }
            for write in writes
        ]
        reply = await call(self._db, "write_story_texts", {"p_writes": payload})
        return {UUID(str(row["job_id"])): int(row["chars"]) for row in reply}

    async def record_usage(self, usages: Sequence[AttemptUsage]) -> int:
        """Set the usage of attempts, in one request (one transaction): each attempt's totals
        replace what it had (recording twice is harmless), whether it still runs or has ended.
        Record a completing attempt's usage before `complete`: the job's result then sums it.
        Returns how many attempts were written; an attempt Postgres does not know (its job
        cleaned, or never started under that fence) is skipped. Raises InvalidArgument (a
        negative or fractional count, a negative or non-finite cost; nothing is written)."""
        if not usages:
            return 0
        for usage in usages:
            if not math.isfinite(usage.cost_usd):
                raise InvalidArgument(f"cost_usd of {usage.job_id}/{usage.fence} is not finite")
        payload = [usage.as_param() for usage in usages]
        return await call_int(self._db, "record_story_job_usage", {"p_usages": payload})

    async def complete(
        self,
        job_id: UUID,
        *,
        fence: int,
        content: str,
        title: str | None = None,
        result: JobResult | None = None,
    ) -> CompletedJob:
        """Store the story (now ready) and what the generation came to. Raises StaleAttempt,
        JobNotFound."""
        params = {
            "p_job_id": job_id,
            "p_fence": fence,
            "p_content": content,
            "p_title": title,
            "p_result": result.as_row() if result is not None else {},
        }
        return await call_model(self._db, "complete_story_job", params, CompletedJob)

    async def fail(self, job_id: UUID, *, fence: int, failure: Failure) -> FailOutcome:
        """Record a failed attempt: retried later under a new fence while attempts remain and it
        is retryable, else failed for good and refunded once. Raises StaleAttempt, JobNotFound."""
        params = {
            "p_job_id": job_id,
            "p_fence": fence,
            "p_error_code": failure.code,
            "p_error_message": failure.message,
            "p_retryable": failure.retryable,
            "p_retry_delay_seconds": failure.retry_delay_seconds,
        }
        return await call_model(self._db, "fail_story_job", params, FailOutcome)

    async def release(self, job_id: UUID, *, fence: int) -> FailOutcome:
        """Give a running attempt back unused (the worker is shutting down, or cannot prove it
        is alive): the job is pending again at once under a new fence and the attempt is not
        counted. Raises StaleAttempt, JobNotFound."""
        params = {"p_job_id": job_id, "p_fence": fence}
        return await call_model(self._db, "release_story_job", params, FailOutcome)

    async def requeue_stalled(
        self,
        job_id: UUID,
        *,
        fence: int,
        live_seconds: float,
        reason: str,
        retry_delay_seconds: float,
    ) -> LostAttempt:
        """Ask Postgres about an attempt Redis lost track of: when its heartbeat is older than
        `live_seconds` it is dead and counts as a failed attempt (`WORKER_LOST`, with `reason`
        as its message), retried after `retry_delay_seconds` if it has attempts left; a fresh
        heartbeat means it is alive (`live`). See LostAttempt for every outcome."""
        params = {
            "p_job_id": job_id,
            "p_fence": fence,
            "p_live_seconds": live_seconds,
            "p_error_code": WORKER_LOST,
            "p_error_message": reason,
            "p_retry_delay_seconds": retry_delay_seconds,
        }
        return await call_model(self._db, "requeue_stalled_story_job", params, LostAttempt)

    async def cancel(
        self, job_id: UUID, *, user_id: UUID | None = None, reason: CancelReason | None = None
    ) -> Job:
        """Cancel a job. Pending: cancelled and refunded at once. Processing: the request is
        recorded (`cancel_requested`) and its worker ends it. Already cancelled or being
        cancelled: the job as it is, nothing refunded again. With `user_id`, only that user's
        job; `reason` is `user` (the default with a user) or `admin` (without one).

        Raises JobNotCancellable (completed or failed), JobNotFound (also another user's).
        """
        params = {"p_job_id": job_id, "p_user_id": user_id, "p_reason": reason}
        return await call_model(self._db, "cancel_story_job", params, Job)

    async def cancel_running(self, job_id: UUID, *, fence: int) -> JobState:
        """The worker of the attempt `fence` ends a job whose cancel was requested: cancelled,
        refunded once. Raises StaleAttempt (it completed first, or another attempt owns it),
        JobNotFound."""
        params = {"p_job_id": job_id, "p_fence": fence}
        return await call_model(self._db, "cancel_running_story_job", params, JobState)

    async def expire(self, *, ttl_seconds: float, limit: int) -> list[UUID]:
        """Cancel (reason `expired`, refunded) at most `limit` jobs waiting, never started,
        for `ttl_seconds` since they were queued, oldest first; their ids."""
        params = {"p_ttl_seconds": ttl_seconds, "p_limit": limit}
        reply = await call(self._db, "expire_story_jobs", params)
        return [UUID(str(job_id)) for job_id in reply]

    async def get(self, job_id: UUID, *, user_id: UUID | None = None) -> Job:
        """One job; with `user_id`, another user's job raises JobNotFound like a missing one."""
        params = {"p_job_id": job_id, "p_user_id": user_id}
        return await call_model(self._db, "get_story_job", params, Job)

    async def list_for_user(
        self,
        user_id: UUID,
        *,
        status: JobStatus | None = None,
        limit: int = 20,
        cursor: JobCursor | None = None,
    ) -> JobPage:
        """A page of the user's jobs, newest first, continuing after `cursor`."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        params = {
            "p_user_id": user_id,
            "p_status": status,
            # One more than asked tells whether a next page exists without a count.
            "p_limit": limit + 1,
            "p_cursor_created_at": cursor.created_at if cursor else None,
            "p_cursor_id": cursor.job_id if cursor else None,
        }
        jobs = await call_models(self._db, "list_story_jobs", params, Job)
        page = jobs[:limit]
        more = len(jobs) > limit
        return JobPage(jobs=page, next_cursor=page[-1].cursor if more else None)

    async def dispatch_snapshot(
        self,
        *,
        limit: int = 1000,
        recent_seconds: float | None = None,
        recent_limit: int | None = None,
        page: int | None = None,
        after: WalkPlace | None = None,
    ) -> DispatchSnapshot:
        """What Redis follows, read in one snapshot: the processing attempts (at most `limit`)
        and pending jobs in queue order: those whose next attempt is due from `recent_seconds`
        ago on (the oldest `recent_limit`, default `limit`), and the next `page` of a walk over
        every pending job kept in Postgres (`wrapped` once it reached the tail), or, with `after`
        (`WalkPlace.HEAD`, or the previous snapshot's `last`), of the caller's own walk; with
        neither, the first `limit`. Reads O(limit + recent_limit + page) rows whatever the
        backlog."""
        params: dict[str, object] = {"p_limit": limit}
        if recent_seconds is not None:
            params["p_recent_seconds"] = recent_seconds
            params["p_recent_limit"] = limit if recent_limit is None else recent_limit
        if page is not None:
            params["p_page"] = page
            if after is not None:
                params["p_after"] = after.as_param()
        return await call_model(self._db, "dispatch_snapshot", params, DispatchSnapshot)

    async def purge_idempotency_keys(self, *, ttl_seconds: float, limit: int = 1000) -> int:
        """Forget at most `limit` idempotency keys older than `ttl_seconds`; how many went."""
        params = {"p_ttl_seconds": ttl_seconds, "p_limit": limit}
        return await call_int(self._db, "purge_idempotency_keys", params)

    async def stalled(self, *, stalled_for_seconds: float, limit: int = 1000) -> list[StalledJob]:
        """Processing attempts without a heartbeat for longer than `stalled_for_seconds`."""
        params = {"p_stalled_for_seconds": stalled_for_seconds, "p_limit": limit}
        return await call_models(self._db, "stalled_story_jobs", params, StalledJob)
