"""Retries: transient failures are retried with backoff up to MAX_ATTEMPTS, permanent ones
fail at once, and a job that finally fails is refunded exactly once."""

from __future__ import annotations

import uuid

from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from tests.worker.generators import FailingFirst, Refusing
from tests.worker.helpers import all_terminal, drive, enqueue, job_row, ledger


async def test_a_job_failing_twice_completes_on_its_third_attempt(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a job whose generator fails twice with a transient error
    job_id = await enqueue(store, dispatcher, user)
    generator = FailingFirst(2)

    # When workers run until the job is finished
    summary = await drive(
        worker_settings, all_terminal(worker_stack.database_url, [job_id]), generator=generator
    )

    # Then it completed on attempt 3, with one debit and no refund
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"], row["refunded"]) == ("completed", 3, False)
    assert row["error_code"] is None
    assert row["content"]
    assert row["words"] > 0
    assert row["result"]["generator"] == "template"
    assert generator.calls[str(job_id)] == 3
    assert (summary.retried, summary.completed) == (2, 1)
    assert ledger(worker_stack.database_url, job_id) == {"debit": 1}
    assert await store.credits.balance(user) == 99


async def test_a_job_failing_three_times_fails_and_is_refunded_once(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a job whose generator always fails with a transient error
    job_id = await enqueue(store, dispatcher, user)
    generator = FailingFirst(99)

    # When workers run until the job is finished
    summary = await drive(
        worker_settings, all_terminal(worker_stack.database_url, [job_id]), generator=generator
    )

    # Then it failed after 3 attempts, its story is marked failed and the credit came back once
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"], row["refunded"]) == ("failed", 3, True)
    assert (row["error_code"], row["story_status"], row["content"]) == (
        "upstream_error",
        "failed",
        None,
    )
    assert generator.calls[str(job_id)] == 3
    assert (summary.retried, summary.failed) == (2, 1)
    assert ledger(worker_stack.database_url, job_id) == {"debit": 1, "refund": 1}
    assert await store.credits.balance(user) == 100
    # And nothing of it is left in Redis
    assert await dispatcher.active_job_ids() == set()
    assert (await dispatcher.counts()).waiting == 0


async def test_a_permanent_error_fails_the_job_at_once_and_refunds_it(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    job_id = await enqueue(store, dispatcher, user)
    generator = Refusing()

    await drive(
        worker_settings, all_terminal(worker_stack.database_url, [job_id]), generator=generator
    )

    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"], row["refunded"]) == ("failed", 1, True)
    assert row["error_code"] == "content_refused"
    assert generator.calls == 1
    assert ledger(worker_stack.database_url, job_id) == {"debit": 1, "refund": 1}


async def test_a_retry_waits_for_its_backoff(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a long retry backoff
    slow_retries = worker_settings.model_copy(
        update={"retry_base_seconds": 30.0, "retry_max_seconds": 60.0}
    )
    job_id = await enqueue(store, dispatcher, user)

    # When its first attempt fails
    await drive(
        slow_retries,
        lambda: job_row(worker_stack.database_url, job_id)["attempts"] == 1,
        generator=FailingFirst(1),
    )

    # Then it waits, pending, for about 30 s (±20 % jitter) in Postgres and in Redis
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["error_code"]) == ("pending", "upstream_error")
    wait = (row["next_attempt_at"] - row["updated_at"]).total_seconds()
    assert 23 <= wait <= 37
    counts = await dispatcher.counts()
    assert (counts.delayed, counts.waiting, counts.active) == (1, 0, 0)
