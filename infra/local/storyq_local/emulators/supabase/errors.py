"""PostgREST's error responses for the Supabase emulator.

Owns the error body (`code`, `message`, `details`, `hint` — all four always present, as
supabase-py requires), PostgREST's SQLSTATE → HTTP status table (`status_for`, after
`PostgREST.Error.mapSQLtoHTTP`), the `RAISE SQLSTATE 'PGRST'` full-control errors, the
PGRST202 "Could not find the function" answer with its hint, what counts as a lost connection
(503), and the `Proxy-Status`/`WWW-Authenticate` headers PostgREST adds.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from starlette.responses import Response

from storyq_local.emulators.supabase.routines import Routine, no_routine_hint

JSON_MEDIA_TYPE = "application/json; charset=utf-8"

# Exact SQLSTATEs first, then two-character classes; anything else is a client error (400).
_EXACT_STATUS = {
    "23503": 409,  # foreign_key_violation
    "23505": 409,  # unique_violation
    "25006": 405,  # read_only_sql_transaction
    "53400": 500,  # configuration_limit_exceeded
    "57P01": 503,  # admin_shutdown: the server is restarting
    "P0001": 400,  # plain RAISE
    "42883": 404,  # undefined_function
    "42P01": 404,  # undefined_table
    "42P17": 500,  # infinite recursion (RLS policies)
}
_CLASS_STATUS = {
    "08": 503,  # connection exception
    "09": 500,
    "0L": 403,
    "0P": 403,
    "25": 500,
    "28": 403,
    "2D": 500,
    "38": 500,
    "39": 500,
    "3B": 500,
    "40": 500,
    "53": 503,
    "54": 500,
    "55": 500,
    "57": 500,
    "58": 500,
    "F0": 500,
    "HV": 500,
    "P0": 500,
    "XX": 500,
}


class PostgrestError(Exception):
    """An error answered the way PostgREST answers it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        hint: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        }

    def response(self) -> Response:
        headers = {"Proxy-Status": f"PostgREST; error={self.code}", **self.headers}
        return Response(
            json.dumps(self.body()),
            status_code=self.status,
            headers=headers,
            media_type=JSON_MEDIA_TYPE,
        )


def status_for(sqlstate: str, message: str, *, authenticated: bool) -> int:
    """PostgREST's HTTP status for a PostgreSQL error (`PostgREST.Error.mapSQLtoHTTP`)."""
    if sqlstate in _EXACT_STATUS:
        return _EXACT_STATUS[sqlstate]
    if sqlstate == "42501":  # insufficient_privilege
        return 403 if authenticated else 401
    if sqlstate == "22023":  # the JWT's role does not exist
        return 401 if message.startswith("role") and message.endswith("does not exist") else 400
    if sqlstate == "21000":  # cardinality_violation; pg-safeupdate's refusal is the client's
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    return _CLASS_STATUS.get(sqlstate[:2], 400)


def unavailable(code: str, message: str, details: str | None = None) -> PostgrestError:
    """PostgreSQL cannot be reached (503): the pool keeps reconnecting in the background."""
    return PostgrestError(503, code, message, details)


def _raise_pgrst(message: str, detail: str | None) -> PostgrestError:
    """`RAISE SQLSTATE 'PGRST' USING MESSAGE = '{"code":..}', DETAIL = '{"status":..}'`."""
    hint = (
        "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional "
        "keys: 'details', 'hint'."
    )
    parse_error = "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error"
    try:
        body = json.loads(message)
        code, text = str(body["code"]), str(body["message"])
    except (ValueError, TypeError, KeyError):
        return PostgrestError(
            500, "PGRST121", parse_error, f"Invalid JSON value for MESSAGE: '{message}'", hint
        )
    hint = (
        "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional "
        "key: 'status_text'."
    )
    if detail is None:
        return PostgrestError(
            500, "PGRST121", parse_error, "DETAIL is missing in the RAISE statement", hint
        )
    try:
        control = json.loads(detail)
        status, headers = int(control["status"]), dict(control["headers"])
    except (ValueError, TypeError, KeyError):
        return PostgrestError(
            500, "PGRST121", parse_error, f"Invalid JSON value for DETAIL: '{detail}'", hint
        )
    return PostgrestError(
        status,
        code,
        text,
        body.get("details"),
        body.get("hint"),
        {str(k): str(v) for k, v in headers.items()},
    )


def lost_connection(exc: psycopg.Error) -> bool:
    """The connection broke or PostgreSQL is going away (rather than the statement failing)."""
    if exc.sqlstate is None:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return exc.sqlstate.startswith("08") or exc.sqlstate == "57P01"


def pg_error(exc: psycopg.Error, *, authenticated: bool) -> PostgrestError:
    """A psycopg error → PostgREST's response for it."""
    sqlstate = exc.sqlstate
    if sqlstate is None:
        if lost_connection(exc):
            return unavailable(
                "PGRST001", "Database client error. Retrying the connection.", str(exc)
            )
        return PostgrestError(500, "PGRSTX00", str(exc))
    message = exc.diag.message_primary or str(exc)
    if sqlstate == "PGRST":
        return _raise_pgrst(message, exc.diag.message_detail)
    status = status_for(sqlstate, message, authenticated=authenticated)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return PostgrestError(
        status, sqlstate, message, exc.diag.message_detail, exc.diag.message_hint, headers
    )


def no_routine(
    schema: str,
    name: str,
    keys: list[str],
    overloads: list[Routine],
    names: list[str],
    *,
    json_body: bool,
) -> PostgrestError:
    ordered = sorted(keys)
    listed = ", ".join(ordered)
    with_params = (
        f" with parameter{'s' if len(ordered) > 1 else ''} {listed}"
        if ordered
        else " without parameters"
    )
    single = " or with a single unnamed json/jsonb parameter" if json_body else ""
    return PostgrestError(
        404,
        "PGRST202",
        f"Could not find the function {schema}.{name}"
        + (f"({listed})" if ordered else " without parameters")
        + " in the schema cache",
        f"Searched for the function {schema}.{name}{with_params}{single}, but no matches were "
        "found in the schema cache.",
        no_routine_hint(schema, name, ordered, overloads, names),
    )
