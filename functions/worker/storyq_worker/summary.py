"""What a sweep and a drain did, counted: the invocation's return value and its metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """How one claimed attempt ended."""

    COMPLETED = "completed"  # the story is saved
    RETRIED = "retried"  # a retryable failure: the job waits for its next attempt
    FAILED = "failed"  # failed for good (refunded)
    CANCELLED = "cancelled"  # its cancel was requested: generation stopped, job refunded
    RELEASED = "released"  # given back unfinished because the worker is shutting down
    PAUSED = "paused"  # the provider refused it for load: claims pause, the job waits unspent
    DROPPED = "dropped"  # another attempt owns the job now: this one's result was discarded
    SKIPPED = "skipped"  # the job could not start (cancelled, finished, or a stale claim)
    DEFERRED = "deferred"  # Postgres refused the start (the global cap): the claim went back
    ERROR = "error"  # the store or Redis failed us; the lease lapses and the sweep recovers


@dataclass
class Summary:
    reaped: int = 0
    requeued: int = 0
    rebuilt: int = 0
    promoted: int = 0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0  # waiting jobs the sweep cancelled after JOB_TTL_SECONDS
    retried: int = 0
    released: int = 0
    paused: int = 0
    dropped: int = 0
    skipped: int = 0
    deferred: int = 0
    orphans: int = 0
    errors: int = 0

    def count(self, outcome: Outcome) -> None:
        field = "errors" if outcome is Outcome.ERROR else outcome.value
        setattr(self, field, getattr(self, field) + 1)

    def merge(self, other: Summary) -> Summary:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
