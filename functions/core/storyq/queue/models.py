"""What the dispatch queue hands out and takes in: claims, counts, and the jobs Postgres knows
(for `Dispatcher.sweep`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


class QueueNotReady(RuntimeError):
    """Redis lost its state (flushed, evicted, new) and has not been rebuilt from Postgres."""


class ProviderPaused(RuntimeError):
    """The provider is paused (`Dispatcher.pause`): nothing is leased; ask again in
    `retry_in_seconds` (when the pause ends, or to see whether a probe was answered)."""

    def __init__(self, retry_in_seconds: float) -> None:
        super().__init__(f"the provider is paused; ask again in {retry_in_seconds:.3f} s")
        self.retry_in_seconds = retry_in_seconds


@dataclass(frozen=True)
class ProviderPause:
    """The provider's pause as Redis holds it (`Dispatcher.provider_pause`): `until` is when
    claims resume (then one probe at a time until an answer ends it), `since` when it began,
    `strikes` pauses in a row whose probe was refused too, `reason` the error that set it."""

    until: datetime
    since: datetime | None
    strikes: int
    reason: str
    probing: bool


@dataclass(frozen=True)
class Claim:
    """A lease on a job: `fence` is the token of the attempt it is for (0, and `user_id` None,
    when Redis lost the job's bookkeeping; Postgres then refuses the start), `score` the job's
    place in the waiting set (opaque; what `unclaim` puts it back at)."""

    job_id: UUID
    user_id: UUID | None
    fence: int
    score: str = ""
    # The one claim let through after a provider pause to test it: its attempt must end the
    # pause (`Dispatcher.resume`) once the provider answers, or renew it (`pause`).
    probe: bool = False


@dataclass(frozen=True)
class QueueCounts:
    """`waiting` includes `held`: jobs whose user is at their running cap."""

    waiting: int
    active: int
    delayed: int
    avg_generation_seconds: float
    held: int = 0


@dataclass(frozen=True)
class RunningJob:
    """A processing job as Postgres knows it: `fence` is its running attempt's token."""

    job_id: UUID
    user_id: UUID
    fence: int


@dataclass(frozen=True)
class PendingJob:
    """A pending job as Postgres knows it, for `rebuild`: `fence` is its next attempt's token."""

    job_id: UUID
    user_id: UUID
    fence: int
    queued_at: datetime
    next_attempt_at: datetime | None = None
    # The user's plan: their fair share, running cap (None: none) and priority (see `enqueue`).
    weight: float = 1.0
    max_active_per_user: int | None = None
    priority: int = 0


@dataclass(frozen=True)
class SweepReport:
    """What one `Dispatcher.sweep` call did. `was_ready` False: Redis had lost its state
    (flushed, evicted, new) before this call, which restored the running jobs' leases; the
    caller should then put back every pending job, page by page. `unbacked`: leases the audit
    removed, each handed to this caller only, who asks Postgres what became of the attempt and
    makes Redis follow. `waiting`: jobs waiting once the sweep was done."""

    was_ready: bool
    added: int
    restored: int
    promoted: int
    orphans: int
    waiting: int
    unbacked: list[Claim]
