"""Redis loses everything while jobs wait and run (FLUSHALL; a redis-server killed and started
empty): Postgres still has every job, the sweep dispatches the pending ones again, every job
completes once, and no story is written twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from storyq_local.stack.servers import wait_until
from tests.reliability import results
from tests.reliability.conftest import (
    MAX_ACTIVE_JOBS,
    MakeUser,
    Stack,
    Workers,
    assert_no_residue,
    drain_leftovers,
    queue_story,
)
from tests.reliability.facts import (
    all_terminal,
    assert_books_balance,
    assert_jobs_charged_once,
    most_at_once,
    processing_intervals,
    rows,
    story_writes,
)

JOBS = 15
GENERATION_SECONDS = "1.0"


def statuses(database_url: str, job_ids: list[str]) -> dict[str, str]:
    found = rows(
        database_url,
        "select id::text as id, status from public.story_jobs where id = any(%s)",
        (job_ids,),
    )
    return {row["id"]: row["status"] for row in found}


def some_running_and_some_waiting(database_url: str, job_ids: list[str]) -> bool:
    now = list(statuses(database_url, job_ids).values())
    return now.count("processing") >= 2 and now.count("pending") >= 3


def first_start_after(database_url: str, job_ids: list[str], moment: float) -> float | None:
    """Seconds from `moment` to the first of these jobs starting (None if none did)."""
    found = rows(
        database_url,
        "select min(at) as at from reliability.job_events"
        " where job_id = any(%s) and new_status = 'processing' and at > %s",
        (job_ids, datetime.fromtimestamp(moment, UTC)),
    )
    at = found[0]["at"]
    if at is None:
        return None
    seconds: float = (at - datetime.fromtimestamp(moment, UTC)).total_seconds()
    return round(seconds, 3)


def assert_cap_held(figures: dict[str, object]) -> None:
    at_once = figures["most_generations_at_once"]
    assert isinstance(at_once, int)
    assert at_once <= MAX_ACTIVE_JOBS, f"{at_once} generations at once"


def lose_redis_mid_run(
    stack: Stack,
    api: httpx.Client,
    make_user: MakeUser,
    workers: Workers,
    lose: Callable[[], float],
) -> dict[str, object]:
    """Queue JOBS stories, run two workers, call `lose()` (it returns when Redis is back) once
    some run and some wait; check every job completed once. The scenario's figures."""
    drain_leftovers(stack, workers)
    user = make_user(JOBS)
    job_ids = [queue_story(api, user, f"tide {n}") for n in range(JOBS)]
    workers.start(2, GENERATION_DELAY_SECONDS=GENERATION_SECONDS)
    wait_until(lambda: some_running_and_some_waiting(stack.database_url, job_ids), timeout=30)
    waiting = [
        job for job, status in statuses(stack.database_url, job_ids).items() if status == "pending"
    ]

    # When Redis loses every key
    back_at = lose()

    # Then every job completes: those that were waiting were dispatched again from Postgres
    wait_until(lambda: all_terminal(stack.database_url, job_ids), timeout=90, interval=0.2)
    final = assert_jobs_charged_once(stack.database_url, job_ids)
    assert {row["status"] for row in final} == {"completed"}
    # And no story was written twice
    assert set(story_writes(stack.database_url, job_ids).values()) == {1}
    assert_books_balance(stack.database_url)
    # And Redis keeps nothing of the finished jobs
    residue = assert_no_residue(stack)
    # (The cap is checked by the callers, after they record what was observed.)
    at_once = most_at_once(processing_intervals(stack.database_url, job_ids))
    return {
        "jobs": JOBS,
        "jobs_waiting_when_lost": len(waiting),
        "jobs_lost": 0,
        "double_charges": 0,
        "stories_written_twice": 0,
        "most_generations_at_once": at_once,
        "first_redispatch_s": first_start_after(stack.database_url, waiting, back_at),
        "retried_jobs": sum(row["attempts"] > 1 for row in final),
        "redis_residue": residue,
    }


def test_a_flushall_while_jobs_wait_and_run_loses_none(
    stack: Stack, api: httpx.Client, make_user: MakeUser, workers: Workers
) -> None:
    # Given jobs waiting and running; When FLUSHALL; Then all complete once (see above)
    def flush() -> float:
        stack.redis.client().flushall()
        return time.time()

    figures = lose_redis_mid_run(stack, api, make_user, workers, flush)
    results.record(
        "redis_flushall", injected="FLUSHALL with jobs waiting and running", runs=1, **figures
    )
    # And the cap held throughout: never more than five attempts processing in Postgres
    assert_cap_held(figures)


def test_a_redis_restart_while_jobs_wait_and_run_loses_none(
    stack: Stack, api: httpx.Client, make_user: MakeUser, workers: Workers
) -> None:
    # Given jobs waiting and running; When redis-server is killed, and started empty once a
    # request has seen it down; Then all complete once (see above)
    def restart() -> float:
        stack.redis.kill()
        health = httpx.get(f"{stack.api.url}/api/health", timeout=10)
        assert (health.status_code, health.json()["redis"]) == (503, "down")
        stack.redis.start()
        return time.time()

    figures = lose_redis_mid_run(stack, api, make_user, workers, restart)
    results.record(
        "redis_restart",
        injected="redis-server SIGKILLed and started empty with jobs waiting and running",
        runs=1,
        **figures,
    )
    assert_cap_held(figures)


@pytest.fixture(autouse=True)
def _redis_is_up_afterwards(stack: Stack) -> Iterator[None]:
    """A failed restart test must not leave the next test without Redis."""
    yield
    if stack.redis.process is None:
        stack.redis.start()
