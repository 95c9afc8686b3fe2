"""A tiny OpenAI-compatible Chat Completions server for the tests, speaking the streaming wire
format (SSE `data: {chunk}` lines, then `data: [DONE]`). The requested model picks the
behaviour, so one server serves every scenario at once.

`endless` streams a word every 50 ms for a minute; when its client closes the connection
before the end, the moment is recorded in CLOSED_EARLY (the server runs in a thread of the
test's process), so a test sees that a cancelled generation stopped billing tokens."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

WORDS = ("the", "keeper", "counted", "every", "storm", "she", "had", "ever", "caught")
STALL_SECONDS = 5.0
ENDLESS_SECONDS = 60.0
ENDLESS_STEP_SECONDS = 0.05
# time.monotonic() of each `endless` stream its client closed before the end.
CLOSED_EARLY: list[float] = []


def _chunk(model: str, delta: dict[str, str], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_764_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}  # fmt: skip
    return JSONResponse(body, status_code=status, headers=headers)


def _story(target: int) -> list[str]:
    words = [WORDS[i % len(WORDS)] for i in range(target)]
    pieces = ["# The Storm Collector\n\n"]
    for start in range(0, target, 5):
        text = " ".join(words[start : start + 5])
        pieces.append(text + ("\n\n" if (start // 5) % 12 == 11 else " "))
    return pieces


async def _stream(model: str, target: int) -> AsyncIterator[str]:
    yield _chunk(model, {"role": "assistant", "content": ""})
    if model == "stall":
        await asyncio.sleep(STALL_SECONDS)
    pieces = _story(target)
    if model in ("filtered", "truncated"):
        pieces = pieces[:3]
    for piece in pieces:
        if model == "slow-story":
            await asyncio.sleep(1.5 / len(pieces))
        yield _chunk(model, {"content": piece})
    if model == "truncated":
        return  # the connection ends mid-story: no finish_reason, no [DONE]
    finish = {"filtered": "content_filter", "long-winded": "length"}.get(model, "stop")
    yield _chunk(model, {}, finish)
    yield "data: [DONE]\n\n"


async def _endless(model: str) -> AsyncIterator[str]:
    yield _chunk(model, {"role": "assistant", "content": ""})
    yield _chunk(model, {"content": "# The Endless Storm\n\n"})
    try:
        for step in range(int(ENDLESS_SECONDS / ENDLESS_STEP_SECONDS)):
            await asyncio.sleep(ENDLESS_STEP_SECONDS)
            yield _chunk(model, {"content": WORDS[step % len(WORDS)] + " "})
    except (asyncio.CancelledError, GeneratorExit):
        CLOSED_EARLY.append(time.monotonic())
        raise
    yield _chunk(model, {}, "stop")
    yield "data: [DONE]\n\n"


async def chat_completions(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model"))
    if model == "rate-limited":
        return _error(429, "rate_limit_exceeded", "Rate limit reached", {"retry-after": "7"})
    if model == "server-error":
        return _error(500, "server_error", "The server had an error while processing")
    if model == "refuse":
        return _error(400, "content_policy_violation", "Rejected by the safety system")
    if model == "invalid":
        return _error(400, "invalid_value", "max_tokens is too large")
    if request.headers.get("authorization") != "Bearer test-key":
        return _error(401, "invalid_api_key", "Incorrect API key provided")
    prompt = body["messages"][-1]["content"]
    match = re.search(r"about (\d+) words", prompt)
    target = int(match.group(1)) if match else 100
    chunks = _endless(model) if model == "endless" else _stream(model, target)
    return StreamingResponse(chunks, media_type="text/event-stream")


def create_app() -> Starlette:
    return Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])])
