"""The Supabase emulator's request handlers: one PostgreSQL transaction per request, as
PostgREST runs it.

Owns the connection pool (checked before use, so a restarted PostgreSQL heals on its own; 503
within the pool timeout while it is down, never a hang), the per-request settings PostgREST
makes (role, JWT claims, `request.*`, search_path, read-only for GET), the routine cache, and
the `rpc` and `table` handlers. The routes and the app are in `app`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from storyq_local.emulators.supabase.auth import Caller, authenticate
from storyq_local.emulators.supabase.errors import (
    JSON_MEDIA_TYPE,
    PostgrestError,
    lost_connection,
    no_routine,
    pg_error,
    unavailable,
)
from storyq_local.emulators.supabase.routines import (
    LOOKUP_ROUTINE_NAMES,
    LOOKUP_ROUTINES,
    Routine,
    Shape,
    call_statement,
    choose_routine,
    routines_from_rows,
)
from storyq_local.emulators.supabase.tables import (
    QueryParamError,
    parse_table_read,
    table_statement,
)

Connection = psycopg.AsyncConnection[TupleRow]

EXPOSED_SCHEMAS = ("public", "graphql_public")
EXTRA_SEARCH_PATH = ("public", "extensions")
MAX_ROWS = 1000  # Supabase's default db-max-rows
ROUTINE_CACHE_S = 2.0  # DDL shows within this; errors that smell of DDL clear the cache at once
POOL_TIMEOUT_S = 5.0
POOL_TIMEOUT_DOWN_S = 1.0  # once PostgreSQL is known to be down, fail fast until it answers
RECONNECT_TIMEOUT_S = 3.0  # short, so that reconnection attempts never back off for long
CONNECT_TIMEOUT_S = 3
OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"


def _search_path(schema: str) -> str:
    return ", ".join(
        '"' + s.replace('"', '""') + '"' for s in dict.fromkeys((schema, *EXTRA_SEARCH_PATH))
    )


def _set_request(read_only: bool) -> sql.Composed:
    settings = [
        "set_config('search_path', %s, true)",
        "set_config('role', %s, true)",
        "set_config('request.jwt.claims', %s, true)",
        "set_config('request.method', %s, true)",
        "set_config('request.path', %s, true)",
        "set_config('request.headers', %s, true)",
        "set_config('request.cookies', %s, true)",
    ]
    if read_only:
        settings.append("set_config('transaction_read_only', 'on', true)")
    return sql.SQL("select ") + sql.SQL(", ").join(sql.SQL(s) for s in settings)


def _guc_response(status: str | None, headers: str | None) -> tuple[int | None, dict[str, str]]:
    """The `response.status` and `response.headers` a function set, as PostgREST reads them."""
    code: int | None = None
    if status:
        if not status.strip().isdigit() or not 100 <= int(status) <= 599:
            raise PostgrestError(500, "PGRST112", "response.status guc must be a valid status code")
        code = int(status)
    if not headers:
        return code, {}
    try:
        items = json.loads(headers)
        pairs = [(str(k), str(v)) for item in items for k, v in dict(item).items()]
    except (ValueError, TypeError, AttributeError) as exc:
        raise PostgrestError(
            500,
            "PGRST111",
            "response.headers guc must be a JSON array composed of objects with a single key "
            "and a string value",
        ) from exc
    return code, dict(pairs)


def _json_response(
    body: str | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


class Emulator:
    """The pool, the routine cache and the request handlers."""

    def __init__(
        self, *, database_url: str, jwt_secret: str, pool_size: int, pool_timeout: float
    ) -> None:
        self.database_url = database_url
        self.jwt_secret = jwt_secret
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._routines: dict[tuple[str, str], tuple[float, list[Routine]]] = {}
        self._down = False
        self._connect_errors_seen = 0

    async def start(self) -> None:
        self._pool = AsyncConnectionPool(
            self.database_url,
            min_size=min(4, self.pool_size),
            max_size=self.pool_size,
            open=False,
            timeout=self.pool_timeout,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            check=AsyncConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": "storyq-supabase-emulator",
            },
            name="supabase-emulator",
        )
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    # -- the database session of one request ---------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, caller: Caller) -> AsyncIterator[Connection]:
        """A pooled connection in a transaction; database errors become PostgREST's."""
        pool = self._pool
        if pool is None:
            raise unavailable("PGRST000", "Database connection error. Retrying the connection.")
        try:
            async with (
                pool.connection(
                    timeout=POOL_TIMEOUT_DOWN_S if self._down else self.pool_timeout
                ) as conn,
                conn.transaction(),
            ):
                yield conn
        except PoolTimeout as exc:
            raise self._pool_timeout(pool, exc) from exc
        except psycopg.Error as exc:
            if lost_connection(exc):
                self._down = True
            elif (exc.sqlstate or "").startswith(("42", "0A")) and exc.sqlstate != "42501":
                self._routines.clear()  # the schema changed under the cache, most likely
            raise pg_error(exc, authenticated=caller.authenticated) from exc
        if self._down:
            self._down = False
            self._connect_errors_seen = pool.get_stats().get("connections_errors", 0)

    def _pool_timeout(
        self, pool: AsyncConnectionPool[Connection], exc: PoolTimeout
    ) -> PostgrestError:
        errors = pool.get_stats().get("connections_errors", 0)
        down, self._connect_errors_seen = self._down or errors > self._connect_errors_seen, errors
        if down:
            self._down = True
            return unavailable("PGRST000", "Could not connect to the database", str(exc))
        return PostgrestError(
            504, "PGRST003", "Timed out acquiring connection from connection pool."
        )

    async def _begin_request(
        self, conn: Connection, request: Request, caller: Caller, schema: str, *, read_only: bool
    ) -> None:
        path = request.url.path.removeprefix("/rest/v1")
        headers = json.dumps({k.lower(): v for k, v in request.headers.items()})
        await conn.execute(
            _set_request(read_only),
            (
                _search_path(schema),
                caller.role,
                caller.claims,
                request.method,
                path,
                headers,
                json.dumps(dict(request.cookies)),
            ),
        )

    def _cached(self, schema: str, name: str) -> list[Routine] | None:
        entry = self._routines.get((schema, name))
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    async def _lookup(self, conn: Connection, schema: str, name: str) -> list[Routine]:
        await conn.execute("select set_config('search_path', '', true)")
        cur = await conn.execute(LOOKUP_ROUTINES, (schema, name))
        overloads = routines_from_rows(schema, await cur.fetchall())
        if overloads:
            self._routines[(schema, name)] = (time.monotonic() + ROUTINE_CACHE_S, overloads)
        return overloads

    async def _resolve(
        self, conn: Connection, schema: str, name: str, keys: list[str], *, json_body: bool
    ) -> Routine:
        """The overload to call; a miss on cached overloads looks again (a migration ran)."""
        cached = self._cached(schema, name)
        overloads = cached if cached is not None else await self._lookup(conn, schema, name)
        choice = choose_routine(overloads, keys, json_body=json_body)
        if choice.routine is None and cached is not None:
            overloads = await self._lookup(conn, schema, name)
            choice = choose_routine(overloads, keys, json_body=json_body)
        if choice.routine is not None:
            return choice.routine
        if choice.candidates:
            raise PostgrestError(
                300,
                "PGRST203",
                "Could not choose the best candidate function between: "
                + ", ".join(r.signature for r in choice.candidates),
                hint="Try renaming the parameters or the function itself in the database so "
                "function overloading can be resolved",
            )
        cur = await conn.execute(LOOKUP_ROUTINE_NAMES, (schema,))
        names = [row[0] for row in await cur.fetchall()]
        raise no_routine(schema, name, keys, overloads, names, json_body=json_body)

    # -- handlers ------------------------------------------------------------------------------

    async def rpc(self, request: Request) -> Response:
        try:
            return await self._rpc(request)
        except PostgrestError as exc:
            return exc.response()

    async def _rpc(self, request: Request) -> Response:
        caller = authenticate(request.headers, self.jwt_secret)
        if request.method not in ("GET", "HEAD", "POST"):
            raise PostgrestError(405, "PGRST101", f"Cannot use the {request.method} method on RPC")
        read_only = request.method != "POST"
        schema = _schema(request, "accept-profile" if read_only else "content-profile")
        name = request.path_params["fn"]
        payload, keys = await _rpc_arguments(request)
        async with self._transaction(caller) as conn:
            routine = await self._resolve(conn, schema, name, keys, json_body=not read_only)
            if not (routine.single_unnamed_json or payload.lstrip().startswith("{")):
                raise PostgrestError(400, "PGRST102", "Empty or invalid json")
            await self._begin_request(conn, request, caller, schema, read_only=read_only)
            cur = await conn.execute(call_statement(routine, keys, text_args=read_only), (payload,))
            row = await cur.fetchone()
        body, status_guc, headers_guc = row if row is not None else (None, None, None)
        status, headers = _guc_response(status_guc, headers_guc)
        if routine.shape is Shape.VOID:
            return Response(status_code=status or 204, headers=headers)
        return _json_response(body or "null", status or 200, headers)

    async def table(self, request: Request) -> Response:
        try:
            return await self._table(request)
        except PostgrestError as exc:
            return exc.response()
        except QueryParamError as exc:
            return PostgrestError(400, exc.code, exc.message, exc.details).response()

    async def _table(self, request: Request) -> Response:
        caller = authenticate(request.headers, self.jwt_secret)
        if request.method not in ("GET", "HEAD"):
            raise PostgrestError(
                405,
                "PGRST117",
                f"Unsupported HTTP method: {request.method}",
                "The Supabase emulator answers table reads only; write through a function (rpc).",
            )
        schema = _schema(request, "accept-profile")
        table = request.path_params["table"]
        read = parse_table_read(request.query_params.multi_items(), max_rows=MAX_ROWS)
        exact = "count=" in request.headers.get("prefer", "")
        try:
            async with self._transaction(caller) as conn:
                await self._begin_request(conn, request, caller, schema, read_only=True)
                cur = await conn.execute(
                    table_statement(schema, table, read, exact_count=exact), read.values
                )
                row = await cur.fetchone()
        except PostgrestError as exc:
            raise _table_not_found(exc, schema, table) from exc
        body, count, first, total = row if row is not None else ("[]", 0, None, None)
        if OBJECT_MEDIA_TYPE in request.headers.get("accept", ""):
            if count != 1:
                raise PostgrestError(
                    406,
                    "PGRST116",
                    "Cannot coerce the result to a single JSON object",
                    f"The result contains {count} rows",
                )
            body = first
        last = read.offset + count - 1
        shown = f"{read.offset}-{last}" if count else "*"
        headers = {"Content-Range": f"{shown}/{'*' if total is None else total}"}
        partial = total is not None and count < total
        return _json_response(body, 206 if partial else 200, headers)


def _table_not_found(exc: PostgrestError, schema: str, table: str) -> PostgrestError:
    if exc.code != "42P01":
        return exc
    return PostgrestError(
        404, "PGRST205", f"Could not find the table '{schema}.{table}' in the schema cache"
    )


def _schema(request: Request, header: str) -> str:
    schema = request.headers.get(header) or EXPOSED_SCHEMAS[0]
    if schema not in EXPOSED_SCHEMAS:
        raise PostgrestError(
            406,
            "PGRST106",
            f"Invalid schema: {schema}",
            hint="Only the following schemas are exposed: " + ", ".join(EXPOSED_SCHEMAS),
        )
    return schema


async def _rpc_arguments(request: Request) -> tuple[str, list[str]]:
    """The JSON document of the arguments (as sent, so numbers keep their digits) and its keys."""
    if request.method != "POST":
        arguments = dict(request.query_params.items())
        return json.dumps(arguments), list(arguments)
    try:
        raw = (await request.body()).decode("utf-8", errors="replace")
    except ClientDisconnect as exc:  # nobody will read the answer; say so without a traceback
        raise PostgrestError(400, "PGRST102", "The client disconnected") from exc
    if not raw.strip():
        return "{}", []
    try:
        parsed: Any = json.loads(raw)
    except ValueError as exc:
        raise PostgrestError(400, "PGRST102", "Empty or invalid json") from exc
    return raw, list(parsed) if isinstance(parsed, dict) else []
