"""Query-string values the list routes share: the page cursor and RFC 3339 instants.

Both are 422 `validation_error` problems when malformed, naming the parameter, like any other
query parameter FastAPI validates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from storyq.store import JobCursor


def _page_cursor(
    cursor: Annotated[
        str | None, Query(max_length=200, description="nextCursor of the previous page")
    ] = None,
) -> JobCursor | None:
    if cursor is None:
        return None
    try:
        return JobCursor.decode(cursor)
    except ValueError as exc:
        error = {"loc": ("query", "cursor"), "msg": "not a cursor from this API"}
        raise RequestValidationError([{**error, "type": "value_error"}]) from exc


# `?cursor=`: the `nextCursor` of the previous page, opaque to clients; None on the first page.
PageCursor = Annotated[JobCursor | None, Depends(_page_cursor)]


# RFC 3339's date-time: a full date and time with its offset. Pydantic alone would also take
# a bare date, a time without an offset or a Unix timestamp, none of which names one instant
# the way a client means it.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _rfc3339(value: object) -> object:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("not an RFC 3339 date-time with an offset (2026-12-01T09:30:00Z)")
    return value


def _in_utc(value: datetime) -> datetime:
    # Postgres takes offsets up to 15:59 only, RFC 3339 up to 23:59: the store gets UTC.
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("outside the years 1 to 9999 in UTC") from exc


# An instant in a query string, in UTC; a `+` offset must be sent as %2B (a bare + reads as a
# space).
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_in_utc)]
