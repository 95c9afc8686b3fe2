"""Single steps of `Dispatcher.sweep`, for tests of one thing: each is the whole sweep script
with the other steps switched off (nothing pending or running in Postgres)."""

from __future__ import annotations

from storyq.queue import Claim, Dispatcher

# A judging age no lease reaches: only leases that expired are taken out.
NEVER = 1e9


async def reap_expired(queue: Dispatcher) -> list[Claim]:
    """The audit with nothing running in Postgres: the expired leases, taken out (each once)."""
    report = await queue.sweep(
        pending=[],
        running=[],
        lease_seconds=60,
        judge_after_seconds=NEVER,
        promote_limit=0,
        orphan_scan=0,
    )
    return report.unbacked


async def promote_due(queue: Dispatcher, limit: int = 100) -> int:
    """Due retries promoted to the waiting set; how many."""
    report = await queue.sweep(
        pending=[],
        running=[],
        lease_seconds=60,
        judge_after_seconds=None,
        promote_limit=limit,
        orphan_scan=0,
    )
    return report.promoted


async def sweep_orphans(queue: Dispatcher, count: int) -> int:
    """One step of the walk for orphaned bookkeeping; how many jobs were forgotten."""
    report = await queue.sweep(
        pending=[],
        running=[],
        lease_seconds=60,
        judge_after_seconds=None,
        promote_limit=0,
        orphan_scan=count,
    )
    return report.orphans
