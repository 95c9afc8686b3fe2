"""Backlogs for bench/scale.py: many waiting jobs, fast, as the API would have left them.

Postgres: the schema's own `enqueue_story_job`, called in SQL a thousand users' jobs per
statement with exactly the arguments the API passes (`EnqueueRequest` built from Settings, the
request hash from `StoryRequest.fingerprint`): the same debit, story, job, fence and ledger rows.
The one difference: the jobs of one statement share `created_at`/`queued_at` (its transaction's
`now()`); they still queue in the order they were made (ties broken by id).

Redis: `Dispatcher.enqueue` for each job, recorded instead of sent, then replayed as the same
EVALSHA calls through a redis-py pipeline (100,000 enqueues in seconds rather than minutes of
Upstash REST round trips; the scripts and their keys and arguments are the Dispatcher's own).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg
import redis
from upstash_redis.asyncio import Redis

from bench.billing import STORYQ_SCRIPTS
from storyq.config import Settings
from storyq.operations import StoryRequest
from storyq.queue import Dispatcher
from storyq.store import EnqueueRequest

STATEMENT_JOBS = 1_000
PIPELINE_CALLS = 5_000
STORY = StoryRequest(
    prompt="A lighthouse keeper finds a door in the fog that was not there yesterday.",
    genre="mystery",
    target_words=1200,
)

_ENQUEUE = """
select r from unnest(%(users)s::uuid[]) with ordinality as u(id, n),
  lateral public.enqueue_story_job(
    p_user_id => u.id, p_prompt => %(prompt)s, p_title => %(title)s, p_genre => %(genre)s,
    p_language => %(language)s, p_target_words => %(target_words)s, p_cost => %(cost)s,
    p_max_attempts => %(max_attempts)s, p_idempotency_key => %(idempotency_key)s,
    p_request_hash => %(request_hash)s, p_free_credits => %(free_credits)s,
    p_idempotency_ttl_seconds => %(idempotency_ttl_seconds)s
  ) as r
order by u.n
"""


@dataclass(frozen=True)
class SeededJob:
    job_id: UUID
    user_id: UUID
    fence: int


def enqueue_arguments(settings: Settings) -> dict[str, Any]:
    """`enqueue_story_job`'s arguments but the user, as `JobOperations.submit` fills them."""
    request = EnqueueRequest(
        user_id=UUID(int=0),
        prompt=STORY.prompt,
        title=STORY.title,
        genre=STORY.genre,
        language=STORY.language,
        target_words=STORY.target_words,
        cost=settings.story_cost,
        max_attempts=settings.max_attempts,
        idempotency_key=None,
        request_hash=STORY.fingerprint(),
        free_credits=settings.free_credits,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
    )
    return request.model_dump(exclude={"user_id"})


def seed_postgres(
    database_url: str, settings: Settings, users: Sequence[UUID], count: int
) -> list[SeededJob]:
    """`count` pending jobs, the users taking turns; one transaction per STATEMENT_JOBS."""
    arguments = enqueue_arguments(settings)
    turns = itertools.islice(itertools.cycle(users), count)
    jobs: list[SeededJob] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        while batch := list(itertools.islice(turns, STATEMENT_JOBS)):
            rows = conn.execute(_ENQUEUE, {**arguments, "users": batch}).fetchall()
            for (reply,), user_id in zip(rows, batch, strict=True):
                if reply.get("status") != "pending":
                    raise RuntimeError(f"enqueue_story_job did not queue a job: {reply}")
                jobs.append(SeededJob(UUID(reply["job_id"]), user_id, int(reply["fence"])))
    return jobs


class _Recorder:
    """Stands in for the Upstash client: keeps the EVALSHA calls a Dispatcher makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], list[str]]] = []

    async def evalsha(self, sha: str, keys: list[str], args: list[str]) -> None:
        self.calls.append((sha, keys, args))


async def _recorded_enqueues(
    jobs: Sequence[SeededJob], max_active: int
) -> list[tuple[str, list[str], list[str]]]:
    recorder = _Recorder()
    queue = Dispatcher(cast(Redis, recorder), max_active=max_active)
    for job in jobs:
        await queue.enqueue(job.job_id, user_id=job.user_id, fence=job.fence)
    return recorder.calls


def seed_redis(direct: redis.Redis, jobs: Sequence[SeededJob], *, max_active: int) -> None:
    """Each job through `Dispatcher.enqueue`'s script, in order, over a pipeline."""
    calls = asyncio.run(_recorded_enqueues(jobs, max_active))
    for script in STORYQ_SCRIPTS:
        direct.script_load(script.source)
    for start in range(0, len(calls), PIPELINE_CALLS):
        pipe = direct.pipeline(transaction=False)
        for sha, keys, args in calls[start : start + PIPELINE_CALLS]:
            pipe.evalsha(sha, len(keys), *keys, *args)
        pipe.execute()


def pending_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select count(*) from public.story_jobs where status = 'pending'")
        found = row.fetchone()
    return int(found[0]) if found else 0
