"""Stories: reading a story row (it exists from enqueue on; content arrives on completion)."""

from __future__ import annotations

from uuid import UUID

from postgrest import AsyncPostgrestClient

from storyq.store._rpc import call_model
from storyq.store.models import Story


class StoryStore:
    """Story rows in Postgres, through the service-role PostgREST client."""

    def __init__(self, db: AsyncPostgrestClient) -> None:
        self._db = db

    async def get(self, story_id: UUID, *, user_id: UUID | None = None) -> Story:
        """One story; with `user_id`, another user's story raises StoryNotFound."""
        params = {"p_story_id": story_id, "p_user_id": user_id}
        return await call_model(self._db, "get_story", params, Story)
