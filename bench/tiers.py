"""`python -m bench.tiers` (`make bench-tiers`): issue 21's figure, each user's share of the slots
over a run against their plan, through the real API and real worker processes.

One private stack; MAX_ACTIVE_JOBS = SLOTS; three users on the seeded plans (free, plus, pro:
weights 1, 2, 4), each with JOBS jobs queued through POST /api/generate at once; WORKERS worker
processes (`python -m storyq_worker.runner`, GENERATOR=template stretched over STORY_SECONDS).
A user's share is the fraction of the attempts started while every user still had jobs waiting
(from story_jobs.started_at), against the share their weight gives.

Writes bench/results/tiers.json and the `tiers` key of bench/results/bench.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.stack import JWT_SECRET, POWERTOOLS_ENV, ServerSide, bench_spec
from bench.users import BenchUser, create_users
from storyq_local.stack.builder import start_stack
from storyq_local.stack.servers import wait_until
from storyq_local.stack.workers import WorkerProcess

RESULTS = Path(__file__).parent / "results"
BENCH_JSON = RESULTS / "bench.json"
TIERS_JSON = RESULTS / "tiers.json"
POSTGRES_SERVER_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SLOTS = 6
WORKERS = 2
JOBS = 40
STORY_SECONDS = 0.6
TIERS = ("free", "plus", "pro")
PROMPT = "A lighthouse keeper finds a door in the fog that was not there yesterday."


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _sql(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


def _plans(database_url: str) -> dict[str, dict[str, Any]]:
    rows = _sql(database_url, "select tier, weight, max_active_per_user from public.plans")
    return {tier: {"weight": weight, "cap": cap} for tier, weight, cap in rows}


def _run(side: ServerSide, users: dict[str, BenchUser], log_dir: Path) -> dict[str, Any]:
    db = side.database_url
    with httpx.Client(base_url=side.api_url, timeout=30) as api:
        for tier in TIERS:
            for _ in range(JOBS):
                answer = api.post(
                    "/api/generate",
                    json={"prompt": PROMPT, "targetWords": 100},
                    headers=users[tier].authorization,
                )
                answer.raise_for_status()
    env = {
        **side.stack.env(
            max_active_jobs=SLOTS, generator="template", generation_delay_seconds=STORY_SECONDS
        ),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    workers = [
        WorkerProcess(env=env, log_dir=log_dir, concurrency=SLOTS).start() for _ in range(WORKERS)
    ]
    try:
        wait_until(
            lambda: not _sql(db, "select 1 from public.story_jobs where status = 'pending'"),
            timeout=600,
            interval=0.5,
        )
    finally:
        for worker in workers:
            worker.stop()
    tier_of = {str(user.id): tier for tier, user in users.items()}
    starts = _sql(
        db,
        "select user_id::text, started_at from public.story_jobs where started_at is not null"
        " and user_id::text = any(%s) order by started_at",
        (list(tier_of),),
    )
    # The window while every user still had jobs waiting: until the first user's last start.
    last_start = {tier: max(at for uid, at in starts if tier_of[uid] == tier) for tier in TIERS}
    window_end = min(last_start.values())
    counted = Counter(tier_of[uid] for uid, at in starts if at < window_end)
    total = sum(counted.values())
    _sql(
        db,
        "update public.story_jobs set status = 'cancelled', finished_at = now()"
        " where status in ('pending', 'processing')",
    )
    return {
        "starts_in_window": total,
        "share": {tier: round(counted[tier] / total, 3) for tier in TIERS},
        "starts": dict(counted),
    }


def measure() -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="storyq-bench-tiers-"))
    side = ServerSide(start_stack(bench_spec(POSTGRES_SERVER_URL, cpus=None, log_dir=log_dir)))
    try:
        db = side.database_url
        found: dict[str, Any] = {"seeded_plans": _plans(db), "log_dir": str(log_dir)}
        created = create_users(db, len(TIERS), credits=JOBS, secret=JWT_SECRET)
        users = dict(zip(TIERS, created, strict=True))
        for tier, user in users.items():
            _sql(
                db,
                "update auth.users set raw_app_meta_data = raw_app_meta_data"
                " || jsonb_build_object('tier', %s::text) where id = %s",
                (tier, user.id),
            )
        _say(f"{JOBS} jobs each for free, plus, pro; {SLOTS} slots")
        found["run"] = _run(side, users, log_dir)
        return found
    finally:
        side.stop()


def main() -> None:
    os.environ.update({**POWERTOOLS_ENV, "POWERTOOLS_LOG_LEVEL": "ERROR"})
    started = time.monotonic()
    found = measure()
    plans = found["seeded_plans"]
    weights = {tier: plans[tier]["weight"] for tier in TIERS}
    by_weight = {tier: round(w / sum(weights.values()), 3) for tier, w in weights.items()}
    print("{:6} {:>6} {:>10} {:>8}".format("tier", "weight", "by weight", "share"))
    for tier in TIERS:
        share = found["run"]["share"][tier]
        print(f"{tier:6} {weights[tier]:>6g} {by_weight[tier]:>10.3f} {share:>8.3f}")
    seconds = round(time.monotonic() - started)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    document = {
        "when": when,
        "seconds": seconds,
        "settings": {
            "slots": SLOTS,
            "workers": WORKERS,
            "jobs_per_user": JOBS,
            "story_seconds": STORY_SECONDS,
        },
        "weight_share": by_weight,
        **found,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    TIERS_JSON.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    bench = json.loads(BENCH_JSON.read_text(encoding="utf-8")) if BENCH_JSON.exists() else {}
    bench["tiers"] = {k: v for k, v in document.items() if k != "log_dir"}
    BENCH_JSON.write_text(json.dumps(bench, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"{seconds} s; written to {TIERS_JSON} and to {BENCH_JSON} under `tiers`")


if __name__ == "__main__":
    main()
