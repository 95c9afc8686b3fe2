"""The per-user running cap with real worker processes: three `storyq_worker.runner` processes
share one Redis and one Postgres; a free user capped at one job never runs two while a pro
user's jobs wait, not even across a Redis FLUSHALL, and takes the free slots once nobody else
waits (the queue is work-conserving)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.users import ensure_user
from tests.support.sql import Db
from tests.worker.conftest import Spawn
from tests.worker.helpers import all_terminal, enqueue, ledger

pytestmark = pytest.mark.reliability

FREE_JOBS = 12
PRO_JOBS = 24


@pytest.fixture
def free_capped_at_one(worker_stack: LocalStack) -> Iterator[None]:
    """The operator sets the free plan's running cap to 1 (in the dashboard: the plans table)."""
    with psycopg.connect(worker_stack.database_url, autocommit=True) as conn:
        conn.execute("update public.plans set max_active_per_user = 1 where tier = 'free'")
    yield
    with psycopg.connect(worker_stack.database_url, autocommit=True) as conn:
        conn.execute("update public.plans set max_active_per_user = null where tier = 'free'")


def statuses(database_url: str, user_id: uuid.UUID) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select status, count(*) from public.story_jobs where user_id = %s group by status",
            (user_id,),
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


async def new_user(worker_stack: LocalStack, store: Store, tier: str | None) -> uuid.UUID:
    user_id = uuid.uuid4()
    ensure_user(worker_stack.database_url, user_id)
    Db(worker_stack.database_url).set_tier(user_id, tier)
    await store.credits.grant(user_id, 100)
    return user_id


@pytest.mark.usefixtures("free_capped_at_one")
async def test_the_cap_holds_across_worker_processes_and_a_flush(
    worker_stack: LocalStack, store: Store, dispatcher: Dispatcher, spawn: Spawn
) -> None:
    # Given a free user (capped at 1) who queued twelve jobs first, then a pro user twenty-four
    free = await new_user(worker_stack, store, None)
    pro = await new_user(worker_stack, store, "pro")
    jobs = [await enqueue(store, dispatcher, free) for _ in range(FREE_JOBS)]
    jobs += [await enqueue(store, dispatcher, pro) for _ in range(PRO_JOBS)]

    # When three worker processes drain the queue (one-second generations, two slots each),
    # and Redis is flushed while they work
    for _ in range(3):
        spawn("--concurrency", "2", delay=1.0)
    url = worker_stack.database_url
    most_free_while_pro_waits, most_free_after, flushed = 0, 0, False
    started = time.monotonic()
    while not all_terminal(url, jobs)():
        free_now, pro_now = statuses(url, free), statuses(url, pro)
        running = free_now.get("processing", 0)
        # (a pro job claimed but not yet started still shows pending: leave a margin of the
        # slots one claim round can take, so only a waiting backlog counts)
        if pro_now.get("pending", 0) > 5:
            most_free_while_pro_waits = max(most_free_while_pro_waits, running)
        elif pro_now.get("pending", 0) == 0:
            most_free_after = max(most_free_after, running)
        if not flushed and pro_now.get("completed", 0) >= 4:
            worker_stack.redis.client().flushall()
            flushed = True
        assert time.monotonic() - started < 90, "the queue did not drain"
        await asyncio.sleep(0.05)

    # Then the free user never ran more than one job while the pro user's backlog waited
    assert flushed
    assert most_free_while_pro_waits == 1
    # and once nothing else waited, their jobs took the free slots
    assert most_free_after >= 2
    # and every job completed once, each debited once and never refunded
    assert statuses(url, free) == {"completed": FREE_JOBS}
    assert statuses(url, pro) == {"completed": PRO_JOBS}
    assert all(ledger(url, job_id) == {"debit": 1} for job_id in jobs)
