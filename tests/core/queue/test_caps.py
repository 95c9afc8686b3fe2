"""Per-user running caps and priorities in the dispatch queue, through the Upstash emulator with
the real upstash_redis client over a real redis-server: a user at their cap does not take a
slot while anyone under theirs waits, gets their held jobs back in order as their own jobs end,
and borrows free slots when nobody else waits; a priority is a bounded head start."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from storyq.queue import Claim, Dispatcher, PendingJob
from storyq_local.stack.redis_server import RedisProcess
from tests.core.queue import helpers
from tests.core.queue.helpers import finish, queue_jobs
from tests.support.ids import job, user

LEASE = 30.0
NAMES = ("free", "other", "pro", "late", "solo")


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


def names_of(claims: list[Claim]) -> list[str]:
    return helpers.names_of(claims, NAMES, most=40)


def owner(name: str) -> str:
    return name.rsplit("-", 1)[0]


async def test_a_user_at_their_cap_leaves_the_slots_to_others(queue: Dispatcher) -> None:
    # Given a user capped at 1 who queued first, and another user without a cap
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 6, fence=fence, cap=1)
    await queue_jobs(queue, "other", 6, fence=fence)

    # When the five slots are claimed
    first = await queue.claim(5, lease_seconds=LEASE)

    # Then the capped user runs one job and the other user four
    assert [owner(n) for n in names_of(first)].count("free") == 1
    assert [owner(n) for n in names_of(first)].count("other") == 4
    # and while the other user's jobs wait, a slot freed by them goes to them again
    await finish(queue, first, "other-0")
    again = await queue.claim(5, lease_seconds=LEASE)
    assert names_of(again) == ["other-4"]
    # and once the capped user's job ends, their next job (the oldest) takes the next slot
    await finish(queue, first, "free-0")
    after = await queue.claim(5, lease_seconds=LEASE)
    assert names_of(after) == ["free-1"]


async def test_a_lone_capped_user_borrows_the_free_slots(queue: Dispatcher) -> None:
    # Given only one user, capped at 1, with six jobs
    fence = itertools.count(1)
    await queue_jobs(queue, "solo", 6, fence=fence, cap=1)

    # When the five slots are claimed
    claims = await queue.claim(5, lease_seconds=LEASE)

    # Then no slot idles: their five oldest jobs run, in order (work-conserving)
    assert names_of(claims) == ["solo-0", "solo-1", "solo-2", "solo-3", "solo-4"]
    # and a user arriving later gets the first slot that frees, before the lone user's sixth
    await queue_jobs(queue, "late", 1, fence=fence)
    await finish(queue, claims, "solo-0")
    assert names_of(await queue.claim(5, lease_seconds=LEASE)) == ["late-0"]
    await finish(queue, claims, "solo-1")
    assert names_of(await queue.claim(5, lease_seconds=LEASE)) == ["solo-5"]


async def test_a_capped_users_jobs_stay_in_order_through_holds_and_borrowing(
    queue: Dispatcher,
) -> None:
    # Given a user capped at 2 with twelve jobs, and another user with five
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 12, fence=fence, cap=2)
    await queue_jobs(queue, "other", 5, fence=fence)

    # When every job is served, each ending as soon as it is claimed, with newcomers arriving
    served: list[str] = []
    running: list[Claim] = []
    for round_ in range(40):
        running += await queue.claim(5, lease_seconds=LEASE)
        if not running:
            break
        done = running.pop(0)
        served += names_of([done])
        assert await queue.ack(done.job_id, done.fence, generation_seconds=None)
        if round_ == 3:
            await queue_jobs(queue, "late", 3, fence=fence)

    # Then everyone's jobs were served exactly once, and each user's in the order queued
    assert sorted(served) == sorted(
        [f"free-{n}" for n in range(12)]
        + [f"other-{n}" for n in range(5)]
        + [f"late-{n}" for n in range(3)]
    )
    for who in ("free", "other", "late"):
        mine = [n for n in served if owner(n) == who]
        assert mine == sorted(mine, key=lambda n: int(n.rsplit("-", 1)[1]))


async def test_a_held_job_says_it_waits_for_its_users_own_jobs(queue: Dispatcher) -> None:
    # Given a user capped at 1 running one job, with two more reached by a claim (held)
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 3, fence=fence, cap=1)
    await queue_jobs(queue, "other", 6, fence=fence)
    await queue.claim(5, lease_seconds=LEASE)

    # When the held jobs ask where they stand
    second = await queue.position(job("free-1"))
    third = await queue.position(job("free-2"))

    # Then they say they are held at their user's cap, and count their own jobs ahead
    assert second is not None
    assert third is not None
    assert (second.held, second.at_user_cap, second.own_ahead) == (True, True, 0)
    assert (third.held, third.own_ahead) == (True, 1)
    # and the ETA counts the rounds the cap imposes: the running job, then the one ahead, then
    # itself (one at a time: 3 rounds of 4.5 min)
    assert third.estimated_minutes == 14
    # and the admin counts include them as waiting
    counts = await queue.counts()
    assert counts.held == 2
    assert counts.waiting == 4  # other-4, other-5 and the two held jobs


async def test_held_jobs_can_be_cancelled_and_emptied(queue: Dispatcher) -> None:
    # Given a capped user's jobs held behind their running one
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 4, fence=fence, cap=1)
    await queue_jobs(queue, "other", 5, fence=fence)
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert await queue.position(job("free-1")) is not None

    # When one held job is cancelled
    assert await queue.remove(job("free-1"))

    # Then it is gone, and the next one moves up once the running job ends
    assert await queue.position(job("free-1")) is None
    await finish(queue, claims, "free-0")
    await finish(queue, claims, "other-0")
    assert names_of(await queue.claim(5, lease_seconds=LEASE)) == ["free-2", "other-4"]
    # and emptying the queue takes the held ones too
    assert set(await queue.empty()) == {job("free-3")}
    assert await queue.waiting_count() == 0


async def test_a_plan_change_reaches_jobs_already_queued_at_the_next_sweep(
    queue: Dispatcher,
) -> None:
    # Given a user's jobs queued without a cap (before their plan had one)
    fence = itertools.count(1)
    names = await queue_jobs(queue, "free", 5, fence=fence)
    await queue_jobs(queue, "other", 5, fence=fence)
    start = datetime(2026, 12, 1, tzinfo=UTC)

    # When a sweep's snapshot lists them with the cap their plan has now
    pending = [
        PendingJob(
            job_id=job(name),
            user_id=user("free"),
            fence=n + 1,
            queued_at=start + timedelta(seconds=n),
            max_active_per_user=1,
        )
        for n, name in enumerate(names)
    ]
    report = await queue.sweep(
        pending=pending, running=[], lease_seconds=LEASE, judge_after_seconds=None
    )

    # Then the cap holds for them: one slot, the other four go to the other user
    assert report.added == 0
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert [owner(n) for n in names_of(claims)].count("free") == 1


async def test_priority_is_a_bounded_head_start(queue: Dispatcher) -> None:
    # Given a user with a backlog, three of whose jobs were served already
    fence = itertools.count(1)
    await queue_jobs(queue, "other", 20, fence=fence)
    for claim in await queue.claim(3, lease_seconds=LEASE):
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)

    # When a priority-2 user queues ten jobs
    await queue_jobs(queue, "pro", 10, fence=fence, priority=2)

    # Then their first two go ahead of the waiting backlog, and from then on they share
    served: list[str] = []
    for _ in range(10):
        [claim] = await queue.claim(1, lease_seconds=LEASE)
        served += names_of([claim])
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)
    assert served[:2] == ["pro-0", "pro-1"]
    assert [owner(n) for n in served[2:]].count("other") >= 3


async def test_three_tiers_many_users_and_a_flood_keep_their_caps_and_shares(
    queue: Dispatcher,
) -> None:
    # Given a free user (cap 1, weight 1) flooding the queue with 100 jobs, another free user
    # with 20, a plus user (cap 2, weight 2) with 20, a pro user (cap 2, weight 4: more than
    # their cap by weight) with 40, and a user without a cap (weight 1) with 30
    fence = itertools.count(1)
    cap = {"free0": 1, "free1": 1, "plus0": 2, "pro0": 2, "solo": None}
    weight = {"free0": 1.0, "free1": 1.0, "plus0": 2.0, "pro0": 4.0, "solo": 1.0}
    backlog = {"free0": 100, "free1": 20, "plus0": 20, "pro0": 40, "solo": 30}
    order: dict[object, tuple[str, int]] = {}
    for who, count in backlog.items():
        for n in range(count):
            order[job(f"{who}-{n}")] = (who, n)
            await queue.enqueue(
                job(f"{who}-{n}"),
                user_id=user(who),
                fence=next(fence),
                weight=weight[who],
                max_active_per_user=cap[who],
            )

    # When the five slots are served for 120 rounds, the oldest running job ending each round
    running: list[Claim] = []
    served: list[tuple[str, int]] = []
    first_round: dict[str, int] = {}
    most_held = 0
    for round_ in range(120):
        claims = await queue.claim(5, lease_seconds=LEASE)
        now = Counter(order[claim.job_id][0] for claim in running)
        for claim in claims:
            who, _ = order[claim.job_id]
            first_round.setdefault(who, round_)
            limit = cap[who]
            if limit is not None and now[who] >= limit:
                # Then a user runs past their cap only when no one under theirs has jobs left
                assert not [
                    other
                    for other in backlog
                    if other != who
                    and backlog[other] > 0
                    and (cap[other] is None or now[other] < (cap[other] or 0))
                ], (round_, who)
            now[who] += 1
            backlog[who] -= 1
        running += claims
        assert len(running) == 5  # and no slot idles
        most_held = max(most_held, (await queue.counts()).held)
        done = running.pop(0)
        served.append(order[done.job_id])
        assert await queue.ack(done.job_id, done.fence, generation_seconds=None)

    # and the caps did bite: jobs were held while their users were at their caps
    assert most_held > 0
    # and the flood starved no one: every user started within the first five rounds (as many
    # as there are users)
    assert set(first_round) == set(backlog)
    assert max(first_round.values()) < len(backlog)
    # and each user's jobs were served in the order queued
    for who in backlog:
        mine = [n for owner_, n in served if owner_ == who]
        assert mine == sorted(mine)


async def test_a_job_says_whether_a_later_job_can_still_go_ahead_of_it(queue: Dispatcher) -> None:
    # Given seven jobs of one user waiting and three slots taken
    fence = itertools.count(1)
    await queue_jobs(queue, "solo", 10, fence=fence)
    await queue.claim(3, lease_seconds=LEASE)

    # When the next job and one further back ask where they stand
    next_in_line = await queue.position(job("solo-4"))
    further_back = await queue.position(job("solo-6"))

    # Then the next one for the two free slots cannot be overtaken any more
    assert next_in_line is not None
    assert (next_in_line.position, next_in_line.may_be_overtaken) == (1, False)
    # and one behind them can: a newcomer with fewer jobs waiting would be placed ahead
    assert further_back is not None
    assert (further_back.position, further_back.may_be_overtaken) == (3, True)
    await queue_jobs(queue, "late", 1, fence=fence)
    overtaken = await queue.position(job("solo-6"))
    assert overtaken is not None
    assert overtaken.position == 4
