"""The worker as a real process (`python -m storyq_worker.runner`, what `storyq worker` runs):
killed mid-generation its job still completes, and SIGTERM stops it cleanly losing nothing."""

from __future__ import annotations

import signal
import uuid

import pytest

from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from tests.support.polling import eventually
from tests.worker.conftest import Spawn
from tests.worker.helpers import all_terminal, drive, enqueue, job_row, ledger

pytestmark = pytest.mark.reliability


def processing_with_progress(database_url: str, job_id: uuid.UUID) -> bool:
    row = job_row(database_url, job_id)
    return row["status"] == "processing" and (row["progress_words"] or 0) > 0


async def test_a_worker_killed_mid_generation_loses_nothing(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    spawn: Spawn,
) -> None:
    # Given a worker process generating a job (a 5-second generation, 1.5 s leases)
    job_id = await enqueue(store, dispatcher, user)
    worker = spawn("--concurrency", "1", delay=5.0)
    await eventually(lambda: processing_with_progress(worker_stack.database_url, job_id))

    # When it is killed with SIGKILL (no chance to clean up)
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)
    assert job_row(worker_stack.database_url, job_id)["status"] == "processing"

    # Then a later worker run finds the attempt silent in Postgres (its Redis lease, long, has
    # not lapsed: Postgres decides liveness), requeues it and completes the job on attempt 2
    summary = await drive(worker_settings, all_terminal(worker_stack.database_url, [job_id]))
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"], row["error_code"]) == ("completed", 2, None)
    assert row["content"]
    assert row["words"] > 0
    assert summary.requeued == 1
    assert summary.reaped == 0
    # With one story and one debit, never refunded
    assert ledger(worker_stack.database_url, job_id) == {"debit": 1}
    assert await store.credits.balance(user) == 99


async def test_sigterm_lets_the_running_generation_finish_and_exits_cleanly(
    worker_stack: LocalStack,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    spawn: Spawn,
) -> None:
    # Given a worker in the middle of a 2-second generation, with a 30-second grace period
    job_id = await enqueue(store, dispatcher, user)
    worker = spawn("--grace", "30", delay=2.0)
    await eventually(lambda: processing_with_progress(worker_stack.database_url, job_id))

    # When it receives SIGTERM
    worker.process.send_signal(signal.SIGTERM)

    # Then it finishes the job, exits 0, and holds no lease any more
    assert worker.process.wait(15) == 0, worker.output()
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    assert await dispatcher.active_job_ids() == set()
    assert "stopped" in worker.output()


async def test_sigterm_past_the_grace_period_hands_the_job_back(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    spawn: Spawn,
) -> None:
    # Given a worker in a long generation and no grace period
    job_id = await enqueue(store, dispatcher, user)
    worker = spawn("--grace", "0", delay=30.0)
    await eventually(lambda: processing_with_progress(worker_stack.database_url, job_id))

    # When it receives SIGTERM
    worker.process.send_signal(signal.SIGTERM)

    # Then it exits 0 at once, the job is pending again for another worker, not lost, and the
    # interrupted attempt was given back unused (a shutdown says nothing about the job)
    assert worker.process.wait(15) == 0, worker.output()
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"], row["error_code"]) == ("pending", 0, None)
    counts = await dispatcher.counts()
    assert counts.active == 0
    assert counts.waiting + counts.delayed == 1

    # And the next worker completes it
    await drive(worker_settings, all_terminal(worker_stack.database_url, [job_id]))
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    assert ledger(worker_stack.database_url, job_id) == {"debit": 1}
