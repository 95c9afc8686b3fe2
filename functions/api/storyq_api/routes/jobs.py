"""A user's jobs: GET /api/job/{jobId}, DELETE /api/job/{jobId}, GET /api/jobs.

Another user's job is a 404 exactly like a missing one (the store is asked with the caller's
id), never a 403 that would confirm it exists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from storyq.store import MAX_PAGE_SIZE, JobStatus
from storyq_api.auth import CurrentUser, within_request_limit
from storyq_api.deps import ServicesDep
from storyq_api.errors import problem_responses
from storyq_api.paths import JobId
from storyq_api.poll_hints import retry_after_seconds
from storyq_api.queries import PageCursor
from storyq_api.schemas import JobList, JobView
from storyq_api.views import cancel_answer, job_view

router = APIRouter(tags=["jobs"], dependencies=[Depends(within_request_limit)])

RETRY_AFTER_DOC = {
    "Retry-After": {
        "description": "pending and processing jobs only: seconds until the next poll is worth "
        "it (2-30; none once the job is completed, failed or cancelled)",
        "schema": {"type": "integer", "minimum": 2, "maximum": 30},
    }
}


@router.get(
    "/api/job/{jobId}",
    response_model=JobView,
    response_model_exclude_unset=True,
    summary="A job's status, with its wait time, progress, result or error",
    responses={200: {"headers": RETRY_AFTER_DOC}, **problem_responses(401, 403, 404, 429, 503)},
)
async def get_job(
    user: CurrentUser, job_id: JobId, services: ServicesDep, response: Response
) -> JobView:
    """The job as it stands. While it is pending or processing the answer carries
    `Retry-After` (whole seconds): when polling again is worth it, since every poll is billed.
    Pending: 2 s when a free slot awaits it, else a twentieth of its ETA (3-30 s), or until a
    retry is due; processing: half the remaining time extrapolated from the words written
    and the time since it started (2-20 s; 2-10 s before the first words and past the target
    length). A finished job has none. The rule lives in `storyq_api.poll_hints`."""
    standing = await services.operations.look_up(job_id, user_id=user.id)
    job = standing.job
    hint = retry_after_seconds(
        job,
        position=standing.position,
        max_active=services.settings.max_active_jobs,
        now=datetime.now(UTC),
    )
    if hint is not None:
        response.headers["Retry-After"] = str(hint)
    if job.status == "pending":
        return job_view(job, position=standing.position, with_wait_time=True)
    if job.status == "processing":
        return job_view(job, target_words=job.target_words)
    return job_view(job)


@router.delete(
    "/api/job/{jobId}",
    response_model=JobView,
    response_model_exclude_unset=True,
    summary="Cancel a job: a pending one at once, a processing one within seconds (refunded)",
    responses={
        202: {"model": JobView, "description": "processing: the cancel is requested"},
        **problem_responses(401, 403, 404, 409, 429, 503),
    },
)
async def cancel_job(
    user: CurrentUser, job_id: JobId, services: ServicesDep, response: Response
) -> JobView:
    """Pending: cancelled and refunded (200). Processing: the cancel is requested (202,
    `cancelRequested`); its generation stops within 2 s and the job ends cancelled and
    refunded, unless it completed first. Cancelled or being cancelled: the same answer again,
    nothing refunded twice. Completed or failed: 409."""
    job = await services.operations.cancel(job_id, user_id=user.id)
    return cancel_answer(job, response)


@router.get(
    "/api/jobs",
    response_model=JobList,
    response_model_exclude_unset=True,
    summary="The caller's jobs, newest first",
    responses=problem_responses(401, 403, 422, 429, 503),
)
async def list_jobs(
    user: CurrentUser,
    services: ServicesDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: PageCursor = None,
) -> JobList:
    page = await services.store.jobs.list_for_user(
        user.id, status=status, limit=limit, cursor=cursor
    )
    return JobList(
        jobs=[job_view(job) for job in page.jobs],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )
