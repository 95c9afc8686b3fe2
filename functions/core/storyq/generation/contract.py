"""What every generator takes and returns, and how its result is judged.

A generator is anything with ``async generate(request, on_progress) -> GenerationResult``.
It reports the story's text written so far through ``on_progress``: the whole body so far (no
title line), which only grows within one attempt (a cheap, synchronous callback: the worker
keeps the latest text and sends what is new with the next heartbeat, so readers watch the
story being written). It raises a `GenerationError` subclass when it fails.

It also keeps `request.usage` (a `Usage`) up to date as it goes: which model answered, the
tokens used so far (the provider's own count when it sends one, else an estimate), and
`answered` once the provider has accepted the request. The worker reads it whatever the
attempt came to (completed, failed, cut, cancelled) to record what the attempt cost, and uses
`answered` to end a provider pause (storyq.queue.dispatch, `pause`).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from storyq.results import JobResult

# The story's body written so far (see the module docstring).
ProgressCallback = Callable[[str], None]
Quality = Literal["high", "medium", "low"]

# Providers name a natural end "stop"; some compatible servers say "end_turn" or "eos".
_NATURAL_ENDS = frozenset({"stop", "end_turn", "eos"})


def count_words(text: str) -> int:
    """Words as the database counts them (runs of non-space characters)."""
    return len(text.split())


def seed_from_job_id(job_id: str) -> int:
    """A stable 64-bit seed for a job, so a retried job writes the same story."""
    return int.from_bytes(hashlib.sha256(job_id.encode("utf-8")).digest()[:8], "big")


def quality_label(*, words: int, target_words: int, finish_reason: str) -> Quality:
    """high: ended naturally within 80-125 % of the target; medium: within 50-160 %, or cut
    short by a length limit after reaching 80 %; low: anything else."""
    ratio = words / target_words if target_words > 0 else 0.0
    if finish_reason not in _NATURAL_ENDS:
        return "medium" if ratio >= 0.8 else "low"
    if 0.8 <= ratio <= 1.25:
        return "high"
    if 0.5 <= ratio <= 1.6:
        return "medium"
    return "low"


def estimated_tokens(text: str | int) -> int:
    """A provider-neutral token estimate of `text` (or of that many characters): one token per
    4 characters, rounded up (OpenAI's rule of thumb for English; used only when the provider
    sends no count of its own)."""
    chars = text if isinstance(text, int) else len(text)
    return math.ceil(chars / 4)


@dataclass(kw_only=True)
class Usage:
    """What one attempt used of its provider, filled in by the generator as it streams.

    Tokens are the attempt's totals so far. `estimated` is True while they are this side's
    count (`estimated_tokens` of the prompt and the text received), False once the provider's
    own usage report replaced them. `answered` is set when the provider accepted the request
    (its first chunk arrived): a 429 or 503 never sets it. A generator that calls no provider
    (template) leaves everything at zero and None.
    """

    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def used_tokens(self) -> bool:
        """Whether there is anything to record: a request refused before any answer (a 429)
        used none."""
        return self.prompt_tokens > 0 or self.completion_tokens > 0


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """One story to write: the job's prompt and wishes."""

    job_id: str
    prompt: str
    target_words: int
    title: str | None = None
    genre: str | None = None
    language: str = "en"
    seed: int | None = None
    # The generator's running report of what this attempt used (see `Usage`); the request is
    # otherwise immutable.
    usage: Usage = field(default_factory=Usage, compare=False)

    @property
    def effective_seed(self) -> int:
        """The seed given, else one derived from the job id."""
        return self.seed if self.seed is not None else seed_from_job_id(self.job_id)


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    """A finished story and what the job's `result` records about it."""

    title: str
    content: str
    words: int
    target_words: int
    finish_reason: str
    generator: str
    model: str | None = None

    @property
    def quality(self) -> Quality:
        return quality_label(
            words=self.words, target_words=self.target_words, finish_reason=self.finish_reason
        )

    def summary(self, *, generation_seconds: float) -> JobResult:
        """What the job row records about this generation."""
        return JobResult(
            generation_time=round(generation_seconds, 3),
            quality=self.quality,
            words=self.words,
            target_words=self.target_words,
            finish_reason=self.finish_reason,
            generator=self.generator,
            model=self.model,
        )


class Generator(Protocol):
    """Writes one story; see the module docstring for the contract."""

    @property
    def name(self) -> str: ...

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult: ...
