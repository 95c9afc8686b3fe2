"""The Lambda entry point with the sample events of events/ (what `sam local invoke` sends)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from storyq.config import get_settings
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_worker import handler
from tests.support.lambda_context import worker_context
from tests.worker.helpers import enqueue, job_row

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.fixture
async def queued_job(store: Store, dispatcher: Dispatcher, user: uuid.UUID) -> uuid.UUID:
    return await enqueue(store, dispatcher, user)


@pytest.mark.parametrize(
    ("event_file", "trigger"), [("worker_schedule.json", "schedule"), ("worker_kick.json", "kick")]
)
async def test_both_triggers_sweep_and_drain(
    worker_stack: LocalStack,
    worker_env: dict[str, str],
    queued_job: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
    event_file: str,
    trigger: str,
) -> None:
    # Given a queued job and the function's environment pointing at the local stack
    job_id = queued_job
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    # When the handler receives the event (in a thread: it runs its own event loop)
    try:
        summary = await asyncio.to_thread(
            handler.lambda_handler, load(event_file), worker_context()
        )
    finally:
        get_settings.cache_clear()

    # Then it reports what it did, and the job is done
    assert summary["trigger"] == trigger
    assert {"reaped", "requeued", "rebuilt", "claimed", "completed", "failed", "retried"} <= set(
        summary
    )
    assert (summary["claimed"], summary["completed"]) == (1, 1)
    assert job_row(worker_stack.database_url, job_id)["status"] == "completed"


def test_the_trigger_is_told_by_the_event_source() -> None:
    assert handler.trigger_of(load("worker_kick.json")) == "kick"
    assert handler.trigger_of(load("worker_schedule.json")) == "schedule"
    assert handler.trigger_of({}) == "schedule"
