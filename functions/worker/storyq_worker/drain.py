"""The drain loop: claim up to the free slots, run the attempts concurrently, and claim again
the moment one ends, for as long as the caller wants more work.

The global limit is enforced twice: Redis leases no more than MAX_ACTIVE_JOBS (the fast path),
and Postgres starts no attempt while MAX_ACTIVE_JOBS are processing (the guard: a start it
refuses goes back to the queue, and this loop claims again only after something changed).
`concurrency` only bounds what this one process takes on.

Two ways to run it:
- a Lambda invocation (`poll_seconds=None`): claims while `keep_claiming()` (enough remaining
  time), waits only on its own attempts (no polling: new jobs kick a new invocation), and
  returns as soon as it holds nothing and a claim came back empty; once it may no longer
  claim, each slot it frees while jobs wait is handed to a fresh invocation (a kick), so the
  slot does not stay idle until the next scheduled sweep;
- the local runner (`poll_seconds` set): also polls for new jobs every `poll_seconds`, and
  returns once `stop` is set and its attempts are over (`abandon` makes them give back their
  jobs instead of finishing).

While the provider is paused (a claim raised ProviderPaused: see storyq.queue.dispatch) no
claim is sent until the time Redis named. An idle Lambda invocation waits pauses out for at most
MAX_PAUSE_WAIT_SECONDS in all (the schedule comes back every minute anyway) and then returns,
so a provider that stays limited costs no Lambda time beyond that. After a probe claim (the one
claim let through after a pause) the loop claims again PROBE_RECHECK_SECONDS later: once the
probe has been answered, the rest of the free slots fill without waiting for an attempt to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storyq.queue import Claim, ProviderPaused, QueueNotReady
from storyq.queue.dispatch import PROBE_RECHECK_SECONDS
from storyq_worker.attempt import run_attempt
from storyq_worker.context import WorkerContext
from storyq_worker.summary import Outcome, Summary
from storyq_worker.sweep import sweep
from storyq_worker.telemetry import logger

# The longest an idle Lambda invocation waits for provider pauses to end, in all (one schedule
# period).
MAX_PAUSE_WAIT_SECONDS = 60.0


def _always() -> bool:
    return True


@dataclass
class DrainOptions:
    concurrency: int
    keep_claiming: Callable[[], bool] = _always
    poll_seconds: float | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    abandon: asyncio.Event = field(default_factory=asyncio.Event)
    # The sweep just found nothing waiting: the first claim would come back empty (a job
    # queued since then kicks an invocation of its own), so it is not sent.
    nothing_waiting: bool = False

    def may_claim(self) -> bool:
        return not self.stop.is_set() and self.keep_claiming()

    def done_when_idle(self) -> bool:
        return self.poll_seconds is None or self.stop.is_set()


async def drain(ctx: WorkerContext, options: DrainOptions) -> Summary:
    summary = Summary()
    running: set[asyncio.Task[Outcome]] = set()
    deferred = options.nothing_waiting
    loop = asyncio.get_running_loop()
    claim_at = 0.0  # loop time before which the provider's pause leaves nothing to claim
    idle_wait = 0.0  # seconds this invocation has waited, idle, for pauses to end
    try:
        while True:
            if options.may_claim() and not deferred and loop.time() >= claim_at:
                claim_again_in = await _claim(ctx, options, running, summary)
                if claim_again_in is not None:
                    claim_at = loop.time() + claim_again_in
            pause_left = max(0.0, claim_at - loop.time())
            if not running and options.done_when_idle():
                waits = options.poll_seconds is None and options.may_claim()
                if not (pause_left and waits and idle_wait + pause_left <= MAX_PAUSE_WAIT_SECONDS):
                    return summary
                idle_wait += pause_left
            await _wait_for_change(running, options, pause_left=pause_left)
            ended = _collect(running, summary)
            freed = sum(outcome is not Outcome.DEFERRED for outcome in ended)
            # Postgres refused every start that ended (the cap, though Redis had room until the
            # leases it lost come back): claim again after the next change or poll, not now.
            deferred = bool(ended) and not freed
            if not options.may_claim():
                for _ in range(freed):  # one fresh invocation per slot freed
                    await _hand_off(ctx, options)
    finally:
        # Only on an error or cancellation of the drain itself: their leases lapse.
        for task in running:
            task.cancel()


async def _claim(
    ctx: WorkerContext,
    options: DrainOptions,
    running: set[asyncio.Task[Outcome]],
    summary: Summary,
) -> float | None:
    """Claim up to the free slots; the seconds after which to claim again when the provider
    is paused or this was a probe claim, else None (claim again at the next change or poll)."""
    free = options.concurrency - len(running)
    if free <= 0:
        return None
    try:
        claims = await _claim_after_rebuild(ctx, free, summary)
    except ProviderPaused as paused:
        return paused.retry_in_seconds
    except Exception:  # Redis unreachable: try again after the next change or poll
        logger.exception("claim failed")
        return None
    summary.claimed += len(claims)
    for claim in claims:
        running.add(
            asyncio.create_task(
                run_attempt(ctx, claim, abandon=options.abandon), name=f"attempt-{claim.job_id}"
            )
        )
    if any(claim.probe for claim in claims):
        return PROBE_RECHECK_SECONDS
    return None


async def _claim_after_rebuild(ctx: WorkerContext, free: int, summary: Summary) -> list[Claim]:
    """Claim; when Redis was flushed since the last sweep, sweep (it restores the leases of
    running jobs and marks the queue ready) and claim again."""
    lease = ctx.settings.dispatch_lease_seconds
    try:
        return await ctx.dispatcher.claim(free, lease_seconds=lease)
    except QueueNotReady:
        logger.warning("the queue was not ready (Redis flushed or new): sweeping first")
        summary.merge(await sweep(ctx))
        return await ctx.dispatcher.claim(free, lease_seconds=lease)


async def _wait_for_change(
    running: set[asyncio.Task[Outcome]], options: DrainOptions, *, pause_left: float = 0.0
) -> None:
    """Until an attempt ends, or (runner) the poll interval passes or `stop` is set, or the
    provider's pause (`pause_left` seconds, when > 0) ends."""
    waiters: set[asyncio.Future[Any]] = set(running)
    stop_waiter = None
    if options.poll_seconds is not None and not options.stop.is_set():
        stop_waiter = asyncio.ensure_future(options.stop.wait())
        waiters.add(stop_waiter)
    timeout = pause_left if pause_left > 0 else options.poll_seconds
    if not waiters:
        if pause_left > 0:  # an idle Lambda invocation waiting the pause out
            await asyncio.sleep(pause_left)
        return
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stop_waiter is not None:
            stop_waiter.cancel()


async def _hand_off(ctx: WorkerContext, options: DrainOptions) -> None:
    """A slot freed that this invocation will not fill: wake a fresh one if jobs wait (the
    slot it freed is there for them; the fresh invocation's claim checks the cap)."""
    if options.stop.is_set() or not ctx.kicker.function_name:
        return
    try:
        waiting = await ctx.dispatcher.waiting_count()
    except Exception:  # Redis unreachable: the schedule's sweep will find the jobs
        logger.exception("hand-off check failed")
        return
    if waiting:
        await ctx.kicker.hand_off()


def _collect(running: set[asyncio.Task[Outcome]], summary: Summary) -> list[Outcome]:
    """Take the finished attempts out of `running` and count them; their outcomes."""
    finished = [task for task in running if task.done()]
    outcomes: list[Outcome] = []
    for task in finished:
        running.discard(task)
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if exc is not None:
            # The store or Redis failed mid-attempt: its lease lapses and a sweep recovers it.
            logger.error("attempt failed unexpectedly", exc_info=exc)
            outcomes.append(Outcome.ERROR)
        else:
            outcomes.append(task.result())
        summary.count(outcomes[-1])
    return outcomes
