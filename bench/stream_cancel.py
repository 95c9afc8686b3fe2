"""`python -m bench.stream_cancel` (`make bench-stream`): issue 19's three figures, through the
real HTTP API and real worker processes.

One private stack (a PostgreSQL cluster of its own, so its WAL is ours alone; a private
redis-server; the emulators and the API in processes pinned to the first CPU; this process and
the workers, `python -m storyq_worker.runner` as the reliability suite starts them, on the
others), MAX_ACTIVE_JOBS = 2, the template generator stretched over GENERATION_SECONDS (a 270 s
story would make the run too long) for a TARGET_WORDS story.

1. Cancels: two worker processes (one slot each) and waiting jobs behind the two running ones;
   CANCELS times, the oldest running job, once its story is being written, is cancelled with
   DELETE /api/job/{id} (a random moment within a heartbeat tick), and the bench waits for the
   next waiting job to start. Per cancel, from the moment the DELETE was sent (this process's
   clock; the workers and PostgreSQL share it):
   - `stop`: until its worker logs "cancel requested; stopping the generation" (the heartbeat
     answer carrying the cancel arrived and the generation task was cancelled at that line; the
     generator ends at its next await, in the same event-loop turn). The worker's log stamps
     milliseconds;
   - `ended`: until the job row's finished_at (cancelled and refunded, committed);
   - `next start`: until the next waiting job's started_at (its start_story_job).
2. Streamed stories: STREAMED_STORIES stories written at once, each by a worker process of its
   own (one attempt per process, so nothing is shared between stories in a batched request),
   from start to completion. Per story: the PostgREST requests by function (the emulator's
   counts), their bytes on the wire (bench/http_bytes.py, a relay in front of the Supabase
   emulator that the workers are pointed at), the WAL written (pg_current_wal_lsn difference)
   split by table with pg_walinspect, heap row versions per table (WAL records and
   pg_stat_user_tables), and the billed Upstash commands (bench/billing.py's rule over INFO
   commandstats): over the stories' whole life, and over a window while both were only
   writing.
Writes bench/results/stream_cancel.json and the `stream` key of bench/results/bench.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench import pg_writes
from bench.billing import STORYQ_ARTEFACTS, Bill, bill, commandstats
from bench.http_bytes import CountingRelay
from bench.stack import JWT_SECRET, POWERTOOLS_ENV, SETTINGS, ServerSide, bench_spec
from bench.stream_report import render, summary
from bench.users import ISSUER, BenchUser, create_users
from storyq_local.stack.builder import DatabaseSpec, start_stack
from storyq_local.stack.servers import wait_until
from storyq_local.stack.tokens import access_token_claims, sign
from storyq_local.stack.workers import WorkerProcess

RESULTS = Path(__file__).parent / "results"
BENCH_JSON = RESULTS / "bench.json"
STREAM_JSON = RESULTS / "stream_cancel.json"
MAX_ACTIVE = 2
CANCELS = 10
GENERATION_SECONDS = 20.0
TARGET_WORDS = 1200
STREAMED_STORIES = 2
# The window of the Redis check: starts once every story is writing, ends well before the first
# could finish.
QUIET_WINDOW_SECONDS = 10.0
STOP_MESSAGE = "cancel requested; stopping the generation"
PROMPT = "A lighthouse keeper finds a door in the fog that was not there yesterday."


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _rows(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return list(conn.execute(query, params).fetchall())


def _enqueue(api: httpx.Client, user: BenchUser, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        answer = api.post(
            "/api/generate",
            json={"prompt": PROMPT, "targetWords": TARGET_WORDS},
            headers=user.authorization,
        )
        if answer.status_code != 202:
            raise RuntimeError(f"POST /api/generate: {answer.status_code} {answer.text}")
        ids.append(str(answer.json()["jobId"]))
    return ids


def _worker_env(side: ServerSide, **overrides: Any) -> dict[str, str]:
    env = side.stack.env(
        max_active_jobs=MAX_ACTIVE,
        generator="template",
        generation_delay_seconds=GENERATION_SECONDS,
        **overrides,
    )
    return {**env, "POWERTOOLS_LOG_LEVEL": "INFO"}  # the stop is read from the worker's log


def _start_workers(side: ServerSide, env: dict[str, str], count: int) -> list[WorkerProcess]:
    return [
        WorkerProcess(env=env, log_dir=side.log_dir, concurrency=1).start() for _ in range(count)
    ]


def _running(database_url: str) -> list[tuple[Any, ...]]:
    """(job id, started_at, story status) of the processing jobs, oldest start first."""
    return _rows(
        database_url,
        "select j.id::text, j.started_at, s.status from public.story_jobs j"
        " join public.stories s on s.id = j.story_id"
        " where j.status = 'processing' order by j.started_at",
    )


def _cancel_one(
    side: ServerSide, api: httpx.Client, user: BenchUser, rng: random.Random
) -> dict[str, Any]:
    """Wait for both slots to run and the oldest story to be written, DELETE it, wait for the
    next start."""
    db = side.database_url
    found: list[tuple[Any, ...]] = []

    def ready() -> bool:
        nonlocal found
        found = _running(db)
        return len(found) == MAX_ACTIVE and found[0][2] == "writing"

    wait_until(ready, timeout=60, interval=0.05)
    time.sleep(rng.uniform(0.0, 1.0))  # anywhere within a heartbeat tick
    job_id = found[0][0]
    sent = time.time()
    answer = api.delete(f"/api/job/{job_id}", headers=user.authorization)
    answered = time.time()
    if answer.status_code not in (200, 202):
        raise RuntimeError(f"DELETE /api/job: {answer.status_code} {answer.text}")
    sent_at = datetime.fromtimestamp(sent, UTC)
    after: list[tuple[Any, ...]] = []

    def next_started() -> bool:
        nonlocal after
        after = _rows(
            db,
            "select (select status from public.story_jobs where id = %s),"
            " (select finished_at from public.story_jobs where id = %s),"
            " (select min(started_at) from public.story_jobs where started_at > %s)",
            (job_id, job_id, sent_at),
        )
        return after[0][0] == "cancelled" and after[0][2] is not None

    wait_until(next_started, timeout=30, interval=0.02)
    _, finished_at, next_start = after[0]
    return {
        "job_id": job_id,
        "answer": answer.status_code,
        "sent": sent,
        "answer_s": round(answered - sent, 4),
        "ended_s": round(finished_at.timestamp() - sent, 4),
        "next_start_s": round(next_start.timestamp() - sent, 4),
    }


def stop_times(logs: list[Path]) -> dict[str, float]:
    """job id -> when its worker logged STOP_MESSAGE (epoch seconds)."""
    found: dict[str, float] = {}
    for log in logs:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if STOP_MESSAGE not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            at = datetime.strptime(entry["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z")
            found[str(entry["job_id"])] = at.timestamp()
    return found


def cancels(side: ServerSide, user: BenchUser) -> dict[str, Any]:
    with httpx.Client(base_url=side.api_url, timeout=30) as api:
        _enqueue(api, user, CANCELS + MAX_ACTIVE + 2)
        workers = _start_workers(side, _worker_env(side), MAX_ACTIVE)
        rng = random.Random(19)
        samples = []
        try:
            for n in range(CANCELS):
                samples.append(_cancel_one(side, api, user, rng))
                _say(f"cancel {n + 1}/{CANCELS}: next start {samples[-1]['next_start_s']:.2f} s")
        finally:
            for worker in workers:
                worker.stop()
    stops = stop_times([worker.log for worker in workers if worker.log is not None])
    for sample in samples:
        stopped = stops.get(sample["job_id"])
        sample["stop_s"] = round(stopped - sample["sent"], 4) if stopped is not None else None
    kept = _rows(
        side.database_url,
        "select count(*) filter (where s.status = 'cancelled' and s.words > 0),"
        " count(*) filter (where j.refunded) from public.story_jobs j"
        " join public.stories s on s.id = j.story_id where j.id::text = any(%s)",
        ([sample["job_id"] for sample in samples],),
    )[0]
    _empty_queue(api_url=side.api_url, admin=user)
    return {
        "samples": samples,
        "stories_cancelled_with_text": int(kept[0]),
        "refunded": int(kept[1]),
        "worker_logs": [str(worker.log) for worker in workers],
    }


def _empty_queue(*, api_url: str, admin: BenchUser) -> None:
    """POST /api/admin/queue/empty: the jobs still waiting (those the stopped workers handed
    back included) cancelled in Postgres and dropped from Redis, so the next phase claims none
    of them."""
    claims = access_token_claims(user_id=admin.id, issuer=ISSUER, expires_in=600, admin=True)
    headers = {"Authorization": f"Bearer {sign(claims, JWT_SECRET)}"}
    answer = httpx.post(f"{api_url}/api/admin/queue/empty", headers=headers, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"POST /api/admin/queue/empty: {answer.status_code} {answer.text}")


def _bill_between(before: tuple[dict[str, int], dict[str, int]], direct: redis.Redis) -> Bill:
    calls, failed = commandstats(direct)
    diff = {name: n - before[0].get(name, 0) for name, n in calls.items()}
    failed_diff = {name: n - before[1].get(name, 0) for name, n in failed.items()}
    return bill(diff, failed=failed_diff, artefacts=STORYQ_ARTEFACTS)


def streamed(side: ServerSide, user: BenchUser) -> dict[str, Any]:
    db, direct = side.database_url, side.redis()
    pg_writes.install(db)
    relay = CountingRelay(side.supabase_url).start()
    try:
        with httpx.Client(base_url=side.api_url, timeout=30) as api:
            job_ids = _enqueue(api, user, STREAMED_STORIES)
        stats_before = pg_writes.table_stats(db)
        direct.config_resetstat()
        life_before = commandstats(direct)
        counts_before = side.counts()["supabase"]
        lsn_before = pg_writes.wal_lsn(db)
        traffic_before = relay.snapshot()
        workers = _start_workers(side, _worker_env(side, supabase_url=relay.url), STREAMED_STORIES)
        try:
            quiet = _quiet_window(db, job_ids, direct)

            def done() -> bool:
                left = _rows(
                    db,
                    "select count(*) from public.story_jobs where id::text = any(%s)"
                    " and status <> 'completed'",
                    (job_ids,),
                )
                return int(left[0][0]) == 0

            wait_until(done, timeout=GENERATION_SECONDS * 4, interval=0.2)
        finally:
            for worker in workers:
                worker.stop()
        lsn_after = pg_writes.wal_lsn(db)
        traffic = relay.snapshot().since(traffic_before)
        counts = side.counts()["supabase"] - counts_before
        life_billed = _bill_between(life_before, direct)
        stats_after = pg_writes.table_stats(db)
    finally:
        relay.stop()
    [(chars, utf8_bytes, words)] = _rows(
        db,
        "select sum(length(content)), sum(octet_length(content)), sum(words)"
        " from public.stories s join public.story_jobs j on j.story_id = s.id"
        " where j.id::text = any(%s)",
        (job_ids,),
    )
    return {
        "stories": STREAMED_STORIES,
        "story_chars": int(chars),
        "story_utf8_bytes": int(utf8_bytes),
        "story_words": int(words),
        "postgrest_requests": {p.removeprefix("/rest/v1/rpc/"): n for p, n in counts.items()},
        "relay": {
            kind: {p.removeprefix("/rest/v1/rpc/"): n for p, n in getattr(traffic, kind).items()}
            for kind in ("requests", "sent", "body", "received")
        },
        "wal": pg_writes.wal_window(db, lsn_before, lsn_after).as_dict(),
        "table_stats": pg_writes.stats_delta(stats_before, stats_after),
        # From the workers' start to their stop: their first sweeps, the claims, the acks and
        # the empty claims of the idle seconds after the stories (the enqueues came before).
        "upstash_billed_workers_run": life_billed.as_dict(),
        "upstash_while_writing": quiet,
        "worker_logs": [str(worker.log) for worker in workers],
    }


def _quiet_window(db: str, job_ids: list[str], direct: redis.Redis) -> dict[str, Any]:
    """Billed Upstash commands while every story is being written and none has ended."""

    def all_writing() -> bool:
        found = _rows(
            db,
            "select count(*) from public.story_jobs j join public.stories s on s.id = j.story_id"
            " where j.id::text = any(%s) and j.status = 'processing' and s.status = 'writing'",
            (job_ids,),
        )
        return int(found[0][0]) == len(job_ids)

    wait_until(all_writing, timeout=60, interval=0.05)
    before = commandstats(direct)
    started = time.monotonic()
    time.sleep(QUIET_WINDOW_SECONDS)
    billed = _bill_between(before, direct)
    still = all_writing()
    return {
        "seconds": round(time.monotonic() - started, 1),
        "billed": billed.total,
        "by_command": billed.by_command,
        "all_still_writing_at_the_end": still,
    }


def measure() -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, own_cpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (None, None)
    log_dir = Path(tempfile.mkdtemp(prefix="storyq-bench-stream-"))  # kept: the output names it
    spec = dataclasses.replace(
        bench_spec("", cpus=server_cpus, log_dir=log_dir),
        database=DatabaseSpec(scratch_prefix="storyq_bench_stream", private_cluster=True),
        settings={**SETTINGS, "max_active_jobs": MAX_ACTIVE},
    )
    _say("starting the stack (a private PostgreSQL cluster, redis-server, emulators, API)")
    side = ServerSide(start_stack(spec))
    try:
        if own_cpus:
            os.sched_setaffinity(0, own_cpus)
        [user] = create_users(side.database_url, 1, credits=1_000, secret=JWT_SECRET)
        _say(f"{CANCELS} cancels at MAX_ACTIVE_JOBS {MAX_ACTIVE}")
        found: dict[str, Any] = {"log_dir": str(log_dir), "cancels": cancels(side, user)}
        _say(f"{STREAMED_STORIES} streamed stories of {GENERATION_SECONDS:g} s")
        found["streamed"] = streamed(side, user)
        return found
    finally:
        side.stop()


def code_version() -> dict[str, Any]:
    """The commit measured, and the code paths that differed from it (git status); from
    STORYQ_BENCH_COMMIT when run from an exported copy of a commit (no .git there)."""
    if os.environ.get("STORYQ_BENCH_COMMIT"):
        return {"commit": os.environ["STORYQ_BENCH_COMMIT"], "uncommitted_changes": []}
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        run = subprocess.run(
            ["git", "-C", str(root), *args], check=False, capture_output=True, text=True
        )
        return run.stdout.strip() if run.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "functions", "supabase", "infra", "bench")
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "uncommitted_changes": [line[3:] for line in changed.splitlines()],
    }


def main() -> None:
    os.environ.update({**POWERTOOLS_ENV, "POWERTOOLS_LOG_LEVEL": "ERROR"})
    started = time.monotonic()
    machine: dict[str, Any] = {
        "code": code_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    measured = measure()
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["seconds"] = round(time.monotonic() - started)
    settings = {
        "max_active_jobs": MAX_ACTIVE,
        "worker_processes": MAX_ACTIVE,
        "generator": "template",
        "generation_delay_seconds": GENERATION_SECONDS,
        "target_words": TARGET_WORDS,
        "cancels": CANCELS,
        "streamed_stories": STREAMED_STORIES,
    }
    figures = summary(measured, streamed_stories=STREAMED_STORIES)
    print(render(figures, settings))
    print(
        f"\n{machine['seconds']} s; load average {machine['load_average_at_start']} -> "
        f"{machine['load_average_at_end']}; logs in {measured['log_dir']}"
    )
    when = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"when": when, "machine": machine, "settings": settings, "stream": figures}
    STREAM_JSON.write_text(
        json.dumps({**document, "measured": measured}, indent=2) + "\n", encoding="utf-8"
    )
    bench = json.loads(BENCH_JSON.read_text(encoding="utf-8")) if BENCH_JSON.exists() else {}
    bench["stream"] = {
        **figures,
        "settings": settings,
        "when": when,
        "details": "bench/results/stream_cancel.json",
    }
    BENCH_JSON.write_text(json.dumps(bench, indent=2) + "\n", encoding="utf-8")
    print(f"written to {STREAM_JSON} and to {BENCH_JSON} under `stream`")


if __name__ == "__main__":
    main()
