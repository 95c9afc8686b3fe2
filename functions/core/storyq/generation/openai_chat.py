"""The `openai` generator: any OpenAI-compatible Chat Completions endpoint, streamed.

It uses the official `openai` client (no retries of its own: the queue retries whole attempts
with backoff), reports the words received so far, and turns every failure into a transient or
permanent `GenerationError`.

Within one attempt it tries the models of the chain OPENAI_MODEL, *OPENAI_FALLBACK_MODELS in
turn, the next one only when the one before failed before sending any text, for a reason
another model may not share: an overload (500, 502, 503, 504, 529, or an `overloaded` error
in the stream), a model error (404, or a 400 whose code says the model is not available), or
no first token within OPENAI_FIRST_TOKEN_TIMEOUT_SECONDS. Once a model has sent text, a
failure ends the attempt: a story is never stitched from two models. The result's `model`
is the one that wrote it; the error of a failed attempt is the last model's.

Usage: the request asks for the provider's usage report (`stream_options.include_usage`, a last
chunk with the attempt's prompt and completion tokens). Until it arrives (a cut or cancelled
stream never gets it), `request.usage` holds an estimate (`estimated_tokens` of the prompt
and of the text received), so what a stopped attempt used is known too. Tokens of the models
tried before are kept: the usage is the attempt's, over its whole chain.

Back-pressure: a 429 (but `insufficient_quota`), or an overload of the last model of the chain
before any text (503, 529, or an `overloaded` error event: the provider's word for "too busy",
unlike a plain 500), is raised with `backpressure` set (see storyq.generation.errors): the
queue pauses the provider.

How each failure is classified, and why:

- transient `timeout`: the whole generation passed GENERATION_TIMEOUT_SECONDS (a hard limit
  over every model tried); the provider was slow this time, not wrong.
- transient `first_token_timeout`: no text within the first-token limit; a stall is a
  provider's passing trouble.
- transient `rate_limited` (429, with its Retry-After): the provider's back-pressure, shared by
  every model of the account, so never a reason to try another model.
- transient `quota_exceeded` (429 `insufficient_quota`): the account is out of credit. Not
  back-pressure (waiting does not help until the operator pays), so each job spends its
  attempts with backoff and is refunded after the last, rather than waiting for good.
- transient `upstream_error`: 408, 409, 5xx and errors inside the stream; the server may
  answer differently later (OpenAI's own client retries these statuses).
- transient `connection_error`: the endpoint could not be reached.
- transient `incomplete_stream`, `empty_output`: the stream ended unfinished or empty.
- permanent `content_refused`: a refusal of the content (400 `content_policy_violation`, a
  refusal delta, finish_reason `content_filter`); the same prompt is refused again, by any
  model, so it is never tried on another one.
- permanent `generator_misconfigured`: 401, 403, 404 (a bad key, or a model that does not
  exist); `invalid_request`: other 4xx. The same request would fail the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from storyq.config import Settings
from storyq.generation.contract import (
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    Usage,
    count_words,
    estimated_tokens,
)
from storyq.generation.errors import (
    GenerationError,
    PermanentGenerationError,
    TransientGenerationError,
)

logger = logging.getLogger(__name__)

_LANGUAGE_NAMES = {"en": "English", "uk": "Ukrainian"}
_REFUSAL_CODES = frozenset({"content_filter", "content_policy_violation", "content_refused"})
_MISCONFIGURED_STATUSES = frozenset({401, 403, 404})
# OpenAI's own client retries these statuses too: the server may answer differently later.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
# Worth the next model of the chain: this model is overloaded or not available (see above).
_OVERLOADED_STATUSES = frozenset({500, 502, 503, 504, 529})
_OVERLOADED_CODES = frozenset({"overloaded", "server_error"})
# A provider too busy for the request (back-pressure), as opposed to one that failed.
_BUSY_STATUSES = frozenset({503, 529})
_MODEL_ERROR_CODES = frozenset(
    {"model_not_found", "model_not_available", "model_unavailable", "unsupported_model"}
)
_MAX_OUTPUT_TOKENS = 16_000
_PROGRESS_INTERVAL_SECONDS = 0.5
_TITLE_PREFIXES = ("title:", "назва:")
_SYSTEM_PROMPT = (
    "You are a novelist. Write one complete, original story. Reply with the title on the "
    "first line as '# Title', then the story in paragraphs separated by blank lines. "
    "No commentary before or after the story."
)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429/503 asks for: `retry-after-ms`, or `retry-after` in seconds or as a date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_code(exc: openai.APIError) -> str | None:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("code"), str):
            return str(inner["code"])
    return exc.code


def classify(exc: BaseException) -> GenerationError:
    """Transient: timeouts, 408/409/429, 5xx, connection trouble, errors mid-stream.
    Permanent: a refusal of the content, other 4xx (invalid request, bad key or model)."""
    if isinstance(exc, GenerationError):
        return exc
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        return TransientGenerationError("timeout", "the model did not answer in time")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return TransientGenerationError("connection_error", f"could not reach the model: {exc}")
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc)
    if isinstance(exc, openai.APIError):
        return TransientGenerationError("upstream_error", exc.message[:500])
    return TransientGenerationError("generator_error", f"{type(exc).__name__}: {exc}"[:500])


def _classify_status(exc: openai.APIStatusError) -> GenerationError:
    status, message = exc.status_code, f"{exc.status_code}: {exc.message}"[:500]
    retry_after = retry_after_seconds(exc.response.headers)
    if status == 429 and _error_code(exc) == "insufficient_quota":
        return TransientGenerationError("quota_exceeded", message, retry_after=retry_after)
    if status == 429:
        return TransientGenerationError(
            "rate_limited", message, retry_after=retry_after, backpressure=True
        )
    if status >= 500 or status in _RETRYABLE_STATUSES:
        return TransientGenerationError("upstream_error", message, retry_after=retry_after)
    if _error_code(exc) in _REFUSAL_CODES:
        return PermanentGenerationError("content_refused", message)
    if status in _MISCONFIGURED_STATUSES:
        return PermanentGenerationError("generator_misconfigured", message)
    return PermanentGenerationError("invalid_request", message)


def another_model_may_answer(exc: BaseException) -> bool:
    """Whether the next model of the chain is worth trying after this failure before the first
    token: an overload, a model error or a first-token timeout (see the module docstring)."""
    if isinstance(exc, GenerationError):
        return exc.code == "first_token_timeout"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return (
            status in _OVERLOADED_STATUSES
            or status == 404
            or (status == 400 and _error_code(exc) in _MODEL_ERROR_CODES)
        )
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        return _error_code(exc) in _OVERLOADED_CODES | _MODEL_ERROR_CODES
    return False


def is_overload(exc: BaseException) -> bool:
    """The provider saying it is too busy (503, 529, or an `overloaded` error event), not that
    something broke (a plain 500, 502, 504): back-pressure when no model of the chain could
    answer."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _BUSY_STATUSES
    if isinstance(exc, openai.APIError):
        return _error_code(exc) == "overloaded"
    return False


def _bare(line: str) -> str:
    """A title line without its Markdown: '# **Night Tide**' -> 'Night Tide'."""
    return line.strip().lstrip("#").strip().strip("*_").strip()


def body_so_far(text: str) -> str:
    """The story's body within a reply still streaming: without its title line (`split_title`),
    and nothing while the first line may still turn out to be a title."""
    first, newline, rest = text.lstrip().partition("\n")
    head = _bare(first).lower()
    title_like = first.lstrip().startswith("#") or any(
        head.startswith(prefix) or prefix.startswith(head) for prefix in _TITLE_PREFIXES
    )
    if not title_like:
        return text.lstrip()
    return rest.lstrip() if newline else ""


def split_title(text: str, fallback: str) -> tuple[str, str]:
    """('Title', body) from a reply whose first line may be '# Title' or 'Title: ...'."""
    stripped = text.strip()
    first, _, rest = stripped.partition("\n")
    line = _bare(first)
    for prefix in _TITLE_PREFIXES:
        if line.lower().startswith(prefix):
            line = _bare(line[len(prefix) :])
            break
    else:
        if not first.lstrip().startswith("#"):
            return fallback, stripped
    return (line or fallback), rest.strip()


def _messages(request: GenerationRequest) -> list[ChatCompletionMessageParam]:
    language = _LANGUAGE_NAMES.get(request.language.lower()[:2], request.language)
    lines = [
        f"Write a {request.genre or 'short'} story in {language} of about "
        f"{request.target_words} words."
    ]
    if request.title:
        lines.append(f"Use this title: {request.title}")
    lines.append(f"The story is about: {request.prompt}")
    return [
        {"role": "system", "content": _SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]


class _Meter:
    """Keeps `usage` (the attempt's) up to date over the models of the chain: the totals of the
    models before the current one, plus the current one's, reported or estimated."""

    def __init__(self, usage: Usage, prompt: str) -> None:
        # This call's usage: a request generated twice (a test's) starts again from nothing.
        usage.prompt_tokens = usage.completion_tokens = 0
        usage.estimated = False
        usage.answered.clear()
        self.usage = usage
        self._prompt_tokens = estimated_tokens(prompt)
        self._before = (0, 0)
        self._chars = 0

    def asking(self, model: str) -> None:
        """A request to `model` is about to go out."""
        self.usage.model = model
        self._before = (self.usage.prompt_tokens, self.usage.completion_tokens)
        self._chars = 0

    def answered(self) -> None:
        """The first chunk of the current model's stream: it took the request (and its prompt)."""
        self.usage.answered.set()
        self._estimate()

    def received(self, text: str) -> None:
        self._chars += len(text)
        self._estimate()

    def reported(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The provider's own count for the current model's request."""
        before_prompt, before_completion = self._before
        self.usage.prompt_tokens = before_prompt + prompt_tokens
        self.usage.completion_tokens = before_completion + completion_tokens
        self.usage.estimated = False

    def _estimate(self) -> None:
        before_prompt, before_completion = self._before
        self.usage.prompt_tokens = before_prompt + self._prompt_tokens
        self.usage.completion_tokens = before_completion + estimated_tokens(self._chars)
        self.usage.estimated = True


class _Transcript:
    """The exchange of one attempt: the messages every model is asked, and the text received
    so far, with progress reports (its body so far) at most every _PROGRESS_INTERVAL_SECONDS."""

    def __init__(
        self,
        on_progress: ProgressCallback,
        meter: _Meter,
        messages: list[ChatCompletionMessageParam],
    ) -> None:
        self.messages = messages  # what every model of the chain is asked
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.meter = meter
        self._on_progress = on_progress
        self._reported_at = time.monotonic()

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.meter.received(text)
        now = time.monotonic()
        if now - self._reported_at >= _PROGRESS_INTERVAL_SECONDS:
            self._reported_at = now
            self._on_progress(body_so_far(self.text))

    @property
    def text(self) -> str:
        return "".join(self.parts)


class OpenAIGenerator:
    """The `openai` generator (GENERATOR=openai)."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        fallback_models: Sequence[str] = (),
        base_url: str | None = None,
        timeout_seconds: float = 600.0,
        first_token_timeout_seconds: float = 60.0,
    ) -> None:
        self._api_key = api_key
        self._models = (model, *fallback_models)
        self._base_url = base_url
        self._timeout = timeout_seconds
        self._first_token_timeout = first_token_timeout_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIGenerator:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        if not key and not settings.openai_base_url:
            raise ValueError("GENERATOR=openai needs OPENAI_API_KEY (or an OPENAI_BASE_URL)")
        return cls(
            # Local OpenAI-compatible servers often need no key; the client insists on one.
            api_key=key or "unused",
            model=settings.openai_model,
            fallback_models=settings.openai_fallback_models,
            base_url=settings.openai_base_url,
            timeout_seconds=settings.generation_timeout_seconds,
            first_token_timeout_seconds=settings.openai_first_token_timeout_seconds,
        )

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        messages = _messages(request)
        meter = _Meter(request.usage, "\n".join(str(m.get("content", "")) for m in messages))
        transcript = _Transcript(on_progress, meter, messages)
        on_progress("")
        try:
            async with asyncio.timeout(self._timeout):
                model = await self._write(request, transcript)
        except (TimeoutError, openai.OpenAIError, httpx.HTTPError) as exc:
            error = classify(exc)
            if not transcript.parts and is_overload(exc):
                # Every model of the chain was overloaded before any text: back-pressure.
                error.backpressure = True
            raise error from exc
        return self._result(request, transcript, model)

    async def _write(self, request: GenerationRequest, transcript: _Transcript) -> str:
        """Streams the story from the first model of the chain that writes it; returns its
        name. The next model is tried only while no text has come (`another_model_may_answer`);
        the last model's failure is the attempt's."""
        for model, next_model in itertools.pairwise(self._models):
            try:
                await self._stream_from(model, request, transcript)
            except (GenerationError, openai.OpenAIError, httpx.HTTPError) as exc:
                if transcript.parts or not another_model_may_answer(exc):
                    raise
                logger.warning(
                    "model %s failed before its first token (%s): falling back to %s",
                    model,
                    classify(exc).code,
                    next_model,
                    extra={"job_id": request.job_id, "model": model, "fallback": next_model},
                )
            else:
                return model
        await self._stream_from(self._models[-1], request, transcript)
        return self._models[-1]

    async def _stream_from(
        self, model: str, request: GenerationRequest, transcript: _Transcript
    ) -> None:
        """`_stream` under the first-token limit, which stops counting at the first text."""
        first_token = asyncio.timeout(self._first_token_timeout)
        try:
            async with first_token:
                await self._stream(model, request, transcript, first_token)
        except TimeoutError as exc:
            if not first_token.expired():
                raise
            raise TransientGenerationError(
                "first_token_timeout",
                f"{model} sent no text within {self._first_token_timeout:g} s",
            ) from exc

    async def _stream(
        self,
        model: str,
        request: GenerationRequest,
        transcript: _Transcript,
        first_token: asyncio.Timeout,
    ) -> None:
        timeout = httpx.Timeout(self._timeout, connect=min(10.0, self._timeout))
        client = AsyncOpenAI(
            api_key=self._api_key, base_url=self._base_url, timeout=timeout, max_retries=0
        )
        meter = transcript.meter
        async with client:
            meter.asking(model)
            stream = await client.chat.completions.create(
                model=model,
                messages=transcript.messages,
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=min(_MAX_OUTPUT_TOKENS, math.ceil(request.target_words * 3) + 200),
            )
            async with stream:
                async for chunk in stream:
                    meter.answered()
                    if chunk.usage is not None:
                        meter.reported(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        if choice.delta.refusal:
                            raise PermanentGenerationError(
                                "content_refused", choice.delta.refusal[:500]
                            )
                        if choice.delta.content:
                            first_token.reschedule(None)
                            transcript.add(choice.delta.content)
                        if choice.finish_reason:
                            transcript.finish_reason = choice.finish_reason

    def _result(
        self, request: GenerationRequest, transcript: _Transcript, model: str
    ) -> GenerationResult:
        finish = transcript.finish_reason
        if finish == "content_filter":
            raise PermanentGenerationError("content_refused", "the model refused the content")
        if finish is None:
            raise TransientGenerationError("incomplete_stream", "the stream ended unfinished")
        fallback = request.title or " ".join(request.prompt.split()[:8])
        title, content = split_title(transcript.text, fallback)
        if not content:
            raise TransientGenerationError("empty_output", "the model returned no story")
        words = count_words(content)
        return GenerationResult(
            title=request.title or title,
            content=content,
            words=words,
            target_words=request.target_words,
            finish_reason=finish,
            generator=self.name,
            model=model,
        )
