"""The sweep's lease audit (step 3 of sweep.lua): leases follow Postgres's running attempts, in both
directions, without resurrecting what was acked in the meantime."""

from __future__ import annotations

import uuid

import pytest
from upstash_redis.asyncio import Redis

from storyq.queue import Claim, Dispatcher, RunningJob
from tests.support.ids import job, user


async def audit(
    queue: Dispatcher, running: list[RunningJob], *, judge_after_seconds: float
) -> tuple[int, list[Claim]]:
    """The sweep with only the audit to do: leases restored, and the leases taken out."""
    report = await queue.sweep(
        pending=[],
        running=running,
        lease_seconds=LONG,
        judge_after_seconds=judge_after_seconds,
        promote_limit=0,
        orphan_scan=0,
    )
    return report.restored, report.unbacked


LONG = 660.0  # Settings.dispatch_lease_seconds at the defaults


@pytest.fixture
async def queue(upstash: Redis) -> Dispatcher:
    """A queue of its own (its own keys): the audit judges every lease it finds."""
    dispatcher = Dispatcher(upstash, max_active=5, prefix=f"storyq-audit-{uuid.uuid4().hex[:8]}")
    await dispatcher.rebuild([])
    return dispatcher


async def test_a_lease_acked_after_the_snapshot_is_not_brought_back(queue: Dispatcher) -> None:
    # Given a job claimed, run, and acked after Postgres's snapshot still listed it running
    await queue.enqueue(job("acked"), user_id=user("u"), fence=1)
    [claim] = await queue.claim(1, lease_seconds=LONG)
    snapshot = [RunningJob(job_id=claim.job_id, user_id=user("u"), fence=claim.fence)]
    await queue.ack(claim.job_id, claim.fence, generation_seconds=1.0)

    # When the audit runs on that snapshot
    restored, unbacked = await audit(queue, snapshot, judge_after_seconds=60)

    # Then no lease comes back for the finished job (it would hold a slot for nothing)
    assert (restored, unbacked) == (0, [])
    assert await queue.active_job_ids() == set()


async def test_a_running_job_left_waiting_by_a_raced_rebuild_gets_its_lease(
    queue: Dispatcher,
) -> None:
    # Given a job Postgres has running (fence 1) that Redis shows waiting, as a rebuild racing
    # its start leaves it
    await queue.enqueue(job("raced"), user_id=user("u"), fence=1)
    running = [RunningJob(job_id=job("raced"), user_id=user("u"), fence=1)]

    # When the audit runs
    restored, unbacked = await audit(queue, running, judge_after_seconds=60)

    # Then it holds a lease and waits no more: it counts against the cap, and is not claimed
    assert (restored, unbacked) == (1, [])
    assert await queue.active_job_ids() == {job("raced")}
    assert await queue.claim(5, lease_seconds=LONG) == []


async def test_a_fresh_lease_is_not_judged_and_an_old_one_is(queue: Dispatcher) -> None:
    # Given a job claimed just now whose start has not reached Postgres yet
    await queue.enqueue(job("fresh"), user_id=user("u"), fence=1)
    [claim] = await queue.claim(1, lease_seconds=LONG)

    # Then an audit leaves it alone while it is younger than the judging age ...
    assert await audit(queue, [], judge_after_seconds=60) == (0, [])
    assert await queue.active_job_ids() == {claim.job_id}

    # ... and hands it over, once, when it is older (here: judged after 0 s)
    _, unbacked = await audit(queue, [], judge_after_seconds=0)
    assert [(c.job_id, c.fence) for c in unbacked] == [(claim.job_id, claim.fence)]
    assert await queue.active_job_ids() == set()
    assert await audit(queue, [], judge_after_seconds=0) == (0, [])
