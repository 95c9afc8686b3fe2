"""storyq.store under concurrency: credits never go negative, keys never debit twice.

Real PostgreSQL behind the Supabase emulator, called with the real PostgREST client through
the storyq.store wrapper; the invariants are then checked directly in SQL with psycopg.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import psycopg
import pytest

from storyq.clients import async_postgrest
from storyq.config import Settings
from storyq.store import (
    EnqueuedJob,
    EnqueueRequest,
    IdempotencyConflict,
    InsufficientCredits,
    Store,
    UserNotFound,
)
from storyq_local.stack.users import ensure_user

COST = 1


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    db = async_postgrest(settings)
    yield Store(db)
    await db.aclose()


def new_users(database_url: str, count: int) -> list[uuid.UUID]:
    """Users who signed up (rows in auth.users) and own nothing yet."""
    users = [uuid.uuid4() for _ in range(count)]
    for user in users:
        ensure_user(database_url, user)
    return users


def request(
    user: uuid.UUID,
    *,
    key: str | None = None,
    prompt: str = "a lighthouse",
    key_ttl_seconds: float = 86400.0,
) -> EnqueueRequest:
    return EnqueueRequest(
        user_id=user,
        prompt=prompt,
        title="The Keeper",
        target_words=800,
        cost=COST,
        max_attempts=3,
        idempotency_key=key,
        request_hash=f"hash:{prompt}" if key else None,
        idempotency_ttl_seconds=key_ttl_seconds,
    )


def credit_facts(database_url: str, users: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, ...]]:
    """Per user: (balance, ledger sum, jobs, jobs with their story, debits, min balance ok)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            select u.id,
                   coalesce(b.balance, 0),
                   (select coalesce(sum(l.amount), 0) from public.credit_ledger l
                    where l.user_id = u.id),
                   (select count(*) from public.story_jobs j where j.user_id = u.id),
                   (select count(*) from public.story_jobs j
                    join public.stories s on s.id = j.story_id and s.user_id = j.user_id
                    where j.user_id = u.id and s.status = 'pending'),
                   (select count(*) from public.credit_ledger l
                    where l.user_id = u.id and l.kind = 'debit')
            from unnest(%s::uuid[]) u(id)
            left join public.credit_balances b on b.user_id = u.id
            """,
            (users,),
        ).fetchall()
    return {row[0]: tuple(int(v) for v in row[1:]) for row in rows}


async def test_concurrent_enqueues_never_overspend(store: Store, database_url: str) -> None:
    # Given 20 users holding 0 to 11 credits each
    users = new_users(database_url, 20)
    granted = {user: i % 12 for i, user in enumerate(users)}
    for user, amount in granted.items():
        if amount:
            await store.credits.grant(user, amount)

    # When each sends 10 generate requests, all 200 at once
    calls = [store.jobs.enqueue(request(user)) for user in users for _ in range(10)]
    results = await asyncio.gather(*calls, return_exceptions=True)

    # Then every call either made a job or was refused for lack of credits
    unexpected = [r for r in results if not isinstance(r, EnqueuedJob | InsufficientCredits)]
    assert unexpected == []
    made = Counter(r.job_id for r in results if isinstance(r, EnqueuedJob))
    assert all(count == 1 for count in made.values())
    fences = [r.fence for r in results if isinstance(r, EnqueuedJob)]
    assert None not in fences
    assert len(set(fences)) == len(fences), "each job gets a fencing token of its own"
    jobs_per_user = {user: await store.jobs.list_for_user(user, limit=100) for user in users}

    # And each user got exactly as many jobs as their credits paid for, no more
    facts = credit_facts(database_url, users)
    for user in users:
        balance, ledger_sum, jobs, jobs_with_story, debits = facts[user]
        expected_jobs = min(granted[user], 10)
        assert jobs == expected_jobs == len(jobs_per_user[user].jobs)
        assert balance == granted[user] - expected_jobs * COST >= 0
        assert ledger_sum == balance, "the ledger explains the balance"
        assert jobs_with_story == jobs, "every job has its (pending) story"
        assert debits == jobs, "one debit per job"
    assert sum(isinstance(r, EnqueuedJob) for r in results) == sum(
        min(amount, 10) for amount in granted.values()
    )


async def test_one_idempotency_key_sent_50_times_makes_one_job(
    store: Store, database_url: str
) -> None:
    # Given a user with 5 credits
    (user,) = new_users(database_url, 1)
    await store.credits.grant(user, 5)

    # When the same request with the same key arrives 50 times at once
    results = await asyncio.gather(
        *(store.jobs.enqueue(request(user, key="click-1")) for _ in range(50))
    )

    # Then they all answer with one job, created once and replayed 49 times, under its fence
    assert {(r.job_id, r.fence) for r in results} == {(results[0].job_id, results[0].fence)}
    assert sorted(r.replayed for r in results) == [False] + [True] * 49
    # And the user paid once
    assert await store.credits.balance(user) == 4
    balance, ledger_sum, jobs, jobs_with_story, debits = credit_facts(database_url, [user])[user]
    assert (balance, ledger_sum, jobs, jobs_with_story, debits) == (4, 4, 1, 1, 1)


async def test_a_key_reused_for_another_request_is_refused(store: Store, database_url: str) -> None:
    # Given a job enqueued with a key
    (user,) = new_users(database_url, 1)
    await store.credits.grant(user, 5)
    first = await store.jobs.enqueue(request(user, key="click-2", prompt="a lighthouse"))

    # When the key comes back with another prompt
    with pytest.raises(IdempotencyConflict) as refused:
        await store.jobs.enqueue(request(user, key="click-2", prompt="a volcano"))

    # Then it is a 409 and nothing more was charged; the original request still replays
    assert refused.value.status == 409
    assert await store.credits.balance(user) == 4
    again = await store.jobs.enqueue(request(user, key="click-2", prompt="a lighthouse"))
    assert (again.job_id, again.replayed) == (first.job_id, True)


async def test_a_key_is_free_again_once_its_ttl_has_passed(store: Store, database_url: str) -> None:
    # Given a job enqueued with a key remembered for an hour, two hours ago
    (user,) = new_users(database_url, 1)
    await store.credits.grant(user, 5)
    first = await store.jobs.enqueue(request(user, key="click-old", key_ttl_seconds=3600))
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update public.idempotency_keys set created_at = now() - interval '2 hours'"
            " where user_id = %s",
            (user,),
        )

    # When the key comes back, even with another prompt
    again = await store.jobs.enqueue(
        request(user, key="click-old", prompt="a volcano", key_ttl_seconds=3600)
    )

    # Then it is a new request: a new job, charged again, and the key now replays that job
    assert (again.replayed, again.job_id == first.job_id) == (False, False)
    assert await store.credits.balance(user) == 3
    replay = await store.jobs.enqueue(
        request(user, key="click-old", prompt="a volcano", key_ttl_seconds=3600)
    )
    assert (replay.replayed, replay.job_id) == (True, again.job_id)


async def test_keys_are_scoped_to_their_user(store: Store, database_url: str) -> None:
    # Given two users with credits
    alice, bob = new_users(database_url, 2)
    for user in (alice, bob):
        await store.credits.grant(user, 1)

    # When both use the same key
    a = await store.jobs.enqueue(request(alice, key="same-key"))
    b = await store.jobs.enqueue(request(bob, key="same-key"))

    # Then each gets their own job
    assert a.job_id != b.job_id
    assert (a.replayed, b.replayed) == (False, False)


async def test_insufficient_credits_writes_nothing(store: Store, database_url: str) -> None:
    # Given a user who was never credited
    (user,) = new_users(database_url, 1)

    # When they enqueue
    with pytest.raises(InsufficientCredits) as refused:
        await store.jobs.enqueue(request(user))

    # Then the answer maps to 402 and no job, story or ledger entry exists
    assert refused.value.status == 402
    assert credit_facts(database_url, [user])[user] == (0, 0, 0, 0, 0)


async def test_the_sign_up_grant_is_given_once(store: Store, database_url: str) -> None:
    # Given a new user and FREE_CREDITS=2
    (user,) = new_users(database_url, 1)
    free = request(user).model_copy(update={"free_credits": 2})

    # When they enqueue three times
    first = await store.jobs.enqueue(free)
    second = await store.jobs.enqueue(free)
    with pytest.raises(InsufficientCredits):
        await store.jobs.enqueue(free)

    # Then the grant paid for two stories, once
    assert (first.balance, second.balance) == (1, 0)


async def test_unknown_user_cannot_enqueue(store: Store) -> None:
    with pytest.raises(UserNotFound):
        await store.jobs.enqueue(request(uuid.uuid4()))
