"""Queue administration: the counts the admin view shows, clean, retry, empty, and the job
browser (every user's jobs, one job with its attempts).

What the old Bull UI and the `storyq stats|clean|empty|retry` verbs do, as RPCs to the SQL
functions of supabase/migrations/*_admin_functions.sql and *_admin_job_browser.sql.
"""

from __future__ import annotations

from uuid import UUID

from postgrest import AsyncPostgrestClient
from pydantic import TypeAdapter

from storyq.store._rpc import call, call_int, call_model, call_models
from storyq.store.job_browser import JobDetails, JobFilter, ListedJob, ListedJobPage
from storyq.store.jobs import MAX_PAGE_SIZE
from storyq.store.models import CleanableStatus, JobCursor, QueueCounts, RetriedJob

_JOB_IDS = TypeAdapter(list[UUID])


class AdminStore:
    """Operator actions on the whole queue, through the service-role PostgREST client."""

    def __init__(self, db: AsyncPostgrestClient) -> None:
        self._db = db

    async def counts(self) -> QueueCounts:
        """Jobs per status, the oldest pending job, the mean generation time of the last 100,
        today's usage, and waiting and running per tier."""
        return await call_model(self._db, "queue_counts", {}, QueueCounts)

    async def clean(self, status: CleanableStatus, *, older_than_seconds: float) -> int:
        """Delete completed, failed or cancelled job rows finished before the given age (stories
        and idempotency keys stay); how many went. Raises InvalidStatus for another status."""
        params = {"p_status": status, "p_older_than_seconds": older_than_seconds}
        return await call_int(self._db, "clean_story_jobs", params)

    async def retry_failed(self, job_id: UUID) -> RetriedJob:
        """Put a failed job back in the queue with fresh attempts and a new fence; nothing is
        charged again. The answer carries the user's plan's weight and running cap, for its
        re-dispatch.

        Raises JobNotRetryable (not failed), JobNotFound.
        """
        params = {"p_job_id": job_id}
        return await call_model(self._db, "retry_failed_story_job", params, RetriedJob)

    async def empty(self) -> list[UUID]:
        """Cancel and refund every pending job; their ids."""
        return _JOB_IDS.validate_python(await call(self._db, "empty_story_queue", {}))

    async def list_jobs(
        self, which: JobFilter, *, limit: int = 25, cursor: JobCursor | None = None
    ) -> ListedJobPage:
        """A page of every user's jobs that `which` lets through, newest first (created_at,
        then job id, descending), continuing after `cursor` (the previous page's
        `next_cursor`; None on the last page). Each job is a `ListedJob`: the job row, its
        story's title, target length and word count so far.

        Raises ValueError (limit outside 1..MAX_PAGE_SIZE), InvalidStatus, StoreUnavailable.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        params = {
            "p_statuses": list(which.statuses) or None,
            "p_user_id": which.user_id,
            "p_tier": which.tier,
            "p_created_after": which.created_after,
            "p_created_before": which.created_before,
            # One more than asked tells whether a next page exists without a count.
            "p_limit": limit + 1,
            "p_cursor_created_at": cursor.created_at if cursor else None,
            "p_cursor_id": cursor.job_id if cursor else None,
        }
        jobs = await call_models(self._db, "list_all_story_jobs", params, ListedJob)
        page = jobs[:limit]
        more = len(jobs) > limit
        return ListedJobPage(jobs=page, next_cursor=page[-1].cursor if more else None)

    async def job_details(self, job_id: UUID) -> JobDetails:
        """Any user's job with its story (prompt, genre, language, status, the text so far and
        its words) and every attempt (`attempt_history`, oldest first), read in one snapshot.

        Raises JobNotFound, StoreUnavailable.
        """
        params = {"p_job_id": job_id}
        return await call_model(self._db, "story_job_details", params, JobDetails)
