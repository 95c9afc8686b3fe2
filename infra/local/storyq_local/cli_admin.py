"""The operator verbs of `storyq`: stats, clean, empty, retry, cancel, credits add.

The monitoring verbs of the old system, mirroring the admin endpoints: each runs the same code
(`storyq.operations`) with Settings from the environment (then .env) and the service role,
against Upstash and Supabase (locally: the emulators `make dev` runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence

from pydantic import TypeAdapter
from pydantic.alias_generators import to_camel

from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings
from storyq.kick import WorkerKicker
from storyq.operations import JobOperations, QueueStats
from storyq.queue import Dispatcher
from storyq.store import Store, StoreError
from storyq_local.stack.tokens import parse_duration

# What an operator reads for the store's refusals (its own text may quote SQL).
_REFUSALS = {
    "job_not_found": "no such job",
    "job_not_retryable": "only a failed job can be retried",
    "job_not_cancellable": "a completed or failed job cannot be cancelled",
    "user_not_found": "no such user (sign-up or `storyq token --user` creates one)",
    "invalid_amount": "the amount must be a positive number of credits",
    "store_unavailable": "the database cannot be reached (is `make dev` running? SUPABASE_URL?)",
}


def _run[T](settings: Settings, work: Callable[[JobOperations], Awaitable[T]]) -> T:
    async def main() -> T:
        db, redis = async_postgrest(settings), async_redis(settings)
        operations = JobOperations(
            store=Store(db),
            dispatcher=Dispatcher(redis, max_active=settings.max_active_jobs),
            # The operator's verbs never wake a worker: `make dev`'s polls, AWS's schedule runs.
            kicker=WorkerKicker(None, timeout=settings.http_timeout_seconds),
            settings=settings,
        )
        try:
            return await work(operations)
        finally:
            await db.aclose()
            await redis.close()

    return asyncio.run(main())


def _cmd_stats(args: argparse.Namespace) -> int:
    stats = _run(Settings(), JobOperations.queue_stats)
    if args.json:
        # The same document as GET /api/admin/queue.
        plain = TypeAdapter(QueueStats).dump_python(stats, mode="json")
        print(json.dumps({to_camel(name): value for name, value in plain.items()}, indent=2))
        return 0
    for name in ("waiting", "active", "delayed", "completed", "failed", "cancelled"):
        print(f"{name:<10} {getattr(stats, name)}")
    if stats.held_by_user_cap:
        print(f"held       {stats.held_by_user_cap} of the waiting, their users at their cap")
    oldest = stats.oldest_pending_at.isoformat() if stats.oldest_pending_at else "-"
    print(
        f"max active {stats.max_active} · mean generation {stats.avg_generation_seconds:.1f} s"
        f" · oldest pending {oldest} · live counts from {stats.source}"
    )
    print(
        f"today (UTC) {stats.prompt_tokens_today} prompt + {stats.completion_tokens_today}"
        f" completion tokens · ${stats.cost_usd_today:.4f}"
    )
    for load in stats.by_tier:
        print(f"tier {load.tier:<16} {load.pending} waiting · {load.processing} running")
    pause = stats.provider_pause
    if pause is None:
        print("provider   not paused")
    else:
        print(
            f"provider   paused until {pause.until.isoformat()} ({pause.reason},"
            f" {pause.strikes} strike(s){', a probe out' if pause.probing else ''})"
        )
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    age = parse_duration(args.older_than)

    async def clean(operations: JobOperations) -> int:
        return await operations.clean(args.status, older_than_seconds=age)

    deleted = _run(Settings(), clean)
    print(f"deleted {deleted} {args.status} job(s) finished more than {age} s ago")
    return 0


def _cmd_empty(_: argparse.Namespace) -> int:
    cancelled = _run(Settings(), JobOperations.empty)
    print(f"cancelled and refunded {len(cancelled)} waiting job(s)")
    for job_id in cancelled:
        print(f"  {job_id}")
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    async def retry(operations: JobOperations) -> str:
        standing = await operations.retry(args.job_id)
        job, position = standing.job, standing.position
        where = (
            f"position {position.position}, about {position.estimated_minutes} min"
            if position
            else "Redis unreachable: the sweeper will queue it"
        )
        return f"job {job.job_id} is pending again ({where})"

    print(_run(Settings(), retry))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    async def cancel(operations: JobOperations) -> str:
        job = await operations.cancel(args.job_id)
        if job.status == "processing":
            return f"job {job.job_id} is being cancelled: its worker stops it within seconds"
        return f"job {job.job_id} is cancelled (refunded: {'yes' if job.refunded else 'no'})"

    print(_run(Settings(), cancel))
    return 0


def _cmd_credits_add(args: argparse.Namespace) -> int:
    async def grant(operations: JobOperations) -> int:
        return await operations.grant_credits(args.user, args.amount)

    balance = _run(Settings(), grant)
    print(f"user {args.user} now has {balance} credit(s)")
    return 0


def _refusing_store_errors(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except StoreError as exc:
            print(f"storyq {args.verb}: {_REFUSALS.get(exc.code, exc.code)}", file=sys.stderr)
            return 1

    return run


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator verbs to the `storyq` parser's subcommands."""
    stats = verbs.add_parser("stats", help="queue counts: waiting, active, delayed, finished")
    stats.add_argument("--json", action="store_true", help="as the admin API answers")
    stats.set_defaults(run=_refusing_store_errors(_cmd_stats))

    clean = verbs.add_parser("clean", help="delete finished job rows (stories stay)")
    clean.add_argument("status", choices=["completed", "failed", "cancelled"])
    clean.add_argument(
        "--older-than",
        default="0",
        metavar="AGE",
        help="only rows finished at least this long ago: 3600, 1h, 7d (default: all)",
    )
    clean.set_defaults(run=_refusing_store_errors(_cmd_clean))

    empty = verbs.add_parser("empty", help="cancel and refund every waiting job")
    empty.set_defaults(run=_refusing_store_errors(_cmd_empty))

    retry = verbs.add_parser("retry", help="put a failed job back in the queue (no new charge)")
    retry.add_argument("job_id", type=uuid.UUID, metavar="JOB_ID")
    retry.set_defaults(run=_refusing_store_errors(_cmd_retry))

    cancel = verbs.add_parser(
        "cancel", help="cancel any job (reason admin): a waiting one at once, a running one soon"
    )
    cancel.add_argument("job_id", type=uuid.UUID, metavar="JOB_ID")
    cancel.set_defaults(run=_refusing_store_errors(_cmd_cancel))

    credits = verbs.add_parser("credits", help="credit balances")
    actions = credits.add_subparsers(dest="credits_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="grant credits to a user")
    add.add_argument("--user", type=uuid.UUID, required=True, metavar="UUID")
    add.add_argument("--amount", type=int, required=True, metavar="N")
    add.set_defaults(run=_refusing_store_errors(_cmd_credits_add))


def main(argv: Sequence[str] | None = None) -> int:
    """These verbs alone (the `storyq` command adds them to its own parser with `register`)."""
    parser = argparse.ArgumentParser(prog="storyq", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    register(verbs)
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except ValueError as exc:
        print(f"storyq {args.verb}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
