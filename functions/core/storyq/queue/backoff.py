"""How long a failed job waits before its next attempt: exponential backoff with jitter, and a
provider's Retry-After honoured. Pure functions: the caller passes the result to
`Dispatcher.retry_later`.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A provider asking for more than this is waited on for this long: the job is retried (and
# maybe told to wait again) rather than parked for a day.
RETRY_AFTER_LIMIT_SECONDS = 3600.0


@dataclass(frozen=True)
class Backoff:
    """delay(n) = min(max_seconds, base_seconds * factor^(n-1) * (1 +- jitter)).

    base and max come from Settings (RETRY_BASE_SECONDS, RETRY_MAX_SECONDS), their one home.
    With jitter below (factor - 1) / (factor + 1) (1/3 for factor 2) each delay is longer than
    the one before until the cap, whatever the random draw.
    """

    base_seconds: float
    max_seconds: float
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.factor < 1 or self.max_seconds < 0:
            raise ValueError("backoff needs base ≥ 0, factor ≥ 1 and max ≥ 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    def nominal(self, attempt: int) -> float:
        """The delay after attempt number `attempt` failed (1 for the first), before jitter."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        exponent = min(attempt - 1, 64)  # past the cap anyway; keeps the power finite
        return float(min(self.max_seconds, self.base_seconds * self.factor**exponent))


def retry_delay(
    attempt: int,
    *,
    policy: Backoff,
    retry_after: float | None = None,
    random: Callable[[], float] = _random.random,
) -> float:
    """Seconds to wait after attempt number `attempt` failed (1 for the first; the number
    Postgres gives each start, `StartedJob.attempt`).

    `retry_after` (seconds, from the provider) is a floor, clamped to RETRY_AFTER_LIMIT_SECONDS.
    `random` draws from [0, 1); tests pass their own.
    """
    spread = 1 + policy.jitter * (2 * random() - 1)
    delay = min(policy.max_seconds, policy.nominal(attempt) * spread)
    if retry_after is not None:
        delay = max(delay, min(max(0.0, retry_after), RETRY_AFTER_LIMIT_SECONDS))
    return delay


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent or
    unreadable; a date in the past gives 0."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
