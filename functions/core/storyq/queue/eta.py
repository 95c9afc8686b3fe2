"""A waiting job's position and its estimated wait, by the formula in DESIGN.md:
ceil((position + 1) / max_active) rounds x the rolling mean generation time, in whole minutes."""

from __future__ import annotations

from dataclasses import dataclass

# The mean generation time until the first job has finished (4.5 minutes).
DEFAULT_GENERATION_SECONDS = 270.0


@dataclass(frozen=True)
class Position:
    """Where a waiting job stands: `position` is its 0-based rank in the queue."""

    position: int
    queue_length: int
    active_jobs: int
    estimated_minutes: int


def estimated_minutes(position: int, *, max_active: int, mean_seconds: float) -> int:
    """Minutes until the job at 0-based `position` should be done, rounded up, at least 1.

    Integer arithmetic on milliseconds, so 3 rounds x 280 s is 14 minutes, not 15.
    """
    rounds = position // max_active + 1  # = ceil((position + 1) / max_active)
    mean_ms = max(0, round(mean_seconds * 1000))
    return max(1, -(-rounds * mean_ms // 60_000))
