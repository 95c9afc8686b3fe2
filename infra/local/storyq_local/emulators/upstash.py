"""A local stand-in for Upstash Redis's REST API, over a real redis-server.

Owns the HTTP side of the Upstash protocol so that the unchanged `upstash-redis` SDK (sync and
async) and `upstash-ratelimit` work against a local Redis:

- `POST /` one command (`["SET","k","v","EX",100]`) → `{"result": ...}`, or 400 `{"error": ...}`;
- `POST /pipeline` commands run in order, each on its own → `[{"result"}|{"error"}, ...]`;
- `POST /multi-exec` the same, atomically (MULTI ... EXEC on one connection); a transaction
  Redis discards answers one 400 `{"error": ...}`;
- `Authorization: Bearer <token>` on every call (401 WRONGPASS otherwise), `GET /healthz` open;
- `Upstash-Encoding: base64` and argument coercion: see `storyq_local.emulators.resp`;
- refuses what REST cannot do (blocking reads, pub/sub, WATCH, commands that change the state of
  a pooled connection) with 400;
- `#!lua flags=...` shebangs with flags stock Redis 7 rejects (Upstash's `allow-key-locking`) are
  blanked on EVAL/SCRIPT LOAD; EVALSHA/SCRIPT EXISTS take the client's SHA of the original text
  and are mapped to the SHA Redis knows, and SCRIPT LOAD answers the original SHA;
- Redis unreachable → 503 `{"error": ...}`; the pool checks connections out afresh, so requests
  succeed again as soon as Redis is back.

Replies are Redis's raw RESP2 shapes (SET → "OK", HGETALL → flat array): commands go through
the connection's `send_packed_command`/`read_response`, never redis-py's response callbacks.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from storyq_local.emulators.resp import (
    Json,
    MalformedBodyError,
    encode_reply,
    error_message,
    parse_command,
    parse_commands,
)

POOL_SIZE = 64
POOL_WAIT_S = 10.0
SOCKET_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 2.0

WRONGPASS = "WRONGPASS invalid or missing auth token"

# Blocking reads, and commands that would leave a pooled connection in another state.
REFUSED = frozenset(
    {
        *("BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP"),
        *("WAIT", "WAITAOF", "MONITOR", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"),
        *("UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "WATCH", "UNWATCH"),
        *("MULTI", "EXEC", "DISCARD", "SELECT", "HELLO", "AUTH", "QUIT", "RESET", "CLIENT"),
        *("SYNC", "PSYNC", "REPLCONF", "SHUTDOWN"),
    }
)
# Shebang flags redis-server 7 knows; any other flag makes it refuse the script.
REDIS_SCRIPT_FLAGS = frozenset(
    {"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"}
)


def refusal(command: list[str]) -> str | None:
    """Why the REST API does not run `command`, or None when it does."""
    name = command[0].upper()
    blocking_read = name in {"XREAD", "XREADGROUP"} and _has_block_option(command)
    if name in REFUSED or blocking_read:
        return (
            f"ERR Command is not available: '{command[0]}'. Blocking, pub/sub, WATCH and "
            "connection-state commands are not supported over REST"
        )
    return None


def _has_block_option(command: list[str]) -> bool:
    for arg in command[1:]:
        if arg.upper() == "STREAMS":
            return False
        if arg.upper() == "BLOCK":
            return True
    return False


def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def strip_shebang(script: str) -> str | None:
    """`script` with the flags Redis 7 rejects dropped from its `#!lua` line (the line is
    blanked when no flag is left, keeping line numbers), or None when Redis accepts it as is."""
    if not script.startswith("#!lua"):
        return None
    first, newline, rest = script.partition("\n")
    flags: list[str] = []
    for word in first.split()[1:]:
        if word.startswith("flags="):
            flags.extend(flag for flag in word.removeprefix("flags=").split(",") if flag)
    known = [flag for flag in flags if flag in REDIS_SCRIPT_FLAGS]
    if len(known) == len(flags):
        return None
    kept = f"#!lua flags={','.join(known)}" if known else ""
    return kept + newline + rest


@dataclass
class Prepared:
    """A command as it goes to Redis: `args`, or `refused` (not sent), and for SCRIPT LOAD of
    a rewritten script the SHA to answer instead of Redis's."""

    args: list[str]
    refused: str | None = None
    answer_sha: str | None = None


class Scripts:
    """Maps the SHA a client computes for a script to the SHA of the text Redis ran."""

    def __init__(self) -> None:
        self._redis_sha: dict[str, str] = {}

    def _rewrite(self, script: str) -> tuple[str, str | None]:
        stripped = strip_shebang(script)
        if stripped is None:
            return script, None
        original_sha = _sha1(script)
        self._redis_sha[original_sha] = _sha1(stripped)
        return stripped, original_sha

    def _sha(self, sha: str) -> str:
        return self._redis_sha.get(sha.lower(), sha)

    def prepare(self, command: list[str]) -> Prepared:
        name = command[0].upper()
        args = list(command)
        answer_sha = None
        sub = args[1].upper() if len(args) > 1 else ""
        if name in {"EVAL", "EVAL_RO"} and len(args) > 1:
            args[1], _ = self._rewrite(args[1])
        elif name in {"EVALSHA", "EVALSHA_RO"} and len(args) > 1:
            args[1] = self._sha(args[1])
        elif name == "SCRIPT" and sub == "LOAD" and len(args) > 2:
            args[2], answer_sha = self._rewrite(args[2])
        elif name == "SCRIPT" and sub == "EXISTS":
            args[2:] = [self._sha(sha) for sha in args[2:]]
        return Prepared(args=args, refused=refusal(command), answer_sha=answer_sha)


def _finish(prepared: Prepared, reply: object) -> object:
    if prepared.answer_sha is not None and isinstance(reply, bytes):
        return prepared.answer_sha.encode()
    return reply


class RedisUnavailableError(Exception):
    """Redis could not be reached or dropped the connection mid-request."""


class Backend:
    """Runs batches of raw commands on one pooled connection and reads the raw replies."""

    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url
        self._pool: BlockingConnectionPool | None = None

    async def start(self) -> None:
        # Upstash answers in RESP2 shapes (HGETALL is a flat array); redis-py 8 defaults to
        # RESP3, and a `protocol` in the URL would change them too.
        options: dict[str, Any] = {**parse_url(self._redis_url), "protocol": 2}
        pool = BlockingConnectionPool(
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            **options,
        )
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    async def run(self, commands: list[list[str]]) -> list[object]:
        """One reply per command, a `ResponseError` for an error reply; raises
        `RedisUnavailableError` when Redis cannot be reached."""
        if not commands:
            return []
        if self._pool is None:
            raise RedisUnavailableError("the emulator is not started")
        try:
            # redis-py leaves get_connection unannotated (it wraps it in a decorator).
            conn: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailableError(_describe(exc)) from exc
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            return [await _read(conn) for _ in commands]
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            await conn.disconnect(nowait=True)
            raise RedisUnavailableError(_describe(exc)) from exc
        except BaseException:
            # Unread replies would poison the next user of this connection.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await self._pool.release(conn)


async def _read(conn: AbstractConnection) -> object:
    try:
        reply: object = await conn.read_response()
    except ResponseError as exc:
        return exc
    return reply


def _describe(exc: Exception) -> str:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError) and exc.status_code:
        return error_message(exc)  # a reply such as LOADING, sent while Redis cannot serve
    return f"ERR Redis is unavailable: {exc}"


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _item(reply: object, *, b64: bool) -> dict[str, Json]:
    if isinstance(reply, ResponseError):
        return {"error": error_message(reply)}
    return {"result": encode_reply(reply, b64=b64)}


class Emulator:
    """The request handlers; one per app, sharing the pool and the script SHA map."""

    def __init__(self, *, redis_url: str, token: str) -> None:
        self.backend = Backend(redis_url)
        self._expected = f"Bearer {token}".encode()
        self._scripts = Scripts()

    def _denied(self, request: Request) -> Response | None:
        if request.method != "POST":
            return _error(f"ERR method {request.method} is not allowed, use POST", 405)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            return _error(WRONGPASS, 401)
        return None

    async def single(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        try:
            prepared = self._scripts.prepare(parse_command(await request.body()))
        except MalformedBodyError as exc:
            return _error(str(exc), 400)
        if prepared.refused:
            return _error(prepared.refused, 400)
        try:
            (reply,) = await self.backend.run([prepared.args])
        except RedisUnavailableError as exc:
            return _error(str(exc), 503)
        if isinstance(reply, ResponseError):
            return _error(error_message(reply), 400)
        return JSONResponse({"result": encode_reply(_finish(prepared, reply), b64=_b64(request))})

    async def _batch(self, request: Request) -> list[Prepared] | Response:
        if denied := self._denied(request):
            return denied
        try:
            commands = parse_commands(await request.body())
        except MalformedBodyError as exc:
            return _error(str(exc), 400)
        return [self._scripts.prepare(command) for command in commands]

    async def pipeline(self, request: Request) -> Response:
        batch = await self._batch(request)
        if isinstance(batch, Response):
            return batch
        runnable = [p for p in batch if p.refused is None]
        try:
            replies = iter(await self.backend.run([p.args for p in runnable]))
        except RedisUnavailableError as exc:
            return _error(str(exc), 503)
        b64 = _b64(request)
        items = [
            {"error": p.refused} if p.refused else _item(_finish(p, next(replies)), b64=b64)
            for p in batch
        ]
        return JSONResponse(items)

    async def multi_exec(self, request: Request) -> Response:
        batch = await self._batch(request)
        if isinstance(batch, Response):
            return batch
        if refused := next((p.refused for p in batch if p.refused), None):
            return _error(f"EXECABORT Transaction discarded: {refused}", 400)
        if not batch:
            return JSONResponse([])
        try:
            *queued, executed = await self.backend.run(
                [["MULTI"], *(p.args for p in batch), ["EXEC"]]
            )
        except RedisUnavailableError as exc:
            return _error(str(exc), 503)
        if not isinstance(executed, list):
            return _error(_discarded(executed, queued), 400)
        b64 = _b64(request)
        items = [_item(_finish(p, r), b64=b64) for p, r in zip(batch, executed, strict=True)]
        return JSONResponse(items)


def _discarded(executed: object, queued: list[object]) -> str:
    """Why EXEC ran nothing: Redis's EXECABORT plus the first command it refused to queue."""
    message = (
        error_message(executed)
        if isinstance(executed, ResponseError)
        else "EXECABORT Transaction discarded"
    )
    cause = next((r for r in queued if isinstance(r, ResponseError)), None)
    return f"{message} ({error_message(cause)})" if cause is not None else message


def _b64(request: Request) -> bool:
    return request.headers.get("upstash-encoding", "").lower() == "base64"


async def _healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(*, redis_url: str, token: str) -> Starlette:
    """The emulator as an ASGI app; its Redis connection pool lives for the app's lifespan."""
    emulator = Emulator(redis_url=redis_url, token=token)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await emulator.backend.start()
        try:
            yield
        finally:
            await emulator.backend.close()

    every_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/", emulator.single, methods=every_method),
        Route("/pipeline", emulator.pipeline, methods=every_method),
        Route("/multi-exec", emulator.multi_exec, methods=every_method),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
