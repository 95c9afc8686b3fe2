"""Plan tiers end to end with real worker processes (`python -m storyq_worker.runner`), the
scratch Postgres and a private Redis: each user's running cap (their plan's
max_active_per_user) holds while others wait, across several workers and through a Redis
flush, and the slots stay busy."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import psycopg
import pytest

from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.users import ensure_user
from tests.support.sql import Db
from tests.worker.conftest import Spawn
from tests.worker.helpers import all_terminal, enqueue

pytestmark = pytest.mark.reliability

# The seeded plans: free runs 1 at once, plus 2, pro 3 (supabase/migrations/*_plans_and_tiers).
CAPS = {"free": 1, "plus": 2, "pro": 3}


def jobs_by_user(database_url: str) -> dict[str, Counter[uuid.UUID]]:
    """Pending and processing jobs per user, in one snapshot."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select status, user_id, count(*) from public.story_jobs"
            " where status in ('pending', 'processing') group by 1, 2"
        ).fetchall()
    found: dict[str, Counter[uuid.UUID]] = {"pending": Counter(), "processing": Counter()}
    for status, user_id, n in rows:
        found[status][user_id] = int(n)
    return found


async def test_each_users_cap_holds_across_workers_and_through_a_flush(
    worker_stack: LocalStack, store: Store, dispatcher: Dispatcher, spawn: Spawn
) -> None:
    # Given a free, a plus and a pro user (caps 1, 2, 3), with 4, 10 and 14 jobs queued
    db = worker_stack.database_url
    tiers: dict[uuid.UUID, str] = {}
    jobs: list[uuid.UUID] = []
    for tier, count in (("free", 4), ("plus", 10), ("pro", 14)):
        user_id = uuid.uuid4()
        ensure_user(db, user_id)
        Db(db).set_tier(user_id, tier)
        await store.credits.grant(user_id, 20)
        tiers[user_id] = tier
        jobs += [await enqueue(store, dispatcher, user_id, target_words=60) for _ in range(count)]

    # When three worker processes of three slots each (five at once across them: the global
    # cap) write them, 1.5 s a story, and Redis is flushed midway
    for _ in range(3):
        spawn("--concurrency", "3", delay=1.5)
    most: Counter[uuid.UUID] = Counter()
    most_at_once = checked = 0
    flushed = False
    began = time.monotonic()
    while not all_terminal(db, jobs)():
        now = jobs_by_user(db)
        running = now["processing"]
        most_at_once = max(most_at_once, sum(running.values()))
        # The caps bind while every user has jobs waiting (each could use a slot); once one
        # runs out, the others may take the slots it leaves (work-conserving).
        if all(now["pending"][user_id] >= 2 for user_id in tiers):
            checked += 1
            for user_id, n in running.items():
                most[user_id] = max(most[user_id], n)
        if not flushed and time.monotonic() - began > 2.5:
            worker_stack.redis.client().flushall()
            flushed = True
        assert time.monotonic() - began < 90, "the jobs did not finish"
        await asyncio.sleep(0.05)

    # Then no user ran more than their plan allows while the others waited, every job
    # completed, and the slots were filled (caps 1 + 2 + 3 leave room for the global five)
    assert checked >= 10
    for user_id, tier in tiers.items():
        assert most[user_id] <= CAPS[tier], f"{tier} ran {most[user_id]} at once"
    assert most_at_once == 5
    with psycopg.connect(db, autocommit=True) as conn:
        statuses = conn.execute(
            "select status, count(*) from public.story_jobs where id = any(%s) group by 1",
            (jobs,),
        ).fetchall()
    assert statuses == [("completed", len(jobs))]
