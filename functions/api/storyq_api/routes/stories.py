"""GET /api/story/{storyId}: the story row exists from the moment of enqueue. Its `status` is
`pending` (no text yet, `content` null), `writing` (`content` is the text so far, refreshed at
least every 2 s while text flows and at the end of each paragraph, only ever appended to within
one attempt; `words` counts it), then `ready` (the whole story), or `failed` or `cancelled`
(both keep the text written so far). An attempt that fails and is retried starts afresh.

No `Retry-After` here: a story's status follows its job's, and the job is what a client polls
(GET /api/job/{jobId} says when to ask again); a reader watching the text grow gets each
change from Realtime (the `stories` row), or reads the story at the job's pace."""

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
    summary="A story: its text so far while it is written, the whole of it once ready",
    responses=problem_responses(401, 403, 404, 429, 503),
)
async def get_story(user: CurrentUser, story_id: StoryId, services: ServicesDep) -> StoryView:
    story = await services.store.stories.get(story_id, user_id=user.id)
    return story_view(story)
