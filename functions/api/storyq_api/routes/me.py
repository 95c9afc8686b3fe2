"""GET /api/me: who the token speaks for and how many credits they have."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from storyq_api.auth import CurrentUser, within_request_limit
from storyq_api.deps import ServicesDep
from storyq_api.errors import problem_responses
from storyq_api.schemas import Me

router = APIRouter(tags=["account"], dependencies=[Depends(within_request_limit)])


@router.get(
    "/api/me",
    response_model=Me,
    summary="The caller and their credit balance",
    responses=problem_responses(401, 403, 429, 503),
)
async def me(user: CurrentUser, services: ServicesDep) -> Me:
    credits = await services.store.credits.balance(user.id)
    return Me(user_id=user.id, credits=credits, is_admin=user.is_admin)
