"""ASGI middleware: a request body cap checked before anything parses it, HEAD answered as GET
without a body, the rate-limit headers on every answer of a limited request, and a last resort
that turns an unexpected exception into a bare 500 problem (the traceback goes to the log)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storyq_api.errors import internal_error_response, problem_response
from storyq_api.telemetry import logger

# Request state key under which a limiter leaves the headers of its verdict (see ratelimit).
RATE_LIMIT_STATE = "rate_limit_headers"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """413 when Content-Length says, or the bytes received show, that a body exceeds the cap.

    The body (at most `max_bytes`) is read here and handed on, so the limit holds for chunked
    requests too and the routes never see a partial body.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, why: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.why = why

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see the disconnect as usual
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            status=413,
            code="payload_too_large",
            detail=f"the request body is larger than {self.max_bytes} bytes, {self.why}",
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class HeadMiddleware:
    """HEAD is GET without the body (RFC 9110 §9.3.2): the route, auth and rate limit run as for
    GET, and the status and headers (Content-Length included) are GET's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def without_body(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.body":
                if ended:
                    return
                ended = not message.get("more_body", False)
                message = {"type": "http.response.body", "body": b"", "more_body": not ended}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class RateLimitHeadersMiddleware:
    """Every answer to a request that counted toward a limit carries that limit's `RateLimit-*`
    headers, errors (402, 404, 422, ...) included: the limiter leaves them in the request state,
    and they are added here unless the answer set its own (a 429's Retry-After)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def with_headers(message: Message) -> None:
            limit_headers: dict[str, str] | None = state.get(RATE_LIMIT_STATE)
            if message["type"] == "http.response.start" and limit_headers:
                present = {name.lower() for name, _ in message.get("headers", ())}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in limit_headers.items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class CatchAllMiddleware:
    """Any exception the exception map did not handle: logged, answered as `internal_error`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error", extra={"path": scope.get("path")})
            if started:
                raise  # too late for a clean answer; the server closes the connection
            await internal_error_response()(scope, receive, send)
