"""`python -m bench.backpressure` (`make bench-backpressure`): issue 20's measurement of the
provider back-pressure shared by every worker.

The OpenAI emulator (in this process, so its request log is read directly) answers 429 for
LIMITED_SECONDS from its first request (model `rate-limited-for:S`, Retry-After: what is left),
then writes stories. JOBS jobs are queued through the real API; WORKERS worker processes
(`python -m storyq_worker.runner`, SLOTS each, MAX_ACTIVE_JOBS global) with GENERATOR=openai
take them on. Measured:

- attempts spent: story_jobs.attempts summed over the jobs, against one per job;
- requests sent while the provider was limited (from its first request to the end of the
  window), and how many were refused;
- from the end of the window: the first story request answered, and every job done;
- the billed Upstash commands during the window (bench/billing.py's rule over INFO
  commandstats of the private redis-server): what the waiting workers cost.

`--code DIR` runs the workers on another checkout's functions/ (PYTHONPATH), e.g. a
`git worktree` of the commit before the shared pause, for the "before" column; the stack, the
API and the emulator stay this checkout's. Writes bench/results/backpressure.json (one entry
per `--label`) and the `backpressure` key of bench/results/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.billing import STORYQ_ARTEFACTS, bill, commandstats
from bench.stack import JWT_SECRET, POWERTOOLS_ENV, ServerSide, bench_spec
from bench.users import create_users
from storyq_local.emulators.openai import Recorded, create_app
from storyq_local.stack.builder import start_stack
from storyq_local.stack.servers import serve_in_thread, wait_until
from storyq_local.stack.workers import WorkerProcess

RESULTS = Path(__file__).parent / "results"
BENCH_JSON = RESULTS / "bench.json"
BACKPRESSURE_JSON = RESULTS / "backpressure.json"
LIMITED_SECONDS = 30
JOBS = 12
WORKERS = 3
SLOTS = 2
MAX_ACTIVE = 5
STORY_SECONDS = 2.0
TARGET_WORDS = 300
MODEL = f"rate-limited-for:{LIMITED_SECONDS}"
PROMPT = "A lighthouse keeper finds a door in the fog that was not there yesterday."
API_KEY = "sk-bench"
POSTGRES_SERVER_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _worker_env(side: ServerSide, openai_url: str, code: Path | None) -> dict[str, str]:
    env = side.stack.env(
        max_active_jobs=MAX_ACTIVE,
        generator="openai",
        openai_base_url=f"{openai_url}/v1",
        openai_model=MODEL,
        # the retry floor the old code honours; the new code pauses instead
        retry_base_seconds=1.0,
        retry_max_seconds=30.0,
        worker_poll_seconds=2.0,
    )
    env = {**env, "OPENAI_API_KEY": API_KEY, "POWERTOOLS_LOG_LEVEL": "INFO"}
    if code is not None:
        parts = ("functions/core", "functions/worker", "functions/api", "infra/local")
        env["PYTHONPATH"] = os.pathsep.join(str(code / part) for part in parts)
    return env


def _jobs(database_url: str, ids: list[str]) -> list[tuple[str, int, str]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select status, attempts, coalesce(error_code, '') from public.story_jobs"
            " where id::text = any(%s)",
            (ids,),
        ).fetchall()
    return [(str(status), int(attempts), str(code)) for status, attempts, code in rows]


def run(code: Path | None) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="storyq-bench-backpressure-"))
    side = ServerSide(start_stack(bench_spec(POSTGRES_SERVER_URL, cpus=None, log_dir=log_dir)))
    app = create_app(api_key=API_KEY, story_seconds=STORY_SECONDS)
    openai = serve_in_thread(app)
    seen: Recorded = app.state.recorded
    workers: list[WorkerProcess] = []
    try:
        [user] = create_users(side.database_url, 1, credits=1_000, secret=JWT_SECRET)
        with httpx.Client(base_url=side.api_url, timeout=30) as api:
            ids = []
            for _ in range(JOBS):
                answer = api.post(
                    "/api/generate",
                    json={"prompt": PROMPT, "targetWords": TARGET_WORDS},
                    headers=user.authorization,
                )
                answer.raise_for_status()
                ids.append(str(answer.json()["jobId"]))
        env = _worker_env(side, openai.url, code)
        direct = side.redis()
        workers = [
            WorkerProcess(env=env, log_dir=log_dir, concurrency=SLOTS).start()
            for _ in range(WORKERS)
        ]
        wait_until(lambda: MODEL in seen.first_seen, timeout=60, interval=0.01)
        before = commandstats(direct)
        window_end = seen.first_seen[MODEL] + LIMITED_SECONDS
        _say(f"the provider answers 429 for {LIMITED_SECONDS} s")
        time.sleep(max(0.0, window_end - time.monotonic()))
        calls, failed = commandstats(direct)
        billed = bill(
            {name: n - before[0].get(name, 0) for name, n in calls.items()},
            failed={name: n - before[1].get(name, 0) for name, n in failed.items()},
            artefacts=STORYQ_ARTEFACTS,
        )
        _say("the window is over; waiting for every job to end")

        rows: list[tuple[str, int, str]] = []

        def ended() -> bool:
            nonlocal rows
            rows = _jobs(side.database_url, ids)
            return all(status in ("completed", "failed") for status, _, _ in rows)

        wait_until(ended, timeout=600, interval=0.2)
        done_at = time.monotonic()
    finally:
        for worker in workers:
            worker.stop()
        openai.stop()
        side.stop()
    log = [(at, status) for at, model, status in seen.log if model == MODEL]
    during = [status for at, status in log if at < window_end]
    after = [at for at, status in log if at >= window_end and status == 200]
    return {
        "jobs": JOBS,
        "completed": sum(status == "completed" for status, _, _ in rows),
        "failed": sum(status == "failed" for status, _, _ in rows),
        "attempts_spent": sum(attempts for _, attempts, _ in rows),
        "extra_attempts": sum(attempts for _, attempts, _ in rows) - JOBS,
        "requests_while_limited": len(during),
        "refused_while_limited": sum(status == 429 for status in during),
        "first_story_after_window_s": round(min(after) - window_end, 3) if after else None,
        "all_done_after_window_s": round(done_at - window_end, 3),
        "upstash_billed_while_limited": billed.total,
        "upstash_by_command": billed.by_command,
        "log_dir": str(log_dir),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.backpressure", description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=None, help="run the workers on this checkout")
    parser.add_argument("--label", default="now", help="the entry's name in the results")
    args = parser.parse_args(argv)
    os.environ.update({**POWERTOOLS_ENV, "POWERTOOLS_LOG_LEVEL": "ERROR"})
    _say(f"{JOBS} jobs, {WORKERS} workers x {SLOTS} slots, MAX_ACTIVE_JOBS {MAX_ACTIVE}")
    found = run(args.code)
    settings = {
        "limited_seconds": LIMITED_SECONDS,
        "jobs": JOBS,
        "worker_processes": WORKERS,
        "slots_per_worker": SLOTS,
        "max_active_jobs": MAX_ACTIVE,
        "story_seconds": STORY_SECONDS,
        "code": str(args.code) if args.code else "this checkout",
    }
    for name, value in found.items():
        if name not in ("upstash_by_command", "log_dir"):
            print(f"{name:32} {value}")
    when = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    entries = (
        json.loads(BACKPRESSURE_JSON.read_text(encoding="utf-8"))
        if BACKPRESSURE_JSON.exists()
        else {}
    )
    entries[args.label] = {"when": when, "settings": settings, **found}
    BACKPRESSURE_JSON.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    bench = json.loads(BENCH_JSON.read_text(encoding="utf-8")) if BENCH_JSON.exists() else {}
    bench["backpressure"] = {
        label: {k: v for k, v in entry.items() if k not in ("upstash_by_command", "log_dir")}
        for label, entry in entries.items()
    }
    BENCH_JSON.write_text(json.dumps(bench, indent=2) + "\n", encoding="utf-8")
    print(f"written to {BACKPRESSURE_JSON} under {args.label!r} and to {BENCH_JSON}")


if __name__ == "__main__":
    main()
