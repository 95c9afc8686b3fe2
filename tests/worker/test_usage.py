"""What each attempt cost, recorded by the worker: model, tokens and dollars per attempt in
`story_job_attempts`, whatever the attempt came to, and their sum in the completed job's
result. Real worker invocations against the OpenAI emulator, the scratch Postgres and a private
Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import SecretStr

from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.emulators.openai import create_app
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.servers import ThreadedServer, serve_in_thread
from tests.worker.helpers import drive, enqueue, job_row

# $1 and $2 per million prompt and completion tokens: easy to check by hand.
PRICES = {"*": (1.0, 2.0)}


@pytest.fixture(scope="module")
def openai_server() -> Iterator[ThreadedServer]:
    server = serve_in_thread(create_app(api_key="test-key"))
    yield server
    server.stop()


def openai_settings(settings: Settings, server: ThreadedServer, model: str) -> Settings:
    return settings.model_copy(
        update={
            "generator": "openai",
            "openai_base_url": f"{server.url}/v1",
            "openai_api_key": SecretStr("test-key"),
            "openai_model": model,
            "model_prices": PRICES,
        }
    )


def attempts_of(database_url: str, job_id: uuid.UUID) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        return list(
            conn.execute(
                "select * from public.story_job_attempts where job_id = %s order by fence",
                (job_id,),
            ).fetchall()
        )


def dollars(prompt: int, completion: int) -> float:
    return (prompt * 1.0 + completion * 2.0) / 1_000_000


async def test_a_completed_story_shows_what_it_cost(
    worker_stack: LocalStack,
    worker_settings: Settings,
    openai_server: ThreadedServer,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given an openai job that completes on its first attempt
    settings = openai_settings(worker_settings, openai_server, "story")
    job_id = await enqueue(store, dispatcher, user, target_words=200)
    db = worker_stack.database_url

    await drive(settings, lambda: job_row(db, job_id)["status"] == "completed")

    # Then its attempt records the provider's own token counts and their price
    [attempt] = attempts_of(db, job_id)
    assert (attempt["model"], attempt["outcome"], attempt["usage_estimated"]) == (
        "story",
        "completed",
        False,
    )
    prompt, completion = attempt["prompt_tokens"], attempt["completion_tokens"]
    assert prompt > 20
    assert completion > 200  # 200 words and a title: over a token per word
    assert float(attempt["cost_usd"]) == pytest.approx(dollars(prompt, completion), abs=1e-8)
    # and the job's result sums it for the user to see
    usage = job_row(db, job_id)["result"]["usage"]
    assert (usage["promptTokens"], usage["completionTokens"]) == (prompt, completion)
    assert usage["costUsd"] == pytest.approx(dollars(prompt, completion), abs=1e-8)


async def test_a_cut_attempt_is_recorded_with_an_estimate_and_counted_in_the_total(
    worker_stack: LocalStack,
    worker_settings: Settings,
    openai_server: ThreadedServer,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a job whose first attempt's stream is cut midway (no usage report comes)
    db = worker_stack.database_url
    cut = openai_settings(worker_settings, openai_server, "truncated")
    job_id = await enqueue(store, dispatcher, user, target_words=200)
    await drive(cut, lambda: job_row(db, job_id)["attempts"] == 1)
    await drive(cut, lambda: job_row(db, job_id)["status"] == "pending")

    # When its retry completes on a model that reports its usage
    await drive(
        openai_settings(worker_settings, openai_server, "story"),
        lambda: job_row(db, job_id)["status"] == "completed",
    )

    # Then the cut attempt was recorded, estimated from the text that did arrive, and the
    # result's total counts both attempts
    first, last = attempts_of(db, job_id)
    assert (first["outcome"], first["error_code"], first["usage_estimated"]) == (
        "retrying",
        "incomplete_stream",
        True,
    )
    assert first["completion_tokens"] > 0
    assert float(first["cost_usd"]) > 0
    assert (last["outcome"], last["usage_estimated"]) == ("completed", False)
    usage = job_row(db, job_id)["result"]["usage"]
    assert usage["completionTokens"] == first["completion_tokens"] + last["completion_tokens"]
    assert usage["costUsd"] == pytest.approx(
        float(first["cost_usd"]) + float(last["cost_usd"]), abs=1e-8
    )
