"""Client factories: Upstash Redis over REST and Supabase's PostgREST, built from Settings.

Only the PostgREST sub-client of supabase-py is imported: it is all the functions use (RPC),
and it keeps realtime, storage and auth out of the Lambda cold start.
"""

from __future__ import annotations

import httpx
from postgrest import AsyncPostgrestClient, SyncPostgrestClient
from upstash_redis import Redis as SyncRedis
from upstash_redis.asyncio import Redis as AsyncRedis

from storyq.config import Settings


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
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )
    return AsyncPostgrestClient(url, headers=headers, http_client=session)


def sync_postgrest(settings: Settings) -> SyncPostgrestClient:
    """The same client, blocking, for the CLI."""
    url, headers = _rest_url(settings), _postgrest_headers(settings)
    session = httpx.Client(
        base_url=url, headers=headers, timeout=settings.http_timeout_seconds, follow_redirects=True
    )
    return SyncPostgrestClient(url, headers=headers, http_client=session)


def async_redis(settings: Settings) -> AsyncRedis:
    """An Upstash REST client; telemetry off, retries sized for a queue rather than a page."""
    return AsyncRedis(
        url=settings.upstash_redis_rest_url,
        token=settings.upstash_redis_rest_token.get_secret_value(),
        rest_retries=settings.upstash_rest_retries,
        rest_retry_interval=settings.upstash_rest_retry_interval,
        allow_telemetry=False,
    )


def sync_redis(settings: Settings) -> SyncRedis:
    """The same client, blocking, for the CLI."""
    return SyncRedis(
        url=settings.upstash_redis_rest_url,
        token=settings.upstash_redis_rest_token.get_secret_value(),
        rest_retries=settings.upstash_rest_retries,
        rest_retry_interval=settings.upstash_rest_retry_interval,
        allow_telemetry=False,
    )
