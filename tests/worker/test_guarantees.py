"""The guarantees hold where the truth is: the fence only grows, the global cap is enforced when
an attempt starts, liveness is decided by the Postgres heartbeat, a generation that may no
longer run stops, and nothing of a finished job stays in Redis.

Each scenario drives the real worker code, Lua scripts and SQL functions step by step, and
injects the fault the way it happens: a worker that goes silent, a FLUSHALL between a sweep's
read and its rebuild, a lease the reaper took from a live worker, Postgres out of reach.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from storyq.config import Settings
from storyq.generation import GenerationRequest, GenerationResult, ProgressCallback
from storyq.queue import Claim, Dispatcher, PendingJob
from storyq.store import Failure, StaleAttempt, StartRefused, Store
from storyq_local.stack.builder import LocalStack
from storyq_worker.attempt import run_attempt
from storyq_worker.context import WorkerContext, open_context
from storyq_worker.summary import Outcome
from storyq_worker.sweep import sweep
from tests.support.polling import eventually
from tests.worker.helpers import enqueue, job_row, start


class Held:
    """Starts, reports progress, then generates until the test opens the gate; records when it
    was stopped (cancelled) from outside."""

    name = "held"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.cancelled_at: dict[str, float] = {}

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        on_progress("A held story, five words.")
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled_at[request.job_id] = time.monotonic()
            raise
        return GenerationResult(
            title="Held",
            content="A held story that was let go.",
            words=7,
            target_words=request.target_words,
            finish_reason="stop",
            generator=self.name,
        )


@pytest.fixture
async def ctx(worker_settings: Settings) -> AsyncIterator[WorkerContext]:
    async with open_context(worker_settings, generator=Held()) as context:
        yield context


def redis_entries(stack: LocalStack, job_id: uuid.UUID) -> list[str]:
    """Where Redis still mentions the job: the queue's sorted sets and bookkeeping fields."""
    client = stack.redis.client()
    found = [
        zset
        for zset in ("waiting", "delayed", "active")
        if client.zscore(f"storyq:{zset}", str(job_id)) is not None
    ]
    fields = [str(field) for field in client.hkeys("storyq:jobs")]  # the client decodes
    found += [field for field in fields if field.startswith(f"{job_id}:")]
    return found


def processing_count(stack: LocalStack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "select count(*) from public.story_jobs where status = 'processing'"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def claim_one(dispatcher: Dispatcher, *, lease_seconds: float = 60.0) -> Claim:
    """The next claim, once one is due (a retry waits out its backoff)."""
    deadline = time.monotonic() + 10
    while not (claims := await dispatcher.claim(1, lease_seconds=lease_seconds)):
        assert time.monotonic() < deadline, "nothing to claim"
        await asyncio.sleep(0.05)
    return claims[0]


async def generation_running(
    ctx: WorkerContext, store: Store, dispatcher: Dispatcher, user: uuid.UUID
) -> tuple[uuid.UUID, Claim, asyncio.Task[Outcome]]:
    """A new job, claimed and run by `ctx` (whose generator is a Held) until it generates."""
    job_id = await enqueue(store, dispatcher, user)
    claim = await claim_one(dispatcher)
    running = asyncio.create_task(run_attempt(ctx, claim, abandon=asyncio.Event()))
    held: Held = ctx.generator  # type: ignore[assignment]
    await asyncio.wait_for(held.started.wait(), 10)
    return job_id, claim, running


async def test_a_worker_from_before_an_admin_retry_can_write_nothing(
    worker_stack: LocalStack,
    worker_settings: Settings,
    ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given worker A started a job under a short lease, then went silent
    job_id = await enqueue(store, dispatcher, user)
    claim_a = await claim_one(dispatcher, lease_seconds=0.2)
    await start(store, worker_settings, job_id, claim_a.fence)

    # And sweeps found its attempt dead (no heartbeat for a lease) and requeued it
    async def requeued() -> bool:
        await sweep(ctx)
        return bool(job_row(worker_stack.database_url, job_id)["fence"] != claim_a.fence)

    deadline = time.monotonic() + 20
    while not await requeued():
        assert time.monotonic() < deadline, "the silent attempt was never requeued"
        await asyncio.sleep(0.1)

    # And attempt B ran under the new fence and failed for good; an admin retried the job
    claim_b = await claim_one(dispatcher)
    await start(store, worker_settings, job_id, claim_b.fence)
    failed = await store.jobs.fail(
        job_id, fence=claim_b.fence, failure=Failure(code="x", message="x", retryable=False)
    )
    await dispatcher.ack(job_id, claim_b.fence, generation_seconds=None)
    assert (failed.status, failed.refunded) == ("failed", True)
    retried = await store.admin.retry_failed(job_id)
    assert retried.fence is not None
    assert retried.attempts == 0
    await dispatcher.enqueue(job_id, user_id=user, fence=retried.fence)
    claim_c = await claim_one(dispatcher)
    await start(store, worker_settings, job_id, claim_c.fence)

    # Then the fences only grew, and the retried job's attempt counter started again
    assert claim_a.fence < claim_b.fence < claim_c.fence
    # And A, waking up, is refused every write: heartbeat, completion, its Redis lease
    assert await store.jobs.heartbeat(job_id, claim_a.fence) is False
    with pytest.raises(StaleAttempt):
        await store.jobs.complete(job_id, fence=claim_a.fence, content="A's late story")
    assert job_row(worker_stack.database_url, job_id)["content"] is None
    assert await dispatcher.heartbeat(job_id, claim_a.fence, lease_seconds=60) is False
    assert await dispatcher.ack(job_id, claim_a.fence, generation_seconds=None) is False
    # And C's lease still counts against the cap; C's heartbeats go on
    assert job_id in await dispatcher.active_job_ids()
    assert await store.jobs.heartbeat(job_id, claim_c.fence) is True


async def test_a_rebuild_that_missed_a_running_job_never_puts_a_sixth_to_work(
    worker_stack: LocalStack,
    worker_settings: Settings,
    ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given six waiting jobs; a worker claims the first, Redis loses everything, and the worker
    # starts it in Postgres
    jobs = [await enqueue(store, dispatcher, user) for _ in range(6)]
    first = await claim_one(dispatcher)
    worker_stack.redis.client().flushall()
    await start(store, worker_settings, first.job_id, first.fence)
    # And a sweep rebuilds Redis without it, as one whose two reads straddled that start did
    # (running jobs read before it started, pending ones after): Redis holds no lease for it
    snapshot = await store.jobs.dispatch_snapshot()
    await dispatcher.rebuild(
        [
            PendingJob(j.job_id, j.user_id, j.fence, j.queued_at, j.next_attempt_at)
            for j in snapshot.pending
        ],
        running=[],
        lease_seconds=worker_settings.lease_seconds,
    )

    # When workers claim all Redis lets them (five: it sees no lease) and run them
    claims = await dispatcher.claim(5, lease_seconds=60)
    assert len(claims) == 5
    held: Held = ctx.generator  # type: ignore[assignment]
    attempts = [
        asyncio.create_task(run_attempt(ctx, claim, abandon=asyncio.Event())) for claim in claims
    ]
    await eventually(lambda: any(task.done() for task in attempts))

    # Then Postgres started four: five attempts processing, never six
    await asyncio.sleep(0.3)
    assert processing_count(worker_stack) == 5
    assert [task.result() for task in attempts if task.done()] == [Outcome.DEFERRED]
    # And the claim it refused waits again at the head of the queue, no attempt spent
    [refused] = [c for c, task in zip(claims, attempts, strict=True) if task.done()]
    assert job_row(worker_stack.database_url, refused.job_id)["attempts"] == 0
    position = await dispatcher.position(refused.job_id)
    assert position is not None
    assert position.position == 0
    # And the first job's worker gets its lease back with its next heartbeat
    assert await dispatcher.heartbeat(first.job_id, first.fence, lease_seconds=60) is True
    assert first.job_id in await dispatcher.active_job_ids()

    held.gate.set()
    assert {await task for task in attempts} == {Outcome.COMPLETED, Outcome.DEFERRED}
    assert len(jobs) == 6


async def test_a_sweeps_snapshot_holds_each_job_in_exactly_one_list_while_jobs_start(
    worker_settings: Settings, store: Store, dispatcher: Dispatcher, user: uuid.UUID
) -> None:
    # Given twenty waiting jobs that a worker starts one after another
    jobs = {await enqueue(store, dispatcher, user) for _ in range(20)}
    roomy = 100  # this test is about the reads, not the cap

    async def start_all() -> None:
        for claim in await dispatcher.claim(20, lease_seconds=60):
            started = await store.jobs.start(
                claim.job_id, claim.fence, max_active=roomy, live_seconds=60
            )
            assert not isinstance(started, StartRefused)

    starting = asyncio.create_task(start_all())
    # When sweeps read Postgres while they start
    snapshots = []
    while not starting.done():
        snapshots.append(await store.jobs.dispatch_snapshot())
    await starting

    # Then every read saw each job exactly once: running or pending, never both, never neither
    # (a job in neither would run without a lease after a flush; in both, be queued twice)
    assert len(snapshots) >= 2
    for snapshot in snapshots:
        running = {job.job_id for job in snapshot.running}
        pending = {job.job_id for job in snapshot.pending}
        assert not running & pending
        assert jobs <= running | pending


@pytest.fixture
async def long_lease_ctx(worker_settings: Settings) -> AsyncIterator[WorkerContext]:
    """A worker with 12 s leases (Postgres heartbeats every 2 s)."""
    settings = worker_settings.model_copy(update={"lease_seconds": 12.0})
    async with open_context(settings, generator=Held()) as context:
        yield context


async def test_a_live_worker_whose_lease_was_reaped_keeps_its_job_and_its_slot(
    worker_stack: LocalStack,
    long_lease_ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a generation running under a live worker
    ctx = long_lease_ctx
    held: Held = ctx.generator  # type: ignore[assignment]
    job_id = await enqueue(store, dispatcher, user)
    first = await claim_one(dispatcher, lease_seconds=12.0)
    running = asyncio.create_task(run_attempt(ctx, first, abandon=asyncio.Event()))
    await asyncio.wait_for(held.started.wait(), 10)
    fence = job_row(worker_stack.database_url, job_id)["fence"]

    # When its Redis lease is reaped and recording the loss in Postgres fails (the lease is
    # simply gone from Redis), and five more jobs are claimed at once (Redis sees five slots)
    others = [await enqueue(store, dispatcher, user) for _ in range(5)]
    worker_stack.redis.client().zrem("storyq:active", str(job_id))
    claims = await dispatcher.claim(5, lease_seconds=60)
    assert len(claims) == 5
    attempts = [asyncio.create_task(run_attempt(ctx, c, abandon=asyncio.Event())) for c in claims]
    await eventually(lambda: any(task.done() for task in attempts))

    # Then only four of them start: the live attempt still holds its slot in Postgres
    await asyncio.sleep(0.3)
    assert processing_count(worker_stack) == 5
    assert [task.result() for task in attempts if task.done()] == [Outcome.DEFERRED]
    # And the next sweep gives it its Redis lease back (Postgres has it running), same fence
    await sweep(ctx)
    assert worker_stack.redis.client().zscore("storyq:active", str(job_id))
    assert job_row(worker_stack.database_url, job_id)["fence"] == fence

    # And a sweep that finds its lease expired never takes the job from it while Postgres has
    # it running: the lease is held again, for the same attempt
    worker_stack.redis.client().zadd("storyq:active", {str(job_id): 0})
    summary = await sweep(ctx)
    assert (summary.reaped, summary.requeued) == (0, 0)
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["fence"], row["attempts"]) == ("processing", fence, 1)
    expiry = worker_stack.redis.client().zscore("storyq:active", str(job_id))
    assert expiry is not None
    assert expiry > time.time() * 1000

    held.gate.set()
    assert await running is Outcome.COMPLETED
    await asyncio.gather(*attempts)
    assert len(others) == 5


async def test_a_superseded_generation_stops_within_two_seconds(
    worker_stack: LocalStack,
    worker_settings: Settings,
    ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a generation running
    job_id, claim, running = await generation_running(ctx, store, dispatcher, user)
    held: Held = ctx.generator  # type: ignore[assignment]

    # When Postgres gives the job to a new fence (its attempt handed back by a holder of the
    # same token)
    await store.jobs.release(job_id, fence=claim.fence)
    moved_at = time.monotonic()

    # Then the generation task ends within 2 s, and its result would count for nothing
    assert await asyncio.wait_for(running, 5) is Outcome.DROPPED
    assert held.cancelled_at[str(job_id)] - moved_at < 2.0
    assert job_row(worker_stack.database_url, job_id)["content"] is None


async def test_a_running_generation_sends_redis_nothing_until_it_ends(
    worker_stack: LocalStack,
    ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a generation running, claimed as the drain claims (1.5 s leases: the old design
    # renewed the Redis lease every 0.5 s)
    job_id = await enqueue(store, dispatcher, user)
    claimed_at = time.time()
    claim = await claim_one(dispatcher, lease_seconds=ctx.settings.dispatch_lease_seconds)
    running = asyncio.create_task(run_attempt(ctx, claim, abandon=asyncio.Event()))
    held: Held = ctx.generator  # type: ignore[assignment]
    await asyncio.wait_for(held.started.wait(), 10)
    client = worker_stack.redis.client()
    expiry = client.zscore("storyq:active", str(job_id))
    client.config_resetstat()

    # When several leases' worth of time pass
    await asyncio.sleep(ctx.settings.lease_seconds * 3)

    # Then Postgres heard the heartbeats, Redis heard nothing, and the lease still holds the
    # slot for the longest a healthy attempt runs (Upstash bills every command: issue 18)
    stats = client.info("commandstats")
    assert not {name for name in stats if not name.startswith(("cmdstat_info", "cmdstat_config"))}
    assert client.zscore("storyq:active", str(job_id)) == expiry
    assert expiry is not None
    assert expiry / 1000 - claimed_at > ctx.settings.generation_timeout_seconds
    assert job_row(worker_stack.database_url, job_id)["status"] == "processing"
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_generation_cut_off_from_postgres_stops_before_it_could_be_counted_dead(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a worker whose PostgREST can go away, running a generation
    from storyq.config import DEV_JWT_SECRET
    from storyq_local.emulators.supabase import create_app as supabase_app
    from storyq_local.stack.servers import serve_in_thread

    own = serve_in_thread(
        supabase_app(database_url=worker_stack.database_url, jwt_secret=DEV_JWT_SECRET)
    )
    settings = worker_settings.model_copy(update={"supabase_url": own.url})
    held = Held()
    job_id = await enqueue(store, dispatcher, user)
    async with open_context(settings, generator=held) as cut_off:
        running = asyncio.create_task(
            run_attempt(cut_off, await claim_one(dispatcher), abandon=asyncio.Event())
        )
        await asyncio.wait_for(held.started.wait(), 10)

        # When Postgres is out of its reach
        await asyncio.to_thread(own.stop)

        # Then it stops generating on its own, before its last heartbeat is a lease old (when
        # a sweep or another worker's start may count the attempt as dead and run the job again)
        outcome = await asyncio.wait_for(running, 10)
    last_heartbeat = job_row(worker_stack.database_url, job_id)["heartbeat_at"].timestamp()
    stopped = held.cancelled_at[str(job_id)] - time.monotonic() + time.time()
    assert stopped < last_heartbeat + worker_settings.lease_seconds
    assert outcome is Outcome.ERROR  # it could not hand the job back either: a sweep will
    assert job_row(worker_stack.database_url, job_id)["status"] == "processing"


async def test_nothing_of_a_job_stays_in_redis_when_its_worker_dies_after_postgres(
    worker_stack: LocalStack,
    worker_settings: Settings,
    ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given one job completed and one failed for good in Postgres by workers that died before
    # telling Redis (their leases and bookkeeping are still there)
    done = await enqueue(store, dispatcher, user)
    failed = await enqueue(store, dispatcher, user)
    for job_id, finish in ((done, "complete"), (failed, "fail")):
        claim = await claim_one(dispatcher, lease_seconds=0.3)
        assert claim.job_id == job_id
        await start(store, worker_settings, job_id, claim.fence)
        if finish == "complete":
            await store.jobs.complete(job_id, fence=claim.fence, content="The end.")
        else:
            await store.jobs.fail(
                job_id, fence=claim.fence, failure=Failure(code="x", message="x", retryable=False)
            )
        assert redis_entries(worker_stack, job_id)
    # And bookkeeping of a job that is in no queue at all (a failed call left it)
    orphan = uuid.uuid4()
    worker_stack.redis.client().hset(
        "storyq:jobs", mapping={f"{orphan}:fence": 7, f"{orphan}:user": "u"}
    )

    # When their leases lapse and a sweep runs
    await asyncio.sleep(0.4)
    summary = await sweep(ctx)

    # Then Redis holds nothing of any of them
    assert summary.reaped == 2
    assert summary.orphans >= 1
    for job_id in (done, failed, orphan):
        assert redis_entries(worker_stack, job_id) == []


@pytest.fixture
async def hung_upstash() -> AsyncIterator[str]:
    """An endpoint that accepts connections and never answers: Upstash hung mid-request."""
    stuck: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stuck.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    yield f"http://{host}:{port}"
    for writer in stuck:
        writer.close()
    server.close()


async def test_a_hung_redis_never_holds_back_the_postgres_heartbeats(
    worker_stack: LocalStack,
    worker_settings: Settings,
    hung_upstash: str,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a generation whose worker's Redis hangs on every call (its claim came through)
    held = Held()
    job_id = await enqueue(store, dispatcher, user)
    claim = await claim_one(dispatcher)
    settings = worker_settings.model_copy(
        update={"upstash_redis_rest_url": hung_upstash, "http_timeout_seconds": 1.0}
    )
    async with open_context(settings, generator=held) as hung:
        running = asyncio.create_task(run_attempt(hung, claim, abandon=asyncio.Event()))
        await asyncio.wait_for(held.started.wait(), 10)

        # When three leases pass
        lease = worker_settings.lease_seconds
        deadline = time.monotonic() + 3 * lease
        while time.monotonic() < deadline:
            await asyncio.sleep(lease / 4)
            # Then Postgres hears from it all along: the attempt never looks dead
            row = job_row(worker_stack.database_url, job_id)
            silent_for = time.time() - row["heartbeat_at"].timestamp()
            assert silent_for < lease, f"no heartbeat for {silent_for:.2f} s"
        assert str(job_id) not in held.cancelled_at

        # And the generation, let go, is saved (its Redis ack times out: a sweep tidies up)
        held.gate.set()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 10)
    assert job_row(worker_stack.database_url, job_id)["status"] == "completed"


async def test_a_lease_no_running_attempt_backs_is_settled_by_a_sweep_after_a_lease(
    worker_stack: LocalStack,
    long_lease_ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # (12 s leases: the first sweep below comes well within a lease of the claim)
    ctx = long_lease_ctx
    # Given a job claimed for a long lease by a worker that died before starting it
    job_id = await enqueue(store, dispatcher, user)
    await claim_one(dispatcher, lease_seconds=ctx.settings.dispatch_lease_seconds)
    assert job_id in await dispatcher.active_job_ids()

    # When a sweep runs at once: the claim is too fresh to judge (its start may be on its way)
    assert (await sweep(ctx)).reaped == 0
    assert job_id in await dispatcher.active_job_ids()

    # Then a sweep a lease later frees the slot and queues the job again
    await asyncio.sleep(ctx.settings.lease_seconds)
    assert (await sweep(ctx)).reaped == 1
    assert job_id not in await dispatcher.active_job_ids()
    again = await claim_one(dispatcher, lease_seconds=ctx.settings.dispatch_lease_seconds)
    assert again.job_id == job_id
    assert job_row(worker_stack.database_url, job_id)["status"] == "pending"


async def test_a_process_sends_the_heartbeats_of_all_its_attempts_in_one_request(
    worker_stack: LocalStack,
    ctx: WorkerContext,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given five generations running in one worker process
    for _ in range(5):
        await enqueue(store, dispatcher, user)
    claims = await dispatcher.claim(5, lease_seconds=ctx.settings.dispatch_lease_seconds)
    attempts = [
        asyncio.create_task(run_attempt(ctx, claim, abandon=asyncio.Event())) for claim in claims
    ]
    job_ids = [str(claim.job_id) for claim in claims]
    await eventually(lambda: processing_count(worker_stack) == 5)

    def beats() -> list[tuple[str, object]]:
        with psycopg.connect(worker_stack.database_url) as conn:
            rows = conn.execute(
                "select xmin::text, heartbeat_at from public.story_jobs where id = any(%s::uuid[])",
                (job_ids,),
            ).fetchall()
        return [(str(xmin), at) for xmin, at in rows]

    started = {at for _, at in beats()}

    # When its heartbeats tick (every lease / 4 here)
    def one_tick_recorded_all() -> bool:
        now = beats()
        return all(at not in started for _, at in now) and len({x for x, _ in now}) == 1

    # Then a tick records all five beats in one transaction (one request, whatever the number
    # of attempts: at 500 slots, one call every 2 s per process instead of 250 a second)
    await eventually(one_tick_recorded_all, timeout=10)
    for task in attempts:
        task.cancel()
    await asyncio.gather(*attempts, return_exceptions=True)
