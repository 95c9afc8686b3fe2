"""Jobs: the state machine calls the API and the worker make, and the job reads.

Owns the Python side of enqueue, start, heartbeat, complete, fail, requeue, cancel, get, list,
dispatchable and stalled. Each method is one RPC to the SQL function of the same name, which
does the transition atomically and fenced by the attempt number (see
supabase/migrations/*_job_functions.sql); refusals arrive as `storyq.store.errors` exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from postgrest import AsyncPostgrestClient

from storyq.store._rpc import call_bool, call_model, call_models
from storyq.store.models import (
    CompletedJob,
    DispatchableJob,
    EnqueuedJob,
    EnqueueRequest,
    FailOutcome,
    Failure,
    Job,
    JobCursor,
    JobPage,
    JobStatus,
    StalledJob,
    StartedJob,
)

MAX_PAGE_SIZE = 100


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

    async def start(self, job_id: UUID, attempt: int) -> StartedJob:
        """Claim the job for `attempt` (= attempts so far + 1): pending -> processing.

        Raises StaleAttempt (another attempt got there first), JobNotStartable (cancelled or
        finished), JobNotFound.
        """
        params = {"p_job_id": job_id, "p_attempt": attempt}
        return await call_model(self._db, "start_story_job", params, StartedJob)

    async def heartbeat(self, job_id: UUID, attempt: int, *, words: int | None = None) -> bool:
        """Record liveness and progress; False means this attempt no longer owns the job."""
        params = {"p_job_id": job_id, "p_attempt": attempt, "p_words": words}
        return await call_bool(self._db, "heartbeat_story_job", params)

    async def complete(
        self,
        job_id: UUID,
        *,
        attempt: int,
        content: str,
        title: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> CompletedJob:
        """Store the story (now ready) and the job's result. Raises StaleAttempt, JobNotFound."""
        params = {
            "p_job_id": job_id,
            "p_attempt": attempt,
            "p_content": content,
            "p_title": title,
            "p_result": dict(result or {}),
        }
        return await call_model(self._db, "complete_story_job", params, CompletedJob)

    async def fail(self, job_id: UUID, *, attempt: int, failure: Failure) -> FailOutcome:
        """Record a failed attempt: retried later while attempts remain and it is retryable,
        else failed for good and refunded once. Raises StaleAttempt, JobNotFound."""
        params = {
            "p_job_id": job_id,
            "p_attempt": attempt,
            "p_error_code": failure.code,
            "p_error_message": failure.message,
            "p_retryable": failure.retryable,
            "p_retry_delay_seconds": failure.retry_delay_seconds,
        }
        return await call_model(self._db, "fail_story_job", params, FailOutcome)

    async def release(self, job_id: UUID, *, attempt: int) -> FailOutcome:
        """Give a running attempt back unused (the worker is shutting down): the job is pending
        again and its next claim runs the same attempt number. Raises StaleAttempt, JobNotFound."""
        params = {"p_job_id": job_id, "p_attempt": attempt}
        return await call_model(self._db, "release_story_job", params, FailOutcome)

    async def requeue_stalled(
        self,
        job_id: UUID,
        *,
        attempt: int,
        error_code: str = "worker_lost",
        error_message: str = "the worker stopped sending heartbeats",
        retry_delay_seconds: float = 0.0,
    ) -> FailOutcome:
        """A processing attempt known dead counts as a failed, retryable attempt."""
        params = {
            "p_job_id": job_id,
            "p_attempt": attempt,
            "p_error_code": error_code,
            "p_error_message": error_message,
            "p_retry_delay_seconds": retry_delay_seconds,
        }
        return await call_model(self._db, "requeue_stalled_story_job", params, FailOutcome)

    async def cancel(self, job_id: UUID, *, user_id: UUID | None = None) -> Job:
        """Cancel a pending job and refund it. With `user_id`, only that user's job.

        Raises JobNotCancellable (processing or finished), JobNotFound (also another user's).
        """
        params = {"p_job_id": job_id, "p_user_id": user_id}
        return await call_model(self._db, "cancel_story_job", params, Job)

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

    async def dispatchable(self, *, limit: int = 1000) -> list[DispatchableJob]:
        """Every pending job in queue order (delayed retries included), to rebuild Redis."""
        return await call_models(
            self._db, "dispatchable_story_jobs", {"p_limit": limit}, DispatchableJob
        )

    async def stalled(self, *, stalled_for_seconds: float, limit: int = 1000) -> list[StalledJob]:
        """Processing attempts without a heartbeat for longer than `stalled_for_seconds`."""
        params = {"p_stalled_for_seconds": stalled_for_seconds, "p_limit": limit}
        return await call_models(self._db, "stalled_story_jobs", params, StalledJob)
