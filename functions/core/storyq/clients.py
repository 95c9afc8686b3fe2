"""Client factories: Upstash Redis over REST and Supabase's PostgREST, built from Settings.

Only the PostgREST sub-client of supabase-py is imported: it is all the functions use (RPC),
and it keeps realtime, storage and auth out of the Lambda cold start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
from postgrest import AsyncPostgrestClient
from upstash_redis.asyncio import Redis as AsyncRedis

from storyq.config import Settings

# Requests in flight per PostgREST client. Past that they wait on a semaphore, in order: waiting
# inside httpcore's pool instead costs a scan of every waiting request at each completion,
# which under a few hundred concurrent requests took more time than the requests themselves.
POSTGREST_CONCURRENCY = 32


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that gives its request slot back when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class BoundedTransport(httpx.AsyncBaseTransport):
    """At most `limit` requests in flight (until each response is read and closed)."""

    def __init__(self, limit: int) -> None:
        pool = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
        self._inner = httpx.AsyncHTTPTransport(limits=pool)
        self._slots = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._slots.acquire()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, self._slots.release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _postgrest_headers(settings: Settings) -> dict[str, str]:
    key = settings.supabase_service_role_key.get_secret_value()
    return {
        "apikey": key,
        "Authorization": f"Bearer {key}",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


def _rest_url(settings: Settings) -> str:
    return f"{settings.supabase_url.rstrip('/')}/rest/v1"


def async_postgrest(settings: Settings) -> AsyncPostgrestClient:
    """A service-role PostgREST client for the functions (RPC is the only path they use)."""
    url, headers = _rest_url(settings), _postgrest_headers(settings)
    session = httpx.AsyncClient(
        base_url=url,
        headers=headers,
        timeout=settings.http_timeout_seconds,
        follow_redirects=True,
        transport=BoundedTransport(POSTGREST_CONCURRENCY),
    )
    return AsyncPostgrestClient(url, headers=headers, http_client=session)


def async_redis(settings: Settings) -> AsyncRedis:
    """An Upstash REST client; telemetry off, retries sized for a queue rather than a page."""
    return AsyncRedis(
        url=settings.upstash_redis_rest_url,
        token=settings.upstash_redis_rest_token.get_secret_value(),
        rest_retries=settings.upstash_rest_retries,
        rest_retry_interval=settings.upstash_rest_retry_interval,
        allow_telemetry=False,
    )
