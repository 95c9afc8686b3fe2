"""POST /api/generate: debit, save and queue a story, answer 202 at once.

In order: the token (401), the body cap (413, middleware), strict validation (422), the
user's rate limit (429), then `JobOperations.submit` (402, 409; 503 when Postgres is down and
nothing was debited). Once the debit has committed the answer is 202 whatever Redis does: the
job is pending in Postgres and the sweeper dispatches it (estimatedWaitTime is then null).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError

from storyq.operations import StoryRequest, Submission
from storyq.store import StoreError, UserNotFound
from storyq_api import telemetry
from storyq_api.auth import CurrentUser
from storyq_api.bodies import parse, request_body
from storyq_api.deps import Services, ServicesDep
from storyq_api.errors import AccountGone, RateLimited, problem_responses
from storyq_api.ratelimit import Verdict
from storyq_api.schemas import AcceptedStatus, GenerateAccepted, GenerateRequest
from storyq_api.views import wait_time

router = APIRouter(tags=["stories"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",
        description="Retry-safe key: the same key and body from the same user queue one job.",
    ),
]


async def _body(request: Request) -> GenerateRequest:
    try:
        return parse(GenerateRequest, await request.body())
    except RequestValidationError:
        telemetry.generate_rejected("validation_error")
        raise


@router.post(
    "/api/generate",
    status_code=202,
    response_model=GenerateAccepted,
    summary="Queue a story",
    openapi_extra=request_body(GenerateRequest),
    responses=problem_responses(401, 402, 403, 409, 413, 422, 429, 503),
)
async def generate(
    user: CurrentUser,
    body: Annotated[GenerateRequest, Depends(_body)],
    request: Request,
    response: Response,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> GenerateAccepted:
    await _rate_limit(services, str(user.id), request)

    submitted = await _submit(services, user=user, body=body, key=idempotency_key)
    job = submitted.job
    if job.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        telemetry.job_queued(latency_ms=submitted.queued_in_seconds * 1000)
    response.headers["Location"] = f"/api/job/{job.job_id}"
    status: AcceptedStatus = "queued" if job.status == "pending" else job.status
    return GenerateAccepted(
        job_id=job.job_id,
        story_id=job.story_id,
        status=status,
        message=REPLAY_MESSAGES.get(status, GenerateAccepted.model_fields["message"].default),
        estimated_wait_time=wait_time(submitted.position),
        credits_remaining=job.balance,
    )


# What a replayed Idempotency-Key says of a job that no longer waits (the job as it is now).
REPLAY_MESSAGES: dict[str, str] = {
    "processing": "Story generation already in progress",
    "completed": "Story already generated",
    "failed": "Story generation failed; the credits were refunded",
    "cancelled": "Story generation was cancelled; the credits were refunded",
}


async def _rate_limit(services: Services, user_id: str, request: Request) -> Verdict | None:
    """The user's POST /api/generate window; every answer carries its RateLimit-* headers."""
    try:
        return await services.generate_limiter.enforce(user_id, state=request.state)
    except RateLimited:
        telemetry.generate_rejected(RateLimited.code)
        raise


async def _submit(
    services: Services, *, user: CurrentUser, body: GenerateRequest, key: str | None
) -> Submission:
    story = StoryRequest(
        prompt=body.prompt,
        title=body.title,
        genre=body.genre,
        language=body.language,
        target_words=body.target_words,
    )
    try:
        return await services.operations.submit(story, user_id=user.id, idempotency_key=key)
    except UserNotFound as exc:
        # Deleted since the account check remembered it: the same answer as every route's.
        services.accounts.forget(user.id)
        telemetry.generate_rejected(AccountGone.code)
        raise AccountGone() from exc
    except StoreError as exc:
        telemetry.generate_rejected(exc.code)
        raise
