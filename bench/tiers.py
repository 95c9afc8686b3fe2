"""`python -m bench.tiers` (`make bench-tiers`): issue 21's figures, each user's share of the
slots over a run against their plan, and the plans' running caps, through the real API and real
worker processes.

Weights: one private stack; MAX_ACTIVE_JOBS = SLOTS; three users on the seeded plans (free,
plus, pro: weights 1, 2, 4), each with JOBS jobs queued through POST /api/generate at once;
WORKERS worker processes (`python -m storyq_worker.runner`, GENERATOR=template stretched over
STORY_SECONDS). A user's share is the fraction of the attempts started while every user still had
jobs waiting (from story_jobs.started_at), against the share their weight gives.

Caps: a fresh private stack, the same slots and workers, the plans' `max_active_per_user` set to
CAPS (restored to none afterwards). CAPS_USERS (user, tier, jobs): a pro user's flood, a plus
user, and four free users, one of them with a backlog; their jobs are queued interleaved through
POST /api/generate before the workers start, and run until every job has finished. A cap only
binds while its user's weighted share of the slots exceeds it with someone under their own cap
waiting: with weights 1, 2, 4 and SLOTS = 6, a free user's share passes 1 only when the pro
user alone waits beside them (6 * 1/5), which the free user with the backlog reaches once the
others are done; a plus user's share never passes 2 beside the pro user (6 * 2/6).

From each job's started_at and finished_at (bench.timeline), for each user: their share of the
starts while every user still had jobs waiting; the most of their jobs running at once while
someone else under their own cap waited (`held`: at most their cap, README "Plans and tiers"),
also read without the lag bench.timeline allows for the start and ack round trips (`strict`);
and the most running at once once everyone else was done (`after`: a capped user borrows the
free slots). Any stretch over a cap while others waited, the slot-seconds left free while jobs
waited, and how often Redis held jobs for a cap (sampled every 0.1 s) are recorded.

Lone capped user: then, on the same stack, one free user (cap 1) alone queues LONE_JOBS jobs:
the most running at once (work-conserving: SLOTS) and the wall time from the first start to the
last finish, against ceil(LONE_JOBS / SLOTS) rounds of the mean job (borrowing) and LONE_JOBS
rounds (what a cap that idles slots would take).

Writes bench/results/tiers.json and the `tiers` key of bench/results/bench.json.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench.stack import JWT_SECRET, POWERTOOLS_ENV, ServerSide, bench_spec
from bench.timeline import Span, Timeline
from bench.users import BenchUser, create_users
from storyq.queue.keys import QueueKeys
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
CAPS: dict[str, int | None] = {"free": 1, "plus": 2, "pro": None}
CAPS_USERS = (
    ("pro", "pro", 40),
    ("plus", "plus", 12),
    ("free1", "free", 24),
    ("free2", "free", 4),
    ("free3", "free", 4),
    ("free4", "free", 4),
)
LONE_JOBS = 12
# Postgres's start and finish against Redis's lease and release (bench.timeline), seconds.
LAG = 0.2
DRAIN_TIMEOUT = 600


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _sql(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


def _plans(database_url: str) -> dict[str, dict[str, Any]]:
    rows = _sql(database_url, "select tier, weight, max_active_per_user from public.plans")
    return {tier: {"weight": weight, "cap": cap} for tier, weight, cap in rows}


def _set_caps(database_url: str, caps: dict[str, int | None]) -> None:
    for tier, cap in caps.items():
        _sql(
            database_url,
            "update public.plans set max_active_per_user = %s where tier = %s",
            (cap, tier),
        )


def _users(database_url: str, tiers: list[str], credits: int) -> list[BenchUser]:
    """A new user on each of `tiers` (app_metadata.tier), each granted `credits`."""
    created = create_users(database_url, len(tiers), credits=credits, secret=JWT_SECRET)
    for tier, user in zip(tiers, created, strict=True):
        _sql(
            database_url,
            "update auth.users set raw_app_meta_data = raw_app_meta_data"
            " || jsonb_build_object('tier', %s::text) where id = %s",
            (tier, user.id),
        )
    return created


def _queue(side: ServerSide, order: list[BenchUser]) -> None:
    """One POST /api/generate for each entry of `order`, in that order."""
    with httpx.Client(base_url=side.api_url, timeout=30) as api:
        for user in order:
            answer = api.post(
                "/api/generate",
                json={"prompt": PROMPT, "targetWords": 100},
                headers=user.authorization,
            )
            answer.raise_for_status()


@contextmanager
def _workers(side: ServerSide, log_dir: Path) -> Iterator[None]:
    """WORKERS worker processes, SLOTS at once in all, stopped (SIGTERM) on leaving."""
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
        yield
    finally:
        for worker in workers:
            worker.stop()


def _run(side: ServerSide, users: dict[str, BenchUser], log_dir: Path) -> dict[str, Any]:
    db = side.database_url
    _queue(side, [users[tier] for tier in TIERS for _ in range(JOBS)])
    with _workers(side, log_dir):
        wait_until(
            lambda: not _sql(db, "select 1 from public.story_jobs where status = 'pending'"),
            timeout=DRAIN_TIMEOUT,
            interval=0.5,
        )
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


def _held(client: redis.Redis, label_of: dict[str, str], seen: dict[str, Any]) -> None:
    """Note in `seen` how many jobs Redis holds for their user's cap now, and whose."""
    members = [str(member) for member in client.zrange(QueueKeys().held_by_user, 0, -1)]
    seen["samples"] += 1
    seen["with_held"] += bool(members)
    seen["most_held"] = max(seen["most_held"], len(members))
    users = {label_of.get(member.split(":", 1)[0], "?") for member in members}
    seen["users"] = sorted(set(seen["users"]) | users)


def _drain(
    side: ServerSide, log_dir: Path, label_of: dict[str, str]
) -> tuple[float, dict[str, Any]]:
    """Run the workers until every job of the users in `label_of` (id -> label) has finished,
    sampling Redis's held jobs meanwhile; the seconds they ran and what the samples saw."""
    query = (
        "select 1 from public.story_jobs where user_id::text = any(%s)"
        " and status in ('pending', 'processing')"
    )
    seen: dict[str, Any] = {"samples": 0, "with_held": 0, "most_held": 0, "users": []}
    client = side.redis()

    def drained() -> bool:
        _held(client, label_of, seen)
        return not _sql(side.database_url, query, (list(label_of),))

    started = time.monotonic()
    with _workers(side, log_dir):
        wait_until(drained, timeout=DRAIN_TIMEOUT, interval=0.1)
    return round(time.monotonic() - started, 2), seen


def _spans(
    database_url: str, label_of: dict[str, str]
) -> tuple[dict[str, list[Span]], dict[str, Any]]:
    """Each user's completed jobs as spans (seconds from the run's first start), and the jobs'
    statuses and how many ran more than one attempt."""
    rows = _sql(
        database_url,
        "select user_id::text, status, attempts, started_at, finished_at"
        " from public.story_jobs where user_id::text = any(%s)",
        (list(label_of),),
    )
    first = min(started for *_, started, _ in rows if started is not None)
    spans: dict[str, list[Span]] = {label: [] for label in label_of.values()}
    for uid, status, _, started, finished in rows:
        if status == "completed":
            span = ((started - first).total_seconds(), (finished - first).total_seconds())
            spans[label_of[uid]].append(span)
    statuses = Counter(str(status) for _, status, *_ in rows)
    retried = sum(1 for _, _, attempts, *_ in rows if attempts > 1)
    return spans, {"statuses": dict(statuses), "retried": retried}


def _shares(timeline: Timeline) -> dict[str, float]:
    """Each user's share of the starts while every user still had jobs waiting."""
    window_end = min(max(start for start, _ in spans) for spans in timeline.spans.values())
    counted = {
        user: sum(1 for start, _ in spans if start < window_end)
        for user, spans in timeline.spans.items()
    }
    total = sum(counted.values()) or 1
    return {user: round(n / total, 3) for user, n in counted.items()}


def _per_user(timeline: Timeline, strict: Timeline, weights: dict[str, float]) -> dict[str, Any]:
    shares = _shares(timeline)
    found: dict[str, Any] = {}
    for user, spans in timeline.spans.items():
        done = timeline.others_done(user)
        found[user] = {
            "cap": timeline.caps[user],
            "jobs": len(spans),
            "by_weight": round(weights[user] / sum(weights.values()), 3),
            "share": shares[user],
            "held_max": timeline.most_while_others_wait(user),
            "held_max_strict": strict.most_while_others_wait(user),
            "after_others_done": (
                timeline.most_since(user, done) if max(e for _, e in spans) > done else None
            ),
            "after_others_started": timeline.most_since(user, timeline.others_started(user)),
        }
    return found


def _per_tier(users: dict[str, Any], tier_of: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for tier in TIERS:
        rows = [row for user, row in users.items() if tier_of[user] == tier]
        afters = [row["after_others_done"] for row in rows if row["after_others_done"]]
        found[tier] = {
            "users": len(rows),
            "cap": CAPS[tier],
            "jobs": sum(row["jobs"] for row in rows),
            "by_weight": round(sum(row["by_weight"] for row in rows), 3),
            "share": round(sum(row["share"] for row in rows), 3),
            "held_max": max(row["held_max"] for row in rows),
            "held_max_strict": max(row["held_max_strict"] for row in rows),
            "after_others_done": max(afters, default=None),
        }
    return found


def _caps_run(side: ServerSide, log_dir: Path) -> dict[str, Any]:
    db = side.database_url
    weight_of = {tier: plan["weight"] for tier, plan in _plans(db).items()}
    labels = [label for label, _, _ in CAPS_USERS]
    tier_of = {label: tier for label, tier, _ in CAPS_USERS}
    jobs = {label: n for label, _, n in CAPS_USERS}
    users = _users(db, list(tier_of.values()), credits=max(jobs.values()))
    order = [
        user
        for n in range(max(jobs.values()))
        for label, user in zip(labels, users, strict=True)
        if n < jobs[label]
    ]
    _say(f"caps: {jobs} jobs, caps {CAPS}; {SLOTS} slots")
    _queue(side, order)
    label_of = {str(user.id): label for label, user in zip(labels, users, strict=True)}
    seconds, held = _drain(side, log_dir, label_of)
    spans, outcome = _spans(db, label_of)
    caps = {label: CAPS[tier] for label, tier in tier_of.items()}
    timeline = Timeline(spans, caps, LAG)
    per_user = _per_user(
        timeline, Timeline(spans, caps), {u: weight_of[t] for u, t in tier_of.items()}
    )
    idle, longest = timeline.idle(SLOTS)
    return {
        "jobs": jobs,
        "tier_of": tier_of,
        "caps": CAPS,
        "lag_seconds": LAG,
        "workers_seconds": seconds,
        "held_samples": held,
        "wall_seconds": round(max(e for s in spans.values() for _, e in s), 2),
        **outcome,
        "tiers": _per_tier(per_user, tier_of),
        "users": per_user,
        "over_cap_while_others_waited": [
            {"user": user, **stretch} for user in labels for stretch in timeline.over_cap(user)
        ],
        "idle_slot_seconds_while_waiting": idle,
        "longest_idle_while_waiting_seconds": longest,
    }


def _lone_run(side: ServerSide, log_dir: Path) -> dict[str, Any]:
    db = side.database_url
    (user,) = _users(db, ["free"], credits=LONE_JOBS)
    _say(f"lone capped user: {LONE_JOBS} jobs, cap {CAPS['free']}; {SLOTS} slots")
    _queue(side, [user] * LONE_JOBS)
    seconds, held = _drain(side, log_dir, {str(user.id): "free"})
    spans, outcome = _spans(db, {str(user.id): "free"})
    timeline = Timeline(spans, {"free": CAPS["free"]}, LAG)
    mean = sum(end - start for start, end in spans["free"]) / len(spans["free"])
    rounds = math.ceil(LONE_JOBS / SLOTS)
    idle, longest = timeline.idle(SLOTS)
    return {
        "jobs": LONE_JOBS,
        "cap": CAPS["free"],
        "workers_seconds": seconds,
        "held_samples": held,
        **outcome,
        "most_running": timeline.most_running(),
        "wall_seconds": round(max(end for _, end in spans["free"]), 2),
        "mean_job_seconds": round(mean, 3),
        "rounds": rounds,
        "by_rounds_seconds": round(rounds * mean, 2),
        "one_at_a_time_seconds": round(LONE_JOBS * mean, 2),
        "idle_slot_seconds_while_waiting": idle,
        "longest_idle_while_waiting_seconds": longest,
        "spans": sorted((round(start, 3), round(end, 3)) for start, end in spans["free"]),
    }


def _capped(log_dir: Path) -> dict[str, Any]:
    """The caps and lone-capped-user scenarios on a fresh stack, the plans' caps set to CAPS
    for them and put back to none after."""
    side = ServerSide(start_stack(bench_spec(POSTGRES_SERVER_URL, cpus=None, log_dir=log_dir)))
    try:
        db = side.database_url
        _set_caps(db, CAPS)
        try:
            found = {"caps_plans": _plans(db), "caps": _caps_run(side, log_dir)}
            found["lone_capped"] = _lone_run(side, log_dir)
        finally:
            _set_caps(db, dict.fromkeys(TIERS))
        return found
    finally:
        side.stop()


def measure() -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="storyq-bench-tiers-"))
    side = ServerSide(start_stack(bench_spec(POSTGRES_SERVER_URL, cpus=None, log_dir=log_dir)))
    try:
        db = side.database_url
        found: dict[str, Any] = {"seeded_plans": _plans(db), "log_dir": str(log_dir)}
        users = dict(zip(TIERS, _users(db, list(TIERS), credits=JOBS), strict=True))
        _say(f"{JOBS} jobs each for free, plus, pro; {SLOTS} slots")
        found["run"] = _run(side, users, log_dir)
    finally:
        side.stop()
    return {**found, **_capped(log_dir)}


def _print_weights(found: dict[str, Any]) -> dict[str, float]:
    plans = found["seeded_plans"]
    weights = {tier: plans[tier]["weight"] for tier in TIERS}
    by_weight = {tier: round(w / sum(weights.values()), 3) for tier, w in weights.items()}
    print("{:6} {:>6} {:>10} {:>8}".format("tier", "weight", "by weight", "share"))
    for tier in TIERS:
        share = found["run"]["share"][tier]
        print(f"{tier:6} {weights[tier]:>6g} {by_weight[tier]:>10.3f} {share:>8.3f}")
    return by_weight


def _row(tier: str, user: str, row: dict[str, Any]) -> str:
    cap = "-" if row["cap"] is None else str(row["cap"])
    after = "-" if row["after_others_done"] is None else str(row["after_others_done"])
    return (
        f"{tier:6} {user:7} {cap:>4} {row['jobs']:>5} {row['by_weight']:>10.3f}"
        f" {row['share']:>6.3f} {row['held_max']:>5} {row['held_max_strict']:>7} {after:>6}"
    )


def _print_caps(caps: dict[str, Any]) -> None:
    print(f"\ncaps: {SLOTS} slots, {WORKERS} workers; jobs {caps['jobs']}")
    print(
        "{:6} {:7} {:>4} {:>5} {:>10} {:>6} {:>5} {:>7} {:>6}".format(
            "tier", "user", "cap", "jobs", "by weight", "share", "held", "strict", "after"
        )
    )
    for tier in ("pro", "plus", "free"):
        print(_row(tier, f"({caps['tiers'][tier]['users']})", caps["tiers"][tier]))
        for user, row in caps["users"].items():
            if caps["tier_of"][user] == tier and caps["tiers"][tier]["users"] > 1:
                print(_row("", user, row))
    held = caps["held_samples"]
    print(
        f"Redis held jobs for a cap in {held['with_held']} of {held['samples']} samples"
        f" (at most {held['most_held']} at once; users {held['users']})"
    )
    over = caps["over_cap_while_others_waited"]
    print(f"over a cap while someone under theirs waited: {over or 'never'}")
    print(
        f"slots free while jobs waited: {caps['idle_slot_seconds_while_waiting']} slot-s"
        f" (longest {caps['longest_idle_while_waiting_seconds']} s); statuses"
        f" {caps['statuses']}, wall {caps['wall_seconds']} s"
    )


def _print_lone(lone: dict[str, Any]) -> None:
    print(f"\nlone capped user: free (cap {lone['cap']}), {lone['jobs']} jobs, {SLOTS} slots")
    print(
        "{:>8} {:>7} {:>6} {:>7} {:>10} {:>9} {:>7}".format(
            "running", "wall s", "mean s", "rounds", "by rounds", "one by one", "idle"
        )
    )
    print(
        f"{lone['most_running']:>8} {lone['wall_seconds']:>7.2f} {lone['mean_job_seconds']:>6.2f}"
        f" {lone['rounds']:>7} {lone['by_rounds_seconds']:>10.2f}"
        f" {lone['one_at_a_time_seconds']:>9.2f} {lone['idle_slot_seconds_while_waiting']:>7}"
    )
    held = lone["held_samples"]
    print(f"Redis held jobs for the cap in {held['with_held']} of {held['samples']} samples")


def main() -> None:
    os.environ.update({**POWERTOOLS_ENV, "POWERTOOLS_LOG_LEVEL": "ERROR"})
    started = time.monotonic()
    found = measure()
    by_weight = _print_weights(found)
    _print_caps(found["caps"])
    _print_lone(found["lone_capped"])
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
            "caps": CAPS,
            "caps_users": CAPS_USERS,
            "lone_jobs": LONE_JOBS,
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
