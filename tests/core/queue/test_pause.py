"""The provider's pause (back-pressure shared by every worker), through the Upstash emulator with
the real upstash_redis client over a real redis-server: while paused nothing is leased, after
the pause one probe at a time, and the probe's answer ends the pause or renews it."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from storyq.queue import Claim, Dispatcher, ProviderPaused
from storyq.queue import dispatch as dispatch_module
from storyq_local.stack.redis_server import RedisProcess
from tests.support.ids import job, user

LEASE = 30.0


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


async def queue_jobs(queue: Dispatcher, count: int) -> None:
    for n in range(count):
        await queue.enqueue(job(f"job-{n}"), user_id=user(f"u{n % 3}"), fence=n + 1)


async def paused_for(queue: Dispatcher) -> float:
    with pytest.raises(ProviderPaused) as paused:
        await queue.claim(5, lease_seconds=LEASE)
    return paused.value.retry_in_seconds


async def test_while_paused_nothing_is_leased_and_the_wait_is_the_providers(
    queue: Dispatcher,
) -> None:
    # Given six waiting jobs and a provider that asked for 20 s
    await queue_jobs(queue, 6)
    assert await queue.pause(20.0, reason="rate_limited") == pytest.approx(20.0, abs=0.1)

    # When workers claim
    wait = await paused_for(queue)

    # Then nothing was leased, every job still waits, and the claim says when to ask again
    assert 19.5 < wait <= 20.0
    counts = await queue.counts()
    assert (counts.waiting, counts.active) == (6, 0)
    state = await queue.provider_pause()
    assert state is not None
    assert (state.reason, state.strikes, state.probing) == ("rate_limited", 1, False)


async def test_a_wait_longer_than_the_longest_pause_is_cut_to_it(queue: Dispatcher) -> None:
    # A Retry-After a day ahead pauses for PAUSE_MAX_SECONDS, then a probe asks again
    waited = await queue.pause(86_400.0, reason="rate_limited")
    assert waited == pytest.approx(dispatch_module.PAUSE_MAX_SECONDS, abs=0.1)


async def test_a_running_pause_is_only_lengthened(queue: Dispatcher) -> None:
    await queue_jobs(queue, 1)
    await queue.pause(20.0, reason="rate_limited")

    # A shorter wait asked by a later refusal does not shorten it; a longer one lengthens it
    assert await queue.pause(1.0, reason="rate_limited") > 19.0
    assert await queue.pause(40.0, reason="upstream_error") > 39.0
    assert await paused_for(queue) > 39.0
    state = await queue.provider_pause()
    assert state is not None
    assert (state.strikes, state.reason) == (1, "upstream_error")


async def test_after_the_pause_one_claim_probes_and_the_others_wait_for_its_answer(
    queue: Dispatcher,
) -> None:
    # Given waiting jobs and a pause that has just ended
    await queue_jobs(queue, 6)
    await queue.pause(0.2, reason="rate_limited")
    await asyncio.sleep(0.3)

    # When several workers claim five at once
    probe = await queue.claim(5, lease_seconds=LEASE)
    waits = [await paused_for(queue) for _ in range(3)]

    # Then only one job is leased, as the probe; the others are told to ask again soon
    assert [claim.probe for claim in probe] == [True]
    assert all(0 < wait <= dispatch_module.PROBE_RECHECK_SECONDS for wait in waits)
    assert (await queue.counts()).active == 1
    state = await queue.provider_pause()
    assert state is not None
    assert state.probing

    # And once the probe is answered every claim is served again, not as a probe
    await queue.resume()
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert len(claims) == 4
    assert not any(claim.probe for claim in claims)
    assert await queue.provider_pause() is None


async def test_a_refused_probe_renews_the_pause_and_counts_a_strike(queue: Dispatcher) -> None:
    # Given a pause without a Retry-After, over, and its probe out
    await queue_jobs(queue, 3)
    first = await queue.pause(None, reason="upstream_error")
    assert first == pytest.approx(dispatch_module.PAUSE_BASE_SECONDS, abs=0.1)
    with pytest.MonkeyPatch.context() as patch:
        # a shorter base wait so the test sees the pause end
        patch.setattr(dispatch_module, "PAUSE_BASE_SECONDS", 0.2)
        await queue.resume()
        await queue.pause(None, reason="upstream_error")
        await asyncio.sleep(0.3)
        [probe] = await queue.claim(5, lease_seconds=LEASE)
        assert probe.probe

        # When the provider refuses the probe for load too
        second = await queue.pause(None, reason="upstream_error")

    # Then the pause starts again, twice as long (a second strike), and no probe is out
    assert second == pytest.approx(0.4, abs=0.05)
    state = await queue.provider_pause()
    assert state is not None
    assert (state.strikes, state.probing) == (2, False)
    assert await paused_for(queue) > 0.3


async def test_a_probe_that_never_reached_the_provider_lets_the_next_claim_probe(
    queue: Dispatcher,
) -> None:
    await queue_jobs(queue, 3)
    await queue.pause(0.1, reason="rate_limited")
    await asyncio.sleep(0.2)
    [probe] = await queue.claim(5, lease_seconds=LEASE)
    await paused_for(queue)

    # When its start is refused and the worker hands the probe back
    await queue.end_probe()

    # Then the next claim probes at once
    [next_probe] = await queue.claim(5, lease_seconds=LEASE)
    assert next_probe.probe
    assert next_probe.job_id != probe.job_id


async def test_a_lost_probe_lets_another_claim_probe_once_its_time_is_up(
    queue: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch_module, "PROBE_SECONDS", 0.3)
    await queue_jobs(queue, 3)
    await queue.pause(0.1, reason="rate_limited")
    await asyncio.sleep(0.2)
    await queue.claim(5, lease_seconds=LEASE)  # its worker dies: no answer ever comes
    assert await paused_for(queue) <= 0.3

    await asyncio.sleep(0.35)

    claims = await queue.claim(5, lease_seconds=LEASE)
    assert [claim.probe for claim in claims] == [True]


async def test_claims_are_unchanged_without_a_pause(queue: Dispatcher) -> None:
    await queue_jobs(queue, 7)
    claims: list[Claim] = list(
        itertools.chain(
            await queue.claim(3, lease_seconds=LEASE), await queue.claim(3, lease_seconds=LEASE)
        )
    )
    assert len(claims) == 5  # the global cap
    assert not any(claim.probe for claim in claims)
    assert await queue.provider_pause() is None
