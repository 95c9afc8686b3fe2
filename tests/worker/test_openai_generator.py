"""The `openai` generator against the OpenAI emulator (storyq_local.emulators.openai): streamed
stories with progress, and every failure classified transient or permanent."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from storyq.config import Settings
from storyq.generation import (
    GenerationRequest,
    PermanentGenerationError,
    TransientGenerationError,
    build_generator,
    count_words,
    estimated_tokens,
)
from storyq.generation.openai_chat import OpenAIGenerator, retry_after_seconds, split_title
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.emulators.openai import Recorded, create_app
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.servers import ThreadedServer, free_port, serve_in_thread
from storyq_worker.invocation import run_invocation
from tests.support.polling import eventually
from tests.worker.helpers import drive, enqueue, job_row

REQUEST = GenerationRequest(job_id="job-1", prompt="a storm collector", target_words=300)


@pytest.fixture(scope="module")
def openai_app() -> Starlette:
    return create_app(api_key="test-key")


@pytest.fixture(scope="module")
def openai_server(openai_app: Starlette) -> Iterator[ThreadedServer]:
    server = serve_in_thread(openai_app)
    yield server
    server.stop()


@pytest.fixture
def recorded(openai_app: Starlette) -> Recorded:
    seen: Recorded = openai_app.state.recorded
    return seen


def generator(
    server: ThreadedServer,
    model: str,
    *fallbacks: str,
    timeout: float = 10.0,
    first_token_timeout: float = 10.0,
) -> OpenAIGenerator:
    return OpenAIGenerator(
        api_key="test-key",
        model=model,
        fallback_models=fallbacks,
        base_url=f"{server.url}/v1",
        timeout_seconds=timeout,
        first_token_timeout_seconds=first_token_timeout,
    )


async def test_a_streamed_story_is_titled_counted_and_judged(openai_server: ThreadedServer) -> None:
    reports: list[str] = []

    result = await generator(openai_server, "slow-story").generate(REQUEST, reports.append)

    assert result.title == "The Storm Collector"
    assert not result.content.startswith("#")
    assert result.words == 300
    assert (result.finish_reason, result.quality) == ("stop", "high")
    assert (result.generator, result.model) == ("openai", "slow-story")
    # the story's body arrived while the stream was still running, without the title line,
    # each report extending the one before, and the last the whole story
    assert reports[0] == ""
    assert any(0 < count_words(text) < 300 for text in reports)
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(reports))
    assert not any(text.lstrip().startswith("#") for text in reports)
    assert result.content.startswith(reports[-1].strip())


async def test_a_story_cut_by_the_length_limit_is_kept_with_a_lower_quality(
    openai_server: ThreadedServer,
) -> None:
    result = await generator(openai_server, "long-winded").generate(REQUEST, lambda _: None)
    assert (result.finish_reason, result.quality) == ("length", "medium")


async def test_429_is_transient_and_carries_retry_after(openai_server: ThreadedServer) -> None:
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "rate-limited").generate(REQUEST, lambda _: None)
    assert (caught.value.code, caught.value.retry_after) == ("rate_limited", 7.0)


async def test_500_is_transient(openai_server: ThreadedServer) -> None:
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "server-error").generate(REQUEST, lambda _: None)
    assert caught.value.code == "upstream_error"


async def test_a_stalled_stream_times_out_as_a_transient_error(
    openai_server: ThreadedServer,
) -> None:
    began = time.monotonic()
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "stall", timeout=0.5).generate(REQUEST, lambda _: None)
    assert caught.value.code == "timeout"
    assert time.monotonic() - began < 3


async def test_a_stream_that_ends_unfinished_is_transient(openai_server: ThreadedServer) -> None:
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "truncated").generate(REQUEST, lambda _: None)
    assert caught.value.code == "incomplete_stream"


async def test_a_400_content_refusal_is_permanent(openai_server: ThreadedServer) -> None:
    with pytest.raises(PermanentGenerationError) as caught:
        await generator(openai_server, "refuse").generate(REQUEST, lambda _: None)
    assert caught.value.code == "content_refused"


async def test_a_content_filter_finish_is_permanent(openai_server: ThreadedServer) -> None:
    with pytest.raises(PermanentGenerationError) as caught:
        await generator(openai_server, "filtered").generate(REQUEST, lambda _: None)
    assert caught.value.code == "content_refused"


async def test_an_invalid_request_is_permanent(openai_server: ThreadedServer) -> None:
    with pytest.raises(PermanentGenerationError) as caught:
        await generator(openai_server, "invalid").generate(REQUEST, lambda _: None)
    assert caught.value.code == "invalid_request"


async def test_a_bad_key_is_permanent(openai_server: ThreadedServer) -> None:
    bad = OpenAIGenerator(api_key="wrong", model="story", base_url=f"{openai_server.url}/v1")
    with pytest.raises(PermanentGenerationError) as caught:
        await bad.generate(REQUEST, lambda _: None)
    assert caught.value.code == "generator_misconfigured"


async def test_an_unreachable_server_is_transient() -> None:
    nowhere = OpenAIGenerator(
        api_key="test-key", model="story", base_url=f"http://127.0.0.1:{free_port()}/v1"
    )
    with pytest.raises(TransientGenerationError) as caught:
        await nowhere.generate(REQUEST, lambda _: None)
    assert caught.value.code == "connection_error"


async def test_an_overloaded_model_falls_back_to_the_next(
    openai_server: ThreadedServer, recorded: Recorded
) -> None:
    # Given a primary model answering 503 and a working fallback
    chain = generator(openai_server, "overloaded", "fallback-after-503")

    # When a story is generated, the fallback writes it, asked once
    result = await chain.generate(REQUEST, lambda _: None)

    assert result.model == "fallback-after-503"
    assert result.words == 300
    assert recorded.requests["fallback-after-503"] == 1


async def test_an_unknown_model_falls_back_to_the_next(openai_server: ThreadedServer) -> None:
    result = await generator(openai_server, "missing", "fallback-after-404").generate(
        REQUEST, lambda _: None
    )
    assert result.model == "fallback-after-404"


async def test_a_stalled_first_token_falls_back_after_the_first_token_limit(
    openai_server: ThreadedServer,
) -> None:
    # Given a primary that sends its role chunk, then nothing for 5 s
    chain = generator(openai_server, "stall:5", "fallback-after-stall", first_token_timeout=0.3)

    # When a story is generated, the fallback writes it well before the stall would end
    began = time.monotonic()
    result = await chain.generate(REQUEST, lambda _: None)

    assert result.model == "fallback-after-stall"
    assert time.monotonic() - began < 3


async def test_a_stalled_first_token_without_fallbacks_is_transient(
    openai_server: ThreadedServer,
) -> None:
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "stall:5", first_token_timeout=0.3).generate(
            REQUEST, lambda _: None
        )
    assert caught.value.code == "first_token_timeout"


async def test_a_rate_limit_does_not_fall_back(
    openai_server: ThreadedServer, recorded: Recorded
) -> None:
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "rate-limited", "fallback-after-429").generate(
            REQUEST, lambda _: None
        )
    assert (caught.value.code, caught.value.retry_after) == ("rate_limited", 7.0)
    assert recorded.requests["fallback-after-429"] == 0


async def test_a_content_refusal_does_not_fall_back(
    openai_server: ThreadedServer, recorded: Recorded
) -> None:
    with pytest.raises(PermanentGenerationError) as caught:
        await generator(openai_server, "refuse", "fallback-after-refusal").generate(
            REQUEST, lambda _: None
        )
    assert caught.value.code == "content_refused"
    assert recorded.requests["fallback-after-refusal"] == 0


async def test_when_every_model_fails_the_last_ones_error_is_raised(
    openai_server: ThreadedServer, recorded: Recorded
) -> None:
    # Given a chain whose every model fails before its first token
    chain = generator(openai_server, "server-error", "missing", "overloaded:3")

    # Then each is asked once, and the attempt fails with the last model's error
    with pytest.raises(TransientGenerationError) as caught:
        await chain.generate(REQUEST, lambda _: None)
    assert (caught.value.code, caught.value.retry_after) == ("upstream_error", 3.0)
    assert recorded.requests["overloaded:3"] == 1


async def test_a_failure_after_text_has_streamed_does_not_fall_back(
    openai_server: ThreadedServer, recorded: Recorded
) -> None:
    # Given a primary that streams half the story, then reports an overload in the stream
    chain = generator(openai_server, "overloaded-midway", "fallback-after-text")

    # Then the attempt fails without asking the fallback: no story is stitched from two models
    with pytest.raises(TransientGenerationError) as caught:
        await chain.generate(REQUEST, lambda _: None)
    assert caught.value.code == "upstream_error"
    assert recorded.requests["fallback-after-text"] == 0


def fresh_request() -> GenerationRequest:
    """A request of its own: its `usage` is what this one generation used."""
    return GenerationRequest(job_id="job-usage", prompt="a storm collector", target_words=300)


async def test_the_providers_usage_report_is_the_attempts_usage(
    openai_server: ThreadedServer,
) -> None:
    # Given a story streamed to the end, with the usage chunk the request asks for
    request = fresh_request()
    result = await generator(openai_server, "story").generate(request, lambda _: None)

    # Then the usage is the provider's count (the emulator: a token per 4 characters of the
    # messages and of the whole reply, title line included), not an estimate
    usage = request.usage
    assert (usage.model, usage.estimated, usage.answered.is_set()) == ("story", False, True)
    reply = f"# {result.title}\n\n{result.content}"
    assert usage.completion_tokens == pytest.approx(estimated_tokens(reply), abs=2)
    assert 20 < usage.prompt_tokens < 200


async def test_a_cut_stream_still_reports_what_it_used_as_an_estimate(
    openai_server: ThreadedServer,
) -> None:
    request = fresh_request()
    with pytest.raises(TransientGenerationError):
        await generator(openai_server, "truncated").generate(request, lambda _: None)

    # No usage chunk came: the count is this side's, of the text that did arrive
    usage = request.usage
    assert (usage.model, usage.estimated) == ("truncated", True)
    whole = estimated_tokens(" ".join(["word"] * 300))
    assert 0 < usage.completion_tokens < whole
    assert usage.prompt_tokens > 20


async def test_a_cancelled_stream_reports_what_it_used_until_the_cancel(
    openai_server: ThreadedServer,
) -> None:
    request = fresh_request()
    task = asyncio.create_task(
        generator(openai_server, "endless", timeout=15).generate(request, lambda _: None)
    )
    await asyncio.sleep(0.6)  # a word every 50 ms
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert request.usage.estimated
    assert request.usage.completion_tokens >= 3


async def test_a_429_is_back_pressure_and_costs_no_tokens(openai_server: ThreadedServer) -> None:
    request = fresh_request()
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "rate-limited").generate(request, lambda _: None)
    assert caught.value.backpressure
    assert not request.usage.answered.is_set()
    assert (request.usage.prompt_tokens, request.usage.completion_tokens) == (0, 0)


async def test_only_an_overload_of_every_model_before_text_is_back_pressure(
    openai_server: ThreadedServer,
) -> None:
    # No model of the chain could answer, the last one too busy (503): back-pressure
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "server-error", "overloaded:1").generate(
            fresh_request(), lambda _: None
        )
    assert caught.value.backpressure
    # A plain 500 (something broke, not "too busy"), an overload after text, a cut stream, an
    # account out of credit, a stall: the attempt's own failure
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "overloaded:1", "server-error").generate(
            fresh_request(), lambda _: None
        )
    assert not caught.value.backpressure
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "out-of-quota").generate(fresh_request(), lambda _: None)
    assert (caught.value.code, caught.value.backpressure) == ("quota_exceeded", False)
    for model in ("overloaded-midway", "truncated"):
        with pytest.raises(TransientGenerationError) as caught:
            await generator(openai_server, model).generate(fresh_request(), lambda _: None)
        assert not caught.value.backpressure, model
    with pytest.raises(TransientGenerationError) as caught:
        await generator(openai_server, "stall:5", first_token_timeout=0.3).generate(
            fresh_request(), lambda _: None
        )
    assert not caught.value.backpressure


def test_fallback_models_are_read_as_a_comma_separated_list() -> None:
    settings = Settings(openai_fallback_models=" gpt-4.1-mini, ,gpt-4o ")  # type: ignore[arg-type]
    assert settings.openai_fallback_models == ["gpt-4.1-mini", "gpt-4o"]


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_the_title_line_is_split_from_the_story() -> None:
    assert split_title("# Night Tide\n\nIt rained.", "x") == ("Night Tide", "It rained.")
    assert split_title("Title: **Night Tide**\nIt rained.", "x") == ("Night Tide", "It rained.")
    assert split_title("It rained.\nAll night.", "Fallback") == (
        "Fallback",
        "It rained.\nAll night.",
    )


async def test_the_worker_runs_openai_jobs_and_honours_retry_after(
    worker_stack: LocalStack,
    worker_settings: Settings,
    openai_server: ThreadedServer,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given GENERATOR=openai pointing at the local server
    openai = worker_settings.model_copy(
        update={
            "generator": "openai",
            "openai_base_url": f"{openai_server.url}/v1",
            "openai_api_key": SecretStr("test-key"),
            "openai_model": "story",
        }
    )
    job_id = await enqueue(store, dispatcher, user, target_words=200)

    # When the worker runs, the story comes from the model
    await drive(openai, lambda: job_row(worker_stack.database_url, job_id)["status"] == "completed")
    row = job_row(worker_stack.database_url, job_id)
    assert (row["title"], row["words"]) == ("The Storm Collector", 200)
    assert row["result"]["generator"] == "openai"
    assert row["result"]["model"] == "story"

    # And when the model answers 429 with Retry-After: 7, the attempt is given back unspent and
    # every worker's claims pause for those 7 s (test_backpressure.py follows a pause through)
    limited = openai.model_copy(update={"openai_model": "rate-limited"})
    job_id = await enqueue(store, dispatcher, user)
    worker = asyncio.create_task(run_invocation(limited))
    try:
        await eventually(lambda: dispatcher_paused(dispatcher), timeout=10)
        row = job_row(worker_stack.database_url, job_id)
        assert (row["status"], row["attempts"]) == ("pending", 0)
        pause = await dispatcher.provider_pause()
        assert pause is not None
        assert pause.reason == "rate_limited"
        assert 5.5 < (pause.until - datetime.now(UTC)).total_seconds() <= 7.5
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert build_generator(limited).name == "openai"


async def dispatcher_paused(dispatcher: Dispatcher) -> bool:
    return await dispatcher.provider_pause() is not None
