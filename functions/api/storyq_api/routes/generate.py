"""POST /api/generate: debit, save and queue a story, answer 202 at once.

In order: the token (401), the body cap (413, middleware), strict validation (422), the
user's rate limit (429), then `enqueue_story_job` (402, 409; 503 when Postgres is down and
nothing was debited), then the Redis queue and the worker kick. Once the debit has committed
the answer is 202 whatever Redis does: the job is pending in Postgres and the sweeper
dispatches it (estimatedWaitTime is then null).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError

from storyq.queue import Position
from storyq.store import EnqueuedJob, EnqueueRequest, StoreError, UserNotFound
from storyq_api import telemetry
from storyq_api.auth import CurrentUser
from storyq_api.bodies import parse, request_body
from storyq_api.degrade import unless_redis_down
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


def request_hash(request: GenerateRequest) -> str:
    """sha256 of the canonical JSON of the validated body (defaults filled in), so two bodies
    that ask for the same story hash alike whatever their key order or spacing."""
    canonical = json.dumps(
        request.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


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

    started = time.perf_counter()
    enqueued = await _enqueue(services, user_id=user.id, body=body, key=idempotency_key)
    position = await _dispatch(services, enqueued, user_id=user.id)
    if not enqueued.replayed:
        telemetry.job_queued(latency_ms=(time.perf_counter() - started) * 1000)
        if worth_a_kick(position, max_active=services.settings.max_active_jobs):
            await services.kicker.kick(job_id=str(enqueued.job_id))
    else:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/job/{enqueued.job_id}"
    status: AcceptedStatus = "queued" if enqueued.status == "pending" else enqueued.status
    return GenerateAccepted(
        job_id=enqueued.job_id,
        story_id=enqueued.story_id,
        status=status,
        message=REPLAY_MESSAGES.get(status, GenerateAccepted.model_fields["message"].default),
        estimated_wait_time=wait_time(position),
        credits_remaining=enqueued.balance,
    )


# What a replayed Idempotency-Key says of a job that no longer waits (the job as it is now).
REPLAY_MESSAGES: dict[str, str] = {
    "processing": "Story generation already in progress",
    "completed": "Story already generated",
    "failed": "Story generation failed; the credits were refunded",
    "cancelled": "Story generation was cancelled; the credits were refunded",
}


def worth_a_kick(position: Position | None, *, max_active: int) -> bool:
    """Whether a new worker invocation could start this job now. When every slot is taken, the
    running invocations claim it as slots free up (or the minute's schedule does): a kick then
    would only be throttled by the worker's reserved concurrency and, once too old, land in its
    on-failure queue. Without a position (Redis unreachable) the kick lets a sweep try."""
    if position is None:
        return True
    return position.active_jobs + position.position < max_active


async def _rate_limit(services: Services, user_id: str, request: Request) -> Verdict | None:
    """The user's POST /api/generate window; every answer carries its RateLimit-* headers."""
    try:
        return await services.generate_limiter.enforce(user_id, state=request.state)
    except RateLimited:
        telemetry.generate_rejected(RateLimited.code)
        raise


async def _enqueue(
    services: Services, *, user_id: UUID, body: GenerateRequest, key: str | None
) -> EnqueuedJob:
    settings = services.settings
    request = EnqueueRequest(
        user_id=user_id,
        prompt=body.prompt,
        title=body.title,
        genre=body.genre,
        language=body.language,
        target_words=body.target_words,
        cost=settings.story_cost,
        max_attempts=settings.max_attempts,
        idempotency_key=key,
        request_hash=request_hash(body),
        free_credits=settings.free_credits,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
    )
    try:
        return await services.store.jobs.enqueue(request)
    except UserNotFound as exc:
        # Deleted since the account check remembered it: the same answer as every route's.
        services.accounts.forget(user_id)
        telemetry.generate_rejected(AccountGone.code)
        raise AccountGone() from exc
    except StoreError as exc:
        telemetry.generate_rejected(exc.code)
        raise


async def _dispatch(services: Services, enqueued: EnqueuedJob, *, user_id: UUID) -> Position | None:
    """Into the Redis queue (idempotent, so a replay re-adds a job Redis lost)."""
    if enqueued.status != "pending" or enqueued.fence is None:
        return None
    return await unless_redis_down(
        "enqueue",
        services.dispatcher.enqueue(
            str(enqueued.job_id), user_id=str(user_id), fence=enqueued.fence
        ),
        within_seconds=services.redis_timeout,
    )
