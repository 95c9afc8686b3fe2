"""Watch it write: the story's text reaches its row while the worker generates it, at least
every tick while text flows, and a retried job starts its text afresh (issue 19)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storyq.config import Settings
from storyq.generation import TemplateGenerator, count_words
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_worker.context import TEXT_SECONDS
from storyq_worker.invocation import run_invocation
from tests.support.polling import eventually
from tests.worker.helpers import enqueue, start


def story_of(database_url: str, job_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select s.status, s.content, s.words from public.stories s"
            " join public.story_jobs j on j.story_id = s.id where j.id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return {"status": row[0], "content": row[1], "words": row[2]}


async def test_the_story_grows_in_its_row_while_it_is_written(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a 6-second generation of a 600-word story by the template generator
    job_id = await enqueue(store, dispatcher, user, target_words=600)
    worker = asyncio.create_task(
        run_invocation(worker_settings, generator=TemplateGenerator(delay_seconds=6.0))
    )

    # When a reader looks at the story row while the worker writes
    seen: list[tuple[float, str]] = []

    def writing() -> bool:
        story = story_of(worker_stack.database_url, job_id)
        if story["status"] == "writing" and (not seen or seen[-1][1] != story["content"]):
            seen.append((time.monotonic(), story["content"]))
        return bool(story["status"] == "ready")

    await eventually(writing, timeout=30, every=0.05)
    summary = await worker

    # Then it saw the story `writing`, its text growing (each version extending the one
    # before, its words counted), new text at least every tick while it flowed, and the
    # finished story extends the last version it saw
    assert summary.completed == 1
    assert len(seen) >= 3
    texts = [text for _, text in seen]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(seen)]
    assert max(gaps) < TEXT_SECONDS + 1.0
    final = story_of(worker_stack.database_url, job_id)
    assert final["status"] == "ready"
    assert final["content"].startswith(texts[-1])
    assert final["words"] == count_words(final["content"])


async def test_a_write_that_waited_for_its_attempts_failure_writes_nothing(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a running attempt whose failure (retry due later) is being recorded, not yet
    # committed, while its first text write arrives (it waits for the job's lock)
    job_id = await enqueue(store, dispatcher, user)
    [claim] = await dispatcher.claim(1, lease_seconds=60)
    fence = (await start(store, worker_settings, job_id, claim.fence)).fence
    url = worker_stack.database_url
    failing = psycopg.connect(url)
    failing.execute("select public.fail_story_job(%s, %s, 'e', 'm', true, 30)", (job_id, fence))
    write = {"job_id": str(job_id), "fence": fence, "text_from": 0, "text": "STALE TEXT"}

    def stale_write() -> Any:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("select public.write_story_texts(%s)", (Jsonb([write]),)).fetchone()
        assert row is not None
        return row[0]

    pending_write = asyncio.create_task(asyncio.to_thread(stale_write))
    await asyncio.sleep(0.5)

    # When the failure commits
    failing.commit()
    failing.close()
    answer = await asyncio.wait_for(pending_write, 10)

    # Then the write finds the job no longer running that attempt: nothing is written, and the
    # story waits for the retry with no text (readers never see the failed attempt's words)
    assert answer == []
    story = story_of(url, job_id)
    assert (story["status"], story["content"]) == ("pending", None)
