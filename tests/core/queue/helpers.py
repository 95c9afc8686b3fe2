"""Helpers of the fair-share, tier and cap tests: jobs named `<user>-<n>` queued through the
dispatcher, and the names of what a claim leased."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from storyq.queue import Claim, Dispatcher
from tests.support.ids import job, user


async def queue_jobs(
    queue: Dispatcher,
    who: str,
    count: int,
    *,
    fence: itertools.count[int],
    weight: float = 1.0,
    cap: int | None = None,
    priority: int = 0,
    start: int = 0,
) -> list[str]:
    """Queue `count` jobs of user `who`, named `<who>-<n>` from n = `start`, each under the next
    fence, with the plan figures given; their names."""
    names = [f"{who}-{n}" for n in range(start, start + count)]
    for name in names:
        await queue.enqueue(
            job(name),
            user_id=user(who),
            fence=next(fence),
            weight=weight,
            max_active_per_user=cap,
            priority=priority,
        )
    return names


def names_of(claims: list[Claim], users: Iterable[str], *, most: int = 60) -> list[str]:
    """The names (`<user>-<n>`, n below `most`) of the jobs claimed, in claim order."""
    by_id = {job(f"{who}-{n}"): f"{who}-{n}" for who in users for n in range(most)}
    return [by_id[claim.job_id] for claim in claims]


async def finish(queue: Dispatcher, claims: list[Claim], name: str) -> None:
    """Ack the claim of the job named `name`, whose lease must still be held."""
    [claim] = [c for c in claims if c.job_id == job(name)]
    assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)
