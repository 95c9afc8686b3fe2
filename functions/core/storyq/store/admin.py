"""Queue administration: the counts the admin view shows, clean, retry, empty.

What the old Bull UI and the `storyq stats|clean|empty|retry` verbs do, as RPCs to the SQL
functions of supabase/migrations/*_admin_functions.sql.
"""

from __future__ import annotations

from uuid import UUID

from postgrest import AsyncPostgrestClient
from pydantic import TypeAdapter

from storyq.store._rpc import call, call_int, call_model
from storyq.store.models import CleanableStatus, QueueCounts, RetriedJob

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
