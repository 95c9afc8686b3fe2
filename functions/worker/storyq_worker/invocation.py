"""One worker invocation: sweep, then drain while there is time for another whole generation.

Shared by the Lambda handler (both triggers) and the tests; the local runner uses the same
sweep and drain in a loop without end (runner.py).
"""

from __future__ import annotations

from collections.abc import Callable

from storyq.config import Settings
from storyq.generation import Generator
from storyq.kick import WorkerKicker
from storyq_worker.context import open_context
from storyq_worker.drain import DrainOptions, drain
from storyq_worker.summary import Summary
from storyq_worker.sweep import sweep_and_count


def time_left_for_another(
    settings: Settings, remaining_seconds: Callable[[], float] | None
) -> Callable[[], bool]:
    """Claim only while a whole generation (timeout + margin) still fits in the invocation;
    without a clock (no Lambda context) always, and the drain stops when idle."""
    if remaining_seconds is None:
        return lambda: True
    needed = settings.generation_timeout_seconds + settings.worker_time_margin_seconds
    return lambda: remaining_seconds() > needed


async def run_invocation(
    settings: Settings,
    *,
    remaining_seconds: Callable[[], float] | None = None,
    generator: Generator | None = None,
    concurrency: int | None = None,
    kicker: WorkerKicker | None = None,
) -> Summary:
    async with open_context(settings, generator=generator, kicker=kicker) as ctx:
        summary, waiting = await sweep_and_count(ctx)
        options = DrainOptions(
            concurrency=concurrency or settings.max_active_jobs,
            keep_claiming=time_left_for_another(settings, remaining_seconds),
            nothing_waiting=waiting == 0,
        )
        return summary.merge(await drain(ctx, options))
