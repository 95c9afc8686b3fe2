"""Domain errors of the store: what the SQL functions refuse, as Python exceptions.

Owns the translation from PostgREST's error body to one exception class per stable error code.
The SQL functions raise with a `PTnnn` SQLSTATE (PostgREST answers HTTP nnn) and a message that
is the stable code (`stale_attempt`, `insufficient_credits`, ...); callers catch the classes
below and never parse messages. Each class carries the HTTP status the API should answer with.
"""

from __future__ import annotations

from typing import ClassVar

from postgrest.exceptions import APIError


class StoreError(Exception):
    """A storyq SQL function refused the call, or the database layer failed."""

    code: ClassVar[str] = "store_error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(f"{self.code}: {detail}" if detail else self.code)
        self.detail = detail


class StoreUnavailable(StoreError):
    """The database (or PostgREST in front of it) cannot be reached or is down."""

    code = "store_unavailable"
    status = 503


class InsufficientCredits(StoreError):
    """The user's balance does not cover the cost; nothing was written."""

    code = "insufficient_credits"
    status = 402


class IdempotencyConflict(StoreError):
    """The idempotency key was used before with a different request."""

    code = "idempotency_conflict"
    status = 409


class StaleAttempt(StoreError):
    """The attempt number is not the job's current one: another attempt owns the job."""

    code = "stale_attempt"
    status = 409


class JobNotCancellable(StoreError):
    """Only a pending job can be cancelled."""

    code = "job_not_cancellable"
    status = 409


class JobNotRetryable(StoreError):
    """Only a failed job can be put back in the queue."""

    code = "job_not_retryable"
    status = 409


class JobNotFound(StoreError):
    """No such job, or it belongs to another user (whose jobs are never revealed)."""

    code = "job_not_found"
    status = 404


class StoryNotFound(StoreError):
    """No such story, or it belongs to another user."""

    code = "story_not_found"
    status = 404


class UserNotFound(StoreError):
    """The user is not in auth.users."""

    code = "user_not_found"
    status = 404


class InvalidArgument(StoreError):
    """An argument the SQL function refuses (blank prompt, negative cost, ...)."""

    code = "invalid_argument"
    status = 422


class InvalidAmount(InvalidArgument):
    """A credit grant must be positive."""

    code = "invalid_amount"


class InvalidStatus(InvalidArgument):
    """A status that the operation does not accept (unknown, or not cleanable)."""

    code = "invalid_status"


_BY_CODE: dict[str, type[StoreError]] = {
    cls.code: cls
    for cls in (
        InsufficientCredits,
        IdempotencyConflict,
        StaleAttempt,
        JobNotCancellable,
        JobNotRetryable,
        JobNotFound,
        StoryNotFound,
        UserNotFound,
        InvalidArgument,
        InvalidAmount,
        InvalidStatus,
    )
}


# Connection failures (PostgREST's PGRST00x, PostgreSQL restarting) and, when a proxy answered
# instead of PostgREST, the bare HTTP status postgrest-py puts in `code`.
# Database unreachable, connection lost, schema cache not loaded, pool exhausted (PGRST003),
# server shutting down: the request may be retried, so the API answers 503.
_UNAVAILABLE = frozenset(
    {"PGRST000", "PGRST001", "PGRST002", "PGRST003", "57P01", "502", "503", "504"}
)


def from_api_error(error: APIError) -> StoreError:
    """The domain exception for a PostgREST error body (a generic StoreError if unknown)."""
    message = error.message or ""
    detail = error.details if isinstance(error.details, str) else None
    known = _BY_CODE.get(message)
    if known is not None:
        return known(detail)
    sqlstate = error.code or ""
    if sqlstate.startswith("08") or sqlstate in _UNAVAILABLE:
        return StoreUnavailable(message or sqlstate)
    return StoreError(f"{sqlstate} {message}".strip())
