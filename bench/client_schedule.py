"""The reference web client's polling of one job, replicated in Python against the real API.

What `StoryqClient.watchJob` and `subscribe` (web/storyq-api.js) do at the page's defaults
(web/state.js: pollMinMs 2000, pollMaxMs 15000; Realtime on when Supabase is configured):
GET /api/job/{id} at once, then again after `pollDelay(job)` (web/storyq-polling.js) with
±10 % jitter, until the job is terminal:
- pending: a twentieth of the ETA, 3 s at position 0, 5 s without an ETA, within 2-15 s;
- processing: a tenth of the remaining time estimated from progress and elapsed time, within
  2-5 s (3 s before any progress);
- with Realtime up, the wait is at least 15 s (`realtimeIntervalMs`), but every change of the
  job's row in public.story_jobs (a postgres_changes event) ends it at once: the client then
  re-reads the job. An event that arrives while a request is in flight ends the next wait.

The schedule is replicated here, not the JavaScript run: `poll_delay_ms` is a port of
`pollDelay`, checked against the real one (node) on every run by `check_against_reference`.
No Realtime server runs locally: a change of the row is seen by watching its `xmin` (each
UPDATE writes a new row version, each one a postgres_changes event), through a direct database
connection that costs no Redis command; the channel is taken to be up from the first poll.
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

MIN_MS = 2000.0
MAX_MS = 15000.0
MAX_BACKOFF_MS = 60000.0
REALTIME_INTERVAL_MS = 15000.0
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


def check_against_reference() -> int:
    """Compares `poll_delay_ms` with web/storyq-polling.js's pollDelay (run by node) on a set of
    job views; how many agreed. Raises when one differs."""
    script = (
        f"import {{ pollDelay }} from {json.dumps(REFERENCE.as_uri())};\n"
        f"const cases = {json.dumps(_CASES)};\n"
        "console.log(JSON.stringify(cases.map(([job, now]) => pollDelay(job, { now }))));\n"
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
    for (job, _), theirs, ours in zip(_CASES, reference, mine, strict=True):
        if theirs != ours and not (
            theirs is not None and ours is not None and math.isclose(theirs, ours)
        ):
            raise AssertionError(f"pollDelay {job}: web/ says {theirs}, bench says {ours}")
    return len(_CASES)


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
    a set event ends the wait; it is cleared before each request, as `wake.rearm()` does."""
    log = ClientLog(realtime=wake is not None)
    failures = 0
    woken = False
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
            next_ms = poll_delay_ms(job, now_ms=time.time() * 1000)
            log.polls.append({"status": job["status"], "woken": woken})
            if next_ms is None:
                return log
            # A server may suggest the interval itself (Retry-After on a 200).
            if suggested is not None:
                delay = _clamp(suggested, MIN_MS, MAX_BACKOFF_MS)
            else:
                delay = jitter(next_ms, rng)
            if wake is not None:
                delay = max(delay, REALTIME_INTERVAL_MS)
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
    """Sets `wake` at each new version of the job's row (what Realtime would deliver), until
    cancelled."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        seen: str | None = None
        while True:
            row = await (
                await conn.execute(
                    "select xmin::text from public.story_jobs where id = %s", (uuid.UUID(job_id),)
                )
            ).fetchone()
            version = None if row is None else str(row[0])
            if seen is not None and version != seen:
                log.row_changes += 1
                wake.set()
            seen = version
            await asyncio.sleep(ROW_WATCH_SECONDS)
