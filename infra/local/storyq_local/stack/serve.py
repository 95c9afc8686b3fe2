"""Serve one app of a local stack with uvicorn in this process, so that its owner may kill it
(the reliability suite) or pin it to a CPU (the benchmarks):

    python -m storyq_local.stack.serve upstash --port P --redis-url URL
    python -m storyq_local.stack.serve supabase --port P --database-url URL [--pool-size N]
    python -m storyq_local.stack.serve openai --port P [--story-seconds S]
    python -m storyq_local.stack.serve api --port P [--web DIR]

Secrets come from the environment, under the names the functions read (UPSTASH_REDIS_REST_TOKEN,
SUPABASE_JWT_SECRET); the API reads all of its Settings from it. With --until-stdin-closes the
server also stops when its stdin reaches end of file, as it does when the parent that holds the
other end of the pipe exits or dies.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from storyq_local.stack import apps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m storyq_local.stack.serve")
    parser.add_argument("kind", choices=["upstash", "supabase", "openai", "api"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", help="upstash: the Redis behind it")
    parser.add_argument("--database-url", help="supabase: the database behind it")
    parser.add_argument("--pool-size", type=int, default=20, help="supabase: connections")
    parser.add_argument("--pool-timeout", type=float, default=5.0, help="supabase: seconds")
    parser.add_argument("--count-requests", action="store_true", help="emulators: count them")
    parser.add_argument("--story-seconds", type=float, default=0.0, help="openai: per story")
    parser.add_argument("--web", type=Path, help="api: serve this page folder at /")
    parser.add_argument("--until-stdin-closes", action="store_true")
    return parser


def build_app(args: argparse.Namespace) -> ASGIApp:
    if args.kind == "upstash":
        return apps.upstash_app(
            redis_url=args.redis_url,
            token=os.environ["UPSTASH_REDIS_REST_TOKEN"],
            count_requests=args.count_requests,
        )
    if args.kind == "supabase":
        return apps.supabase_app(
            database_url=args.database_url,
            jwt_secret=os.environ["SUPABASE_JWT_SECRET"],
            pool_size=args.pool_size,
            pool_timeout=args.pool_timeout,
            count_requests=args.count_requests,
        )
    if args.kind == "openai":
        return apps.openai_app(story_seconds=args.story_seconds, count_requests=args.count_requests)
    from storyq.config import Settings

    return apps.api_app(Settings(_env_file=None), web=args.web)  # type: ignore[call-arg]


def _stop_when_stdin_closes(server: uvicorn.Server) -> None:
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        server.should_exit = True

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    config = uvicorn.Config(
        build_app(args),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
        # Longer than any pause of the load tests: an idle keep-alive connection closed by the
        # server just as the client reuses it is a client-side ReadError, not an answer.
        timeout_keep_alive=60,
    )
    server = uvicorn.Server(config)
    if args.until_stdin_closes:
        _stop_when_stdin_closes(server)
    server.run()


if __name__ == "__main__":
    main()
