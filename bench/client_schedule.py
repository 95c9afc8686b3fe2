"""The reference web client's polling of one job, replicated in Python against the real API.

What `StoryqClient.watchJob` and `subscribe` (web/storyq-api.js) do at the page's defaults
(web/state.js: pollMinMs 2000, pollMaxMs unset; Realtime on when Supabase is configured):
GET /api/job/{id} at once, then again after `nextPollMs` (web/storyq-polling.js), until the job
is terminal:
- the API's Retry-After when the answer has one (storyq_api.poll_hints: pending 2 s beside a
  free slot, else ETA/20 within 3-30 s; processing half the remaining time within 2-20 s),
  within 2-60 s since the page sets no ceiling;
- otherwise `pollDelay(job)` with ±10 % jitter (pending: a twentieth of the ETA, 3 s at
  position 0, 5 s without an ETA, within 2-15 s; processing: a tenth of the remaining time
  estimated from progress, within 2-5 s);
- with Realtime up, the wait is at least 30 s (`realtimeIntervalMs`), but a change of the job's
  status in public.story_jobs (a postgres_changes event whose row's status differs from the one
  before) ends it at once: the client then re-reads the job. Changes that keep the status (the
  worker's heartbeats) only update the progress shown, with no request (`rowChange`). An event
  that arrives while a request is in flight ends the next wait, unless the answer already shows
  the status it reported.

The schedule is replicated here, not the JavaScript run: `poll_delay_ms`, `next_poll_ms` and
`row_change` are ports of `pollDelay`, `nextPollMs` and `rowChange`, checked against the real
ones (node) on every run by `check_against_reference`. No Realtime server runs locally: a change
of the row is seen by watching its `xmin` (each UPDATE writes a new row version, each one a
postgres_changes event) and its status, through a direct database connection that costs no
Redis command; the channel is taken to be up from the first poll, and the table's full replica
identity to deliver the old row.

`python -m bench.client_schedule` checks the ports and prints the schedule of one 270 s story
at production settings, modelled (no stack): the polls and their billed Upstash commands
without and with Realtime, and how late the client sees the end.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

MIN_MS = 2000.0
MAX_MS = 15000.0  # DEFAULT_MAX_INTERVAL_MS: pollDelay's ceiling when the caller sets none
SERVER_MAX_MS = 60000.0  # SERVER_MAX_INTERVAL_MS
MAX_BACKOFF_MS = 60000.0
REALTIME_INTERVAL_MS = 30000.0  # DEFAULT_REALTIME_INTERVAL_MS
TRANSIENT = frozenset({429, 502, 503, 504})
ROW_WATCH_SECONDS = 0.05
REFERENCE = Path(__file__).resolve().parent.parent / "web" / "storyq-polling.js"


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def poll_delay_ms(
    job: dict[str, Any], *, min_ms: float = MIN_MS, max_ms: float = MAX_MS, now_ms: float
) -> float | None:
    """`pollDelay` of web/storyq-polling.js, line for line."""
    status = job.get("status")
    if status in {"completed", "failed", "cancelled"}:
        return None
    if status == "processing":
        ceiling = min(max_ms, 5000.0)
        percent = (job.get("progress") or {}).get("percent") or 0
        started = job.get("startedAt")
        if percent > 0 and started:
            started_ms = datetime.fromisoformat(started).timestamp() * 1000
            elapsed = max(0.0, now_ms - started_ms)
            remaining = elapsed * (100 - percent) / percent
            return _clamp(remaining / 10, min_ms, ceiling)
        return _clamp(3000.0, min_ms, ceiling)
    wait = job.get("waitTime")
    if not wait:
        return _clamp(5000.0, min_ms, max_ms)
    if wait["position"] <= 0:
        return _clamp(3000.0, min_ms, max_ms)
    return _clamp(wait["estimatedMinutes"] * 60_000 / 20, min_ms, max_ms)


def next_poll_ms(
    job: dict[str, Any],
    *,
    retry_after: float | None,
    max_ms: float | None = None,
    realtime_ms: float | None = None,
    now_ms: float,
    spread: Callable[[float], float] = lambda ms: ms,
) -> float | None:
    """`nextPollMs` of web/storyq-polling.js, line for line (`spread` is its jitter), at the
    page's floor (`minMs` 2000)."""
    min_ms = MIN_MS
    ceiling = max(min_ms, MAX_MS if max_ms is None else max_ms)
    fallback = poll_delay_ms(job, min_ms=min_ms, max_ms=ceiling, now_ms=now_ms)
    if fallback is None:
        return None
    if retry_after is not None:
        ms = _clamp(retry_after, min_ms, SERVER_MAX_MS if max_ms is None else ceiling)
    else:
        ms = spread(fallback)
    if realtime_ms is not None:
        ms = max(ms, realtime_ms)
    return ms


def row_change(payload: dict[str, Any], known_status: str | None) -> tuple[bool, int | None]:
    """`rowChange` of web/storyq-polling.js: (wake, words)."""
    row = payload.get("new")
    if payload.get("eventType") != "UPDATE" or not row or not isinstance(row.get("status"), str):
        return True, None
    old = payload.get("old") or {}
    left = isinstance(old.get("status"), str) and old["status"] != row["status"]
    if row["status"] != known_status or left:
        return True, None
    words = row.get("progress_words")
    return False, words if isinstance(words, int) and not isinstance(words, bool) else None


def jitter(ms: float, rng: random.Random) -> int:
    """±10 %, rounded as Math.round does."""
    return math.floor(ms * (0.9 + rng.random() * 0.2) + 0.5)


_CASES: list[tuple[dict[str, Any], float]] = [
    ({"status": "completed"}, 0),
    ({"status": "pending"}, 0),
    ({"status": "pending", "waitTime": {"position": 0, "estimatedMinutes": 5}}, 0),
    ({"status": "pending", "waitTime": {"position": 3, "estimatedMinutes": 5}}, 0),
    ({"status": "pending", "waitTime": {"position": 40, "estimatedMinutes": 45}}, 0),
    ({"status": "processing", "progress": {"percent": 0}}, 0),
    *(
        (
            {
                "status": "processing",
                "startedAt": "2026-12-01T10:00:00+00:00",
                "progress": {"percent": percent},
            },
            datetime.fromisoformat("2026-12-01T10:00:00+00:00").timestamp() * 1000 + seconds * 1000,
        )
        for percent, seconds in ((1, 2.7), (10, 27), (50, 135), (80, 216), (95, 256), (99, 268))
    ),
]


_RUNNING = {"status": "processing", "progress": {"words": 10, "percent": 5}}
# (job, Retry-After ms, caller's maxMs, Realtime interval ms)
_NEXT_CASES: list[tuple[dict[str, Any], float | None, float | None, float | None]] = [
    (_RUNNING, 20000, None, None),
    (_RUNNING, 600000, None, None),
    (_RUNNING, 0, None, None),
    (_RUNNING, 20000, 2000, None),
    (_RUNNING, None, None, None),
    (_RUNNING, None, 2000, None),
    (_RUNNING, 2000, None, REALTIME_INTERVAL_MS),
    ({"status": "pending", "waitTime": {"position": 3, "estimatedMinutes": 9}}, None, None, None),
    ({"status": "completed"}, 5000, None, None),
]
_ROW_CASES: list[tuple[dict[str, Any], str | None]] = [
    ({"eventType": "UPDATE", "new": {"status": "processing", "progress_words": 300}}, "processing"),
    ({"eventType": "UPDATE", "new": {"status": "completed"}, "old": {"id": 1}}, "processing"),
    (
        {"eventType": "UPDATE", "new": {"status": "processing"}, "old": {"status": "pending"}},
        "processing",
    ),
    ({"eventType": "UPDATE", "new": {"status": "pending"}}, None),
    ({"eventType": "DELETE", "new": {}, "old": {"id": 1}}, "processing"),
    ({"eventType": "UPDATE", "new": {"id": 1}}, "processing"),
]


def check_against_reference() -> int:
    """Compares `poll_delay_ms`, `next_poll_ms` and `row_change` with web/storyq-polling.js's
    pollDelay, nextPollMs and rowChange (run by node) on sets of job views and row changes; how
    many agreed. Raises when one differs."""
    script = (
        "import { pollDelay, nextPollMs, rowChange } from "
        f"{json.dumps(REFERENCE.as_uri())};\n"
        f"const cases = {json.dumps(_CASES)};\n"
        f"const next = {json.dumps(_NEXT_CASES)};\n"
        f"const rows = {json.dumps(_ROW_CASES)};\n"
        "console.log(JSON.stringify({\n"
        "  delays: cases.map(([job, now]) => pollDelay(job, { now })),\n"
        "  next: next.map(([job, retryAfterMs, maxMs, realtimeMs]) => nextPollMs(job,\n"
        "    { retryAfterMs, maxMs, realtimeMs, now: 0, spread: (ms) => ms })),\n"
        "  rows: rows.map(([payload, known]) => rowChange(payload, known)),\n"
        "}));\n"
    )
    answer = subprocess.run(
        ["node", "--input-type=module", "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON"],
        input=script,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    reference = json.loads(answer.stdout)
    mine = [poll_delay_ms(job, now_ms=now) for job, now in _CASES]
    for (job, _), theirs, ours in zip(_CASES, reference["delays"], mine, strict=True):
        _agree(f"pollDelay {job}", theirs, ours)
    for (job, retry_after, max_ms, realtime_ms), theirs in zip(
        _NEXT_CASES, reference["next"], strict=True
    ):
        ours = next_poll_ms(
            job, retry_after=retry_after, max_ms=max_ms, realtime_ms=realtime_ms, now_ms=0
        )
        _agree(f"nextPollMs {job} {retry_after} {max_ms} {realtime_ms}", theirs, ours)
    for (payload, known), theirs in zip(_ROW_CASES, reference["rows"], strict=True):
        wake, words = row_change(payload, known)
        if (theirs["wake"], theirs["words"]) != (wake, words):
            raise AssertionError(f"rowChange {payload}: web/ says {theirs}, bench {wake, words}")
    return len(_CASES) + len(_NEXT_CASES) + len(_ROW_CASES)


def _agree(what: str, theirs: float | None, ours: float | None) -> None:
    if theirs != ours and not (
        theirs is not None and ours is not None and math.isclose(theirs, ours)
    ):
        raise AssertionError(f"{what}: web/ says {theirs}, bench says {ours}")


@dataclass
class ClientLog:
    """What one watcher did: its GETs (status seen, and the wait chosen after each)."""

    realtime: bool
    polls: list[dict[str, Any]] = field(default_factory=list)
    row_changes: int = 0

    def as_dict(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for poll in self.polls:
            statuses[poll["status"]] = statuses.get(poll["status"], 0) + 1
        return {
            "realtime": self.realtime,
            "polls": len(self.polls),
            "polls_by_status": statuses,
            "woken_by_row_change": sum(1 for poll in self.polls if poll.get("woken")),
            "row_changes_seen": self.row_changes,
        }


async def watch_job(
    http: httpx.AsyncClient,
    job_id: str,
    *,
    headers: dict[str, str],
    wake: asyncio.Event | None,
    rng: random.Random,
) -> ClientLog:
    """Poll GET /api/job/{id} as the client does, until terminal. With `wake` (Realtime up),
    a set event ends the wait; it is cleared before each request, as `wake.rearm()` does, and
    after an answer that already shows a new status (what set it while the request ran)."""
    log = ClientLog(realtime=wake is not None)
    failures = 0
    woken = False
    known: str | None = None
    while True:
        if wake is not None:
            wake.clear()
        answer = await http.get(f"/api/job/{job_id}", headers=headers)
        suggested = retry_after_ms(answer.headers.get("Retry-After"))
        if answer.status_code in TRANSIENT:
            failures += 1
            log.polls.append({"status": f"http {answer.status_code}", "woken": woken})
            if suggested is not None:
                delay = min(max(suggested, MIN_MS), MAX_BACKOFF_MS * 5)
            else:
                delay = jitter(min(MAX_BACKOFF_MS, MIN_MS * 2**failures), rng)
        else:
            answer.raise_for_status()
            failures = 0
            job = answer.json()
            if wake is not None and wake.is_set() and job["status"] != known:
                wake.clear()
            known = job["status"]
            log.polls.append({"status": job["status"], "woken": woken, "retry_after": suggested})
            next_ms = next_poll_ms(
                job,
                retry_after=suggested,
                realtime_ms=REALTIME_INTERVAL_MS if wake is not None else None,
                now_ms=time.time() * 1000,
                spread=lambda ms: jitter(ms, rng),
            )
            if next_ms is None:
                return log
            delay = next_ms
        woken = await _sleep(delay / 1000, wake)


def retry_after_ms(value: str | None) -> float | None:
    """`parseRetryAfter` of web/storyq-http.js for the seconds form (the API sends no dates)."""
    text = (value or "").strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        return None
    return float(math.floor(float(text) * 1000 + 0.5))


async def _sleep(seconds: float, wake: asyncio.Event | None) -> bool:
    """Sleep; True when `wake` ended it early."""
    if wake is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(wake.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def watch_row(database_url: str, job_id: str, wake: asyncio.Event, log: ClientLog) -> None:
    """Sets `wake` at each new version of the job's row whose status differs from the version
    before (what makes the client ask; the others are counted), until cancelled."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        seen: tuple[str, str] | None = None
        while True:
            row = await (
                await conn.execute(
                    "select xmin::text, status from public.story_jobs where id = %s",
                    (uuid.UUID(job_id),),
                )
            ).fetchone()
            version = None if row is None else (str(row[0]), str(row[1]))
            if seen is not None and version != seen:
                log.row_changes += 1
                if version is None or version[1] != seen[1]:
                    wake.set()
            seen = version
            await asyncio.sleep(ROW_WATCH_SECONDS)


# --- the modelled story (python -m bench.client_schedule) -------------------------------------

STORY_SECONDS = 270.0  # GENERATION_DELAY_SECONDS at production settings
STORY_WORDS = 1200  # targetWords of the cost benchmark's story, written in full
STARTS_AFTER = 1.0  # the kicked invocation's sweep and claim, after the POST
ACK_AFTER = 0.3  # from the last words to the completed row
HEARTBEAT_SECONDS = 2.0  # the row's progress_words lags the words written by up to this
READ_LIMIT_BILLED = 2  # the read rate limit (FixedWindow): every GET
POSITION_BILLED = 5  # position.lua (EVALSHA + 4 commands): a pending job's GET


def modelled_story(*, realtime: bool, seconds: float = STORY_SECONDS) -> dict[str, Any]:
    """The reference client's polls of one story, from the API's rule (storyq_api.poll_hints)
    and the client's (`next_poll_ms`), on a modelled timeline: pending until STARTS_AFTER beside
    free slots, words written evenly over `seconds` (seen by the API at each heartbeat),
    completed ACK_AFTER later. With `realtime`, the two changes of status wake the client."""
    from storyq.queue import Position
    from storyq_api.poll_hints import pending_retry_after, processing_retry_after

    started, finished = STARTS_AFTER, STARTS_AFTER + seconds + ACK_AFTER
    t, polls, billed = 0.05, [], 0
    while True:
        if t < started:
            status = "pending"
            hint: float | None = pending_retry_after(
                Position(position=0, queue_length=1, active_jobs=0, estimated_minutes=5),
                max_active=5,
            )
            billed += READ_LIMIT_BILLED + POSITION_BILLED
        elif t < finished:
            status = "processing"
            elapsed = t - started
            seen = min(seconds, elapsed - elapsed % HEARTBEAT_SECONDS)
            words = int(STORY_WORDS * seen / seconds)
            hint = processing_retry_after(
                elapsed_seconds=elapsed, words=words, target_words=STORY_WORDS
            )
            billed += READ_LIMIT_BILLED
        else:
            status, hint = "completed", None
            billed += READ_LIMIT_BILLED
        polls.append((round(t, 2), status, hint))
        delay = next_poll_ms(
            {"status": status},
            retry_after=None if hint is None else hint * 1000,
            realtime_ms=REALTIME_INTERVAL_MS if realtime else None,
            now_ms=t * 1000,
        )
        if delay is None:
            break
        wake_at = t + delay / 1000
        if realtime:
            changes = [at for at in (started, finished) if at > t]
            wake_at = min(wake_at, *changes) if changes else wake_at
        t = wake_at + 0.05  # the request's own time
    statuses: dict[str, int] = {}
    for _, status, _ in polls:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "realtime": realtime,
        "polls": len(polls),
        "polls_by_status": statuses,
        "billed_commands": billed,
        "completion_seen_after_seconds": round(polls[-1][0] - finished, 2),
        "schedule": polls,
    }


def main() -> None:
    agreed = check_against_reference()
    print(f"the Python ports agree with web/storyq-polling.js on {agreed} cases")
    for realtime in (False, True):
        story = modelled_story(realtime=realtime)
        print(
            f"{'with' if realtime else 'without'} Realtime: {story['polls']} polls "
            f"{story['polls_by_status']}, {story['billed_commands']} billed commands, "
            f"the end seen {story['completion_seen_after_seconds']} s after it"
        )
        print("  at (s), status, Retry-After:", story["schedule"])


if __name__ == "__main__":
    main()
