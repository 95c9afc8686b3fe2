"""GET /api/story/{storyId}: the story row exists from the moment of enqueue; `content` is null
until the job completes.

No `Retry-After` here: a story's status follows its job's, and the job is what a client polls
(GET /api/job/{jobId} says when to ask again); the story is read once the job has finished."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from storyq_api.auth import CurrentUser, within_request_limit
from storyq_api.deps import ServicesDep
from storyq_api.errors import problem_responses
from storyq_api.paths import StoryId
from storyq_api.schemas import StoryView
from storyq_api.views import story_view

router = APIRouter(tags=["stories"], dependencies=[Depends(within_request_limit)])


@router.get(
    "/api/story/{storyId}",
    response_model=StoryView,
    summary="A story (content null until it is ready)",
    responses=problem_responses(401, 403, 404, 429, 503),
)
async def get_story(user: CurrentUser, story_id: StoryId, services: ServicesDep) -> StoryView:
    story = await services.store.stories.get(story_id, user_id=user.id)
    return story_view(story)
