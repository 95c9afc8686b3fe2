"""Serve one app of the local stack in this process with uvicorn, so a test can kill it:
`python -m tests.reliability.serve upstash|supabase|api PORT` (configured by environment)."""

from __future__ import annotations

import os
import sys
from typing import Any

import uvicorn


def build(kind: str) -> Any:
    if kind == "upstash":
        from storyq_local.upstash_emulator import create_app as upstash_app

        return upstash_app(
            redis_url=os.environ["RELIABILITY_REDIS_URL"],
            token=os.environ["UPSTASH_REDIS_REST_TOKEN"],
        )
    if kind == "supabase":
        from storyq_local.supabase_emulator import create_app as supabase_app

        return supabase_app(
            database_url=os.environ["RELIABILITY_DATABASE_URL"],
            jwt_secret=os.environ["SUPABASE_JWT_SECRET"],
            # As many connections as the API's client may open (100), so the load test measures
            # the API and not a pool queue; a pool timeout is a known 500 (test_store_errors.py).
            pool_size=100,
        )
    if kind == "api":
        from storyq.config import Settings
        from storyq_api.app import create_app as api_app

        return api_app(Settings(_env_file=None))  # type: ignore[call-arg]  # init-only option
    raise SystemExit(f"unknown app {kind!r}")


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(
        build(kind),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        # Longer than any pause of the load test: an idle keep-alive connection closed by the
        # server just as the client reuses it is a client-side ReadError, not an answer.
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()
