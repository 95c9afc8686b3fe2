"""The Upstash endpoint unreachable while stories are queued: the debit has committed, so the
answer is still 202 and the job waits in Postgres; once Redis answers again a worker's sweep
dispatches it and it completes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from storyq_local.stack.servers import wait_until
from tests.reliability import results
from tests.reliability.conftest import (
    MakeUser,
    Stack,
    Workers,
    assert_no_residue,
    drain_leftovers,
)
from tests.reliability.facts import (
    all_terminal,
    assert_books_balance,
    assert_jobs_charged_once,
    jobs,
    story_writes,
)

POSTS = 3


@pytest.fixture
def _upstash_up_afterwards(stack: Stack) -> Iterator[None]:
    yield
    if stack.upstash.process is None:
        stack.upstash.start()


@pytest.mark.usefixtures("_upstash_up_afterwards")
def test_posts_while_upstash_is_unreachable_are_accepted_and_dispatched_later(
    stack: Stack, api: httpx.Client, make_user: MakeUser, workers: Workers
) -> None:
    # Given a user with credits and the Upstash endpoint gone (its process killed)
    drain_leftovers(stack, workers)
    user = make_user(POSTS)
    stack.upstash.kill()

    # When they queue stories
    started = time.monotonic()
    answers = [
        api.post("/api/generate", json={"prompt": f"quiet harbour {n}"}, headers=user.headers)
        for n in range(POSTS)
    ]
    slowest = (time.monotonic() - started) / POSTS

    # Then each is 202 without a queue position, and the job is pending in Postgres
    assert [answer.status_code for answer in answers] == [202] * POSTS, answers[0].text
    assert all(answer.json()["estimatedWaitTime"] is None for answer in answers)
    job_ids = [answer.json()["jobId"] for answer in answers]
    assert {row["status"] for row in jobs(stack.database_url, job_ids)} == {"pending"}

    # When Upstash is back and a worker runs
    stack.upstash.start()
    back = time.monotonic()
    workers.start(1, GENERATION_DELAY_SECONDS="0.3")

    # Then its sweep dispatches every one of them from Postgres and they complete, once
    wait_until(lambda: all_terminal(stack.database_url, job_ids), timeout=60, interval=0.1)
    dispatched_after = time.monotonic() - back
    final = assert_jobs_charged_once(stack.database_url, job_ids)
    assert {row["status"] for row in final} == {"completed"}
    assert set(story_writes(stack.database_url, job_ids).values()) == {1}
    assert_books_balance(stack.database_url)
    # And Redis keeps nothing of them
    residue = assert_no_residue(stack)

    results.record(
        "upstash_unreachable",
        injected="Upstash REST endpoint process killed during POST /api/generate, then restarted",
        runs=POSTS,
        jobs=POSTS,
        answers={"202": POSTS},
        mean_post_seconds_while_down=round(slowest, 3),
        completed_after_recovery_s=round(dispatched_after, 2),
        jobs_lost=0,
        double_charges=0,
        redis_residue=residue,
    )
