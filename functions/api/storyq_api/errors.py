"""The one exception map: every error the API answers is an RFC 9457 problem document.

`{"type", "title", "status", "detail", "code"}` as `application/problem+json`; `code` is the
stable member frontends switch on. Domain exceptions from the store are translated here and
nowhere else. A body never carries a stack trace, SQL or Redis text: unexpected exceptions
are logged with their traceback and answered as a bare `internal_error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storyq.store import errors as store_errors
from storyq_api.telemetry import logger

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    """An answer other than success: each subclass fixes its status and stable code."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, detail: str, *, missing: bool = False) -> None:
        # RFC 6750 §3: no error attribute when the request carried no credentials at all.
        challenge = 'Bearer realm="storyq"'
        if not missing:
            challenge += ', error="invalid_token"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class AccountGone(Unauthorized):
    """A valid token whose user is no longer in auth.users (a deleted account)."""

    code = "user_not_found"

    def __init__(self) -> None:
        super().__init__("the account this token was issued for no longer exists")


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class AuthUnavailable(ApiError):
    """The project's signing keys (JWKS) could not be fetched: not the caller's fault."""

    status, code = 503, "auth_unavailable"


# What the caller reads for each store error (its class carries the status). The store's own
# detail text comes from SQL and stays in the logs.
_DOMAIN: dict[type[store_errors.StoreError], tuple[str, str]] = {
    store_errors.JobNotFound: ("not_found", "no such job"),
    store_errors.StoryNotFound: ("not_found", "no such story"),
    store_errors.UserNotFound: ("not_found", "no such user"),
    store_errors.InsufficientCredits: ("insufficient_credits", "not enough credits for a story"),
    store_errors.IdempotencyConflict: (
        "idempotency_conflict",
        "this Idempotency-Key was already used with a different request body",
    ),
    store_errors.JobNotCancellable: (
        "job_not_cancellable",
        "only a pending job can be cancelled",
    ),
    store_errors.JobNotRetryable: ("job_not_retryable", "only a failed job can be retried"),
    store_errors.InvalidArgument: ("validation_error", "the request is not valid"),
    store_errors.StoreUnavailable: (
        "database_unavailable",
        "the database cannot be reached; nothing was changed",
    ),
}


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The problem document for `status` and `code`."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": f"urn:storyq:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def internal_error_response() -> JSONResponse:
    return problem_response(
        status=500, code="internal_error", detail="an unexpected error occurred"
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # loc and msg only: echoing `input` back could reflect a 16 KiB prompt or a secret.
    return [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", ""))}
        for error in exc.errors()
    ]


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(
        status=exc.status, code=exc.code, detail=exc.detail, headers=exc.headers
    )


async def _on_store_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, store_errors.StoreError)
    for kind in type(exc).__mro__:
        if kind in _DOMAIN:
            code, detail = _DOMAIN[kind]
            if exc.status >= 500:
                logger.warning("dependency failure", extra={"error": str(exc), "code": code})
            return problem_response(status=exc.status, code=code, detail=detail)
    logger.error("unexpected store error", extra={"error": str(exc)})
    return internal_error_response()


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        status=422,
        code="validation_error",
        detail="the request is not valid",
        extra={"errors": _validation_errors(exc)},
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def _on_http_exception(_: Request, exc: Exception) -> JSONResponse:
    # Starlette's own: unknown routes (404), wrong methods (405), unreadable bodies (400).
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if exc.status_code < 500 else "an unexpected error occurred"
    return problem_response(
        status=exc.status_code, code=code, detail=str(detail), headers=exc.headers
    )


def install(app: FastAPI) -> None:
    """Register the map on `app` (unexpected exceptions: see middleware.CatchAllMiddleware)."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(store_errors.StoreError, _on_store_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses (all problem documents)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
