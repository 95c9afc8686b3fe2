"""Why a generation failed, in the two kinds the worker acts on.

A transient error (a timeout, 429, a 5xx, a dropped connection) is worth another attempt,
possibly after the `retry_after` the provider asked for; a permanent one (the content was
refused, the request is invalid, the generator is misconfigured) fails the job at once.
`code` is stable: it is what the job row's `error_code` and the API's `error.code` carry.

`backpressure` marks a refusal for load before any text (429, or every model of the chain
overloaded): it says nothing about the job, so the worker pauses the provider for every worker
(storyq.queue.dispatch, `pause`) and gives the attempt back without spending it.
"""

from __future__ import annotations

from typing import ClassVar


class GenerationError(Exception):
    """A generation that did not produce a story."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        backpressure: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds the provider asked to wait, if it said
        self.backpressure = backpressure

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class TransientGenerationError(GenerationError):
    """Worth retrying: the same request may well succeed later."""

    retryable = True


class PermanentGenerationError(GenerationError):
    """Not worth retrying: the same request would fail the same way."""

    retryable = False
