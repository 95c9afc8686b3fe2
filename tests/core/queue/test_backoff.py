"""Retry delays: exponential growth with jitter, a cap, and the provider's Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from storyq.queue.backoff import (
    RETRY_AFTER_LIMIT_SECONDS,
    Backoff,
    parse_retry_after,
    retry_delay,
)

LOWEST, HIGHEST = (lambda: 0.0), (lambda: 0.999999)
POLICY = Backoff(base_seconds=30.0, factor=2.0, max_seconds=600.0, jitter=0.2)


def test_delays_grow_with_each_failed_attempt_whatever_the_jitter() -> None:
    # Given the unluckiest draws: the most jitter up on one attempt, down on the next
    highs = [retry_delay(n, policy=POLICY, random=HIGHEST) for n in range(1, 5)]
    lows = [retry_delay(n, policy=POLICY, random=LOWEST) for n in range(1, 5)]

    # Then each attempt still waits longer than the one before
    assert all(high < low for high, low in zip(highs, lows[1:], strict=False))
    assert lows[0] == pytest.approx(24.0)
    assert highs[0] == pytest.approx(36.0)


def test_jitter_spreads_delays_around_the_nominal_value() -> None:
    # Given many draws for the second attempt
    import random

    draws = random.Random(7)
    delays = [retry_delay(2, policy=POLICY, random=draws.random) for _ in range(1000)]

    # Then they stay within ±20 % of 60 s, and differ from one another
    assert min(delays) >= 48.0
    assert max(delays) <= 72.0
    assert len({round(delay, 3) for delay in delays}) > 900


def test_delays_stop_growing_at_the_cap() -> None:
    assert retry_delay(10, policy=POLICY, random=HIGHEST) == 600.0
    assert retry_delay(1000, policy=POLICY, random=LOWEST) == pytest.approx(480.0)


def test_retry_after_is_a_floor() -> None:
    # Given a provider that asked for 5 minutes after the first failure
    delay = retry_delay(1, retry_after=300.0, policy=POLICY, random=HIGHEST)

    # Then the job waits the 5 minutes, not the 36 s backoff
    assert delay == 300.0
    # and a short Retry-After does not shorten the backoff
    assert retry_delay(3, retry_after=1.0, policy=POLICY, random=LOWEST) == pytest.approx(96.0)


def test_an_extravagant_retry_after_is_clamped() -> None:
    assert (
        retry_delay(1, retry_after=86_400.0, policy=POLICY, random=LOWEST)
        == RETRY_AFTER_LIMIT_SECONDS
    )
    assert retry_delay(1, retry_after=-5.0, policy=POLICY, random=LOWEST) == pytest.approx(24.0)


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempts"):
        retry_delay(0, policy=POLICY)


def test_a_policy_that_could_shrink_delays_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(base_seconds=5, max_seconds=300, jitter=1.5)
    with pytest.raises(ValueError, match="factor"):
        Backoff(base_seconds=5, max_seconds=300, factor=0.5)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
    ],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)

    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after(earlier, now=now) == 0.0
