"""Recovery: late finishers change nothing, a flushed Redis loses nothing (however long the
backlog), a job Redis lost is found, a job whose lease vanished is requeued, an invocation
without time for a whole generation claims none, and an idle one costs only its sweep."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from storyq.config import Settings
from storyq.generation import TemplateGenerator
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_worker import sweep as sweep_module
from storyq_worker.attempt import run_attempt
from storyq_worker.context import open_context
from storyq_worker.heartbeats import HeartbeatBatcher
from storyq_worker.invocation import run_invocation
from storyq_worker.summary import Outcome
from tests.support.polling import eventually
from tests.worker.generators import Counting, Gated, Staggered
from tests.worker.helpers import all_terminal, drive, enqueue, job_row, ledger, start


async def test_a_late_finisher_with_a_stale_fence_changes_nothing(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given worker A claimed a job with a short lease, started it and hangs in its generation
    # (its first heartbeat is far away: a long GC pause or a network partition)
    job_id = await enqueue(store, dispatcher, user)
    [claim] = await dispatcher.claim(1, lease_seconds=0.3)
    slow_heartbeats = worker_settings.model_copy(update={"lease_seconds": 60.0})
    late = Gated("The late story that must never be saved.")
    async with open_context(slow_heartbeats, generator=late) as ctx:
        far_away = HeartbeatBatcher(ctx.store, every_seconds=30.0, request_timeout_seconds=20.0)
        ctx_a = dataclasses.replace(ctx, heartbeats=far_away)
        attempt_a = asyncio.create_task(run_attempt(ctx_a, claim, abandon=asyncio.Event()))
        await asyncio.wait_for(late.started.wait(), 10)

        # When its lease lapses, a sweep reaps it and worker B runs attempt 2 to the end
        await drive(
            worker_settings,
            lambda: job_row(worker_stack.database_url, job_id)["status"] == "completed",
        )
        winner = job_row(worker_stack.database_url, job_id)

        # And then A finishes
        late.gate.set()
        outcome = await asyncio.wait_for(attempt_a, 10)
        await far_away.close()

    # Then A's result was dropped: the job, its story and the ledger are B's
    assert outcome is Outcome.DROPPED
    after = job_row(worker_stack.database_url, job_id)
    assert (after["status"], after["attempts"]) == ("completed", 2)
    assert after["content"] == winner["content"] != late.content
    assert after["result"] == winner["result"]
    assert after["finished_at"] == winner["finished_at"]
    assert ledger(worker_stack.database_url, job_id) == {"debit": 1}
    assert await dispatcher.active_job_ids() == set()


async def test_after_a_redis_flush_every_pending_job_is_dispatched_again(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given three queued jobs, then Redis loses everything
    jobs = [await enqueue(store, dispatcher, user) for _ in range(3)]
    worker_stack.redis.client().flushall()

    # When a worker invocation runs
    summary = await run_invocation(worker_settings)

    # Then its sweep rebuilt the queue from Postgres and all three were generated
    assert summary.rebuilt == 3
    assert summary.completed == 3
    for job_id in jobs:
        assert job_row(worker_stack.database_url, job_id)["status"] == "completed"


def generations_running(generator: Counting, expected: int) -> Callable[[], bool]:
    return lambda: generator.in_flight == expected


async def test_a_flush_while_jobs_run_never_lets_more_than_the_cap_run_at_once(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given two workers running five generations of different lengths between them (3 + 2)
    generator = Counting(Staggered())  # type: ignore[arg-type]  # any Generator will do
    settings = worker_settings.model_copy(update={"lease_seconds": 5.0})
    jobs: list[uuid.UUID] = []
    workers = []
    for share in (3, 2):
        jobs += [await enqueue(store, dispatcher, user) for _ in range(share)]
        workers.append(asyncio.create_task(run_invocation(settings, generator=generator)))
        await eventually(generations_running(generator, len(jobs)))

    # When Redis loses every lease mid-generation, and new jobs arrive right after
    worker_stack.redis.client().flushall()
    jobs += [await enqueue(store, dispatcher, user) for _ in range(7)]
    await asyncio.gather(*workers)
    await drive(settings, all_terminal(worker_stack.database_url, jobs), generator=generator)

    # Then the running jobs kept their slots: never more than five generations at once,
    # and every job completed on its first attempt
    assert generator.most_in_flight == settings.max_active_jobs
    for job_id in jobs:
        row = job_row(worker_stack.database_url, job_id)
        assert (row["status"], row["attempts"]) == ("completed", 1)


async def test_a_processing_job_whose_lease_vanished_is_requeued_once_it_stalls(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a job started by a worker that then died, and a Redis that lost its lease
    job_id = await enqueue(store, dispatcher, user)
    [claim] = await dispatcher.claim(1, lease_seconds=60)
    await start(store, worker_settings, job_id, claim.fence)
    worker_stack.redis.client().flushall()

    # When workers sweep after its heartbeat is older than a lease (LEASE_SECONDS)
    summary = await drive(worker_settings, all_terminal(worker_stack.database_url, [job_id]))

    # Then it was requeued as a lost attempt and completed by attempt 2
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 2)
    assert summary.requeued == 1
    assert ledger(worker_stack.database_url, job_id) == {"debit": 1}


async def test_an_invocation_without_time_for_a_whole_generation_claims_nothing(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a queued job and a Lambda with less time left than a generation may take
    job_id = await enqueue(store, dispatcher, user)
    needed = worker_settings.generation_timeout_seconds + worker_settings.worker_time_margin_seconds

    # When it runs
    summary = await run_invocation(worker_settings, remaining_seconds=lambda: needed - 1)

    # Then it swept but left the job for an invocation with time enough
    assert summary.claimed == 0
    assert job_row(worker_stack.database_url, job_id)["status"] == "pending"
    assert (await dispatcher.counts()).waiting == 1

    # And one with time enough takes it
    summary = await run_invocation(worker_settings, remaining_seconds=lambda: needed + 60)
    assert (summary.claimed, summary.completed) == (1, 1)


async def test_progress_words_grow_in_the_job_row_while_it_generates(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a 3-second generation of a 600-word story (heartbeats every half second)
    job_id = await enqueue(store, dispatcher, user, target_words=600)
    worker = asyncio.create_task(
        run_invocation(worker_settings, generator=TemplateGenerator(delay_seconds=3.0))
    )

    # When the worker is half way, GET /api/job's progress is in the row and still growing
    def progress() -> int:
        row = job_row(worker_stack.database_url, job_id)
        return int(row["progress_words"] or 0) if row["status"] == "processing" else 0

    first = await eventually(progress, timeout=10)
    assert 0 < first < 600
    await eventually(lambda: progress() > first, timeout=10)

    # Then the finished job records its words and the lease is gone with the generation
    summary = await worker
    assert summary.completed == 1
    row = job_row(worker_stack.database_url, job_id)
    assert row["progress_words"] == row["words"] == row["result"]["words"]
    assert 540 <= row["words"] <= 660
    assert row["result"]["quality"] == "high"
    assert await dispatcher.active_job_ids() == set()


async def test_after_a_flush_a_backlog_of_many_pages_is_put_back_whole_in_queue_order(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given seven queued jobs, a sweep that reads two per page and no recent window (so only
    # the walk over every pending job can find them), then Redis loses everything
    monkeypatch.setattr(sweep_module, "REBUILD_PAGE", 2)
    monkeypatch.setattr(sweep_module, "SNAPSHOT_PAGE", 2)
    monkeypatch.setattr(sweep_module, "RECENT_SECONDS", 0.0)
    jobs = [await enqueue(store, dispatcher, user) for _ in range(7)]
    worker_stack.redis.client().flushall()

    # When one sweep runs
    async with open_context(worker_settings) as ctx:
        summary, waiting = await sweep_module.sweep_and_count(ctx)

    # Then every job waits again, in the order it was queued, and the sweep says so
    assert (summary.rebuilt, waiting) == (7, 7)
    positions = [await dispatcher.position(job_id) for job_id in jobs]
    assert [p.position if p else None for p in positions] == list(range(7))


async def test_a_waiting_job_redis_lost_long_ago_is_found_by_the_walk(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given five queued jobs, one of which Redis lost (its ready mark kept: no flush), and
    # sweeps that look at two pending jobs per page and at none as recent
    monkeypatch.setattr(sweep_module, "SNAPSHOT_PAGE", 2)
    monkeypatch.setattr(sweep_module, "RECENT_SECONDS", 0.0)
    jobs = [await enqueue(store, dispatcher, user) for _ in range(5)]
    async with open_context(worker_settings) as ctx:
        await sweep_module.sweep(ctx)
        lost = jobs[3]
        assert await dispatcher.remove(lost)

        # When sweeps run, each reading one page of the walk
        sweeps = 0
        while await dispatcher.position(lost) is None and sweeps < 4:
            await sweep_module.sweep(ctx)
            sweeps += 1

    # Then the job waits again within ceil(5 / 2) + 1 sweeps (the walk wraps once at most)
    assert await dispatcher.position(lost) is not None
    assert sweeps <= 4
    assert (await dispatcher.counts()).waiting == 5


async def test_an_idle_scheduled_invocation_sends_redis_only_its_sweep(
    worker_stack: LocalStack, worker_settings: Settings
) -> None:
    # Given nothing queued, running or delayed, and a queue Redis already mirrors
    await run_invocation(worker_settings)
    client = worker_stack.redis.client()
    client.config_resetstat()

    # When the schedule invokes the worker
    summary = await run_invocation(worker_settings)

    # Then it sent one script call and no claim: seven billed commands (Upstash counts the
    # EVALSHA and each command the script runs), the idle hour's whole bill per minute
    stats = client.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }
    assert summary.claimed == 0
    assert calls.get("evalsha") == 1
    assert "zpopmin" not in calls
    assert sum(calls.values()) == 7


async def test_a_flush_with_the_walk_in_the_middle_of_the_backlog_puts_back_every_job_in_order(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given seven queued jobs and sweeps that read two per page and none as recent, whose walk
    # over every pending job has reached the middle of the backlog
    monkeypatch.setattr(sweep_module, "REBUILD_PAGE", 2)
    monkeypatch.setattr(sweep_module, "SNAPSHOT_PAGE", 2)
    monkeypatch.setattr(sweep_module, "RECENT_SECONDS", 0.0)
    jobs = [await enqueue(store, dispatcher, user) for _ in range(7)]
    async with open_context(worker_settings) as ctx:
        await sweep_module.sweep(ctx)
        await sweep_module.sweep(ctx)

        # When Redis loses everything and the next sweep runs
        worker_stack.redis.client().flushall()
        summary, waiting = await sweep_module.sweep_and_count(ctx)

    # Then every job waits again, in the order it was queued (the rebuild walks from the head)
    assert (summary.rebuilt, waiting) == (7, 7)
    positions = [await dispatcher.position(job_id) for job_id in jobs]
    assert [p.position if p else None for p in positions] == list(range(7))


async def test_a_second_flush_during_the_rebuild_starts_it_again_from_the_head(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given seven queued jobs lost in a flush, and a rebuild that reads two per page
    monkeypatch.setattr(sweep_module, "REBUILD_PAGE", 2)
    monkeypatch.setattr(sweep_module, "RECENT_SECONDS", 0.0)
    jobs = [await enqueue(store, dispatcher, user) for _ in range(7)]
    redis_client = worker_stack.redis.client()
    redis_client.flushall()

    # When Redis is flushed again right after the rebuild's first page went in
    pages = 0
    rebuild = Dispatcher.rebuild

    async def flushed_after_the_first_page(self: Dispatcher, *args: Any, **kwargs: Any) -> int:
        nonlocal pages
        pages += 1
        added = await rebuild(self, *args, **kwargs)
        if pages == 1:
            redis_client.flushall()
        return added

    monkeypatch.setattr(Dispatcher, "rebuild", flushed_after_the_first_page)
    async with open_context(worker_settings) as ctx:
        await sweep_module.sweep_and_count(ctx)

    # Then every job waits again, in queue order, and the queue is ready for claims
    positions = [await dispatcher.position(job_id) for job_id in jobs]
    assert [p.position if p else None for p in positions] == list(range(7))
    assert await dispatcher.is_ready()
    assert pages > 4
