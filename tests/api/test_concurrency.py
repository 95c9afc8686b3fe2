"""A burst: 200 concurrent POST /api/generate from 20 users against the app served by uvicorn.

No answer may be a 5xx, and afterwards every credit is accounted for: per user, jobs created =
debits = credits spent, the balance equals the ledger's sum, every job has its story, and a
repeated Idempotency-Key produced one job.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import httpx
import pytest

from storyq.config import Settings
from storyq_api.app import create_app
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import ThreadedServer, serve_in_thread
from tests.support.sql import Db
from tests.support.users import ApiUser

USERS = 20
REQUESTS_PER_USER = 10
# Per user: 8 distinct requests and one keyed request sent twice = 9 distinct jobs asked for.
DISTINCT_PER_USER = 9

MakeUser = Callable[..., ApiUser]


@pytest.fixture
def served_api(settings: Settings) -> Iterator[ThreadedServer]:
    burst = settings.model_copy(update={"generate_rate_limit": 1000})
    server = serve_in_thread(create_app(burst))
    yield server
    server.stop()


async def test_a_burst_of_200_posts_loses_nothing_and_never_5xxs(
    served_api: ThreadedServer, make_user: MakeUser, db: Db, redis_process: RedisProcess
) -> None:
    # Given 20 users with between 3 and 12 credits (some will run out)
    rng = random.Random(20261128)
    credits = {make_user(credits=rng.randint(3, 12)): 0 for _ in range(USERS)}
    users = list(credits)
    for user in users:
        credits[user] = db.balance(user.id)
    requests: list[tuple[ApiUser, dict[str, str], dict[str, object]]] = []
    for user in users:
        for n in range(REQUESTS_PER_USER - 2):
            requests.append((user, {}, {"prompt": f"story {n} for {user.id}"}))
        keyed = {"Idempotency-Key": f"burst-{user.id}"}
        requests += [(user, keyed, {"prompt": "the keyed one"})] * 2
    rng.shuffle(requests)

    # When all 200 are sent at once
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=served_api.url, timeout=60, limits=limits) as http:

        async def post(
            user: ApiUser, extra: dict[str, str], body: dict[str, object]
        ) -> tuple[ApiUser, httpx.Response]:
            headers = {**user.headers, **extra}
            return user, await http.post("/api/generate", json=body, headers=headers)

        answers = await asyncio.gather(*(post(*request) for request in requests))

    # Then nothing failed on the server's side
    statuses = Counter(response.status_code for _, response in answers)
    assert all(status < 500 for status in statuses), statuses
    assert set(statuses) <= {202, 402}, statuses

    job_ids: dict[ApiUser, set[str]] = defaultdict(set)
    for user, response in answers:
        if response.status_code == 202:
            job_ids[user].add(response.json()["jobId"])

    # And every credit is accounted for, user by user
    for user in users:
        initial, created = credits[user], job_ids[user]
        assert len(created) == min(initial, DISTINCT_PER_USER)
        rows = db.run(
            "select j.id::text, s.id is not null from story_jobs j"
            " left join stories s on s.id = j.story_id where j.user_id = %s",
            (user.id,),
        )
        assert {job_id for job_id, _ in rows} == created
        assert all(has_story for _, has_story in rows)
        debits = db.value(
            "select count(*) from credit_ledger where user_id = %s and kind = 'debit'", (user.id,)
        )
        ledger = db.value("select sum(amount) from credit_ledger where user_id = %s", (user.id,))
        balance = db.balance(user.id)
        assert debits == len(created)
        assert balance == ledger == initial - len(created)
        assert balance >= 0
        keyed = db.value(
            "select count(*) from story_jobs where user_id = %s and idempotency_key = %s",
            (user.id, f"burst-{user.id}"),
        )
        assert keyed <= 1

    # And every job the answer placed in the queue waits in Redis; one whose answer had no
    # place (Redis gave no answer in time, on a loaded machine) is pending in Postgres, where
    # the sweeper finds it
    redis = redis_process.client()
    accepted = [response.json() for _, response in answers if response.status_code == 202]
    for answer in accepted:
        if answer["estimatedWaitTime"] is not None:
            assert redis.zscore("storyq:waiting", answer["jobId"]) is not None, answer
        else:
            assert db.job_status(answer["jobId"]) == "pending"
