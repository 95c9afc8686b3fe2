"""Plan tiers end to end with real worker processes (`python -m storyq_worker.runner`), the
scratch Postgres and a private Redis: each user's running cap (their plan's
max_active_per_user) holds across several workers and through a Redis flush, while the slots
stay busy whenever some user may take one."""

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


def processing_by_user(database_url: str) -> Counter[uuid.UUID]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select user_id, count(*) from public.story_jobs"
            " where status = 'processing' group by user_id"
        ).fetchall()
    return Counter({user_id: int(n) for user_id, n in rows})


async def test_each_users_cap_holds_across_workers_and_through_a_flush(
    worker_stack: LocalStack, store: Store, dispatcher: Dispatcher, spawn: Spawn
) -> None:
    # Given a free, a plus and a pro user (caps 1, 2, 3), each with four jobs queued
    db = worker_stack.database_url
    tiers: dict[uuid.UUID, str] = {}
    jobs: list[uuid.UUID] = []
    for tier in CAPS:
        user_id = uuid.uuid4()
        ensure_user(db, user_id)
        Db(db).set_tier(user_id, tier)
        await store.credits.grant(user_id, 10)
        tiers[user_id] = tier
        jobs += [await enqueue(store, dispatcher, user_id, target_words=60) for _ in range(4)]

    # When three worker processes of three slots each (five at once across them: the global
    # cap) write them, 1.5 s a story, and Redis is flushed midway
    for _ in range(3):
        spawn("--concurrency", "3", delay=1.5)
    most: Counter[uuid.UUID] = Counter()
    most_at_once = 0
    flushed = False
    began = time.monotonic()
    while not all_terminal(db, jobs)():
        running = processing_by_user(db)
        for user_id, n in running.items():
            most[user_id] = max(most[user_id], n)
        most_at_once = max(most_at_once, sum(running.values()))
        if not flushed and time.monotonic() - began > 2.5:
            worker_stack.redis.client().flushall()
            flushed = True
        assert time.monotonic() - began < 60, "the jobs did not finish"
        await asyncio.sleep(0.05)

    # Then no user ever ran more than their plan allows, every job completed, and the slots were
    # filled (caps 1 + 2 + 3 leave room for the global five)
    for user_id, tier in tiers.items():
        assert most[user_id] <= CAPS[tier], f"{tier} ran {most[user_id]} at once"
    assert most_at_once == 5
    with psycopg.connect(db, autocommit=True) as conn:
        statuses = conn.execute(
            "select status, count(*) from public.story_jobs where id = any(%s) group by 1",
            (jobs,),
        ).fetchall()
    assert statuses == [("completed", len(jobs))]
