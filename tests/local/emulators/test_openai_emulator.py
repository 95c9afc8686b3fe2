"""The OpenAI emulator through the official `openai` client: a streamed story with its usage
chunk, the same story whole, and the scripted failures with the headers a real provider sends.
(The generator's classification of each failure is tested in tests/worker.)"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from storyq_local.emulators.openai import DEV_API_KEY, create_app, tokens
from storyq_local.stack.servers import ThreadedServer, serve_in_thread, wait_until

ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write a story of about 120 words."}
]


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    served = serve_in_thread(create_app())
    yield served
    served.stop()


@pytest.fixture
def client(server: ThreadedServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=DEV_API_KEY, base_url=f"{server.url}/v1", max_retries=0)


def test_a_stream_ends_with_its_usage_when_asked(client: openai.OpenAI) -> None:
    # When a story is streamed with include_usage
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=ASK,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    # Then it is a titled story of the asked length, then a usage chunk with no choices
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    title, _, body = text.partition("\n\n")
    assert title == "# The Storm Collector"
    assert len(body.split()) == 120
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert chunks[-1].choices == []
    assert usage.completion_tokens == tokens(text)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0


def test_the_same_story_comes_whole_without_stream(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="long-winded", messages=ASK)
    assert answer.choices[0].finish_reason == "length"
    assert (answer.choices[0].message.content or "").startswith("# The Storm Collector")
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0


def test_a_rate_limit_carries_retry_after_and_ratelimit_headers(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="rate-limited:30", messages=ASK, stream=True)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "30"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "30s"


def test_a_rate_limit_for_a_while_then_stories(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="rate-limited-for:0.3", messages=ASK)
    assert caught.value.response.headers["retry-after"] == "1"

    def a_story() -> bool:
        try:
            answer = client.chat.completions.create(model="rate-limited-for:0.3", messages=ASK)
        except openai.RateLimitError:
            return False
        return answer.choices[0].finish_reason == "stop"

    # the window runs from the first request; after it, stories come
    wait_until(a_story, timeout=5, what="a story once the rate limit has passed")


@pytest.mark.parametrize(
    ("model", "status"),
    [("server-error", 500), ("overloaded:4", 503), ("refuse", 400), ("missing", 404)],
)
def test_scripted_errors(client: openai.OpenAI, model: str, status: int) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=ASK, stream=True)
    assert caught.value.status_code == status
    if model.startswith("overloaded"):
        assert caught.value.response.headers["retry-after"] == "4"
    if model == "missing":
        assert caught.value.code == "model_not_found"


def test_an_overload_midway_is_an_error_event_after_part_of_the_story(
    client: openai.OpenAI,
) -> None:
    received: list[str] = []

    def read_the_stream() -> None:
        stream = client.chat.completions.create(
            model="overloaded-midway", messages=ASK, stream=True
        )
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as caught:
        read_the_stream()
    assert "".join(received).startswith("# The Storm Collector")
    assert caught.value.code == "overloaded"


def test_a_wrong_key_is_refused(server: ThreadedServer) -> None:
    wrong = openai.OpenAI(api_key="wrong", base_url=f"{server.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="gpt-4o-mini", messages=ASK)
