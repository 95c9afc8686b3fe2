"""Path ids: a UUID, or 404 like any id that names nothing the caller owns.

An id that is not a UUID cannot name a job or story, so it gets the same 404 as an unknown
or another user's id (not a 422 that would tell the two apart).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path

from storyq_api.errors import NotFound

_UUID_SCHEMA = {"format": "uuid"}


def _parse(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError as exc:
        raise NotFound(f"no such {what}") from exc


def _job_id(job_id: Annotated[str, Path(alias="jobId", json_schema_extra=_UUID_SCHEMA)]) -> UUID:
    return _parse(job_id, "job")


def _story_id(
    story_id: Annotated[str, Path(alias="storyId", json_schema_extra=_UUID_SCHEMA)],
) -> UUID:
    return _parse(story_id, "story")


JobId = Annotated[UUID, Depends(_job_id)]
StoryId = Annotated[UUID, Depends(_story_id)]
