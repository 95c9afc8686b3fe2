"""A Lambda invocation out of time to claim hands each slot it frees to a fresh invocation while
jobs wait, instead of leaving the slot idle until the next scheduled sweep."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from storyq.config import Settings
from storyq.generation import TemplateGenerator
from storyq.kick import WorkerKicker
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_worker.handler import trigger_of
from storyq_worker.invocation import run_invocation
from tests.worker.helpers import enqueue, status_of


class SpyKicker(WorkerKicker):
    """Records hand-offs instead of invoking Lambda."""

    def __init__(self) -> None:
        super().__init__("storyq-test-worker", timeout=1)
        self.hand_offs = 0

    async def hand_off(self) -> bool:
        self.hand_offs += 1
        return True


def time_runs_out_after(claims: int) -> tuple[list[int], Callable[[], float]]:
    asked = [0]

    def remaining_seconds() -> float:
        asked[0] += 1
        return 10_000.0 if asked[0] <= claims else 0.0

    return asked, remaining_seconds


async def test_slots_freed_without_time_to_claim_are_handed_off(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given four jobs and an invocation with two slots and time for one claim only
    jobs = [await enqueue(store, dispatcher, user) for _ in range(4)]
    kicker = SpyKicker()
    _, remaining = time_runs_out_after(1)

    # When it runs
    summary = await run_invocation(
        worker_settings,
        remaining_seconds=remaining,
        generator=TemplateGenerator(delay_seconds=0.2),
        concurrency=2,
        kicker=kicker,
    )

    # Then it generated two, and handed each freed slot to a fresh invocation
    assert summary.completed == 2
    assert kicker.hand_offs == 2
    assert sorted(status_of(worker_stack.database_url, job) for job in jobs) == [
        "completed",
        "completed",
        "pending",
        "pending",
    ]


async def test_no_hand_off_when_nothing_waits(
    worker_settings: Settings, store: Store, dispatcher: Dispatcher, user: uuid.UUID
) -> None:
    # Given two jobs, two slots, and time for one claim only
    for _ in range(2):
        await enqueue(store, dispatcher, user)
    kicker = SpyKicker()
    _, remaining = time_runs_out_after(1)

    summary = await run_invocation(
        worker_settings,
        remaining_seconds=remaining,
        generator=TemplateGenerator(delay_seconds=0.1),
        concurrency=2,
        kicker=kicker,
    )

    # Then both finished and nobody was woken for nothing
    assert summary.completed == 2
    assert kicker.hand_offs == 0


def test_a_hand_off_event_is_told_apart() -> None:
    assert trigger_of({"source": "storyq.worker", "reason": "handoff"}) == "handoff"
    assert trigger_of({"source": "storyq.api", "jobId": "x"}) == "kick"
    assert trigger_of({"source": "aws.scheduler"}) == "schedule"
