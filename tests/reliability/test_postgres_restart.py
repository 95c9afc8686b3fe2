"""PostgreSQL goes down mid-run (the suite's private cluster, stopped the way a crash stops it):
the API answers 503 while it is down and nothing is debited for those answers; it recovers by
itself, the workers resume, and every debit is there once."""

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
    queue_story,
)
from tests.reliability.facts import (
    all_terminal,
    assert_books_balance,
    assert_jobs_charged_once,
    rows,
    user_money,
)

JOBS = 10
REQUESTS_WHILE_DOWN = 4


def health(api: httpx.Client) -> tuple[int, str]:
    response = api.get("/api/health")
    return response.status_code, str(response.json().get("database"))


def running_and_waiting(database_url: str, job_ids: list[str]) -> bool:
    found = rows(
        database_url,
        "select status from public.story_jobs where id = any(%s)",
        (job_ids,),
    )
    now = [row["status"] for row in found]
    return "processing" in now and now.count("pending") >= 2


@pytest.fixture
def _postgres_up_afterwards(stack: Stack) -> Iterator[None]:
    yield
    if not stack.postgres.answers():
        stack.postgres.start()


@pytest.mark.usefixtures("_postgres_up_afterwards")
def test_postgres_down_mid_run_is_503_then_recovers_without_losing_a_debit(
    stack: Stack, api: httpx.Client, make_user: MakeUser, workers: Workers
) -> None:
    # Given jobs running and waiting
    drain_leftovers(stack, workers)
    user = make_user(JOBS + REQUESTS_WHILE_DOWN + 1)
    job_ids = [queue_story(api, user, f"ember {n}") for n in range(JOBS)]
    workers.start(2, GENERATION_DELAY_SECONDS="1.0")
    wait_until(lambda: running_and_waiting(stack.database_url, job_ids), timeout=30)

    # When PostgreSQL stops as in a crash
    stack.postgres.stop("immediate")
    down_at = time.monotonic()

    # Then the API says so: health 503 naming the database, and every request needing it is 503
    assert health(api) == (503, "down")
    answers = [
        api.post("/api/generate", json={"prompt": f"lost {n}"}, headers=user.headers).status_code
        for n in range(REQUESTS_WHILE_DOWN // 2)
    ] + [
        api.get(f"/api/job/{job_id}", headers=user.headers).status_code
        for job_id in job_ids[: REQUESTS_WHILE_DOWN // 2]
    ]
    assert set(answers) == {503}, answers

    # When it comes back
    stack.postgres.start()
    up_at = time.monotonic()

    # Then the API recovers by itself, and queues again
    wait_until(lambda: health(api) == (200, "ok"), timeout=30, interval=0.1)
    api_recovered = time.monotonic() - up_at
    job_ids.append(queue_story(api, user, "after the storm"))
    # And the workers resume: every job completes (or, if an outage ate its attempts, fails
    # and is refunded), none is left behind
    wait_until(lambda: all_terminal(stack.database_url, job_ids), timeout=90, interval=0.2)
    all_done = time.monotonic() - up_at
    final = assert_jobs_charged_once(stack.database_url, job_ids)
    assert {row["status"] for row in final} <= {"completed", "failed"}
    # And the 503 answers debited nothing: one debit per job, the balance says the same
    money = user_money(stack.database_url, user.id)
    refunds = sum(row["status"] == "failed" for row in final)
    assert money["debits"] == money["jobs"] == JOBS + 1
    assert money["balance"] == money["granted"] - (JOBS + 1) + refunds
    assert_books_balance(stack.database_url)
    # And Redis keeps nothing of the finished jobs
    residue = assert_no_residue(stack)

    results.record(
        "postgres_down",
        injected="private PostgreSQL cluster stopped (immediate mode, as a crash) mid-run, "
        "then started",
        runs=1,
        jobs=len(job_ids),
        outage_s=round(up_at - down_at, 2),
        api_answers_while_down={"503": len(answers)},
        api_recovered_s=round(api_recovered, 2),
        all_jobs_done_after_restart_s=round(all_done, 2),
        completed=sum(row["status"] == "completed" for row in final),
        failed_and_refunded=refunds,
        jobs_lost=0,
        double_charges=0,
        redis_residue=residue,
    )
