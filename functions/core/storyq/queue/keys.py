"""Redis key names of the dispatch queue (names only; what each holds is documented here once).

Every key is fixed for a prefix and passed to the Lua scripts in KEYS: no script builds a key
name from data, so every key a script touches is declared by its caller.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue, all under `prefix`."""

    prefix: str = "storyq"

    @property
    def waiting(self) -> str:
        """ZSET job id → fair-share score (finish tag * 2^20 + arrival number; + 2^52 for a job
        held at its user's running cap, so held jobs wait behind every other)."""
        return f"{self.prefix}:waiting"

    @property
    def delayed(self) -> str:
        """ZSET job id → when it is due again (Unix ms, Redis clock)."""
        return f"{self.prefix}:delayed"

    @property
    def active(self) -> str:
        """ZSET job id → when its lease expires (Unix ms, Redis clock)."""
        return f"{self.prefix}:active"

    @property
    def jobs(self) -> str:
        """HASH `<job id>:user`, `<job id>:fence`, `<job id>:weight`, `<job id>:cap`,
        `<job id>:prio` → the job's bookkeeping.

        The fence is the token Postgres issued for the job's next or running attempt; weight,
        cap (running cap, '' for none) and prio (priority) are the user's plan's figures."""
        return f"{self.prefix}:jobs"

    @property
    def finish(self) -> str:
        """ZSET user id → the finish tag of that user's last queued job (fair share)."""
        return f"{self.prefix}:finish"

    @property
    def fair(self) -> str:
        """HASH `vtime` (the queue's virtual time), `seq` (arrival counter), `head` (the
        largest priority head start handed out since the clock started) and `n:<user id>` (how
        many of that user's jobs wait or are held)."""
        return f"{self.prefix}:fair"

    @property
    def held_by_user(self) -> str:
        """ZSET, every score 0, members `<user id>:<own score, 16 digits>:<job id>`: the held
        jobs (a claim reached them while their user held as many leases as their running cap
        allows; they wait at their own score + 2^52, see `Dispatcher.claim`), each user's
        oldest first in lexicographic order (ZRANGEBYLEX on `<user id>:`)."""
        return f"{self.prefix}:held_by_user"

    @property
    def ready(self) -> str:
        """STRING set by `sweep` once Redis mirrors Postgres, leases of running jobs included;
        its value is where the sweep's walk of `jobs` for orphaned bookkeeping goes on.

        A FLUSHALL (or an eviction) removes it, and `claim` then refuses to lease anything until
        a sweep has rebuilt the queue: otherwise the jobs still running when the leases vanished
        would not count against the global cap."""
        return f"{self.prefix}:ready"

    @property
    def stats(self) -> str:
        """HASH `mean_seconds`, `samples`: the rolling mean generation time behind the ETA."""
        return f"{self.prefix}:stats"

    @property
    def pause(self) -> str:
        """HASH `until` (Unix ms, Redis clock), `since`, `strikes`, `reason`, `probe`: the
        provider's pause (see `Dispatcher.pause`). No claim is served before `until`; after
        it, one claim at a time is a probe, held until `probe` (ms) or until the probe's
        answer ends the pause (`resume`) or renews it. Absent: no pause."""
        return f"{self.prefix}:pause"
