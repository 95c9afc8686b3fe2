"""Operator endpoints: queue statistics, the job browser, clean, empty, retry, cancel, credits.

Administrators only (app_metadata.role = admin, or the service-role key); any other valid
token gets 403. The work itself is in `storyq.operations`, shared with the `storyq` admin verbs.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from storyq.store import MAX_PAGE_SIZE, NO_TIER, JobFilter, JobStatus
from storyq_api.auth import current_admin
from storyq_api.bodies import json_body, request_body
from storyq_api.deps import ServicesDep
from storyq_api.errors import problem_responses
from storyq_api.paths import JobId
from storyq_api.queries import Instant, PageCursor
from storyq_api.schemas import (
    AdminJobDetail,
    AdminJobList,
    CleanRequest,
    CleanResult,
    CreditBalance,
    CreditGrant,
    EmptyResult,
    JobView,
    QueueStats,
)
from storyq_api.views import admin_job_detail, admin_job_view, cancel_answer, job_view

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(current_admin)])

_ERRORS = (401, 403, 503)


@router.get(
    "/queue",
    response_model=QueueStats,
    summary="Queue counts: live (Redis) and finished (Postgres)",
    responses=problem_responses(*_ERRORS),
)
async def queue(services: ServicesDep) -> QueueStats:
    stats = await services.operations.queue_stats()
    return QueueStats.model_validate(dataclasses.asdict(stats))


# A plan's tier name (public.plans.tier), or the name of no tier (jobs from before tiers).
_TIER_PATTERN = r"^([a-z0-9_-]{1,32}|\(none\))$"


def _job_filter(
    status: Annotated[
        list[JobStatus] | None,
        Query(
            description="only jobs in one of these statuses: repeat it for several "
            "(`?status=failed&status=cancelled`)"
        ),
    ] = None,
    user_id: Annotated[UUID | None, Query(alias="userId", description="only this user's")] = None,
    tier: Annotated[
        str | None,
        Query(
            pattern=_TIER_PATTERN,
            description=f"only jobs enqueued under this plan tier; `{NO_TIER}`: before tiers",
        ),
    ] = None,
    created_after: Annotated[
        Instant | None,
        Query(
            alias="createdAfter",
            description="only jobs created at or after this instant (RFC 3339, with an offset; "
            "send a + offset as %2B)",
        ),
    ] = None,
    created_before: Annotated[
        Instant | None,
        Query(alias="createdBefore", description="only jobs created before this instant"),
    ] = None,
) -> JobFilter:
    return JobFilter(
        statuses=tuple(dict.fromkeys(status or ())),
        user_id=user_id,
        tier=tier,
        created_after=created_after,
        created_before=created_before,
    )


@router.get(
    "/jobs",
    response_model=AdminJobList,
    summary="Every user's jobs, newest first: filtered by status, user, tier and time, paged",
    responses=problem_responses(*_ERRORS, 422),
)
async def list_jobs(
    which: Annotated[JobFilter, Depends(_job_filter)],
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 25,
    cursor: PageCursor = None,
) -> AdminJobList:
    """Newest first (createdAt, then jobId, descending). Filters combine (all must hold);
    a page ends with `nextCursor`, null on the last one. Paging is by keyset: jobs created
    while a client pages do not shift the pages after its cursor (they are newer than it)."""
    page = await services.operations.browse_jobs(which, limit=limit, cursor=cursor)
    return AdminJobList(
        jobs=[admin_job_view(job) for job in page.jobs],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )


@router.get(
    "/job/{jobId}",
    response_model=AdminJobDetail,
    summary="Any user's job with its request, its story so far and every attempt",
    responses=problem_responses(*_ERRORS, 404),
)
async def job_details(job_id: JobId, services: ServicesDep) -> AdminJobDetail:
    """The job, the story as its row holds it (the text so far while it is written) and
    every attempt with its times, outcome, error and LLM usage, oldest first."""
    return admin_job_detail(await services.operations.job_details(job_id))


@router.post(
    "/queue/clean",
    response_model=CleanResult,
    summary="Delete finished job rows older than an age (stories stay)",
    openapi_extra=request_body(CleanRequest),
    responses=problem_responses(*_ERRORS, 413, 422),
)
async def clean(
    body: Annotated[CleanRequest, Depends(json_body(CleanRequest))], services: ServicesDep
) -> CleanResult:
    deleted = await services.operations.clean(
        body.status, older_than_seconds=body.older_than_seconds
    )
    return CleanResult(status=body.status, deleted=deleted)


@router.post(
    "/queue/empty",
    response_model=EmptyResult,
    summary="Cancel and refund every waiting job",
    responses=problem_responses(*_ERRORS),
)
async def empty(services: ServicesDep) -> EmptyResult:
    cancelled = await services.operations.empty()
    return EmptyResult(cancelled=len(cancelled), job_ids=cancelled)


@router.post(
    "/job/{jobId}/retry",
    response_model=JobView,
    response_model_exclude_unset=True,
    summary="Put a failed job back in the queue (charges nothing again)",
    responses=problem_responses(*_ERRORS, 404, 409),
)
async def retry(job_id: JobId, services: ServicesDep) -> JobView:
    standing = await services.operations.retry(job_id)
    return job_view(standing.job, position=standing.position, with_wait_time=True)


@router.post(
    "/job/{jobId}/cancel",
    response_model=JobView,
    response_model_exclude_unset=True,
    summary="Cancel any user's job (cancelReason admin): as DELETE /api/job/{jobId} does",
    responses={
        202: {"model": JobView, "description": "processing: the cancel is requested"},
        **problem_responses(*_ERRORS, 404, 409),
    },
)
async def cancel(job_id: JobId, services: ServicesDep, response: Response) -> JobView:
    return cancel_answer(await services.operations.cancel(job_id), response)


@router.post(
    "/credits",
    response_model=CreditBalance,
    summary="Grant credits to a user",
    openapi_extra=request_body(CreditGrant),
    responses=problem_responses(*_ERRORS, 404, 413, 422),
)
async def grant_credits(
    body: Annotated[CreditGrant, Depends(json_body(CreditGrant))], services: ServicesDep
) -> CreditBalance:
    balance = await services.operations.grant_credits(body.user_id, body.amount)
    return CreditBalance(user_id=body.user_id, credits=balance)
