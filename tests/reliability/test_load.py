"""Load: 500 POST /api/generate, 100 at a time, from 50 users who cannot pay for all of them,
against the API served by uvicorn while workers drain the queue. No 5xx, no negative balance,
one debit per job, and never more than five generations at once (read from the job rows)."""

from __future__ import annotations

import asyncio
import time

import httpx

from storyq_local.stack.servers import wait_until
from tests.reliability import results
from tests.reliability.conftest import (
    MAX_ACTIVE_JOBS,
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
    most_at_once,
    processing_intervals,
    row_intervals,
    user_money,
)
from tests.support.users import ApiUser

POSTS = 500
CONCURRENCY = 100
USERS = 50
CREDITS_EACH = 4  # each user asks for 10 stories and can pay for 4


async def post_all(url: str, users: list[ApiUser]) -> list[tuple[int, float, str | None]]:
    """Every POST, at most CONCURRENCY in flight: (status, seconds, job id of a 202)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def post(n: int) -> tuple[int, float, str | None]:
            user = users[n % len(users)]
            async with gate:
                started = time.perf_counter()
                response = await client.post(
                    "/api/generate",
                    json={"prompt": f"load story {n}", "targetWords": 150},
                    headers=user.headers,
                )
                took = time.perf_counter() - started
            job_id = response.json()["jobId"] if response.status_code == 202 else None
            return response.status_code, took, job_id

        return await asyncio.gather(*(post(n) for n in range(POSTS)))


def test_500_posts_from_50_users_at_100_concurrent_keep_every_promise(
    stack: Stack, make_user: MakeUser, workers: Workers
) -> None:
    # Given 50 users with 4 credits each, and three workers draining as requests arrive
    drain_leftovers(stack, workers)
    users = [make_user(CREDITS_EACH) for _ in range(USERS)]
    workers.start(3, GENERATION_DELAY_SECONDS="0.2")

    # When they send 500 POST /api/generate, 100 at a time
    started = time.perf_counter()
    answers = asyncio.run(post_all(stack.api.url, users))
    posting = time.perf_counter() - started

    # Then no answer is a 5xx: each is 202 (paid) or 402 (out of credits)
    codes = [code for code, _, _ in answers]
    assert not [code for code in codes if code >= 500]
    assert set(codes) <= {202, 402}
    job_ids = [job_id for _, _, job_id in answers if job_id is not None]
    assert len(job_ids) == USERS * CREDITS_EACH

    # And every user paid for exactly the jobs they got, and none went below zero
    for user in users:
        money = user_money(stack.database_url, user.id)
        assert money["debits"] == money["jobs"] == CREDITS_EACH, money
        assert money["balance"] == 0, money

    # And the workers complete them all, never more than five at once
    wait_until(lambda: all_terminal(stack.database_url, job_ids), timeout=120, interval=0.25)
    drained = time.perf_counter() - started
    final = assert_jobs_charged_once(stack.database_url, job_ids)
    assert {row["status"] for row in final} == {"completed"}
    from_rows = most_at_once(row_intervals(stack.database_url, job_ids))
    from_audit = most_at_once(processing_intervals(stack.database_url, job_ids))
    assert from_rows <= MAX_ACTIVE_JOBS
    assert from_audit <= MAX_ACTIVE_JOBS
    assert_books_balance(stack.database_url)
    # And Redis keeps nothing of the finished jobs
    residue = assert_no_residue(stack)

    latencies = [took for _, took, _ in answers]
    results.record(
        "load",
        injected=f"{POSTS} POST /api/generate, {CONCURRENCY} concurrent, {USERS} users with "
        f"{CREDITS_EACH} credits each, against uvicorn (one process) while 3 workers drain",
        runs=POSTS,
        answers={str(code): codes.count(code) for code in sorted(set(codes))},
        server_errors=0,
        jobs=len(job_ids),
        debits=len(job_ids),
        negative_balances=0,
        jobs_lost=0,
        double_charges=0,
        most_generations_at_once=max(from_rows, from_audit),
        post_p50_s=results.percentile(latencies, 0.5),
        post_p95_s=results.percentile(latencies, 0.95),
        posts_per_second=round(POSTS / posting, 1),
        all_completed_after_s=round(drained, 1),
        redis_residue=residue,
    )
