"""A waiting job's position and its estimated wait, by the formula in DESIGN.md:
ceil((position + 1) / max_active) rounds x the rolling mean generation time, in whole minutes;
for a user with a running cap, at least ceil((own_ahead + 1) / cap) rounds (their jobs run at
most `cap` at a time while others wait), one more while the user is at the cap (their running
jobs end first)."""

from __future__ import annotations

from dataclasses import dataclass

# The mean generation time until the first job has finished (4.5 minutes).
DEFAULT_GENERATION_SECONDS = 270.0


@dataclass(frozen=True)
class Position:
    """Where a waiting job stands: `position` is its 0-based rank in the queue (for a held job:
    the rank it takes back when its user's cap lets it go, see `Dispatcher.claim`).

    Honest about fair share: the queue is not first come, first served, so a job queued later
    (by a user with fewer jobs waiting, a higher weight or a higher priority) can be placed
    ahead, and `position` and `estimated_minutes` can grow. `may_be_overtaken` is False only
    when the job is next in line for a free slot. `held`: the job waits for one of its own
    user's running jobs to end (their plan's running cap); `at_user_cap`: the user runs as
    many jobs as their cap allows now; `own_ahead`: that user's held jobs ahead of this one."""

    position: int
    queue_length: int
    active_jobs: int
    estimated_minutes: int
    may_be_overtaken: bool = True
    held: bool = False
    at_user_cap: bool = False
    own_ahead: int = 0


def estimated_minutes(
    position: int,
    *,
    max_active: int,
    mean_seconds: float,
    own_ahead: int = 0,
    user_cap: int | None = None,
    at_user_cap: bool = False,
) -> int:
    """Minutes until the job at 0-based `position` should be done, rounded up, at least 1:
    ceil((position + 1) / max_active) rounds of `mean_seconds`, or, when the user has a
    running cap, ceil((own_ahead + 1) / user_cap) rounds (plus one while the user is at
    the cap) if that is more.

    Integer arithmetic on milliseconds, so 3 rounds x 280 s is 14 minutes, not 15.
    """
    rounds = position // max_active + 1  # = ceil((position + 1) / max_active)
    if user_cap is not None and user_cap > 0:
        rounds = max(rounds, own_ahead // user_cap + 1 + int(at_user_cap))
    mean_ms = max(0, round(mean_seconds * 1000))
    return max(1, -(-rounds * mean_ms // 60_000))
