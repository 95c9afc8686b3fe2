"""A local stand-in for an OpenAI-compatible Chat Completions API, for the tests and for
`storyq dev --generator openai`: the unchanged `openai` client streams stories from it.

- `POST /v1/chat/completions` with `stream: true` answers Server-Sent Events: `data: {chunk}`
  lines (`chat.completion.chunk`, the first with the assistant role), then `data: [DONE]`; with
  `stream_options.include_usage`, every chunk carries `"usage": null` and a last chunk with no
  choices carries the usage. Without `stream` it answers one `chat.completion` with its usage.
- Tokens are counted roughly, as OpenAI's rule of thumb has it: a token per 4 characters
  (rounded up), of every message's content for the prompt and of the reply for the completion.
- The story is a title line (`# The Storm Collector`) and paragraphs of exactly the word count
  the prompt asks for ("... of about N words", else 100), paced over `story_seconds`.
- `Authorization: Bearer <api_key>` is checked first (401 `invalid_api_key`), as OpenAI does.
- Successful answers and 429s carry OpenAI's `x-ratelimit-*` headers.

The requested model picks the behaviour, so one server serves every scenario at once; a number
after a colon tunes it (`stall:2`). Any other model name writes the story and stops:

    slow-story            the story paced over 1.5 s (progress can be seen mid-stream)
    long-winded           finish_reason "length"
    stall[:S]             S s (default 5) between the role chunk and the first token
    truncated             the stream ends midway: no finish_reason, no [DONE]
    filtered              finish_reason "content_filter" midway
    overloaded-midway     half the story, then an `overloaded` error event in the stream
    endless               a word every 50 ms for a minute; a client that closes early is
                          recorded in `Recorded.closed_early`
    rate-limited[:S]      429 `rate_limit_exceeded`, Retry-After S (default 7)
    rate-limited-for:S    429 for S s after this name's first request (Retry-After: what is left),
                          then stories
    out-of-quota          429 `insufficient_quota` (an account out of credit; no Retry-After)
    server-error          500
    overloaded[:S]        503 `overloaded`, Retry-After S (default 2)
    refuse                400 `content_policy_violation`
    invalid               400 `invalid_value`
    missing               404 `model_not_found`, as for a model that does not exist
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

# What `storyq dev` gives the worker as OPENAI_API_KEY when it runs this emulator.
DEV_API_KEY = "sk-storyq-local"
TITLE = "The Storm Collector"
SENTENCES = (
    "The keeper counted every storm she had ever caught in jars along the lighthouse stairs.",
    "Each jar held a different weather, and some of them still hummed at night.",
    "When the fishermen came to ask for calm seas, she listened before she answered.",
    "Her grandmother had taught her that a storm kept too long forgets where it was born.",
    "So every autumn she carried one jar down to the harbour and let it go.",
    "The town watched the clouds unfold over the water and went quiet for a while.",
)
PARAGRAPH_WORDS = 50
SLOW_STORY_SECONDS = 1.5
STALL_SECONDS = 5.0
ENDLESS_SECONDS = 60.0
ENDLESS_STEP_SECONDS = 0.05
RATE_LIMITED_RETRY_AFTER = 7.0
OVERLOADED_RETRY_AFTER = 2.0
REQUESTS_PER_MINUTE = 500
TOKENS_PER_MINUTE = 200_000
# Scenarios answered with one fixed error: status, code, message.
_ERRORS = {
    "server-error": (500, "server_error", "The server had an error while processing"),
    "out-of-quota": (429, "insufficient_quota", "You exceeded your current quota"),
    "refuse": (400, "content_policy_violation", "Rejected by the safety system"),
    "invalid": (400, "invalid_value", "max_tokens is too large"),
    "missing": (404, "model_not_found", "The model does not exist or you do not have access"),
}
_TARGET = re.compile(r"about (\d+) words")


@dataclass
class Recorded:
    """What the emulator saw, for tests that run it on a thread of their own process."""

    # Requests by model name, answered or refused.
    requests: Counter[str] = field(default_factory=Counter)
    # time.monotonic() of each `endless` stream its client closed before the end.
    closed_early: list[float] = field(default_factory=list)
    # time.monotonic() of the first request of each `rate-limited-for:S` name.
    first_seen: dict[str, float] = field(default_factory=dict)
    # Every chat completion request as (time.monotonic(), model, HTTP status answered).
    log: list[tuple[float, str, int]] = field(default_factory=list)


def tokens(text: str) -> int:
    """A rough token count: one per 4 characters, rounded up."""
    return math.ceil(len(text) / 4)


def story_pieces(target_words: int) -> list[str]:
    """The reply in stream-sized pieces: the title line, then 5 words at a time; a paragraph
    ends at the first sentence's end after PARAGRAPH_WORDS; exactly `target_words` words."""
    words = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(target_words // 10 + 1)).split()
    words = words[:target_words]
    if words and not words[-1].endswith("."):
        words[-1] += "."
    spaced: list[str] = []
    in_paragraph = 0
    for word in words:
        in_paragraph += 1
        ends_paragraph = word.endswith(".") and in_paragraph >= PARAGRAPH_WORDS
        spaced.append(word + ("\n\n" if ends_paragraph else " "))
        in_paragraph = 0 if ends_paragraph else in_paragraph
    spaced[-1:] = [w.rstrip() for w in spaced[-1:]]
    return [f"# {TITLE}\n\n"] + ["".join(spaced[i : i + 5]) for i in range(0, len(spaced), 5)]


def _scenario(model: str) -> tuple[str, float | None]:
    name, _, arg = model.partition(":")
    try:
        return name, float(arg) if arg else None
    except ValueError:
        return model, None


def _ratelimit_headers(*, remaining: int, reset_seconds: float) -> dict[str, str]:
    reset = f"{reset_seconds:g}s"
    return {
        "x-ratelimit-limit-requests": str(REQUESTS_PER_MINUTE),
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(TOKENS_PER_MINUTE),
        "x-ratelimit-remaining-tokens": str(TOKENS_PER_MINUTE if remaining else 0),
        "x-ratelimit-reset-tokens": reset,
    }


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    kind = (
        "rate_limit_exceeded"
        if status == 429
        else "server_error"
        if status >= 500
        else "invalid_request_error"
    )
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _rate_limited(retry_after: float) -> Response:
    seconds = max(1, math.ceil(retry_after))
    headers = {
        "retry-after": str(seconds),
        **_ratelimit_headers(remaining=0, reset_seconds=seconds),
    }
    return _error(429, "rate_limit_exceeded", "Rate limit reached for requests", headers)


@dataclass(frozen=True)
class _Call:
    """One request: what was asked and how to answer it."""

    model: str
    scenario: str
    arg: float | None
    target_words: int
    prompt_tokens: int
    include_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(self, delta: dict[str, str], finish: str | None = None) -> str:
        body: dict[str, Any] = {
            "id": "chatcmpl-storyq-local",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if self.include_usage:
            body["usage"] = None
        return f"data: {json.dumps(body)}\n\n"

    def usage(self, completion: str) -> dict[str, int]:
        done = tokens(completion)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": done,
            "total_tokens": self.prompt_tokens + done,
        }

    def usage_chunk(self, completion: str) -> str:
        body = {
            "id": "chatcmpl-storyq-local",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(completion),
        }
        return f"data: {json.dumps(body)}\n\n"


class OpenAIEmulator:
    """The routes, with what they saw in `recorded`."""

    def __init__(self, *, api_key: str, story_seconds: float = 0.0) -> None:
        self.api_key = api_key
        self.story_seconds = story_seconds
        self.recorded = Recorded()

    async def chat_completions(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_api_key", "Incorrect API key provided")
        try:
            body = await request.json()
            call = _call(body)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "invalid_request", f"Malformed request: {exc}")
        self.recorded.requests[call.model] += 1
        refused = self._refusal(call)
        self.recorded.log.append(
            (time.monotonic(), call.model, 200 if refused is None else refused.status_code)
        )
        if refused is not None:
            return refused
        headers = _ratelimit_headers(remaining=REQUESTS_PER_MINUTE - 1, reset_seconds=0.12)
        if not body.get("stream"):
            return self._whole(call, headers)
        chunks = self._endless(call) if call.scenario == "endless" else self._stream(call)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)

    def _refusal(self, call: _Call) -> Response | None:
        """The error this model answers before any streaming, if it answers one."""
        scenario, arg = call.scenario, call.arg
        if scenario == "rate-limited":
            return _rate_limited(arg if arg is not None else RATE_LIMITED_RETRY_AFTER)
        if scenario == "rate-limited-for" and arg is not None:
            first = self.recorded.first_seen.setdefault(call.model, time.monotonic())
            left = first + arg - time.monotonic()
            return _rate_limited(left) if left > 0 else None
        if scenario == "overloaded":
            retry = {"retry-after": f"{arg if arg is not None else OVERLOADED_RETRY_AFTER:g}"}
            return _error(503, "overloaded", "The engine is currently overloaded", retry)
        if scenario in _ERRORS:
            return _error(*_ERRORS[scenario])
        return None

    def _whole(self, call: _Call, headers: Mapping[str, str]) -> Response:
        if call.scenario in ("endless", "truncated", "stall", "overloaded-midway"):
            return _error(400, "invalid_request", f"model {call.model} only streams")
        pieces, finish = _plan(call)
        content = "".join(pieces)
        body = {
            "id": "chatcmpl-storyq-local",
            "object": "chat.completion",
            "created": call.created,
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish,
                }
            ],
            "usage": call.usage(content),
        }
        return JSONResponse(body, headers=dict(headers))

    async def _stream(self, call: _Call) -> AsyncIterator[str]:
        yield call.chunk({"role": "assistant", "content": ""})
        if call.scenario == "stall":
            await asyncio.sleep(call.arg if call.arg is not None else STALL_SECONDS)
        pieces, finish = _plan(call)
        pace = SLOW_STORY_SECONDS if call.scenario == "slow-story" else self.story_seconds
        for piece in pieces:
            if pace:
                await asyncio.sleep(pace / len(pieces))
            yield call.chunk({"content": piece})
        if call.scenario == "overloaded-midway":
            # OpenAI reports a failure after the stream has begun as an `error` object in it
            error = {"message": "The engine is currently overloaded", "code": "overloaded"}
            yield f"data: {json.dumps({'error': {**error, 'type': 'server_error'}})}\n\n"
            return
        if finish is None:
            return  # the connection ends mid-story: no finish_reason, no [DONE]
        yield call.chunk({}, finish)
        if call.include_usage:
            yield call.usage_chunk("".join(pieces))
        yield "data: [DONE]\n\n"

    async def _endless(self, call: _Call) -> AsyncIterator[str]:
        yield call.chunk({"role": "assistant", "content": ""})
        yield call.chunk({"content": "# The Endless Storm\n\n"})
        words = " ".join(SENTENCES).split()
        written: list[str] = []
        try:
            for step in range(int(ENDLESS_SECONDS / ENDLESS_STEP_SECONDS)):
                await asyncio.sleep(ENDLESS_STEP_SECONDS)
                written.append(words[step % len(words)] + " ")
                yield call.chunk({"content": written[-1]})
        except (asyncio.CancelledError, GeneratorExit):
            self.recorded.closed_early.append(time.monotonic())
            raise
        yield call.chunk({}, "stop")
        if call.include_usage:
            yield call.usage_chunk("".join(written))
        yield "data: [DONE]\n\n"


def _call(body: Mapping[str, Any]) -> _Call:
    model = str(body["model"])
    messages = body["messages"]
    prompt = str(messages[-1]["content"])
    match = _TARGET.search(prompt)
    scenario, arg = _scenario(model)
    options = body.get("stream_options") or {}
    return _Call(
        model=model,
        scenario=scenario,
        arg=arg,
        target_words=int(match.group(1)) if match else 100,
        prompt_tokens=sum(tokens(str(m.get("content") or "")) for m in messages),
        include_usage=bool(options.get("include_usage")),
    )


def _plan(call: _Call) -> tuple[list[str], str | None]:
    """The pieces to send and the finish_reason (None: the stream is cut after them)."""
    pieces = story_pieces(call.target_words)
    if call.scenario in ("truncated", "filtered", "overloaded-midway"):
        pieces = pieces[: max(2, len(pieces) // 2)]
        return pieces, "content_filter" if call.scenario == "filtered" else None
    return pieces, "length" if call.scenario == "long-winded" else "stop"


async def _healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(*, api_key: str = DEV_API_KEY, story_seconds: float = 0.0) -> Starlette:
    """The emulator as an ASGI app; `app.state.recorded` is what it saw (`Recorded`)."""
    emulator = OpenAIEmulator(api_key=api_key, story_seconds=story_seconds)
    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/v1/chat/completions", emulator.chat_completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.recorded = emulator.recorded
    return app
