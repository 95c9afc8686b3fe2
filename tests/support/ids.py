"""Readable ids for tests that talk to the dispatcher: `job("a")` and `user("u1")` are fixed
UUIDs (uuid5 of the name), the same in every run, so a test can say which job it means and
compare claims to it. Redis holds their text: `str(job("a"))`.

Their order is not the names' order: a UUID sorts like its hex text. A test that depends on
the order of ids (ties broken by job id) must sort the ids themselves, not the names.
"""

from __future__ import annotations

import uuid

_JOBS = uuid.uuid5(uuid.NAMESPACE_URL, "https://storyq.test/ids/job")
_USERS = uuid.uuid5(uuid.NAMESPACE_URL, "https://storyq.test/ids/user")


def job(name: str) -> uuid.UUID:
    """The job called `name` in a test."""
    return uuid.uuid5(_JOBS, name)


def user(name: str) -> uuid.UUID:
    """The user called `name` in a test (not the same UUID as the job of that name)."""
    return uuid.uuid5(_USERS, name)
