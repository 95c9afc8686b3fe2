"""Operator endpoints: queue statistics, clean, empty, retry, cancel, credits.

Administrators only (app_metadata.role = admin, or the service-role key); any other valid
token gets 403. The work itself is in `storyq.operations`, shared with the `storyq` admin verbs.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from storyq_api.auth import current_admin
from storyq_api.bodies import json_body, request_body
from storyq_api.deps import ServicesDep
from storyq_api.errors import problem_responses
from storyq_api.paths import JobId
from storyq_api.schemas import (
    CleanRequest,
    CleanResult,
    CreditBalance,
    CreditGrant,
    EmptyResult,
    JobView,
    QueueStats,
)
from storyq_api.views import cancel_answer, job_view

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
