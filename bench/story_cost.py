"""storyq's side of the cost benchmark: what one story and an idle hour cost on Upstash.

Each measurement has a private stack of its own (storyq_local.stack.builder: a redis-server
that nothing else uses, the Upstash and Supabase emulators, a scratch database, the API on a
thread), at production settings: the template generator taking GENERATION_DELAY_SECONDS=270,
and every other setting at its default (LEASE_SECONDS 60, MAX_ACTIVE_JOBS 5, the API's rate
limits on). The storyq scripts are loaded first (the steady state: Upstash keeps them).

- A story: POST /api/generate through the real API (rate limit, enqueue; the kick itself is a
  Lambda invoke, no Redis), then the worker invocation the kick starts, run as the Lambda runs
  it (`run_invocation`: sweep, then drain; 900 s of remaining time, WORKER_FUNCTION_NAME set so
  a slot it frees is checked for a hand-off), with the reference client watching the job (see
  client_schedule), through to the ack. Billed commands from INFO commandstats; MONITOR splits
  them into the story's own steps and the client's polls.
- Idle, as deployed: the schedule runs one invocation a minute, each sweeping and finding
  nothing; one invocation's commands times 60.
- Idle, `make dev`: the long-running worker loop (storyq_worker.runner, a claim every
  WORKER_POLL_SECONDS and a sweep every half lease) on a thread, measured over a window and
  scaled to an hour.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from bench.billing import STORYQ_SCRIPTS, Call, Trace, by_name, storyq_bill
from bench.client_schedule import ClientLog, watch_job, watch_row
from bench.users import BenchUser, create_users
from storyq.config import DEV_JWT_SECRET, Settings
from storyq.kick import WorkerKicker
from storyq_local.stack.builder import (
    ApiSpec,
    DatabaseSpec,
    LocalStack,
    StackSpec,
    WorkerSpec,
    start_stack,
)

GENERATION_SECONDS = 270.0
LAMBDA_TIMEOUT_SECONDS = 900.0  # template.yaml, WorkerFunction
SCHEDULE_PER_HOUR = 60  # EventBridge rate(1 minute)
UPSTASH_TOKEN = "storyq-cost-bench-upstash-token"
BODY = {"prompt": "A clockmaker's last commission.", "targetWords": 1200}
# Where each call of a story belongs.
STEPS = {
    "rate limit generate": "rate limit (POST /api/generate)",
    "enqueue": "enqueue",
    "sweep": "sweep (each invocation starts with one; one script)",
    "claim": "claim",
    "heartbeat": "Redis lease renewals (none within the generation timeout)",
    "ack": "ack",
    "zcard": "hand-off check (slot freed, no time to claim; one ZCARD)",
}
CLIENT_STEPS = {"rate limit read": "read rate limit", "position": "queue position"}


def production_settings(generation_seconds: float = GENERATION_SECONDS) -> dict[str, Any]:
    """Settings defaults for what shapes the cost, stated so that no environment changes them."""
    defaults = Settings.model_fields
    names = (
        "lease_seconds",
        "max_active_jobs",
        "generate_rate_limit",
        "generate_rate_window_seconds",
        "read_rate_limit",
        "read_rate_window_seconds",
        "worker_poll_seconds",
        "upstash_rest_retries",
        "generation_timeout_seconds",
        "worker_time_margin_seconds",
    )
    return {
        **{name: defaults[name].default for name in names},
        "generator": "template",
        "generation_delay_seconds": generation_seconds,
        "worker_function_name": None,  # the API's kick: a Lambda invoke, nothing locally
    }


def start_cost_stack(
    postgres_url: str,
    *,
    api: bool,
    worker: bool = False,
    generation_seconds: float = GENERATION_SECONDS,
) -> LocalStack:
    return start_stack(
        StackSpec(
            database=DatabaseSpec(server_url=postgres_url, scratch_prefix="storyq_cost"),
            api=ApiSpec() if api else None,
            worker=WorkerSpec(grace_seconds=0.0) if worker else None,
            upstash_token=UPSTASH_TOKEN,
            jwt_secret=DEV_JWT_SECRET,
            settings=production_settings(generation_seconds),
        )
    )


class DeployedKicker(WorkerKicker):
    """The worker's kicker as deployed (WORKER_FUNCTION_NAME set), answering 202 without AWS."""

    def __init__(self) -> None:
        super().__init__("storyq-worker:live", timeout=5.0)
        self.sent = 0

    def _invoke(self, payload: bytes) -> int:
        self.sent += 1
        return 202


def lambda_invocation(settings: Settings) -> dict[str, int]:
    """One worker invocation as the Lambda runs it, with a whole timeout ahead."""
    from storyq_worker.invocation import run_invocation

    deadline = time.monotonic() + LAMBDA_TIMEOUT_SECONDS
    summary = asyncio.run(
        run_invocation(
            settings,
            remaining_seconds=lambda: deadline - time.monotonic(),
            kicker=DeployedKicker(),
        )
    )
    return summary.as_dict()


def warm(stack: LocalStack) -> None:
    """The steady state: every storyq script cached, the queue rebuilt (ready for claims)."""
    direct = stack.redis.client()
    for script in STORYQ_SCRIPTS:
        direct.script_load(script.source)
    lambda_invocation(stack.settings())


def _phase(stack: LocalStack, trace: Trace, name: str, run: Callable[[], Any]) -> dict[str, Any]:
    """`run()` between markers, counted from RESETSTAT to commandstats."""
    direct = stack.redis.client()
    trace.mark(f"{name}:start")
    direct.config_resetstat()
    returned = run()
    bill = storyq_bill(direct)
    trace.mark(f"{name}:end")
    return {"bill": bill, "returned": returned}


def idle_invocations(stack: LocalStack, trace: Trace, count: int = 2) -> list[dict[str, Any]]:
    """Scheduled invocations with nothing to do, each counted on its own."""
    found = []
    for n in range(count):
        phase = _phase(stack, trace, f"idle-{n}", lambda: lambda_invocation(stack.settings()))
        found.append({"phase": f"idle-{n}", "bill": phase["bill"], "summary": phase["returned"]})
    return found


def story(
    stack: LocalStack, trace: Trace, *, realtime: bool, seed: int = 18
) -> tuple[dict[str, Any], ClientLog]:
    """One story's life with the reference client watching (`realtime`: Realtime on)."""
    (user,) = create_users(stack.database_url, 1, credits=10, secret=DEV_JWT_SECRET)
    holder: dict[str, Any] = {}

    def run() -> dict[str, Any]:
        log, summary = asyncio.run(_story(stack, user, realtime=realtime, seed=seed))
        holder["log"] = log
        return summary

    phase = _phase(stack, trace, "story", run)
    return {"phase": "story", "bill": phase["bill"], "summary": phase["returned"]}, holder["log"]


async def _story(
    stack: LocalStack, user: BenchUser, *, realtime: bool, seed: int
) -> tuple[ClientLog, dict[str, Any]]:
    assert stack.api is not None
    headers = user.authorization
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=30) as http:
        answer = await http.post(
            "/api/generate",
            json=BODY,
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        answer.raise_for_status()
        job_id = answer.json()["jobId"]
        # The kick: the worker invocation starts as the API answers.
        invocation = asyncio.create_task(asyncio.to_thread(lambda_invocation, stack.settings()))
        wake = asyncio.Event() if realtime else None
        log = ClientLog(realtime=realtime)
        watcher = None
        if wake is not None:
            watcher = asyncio.create_task(watch_row(stack.database_url, job_id, wake, log))
        watched = await watch_job(http, job_id, headers=headers, wake=wake, rng=random.Random(seed))
        watched.row_changes = log.row_changes
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        summary = await invocation
    if summary.get("completed") != 1:
        raise RuntimeError(f"the story did not complete: {summary}")
    return watched, summary


def measure_stack(stack: LocalStack, *, realtime: bool, idle: bool) -> dict[str, Any]:
    """Warm the stack; with `idle`, two scheduled invocations; then a story with the client
    watching (`realtime`: Realtime on). Each phase's bill, and its calls split into steps."""
    trace = Trace(stack.redis.client()).start()
    warm(stack)
    phases = idle_invocations(stack, trace) if idle else []
    told, log = story(stack, trace, realtime=realtime)
    trace.stop()
    found: dict[str, Any] = {"client": log.as_dict()}
    for phase in [*phases, told]:
        calls = trace.calls(f"{phase['phase']}:start", f"{phase['phase']}:end")
        own, client, other = split_story(calls)
        found[phase["phase"]] = {
            "commandstats": phase["bill"].as_dict(),
            "trace_billed": sum(call.billed for call in calls),
            "summary": phase["summary"],
            "steps": steps(own, STEPS),
            "billed": sum(call.billed for call in own),
            "client_steps": steps(client, CLIENT_STEPS),
            "client_billed": sum(call.billed for call in client),
            "other": steps(other, {}),
        }
    return found


def split_story(calls: list[Call]) -> tuple[list[Call], list[Call], list[Call]]:
    """(the story's own calls, the client's, anything unexpected)."""
    own = [call for call in calls if call.name in STEPS]
    client = [call for call in calls if call.name in CLIENT_STEPS]
    other = [call for call in calls if call.name not in STEPS and call.name not in CLIENT_STEPS]
    return own, client, other


def steps(calls: list[Call], names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Calls grouped into steps: calls, billed commands, commands by name."""
    grouped: dict[str, dict[str, Any]] = {}
    for script, group in by_name(calls).items():
        step = grouped.setdefault(names.get(script, script), {"calls": 0, "billed": 0})
        step["calls"] += group["calls"]
        step["billed"] += group["billed"]
        step.setdefault("scripts", {})[script] = group
    return grouped


def dev_loop_idle(stack: LocalStack, seconds: float) -> dict[str, Any]:
    """`make dev`'s worker loop (the stack's worker thread) with nothing to do, over `seconds`
    from just after its first sweep, scaled to an hour."""
    from storyq_worker.runner import RunnerOptions

    direct = stack.redis.client()
    trace = Trace(direct).start()
    time.sleep(2.0)  # past the loop's first sweep
    trace.mark("dev:start")
    direct.config_resetstat()
    started = time.monotonic()
    time.sleep(seconds)
    bill = storyq_bill(direct)
    elapsed = time.monotonic() - started
    trace.mark("dev:end")
    trace.stop()
    calls = trace.calls("dev:start", "dev:end")
    settings = stack.settings()
    options = RunnerOptions(
        poll_seconds=settings.worker_poll_seconds, concurrency=settings.max_active_jobs
    )
    return {
        "window_seconds": round(elapsed, 1),
        "bill": bill.as_dict(),
        "per_hour": round(bill.total * 3600 / elapsed),
        "calls": by_name(calls),
        "trace_billed": sum(call.billed for call in calls),
        "poll_seconds": options.poll_seconds,
        "sweep_seconds": options.sweep_seconds(settings),
    }
