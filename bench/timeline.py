"""What ran and what waited at each moment of a run, from each job's start and finish
(story_jobs.started_at, finished_at), for `bench.tiers`.

A job is a span [started, finished) in seconds from the run's first start; before it started it
waited (every job was queued before the workers started). The counts are piecewise constant,
changing only at the spans' ends, so evaluating them at every end (and at every end shifted by
the lag below) covers every moment of the run.

Postgres sees a start a little after Redis leased the job (the worker's start round trip) and a
finish a little before Redis releases the lease (its ack). Read naively, a job claimed but not
yet started still waits, and a user whose job just finished is already under their cap: both
would make a lawful borrow look like a cap broken. `lag` absorbs this: for deciding whether
someone *else* waits under their cap, a job waits only until `lag` before its start and runs
from `lag` before its start to `lag` after its finish. The user whose cap is checked is counted
strictly (their Postgres span lies within their lease, so more spans than the cap at once is a
real breach).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

Span = tuple[float, float]


@dataclass(frozen=True)
class Timeline:
    spans: dict[str, list[Span]]  # user -> their jobs' spans
    caps: dict[str, int | None]  # user -> their plan's running cap (None: none)
    lag: float = 0.0

    def points(self) -> list[float]:
        ends = {end for spans in self.spans.values() for span in spans for end in span}
        return sorted(ends | {end - self.lag for end in ends} | {end + self.lag for end in ends})

    def running(self, user: str, at: float, lag: float = 0.0) -> int:
        return sum(1 for start, end in self.spans[user] if start - lag <= at < end + lag)

    def waiting(self, user: str, at: float) -> int:
        return sum(1 for start, _ in self.spans[user] if at < start - self.lag)

    def waits_under_cap(self, user: str, at: float) -> bool:
        """`user` has a job waiting at `at` and, running fewer than their cap, may take a slot."""
        cap = self.caps[user]
        if not self.waiting(user, at):
            return False
        return cap is None or self.running(user, at, self.lag) < cap

    def others_wait(self, user: str, at: float) -> bool:
        return any(self.waits_under_cap(other, at) for other in self.spans if other != user)

    def most_while_others_wait(self, user: str) -> int:
        """The most jobs of `user` running at once while someone else under their cap waited."""
        found = [self.running(user, at) for at in self.points() if self.others_wait(user, at)]
        return max(found, default=0)

    def most_since(self, user: str, since: float) -> int:
        """The most jobs of `user` running at once from `since` on."""
        moments = [since, *(at for at in self.points() if at > since)]
        return max(self.running(user, at) for at in moments)

    def others_done(self, user: str) -> float:
        """When the last job of every other user had finished."""
        return max((end for u, spans in self.spans.items() if u != user for _, end in spans))

    def others_started(self, user: str) -> float:
        """When the last job of every other user had started (nothing of theirs waited)."""
        return max((start for u, spans in self.spans.items() if u != user for start, _ in spans))

    def over_cap(self, user: str) -> list[dict[str, object]]:
        """Each stretch in which `user` ran more than their cap while someone else under their
        cap waited: from, to, how many ran, and who waited (jobs waiting each)."""
        cap, found = self.caps[user], list[dict[str, object]]()
        if cap is None:
            return found
        points = self.points()
        for at, until in pairwise(points):
            running = self.running(user, at)
            if running <= cap or not self.others_wait(user, at):
                continue
            if found and found[-1]["to"] == round(at, 3) and found[-1]["running"] == running:
                found[-1]["to"] = round(until, 3)
                continue
            waiting = {
                other: self.waiting(other, at)
                for other in self.spans
                if other != user and self.waits_under_cap(other, at)
            }
            found.append(
                {
                    "from": round(at, 3),
                    "to": round(until, 3),
                    "running": running,
                    "waiting": waiting,
                }
            )
        return found

    def idle(self, slots: int) -> tuple[float, float]:
        """Slot-seconds left free while jobs waited, and the longest such stretch (seconds)."""
        total, longest, stretch = 0.0, 0.0, 0.0
        points = self.points()
        for at, until in pairwise(points):
            waiting = sum(self.waiting(user, at) for user in self.spans)
            running = sum(self.running(user, at, self.lag) for user in self.spans)
            free = min(waiting, max(0, slots - running))
            total += free * (until - at)
            stretch = stretch + (until - at) if free else 0.0
            longest = max(longest, stretch)
        return round(total, 3), round(longest, 3)

    def most_running(self) -> int:
        """The most jobs running at once, all users together."""
        return max(sum(self.running(u, at) for u in self.spans) for at in self.points())
