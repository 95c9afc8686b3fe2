"""Streaming the story into Postgres while it is written: one request per tick for every
attempt a worker process runs, sooner when a paragraph ends.

Each attempt offers the whole text written so far (`offer`, from the generator's progress
callback, cheap and synchronous); each tick the writer sends, for every attempt whose text
grew, only what its story does not hold yet (`write_story_texts`: the new text and the
character it starts at), and keeps the length Postgres answers as where the next write starts.
A write repeated after a lost answer changes nothing, and a story that holds less than the
writer assumed is sent what it lacks on the next tick. Postgres applies a write only while the
attempt still runs its job (same fence, processing), so a write that arrives after the job
was completed, failed or cancelled changes nothing.

Readers see the text at least every `every_seconds` (context.TEXT_SECONDS) plus a request
while it flows, within the 2 s GET /api/story promises, and at the end of each paragraph, with
writes at least PARAGRAPH_GAP_SECONDS apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from uuid import UUID

from storyq.store import Store, TextWrite
from storyq_worker.telemetry import logger

# A paragraph's end sends the text sooner than the tick, but not more often than this.
PARAGRAPH_GAP_SECONDS = 0.25


@dataclass
class _Text:
    fence: int
    text: str = ""
    stored: int = 0  # characters the story holds, as Postgres last answered
    paragraphs: int = 0

    def write(self, job_id: UUID) -> TextWrite | None:
        """What the story lacks, or None when it holds everything."""
        if len(self.text) <= self.stored:
            return None
        return TextWrite(
            job_id=job_id, fence=self.fence, text_from=self.stored, text=self.text[self.stored :]
        )


class StoryWriter:
    """Writes the text of every attempt `offer`ed to it, one request per tick. Close it with
    `close()`."""

    def __init__(self, store: Store, *, every_seconds: float, timeout_seconds: float) -> None:
        self._store = store
        self.every_seconds = every_seconds
        self._timeout = timeout_seconds
        self._texts: dict[UUID, _Text] = {}
        self._soon = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False

    def offer(self, job_id: UUID, fence: int, text: str) -> None:
        """The whole text the attempt `fence` of `job_id` has written so far (it only grows).
        Its first words, and each paragraph's end, go sooner than the tick."""
        if self._closed:
            return
        entry = self._texts.get(job_id)
        if entry is None or entry.fence != fence:
            entry = self._texts[job_id] = _Text(fence=fence)
        if text and not entry.text:
            self._soon.set()
        entry.text = text
        paragraphs = text.count("\n\n")
        if paragraphs > entry.paragraphs:
            entry.paragraphs = paragraphs
            self._soon.set()
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="story-writer")

    def forget(self, job_id: UUID, fence: int) -> None:
        """The attempt `fence` is over: nothing more of its text is sent (what is on its way
        may land while the job still runs; Postgres ignores it afterwards)."""
        entry = self._texts.get(job_id)
        if entry is not None and entry.fence == fence:
            del self._texts[job_id]

    async def flush(self, job_id: UUID, fence: int) -> None:
        """The attempt `fence` is over without a story to complete (cancelled, failed): send
        what its story lacks now, within the writer's timeout, and forget it. A failure is
        logged: the story keeps what it had."""
        entry = self._texts.get(job_id)
        if entry is None or entry.fence != fence:
            return
        self.forget(job_id, fence)
        write = entry.write(job_id)
        if write is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.jobs.write_texts([write])
        except Exception as exc:
            logger.warning("the last of the story's text was not written", exc_info=exc)

    async def _tick(self) -> None:
        while self._texts:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), self.every_seconds)
            self._soon.clear()
            await self._send()
            await asyncio.sleep(PARAGRAPH_GAP_SECONDS)

    async def _send(self) -> None:
        pending = {
            job_id: (entry, write)
            for job_id, entry in self._texts.items()
            if (write := entry.write(job_id)) is not None
        }
        if not pending:
            return
        try:
            async with asyncio.timeout(self._timeout):
                stored = await self._store.jobs.write_texts([w for _, w in pending.values()])
        except Exception as exc:  # the next tick sends it again, from where the story stands
            logger.warning("story text not written", exc_info=exc)
            return
        for job_id, (entry, _) in pending.items():
            if job_id in stored and self._texts.get(job_id) is entry:
                entry.stored = min(stored[job_id], len(entry.text))

    async def close(self) -> None:
        """Stop writing (what is not sent yet stays unsent)."""
        self._closed = True
        self._texts.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
