"""Test-only generators, passed into the worker (dependency injection, no monkeypatching)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from storyq.generation import (
    GenerationRequest,
    GenerationResult,
    PermanentGenerationError,
    ProgressCallback,
    TemplateGenerator,
    TransientGenerationError,
)


class FailingFirst:
    """Fails each job's first `failures` attempts with a transient error, then writes it."""

    name = "failing-first"

    def __init__(self, failures: int, *, delay_seconds: float = 0.1) -> None:
        self.failures = failures
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._inner = TemplateGenerator(delay_seconds=delay_seconds)

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        with self._lock:
            self.calls[request.job_id] += 1
            call = self.calls[request.job_id]
        if call <= self.failures:
            raise TransientGenerationError("upstream_error", f"503: try again (call {call})")
        return await self._inner.generate(request, on_progress)


class Refusing:
    """Every request is refused for its content: a permanent error."""

    name = "refusing"

    def __init__(self) -> None:
        self.calls = 0

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        self.calls += 1
        raise PermanentGenerationError("content_refused", "400: the prompt breaks the policy")


class Counting:
    """Wraps a generator and records the most generations in flight at once (all threads)."""

    name = "counting"

    def __init__(self, inner: TemplateGenerator) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.finished = 0

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._inner.generate(request, on_progress)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.finished += 1


class Staggered:
    """The template generator taking 0.6, 1.2, 1.8, ... seconds in turn, so generations that
    start together end one by one (each end is a chance to claim more)."""

    name = "staggered"

    def __init__(self, *, step_seconds: float = 0.6, steps: int = 5) -> None:
        self._generators = [
            TemplateGenerator(delay_seconds=step_seconds * (index + 1)) for index in range(steps)
        ]
        self._turn = 0

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        generator = self._generators[self._turn % len(self._generators)]
        self._turn += 1
        return await generator.generate(request, on_progress)


class Gated:
    """Starts, reports progress, then waits until the test opens the gate; writes `content`."""

    name = "gated"

    def __init__(self, content: str) -> None:
        self.content = content
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        on_progress(" ".join(self.content.split()[:3]))
        self.started.set()
        await self.gate.wait()
        words = len(self.content.split())
        return GenerationResult(
            title="A late story",
            content=self.content,
            words=words,
            target_words=request.target_words,
            finish_reason="stop",
            generator=self.name,
        )
