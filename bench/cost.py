"""`python -m bench.cost` (`make bench-cost`): what a story costs on Upstash, beside BullMQ.

Upstash bills per command (bench/billing.py has the rule). In one run, at production settings,
each on a private redis-server counted from CONFIG RESETSTAT to INFO commandstats:
- storyq (bench/story_cost.py): one 270 s story's whole life, worker + API, split into its
  steps; the reference web client's polls of the same story at its defaults, without Realtime
  and with it (bench/client_schedule.py); an idle hour as deployed (the schedule's invocation
  times 60) and of `make dev`'s worker loop;
- BullMQ (bench/bullmq_cost.py, the pinned npm package): one job whose processor waits 270 s at
  worker concurrency 5, the same with a poller on the client's schedule, and an idle worker
  over IDLE_SECONDS scaled to an hour.
The measurements run side by side (about five minutes). Prints a table, merges the figures into
bench/results/bench.json under `cost` (issue 18's keys) and writes the whole breakdown to
bench/results/cost.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bullmq_cost
from bench.client_schedule import check_against_reference
from bench.story_cost import GENERATION_SECONDS, SCHEDULE_PER_HOUR, production_settings

RESULTS = Path(__file__).parent / "results"
BENCH_JSON = RESULTS / "bench.json"
COST_JSON = RESULTS / "cost.json"
POSTGRES_SERVER_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IDLE_SECONDS = 240.0
STORY_TARGET = 53  # a third of BullMQ's ~160 (issue 18)
WITH_CLIENT_TARGET = 100
QUIET_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_DISABLED": "1",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "AWS_DEFAULT_REGION": "eu-central-1",
}


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Background:
    """Runs callables on threads; `result` re-raises what one raised."""

    def __init__(self) -> None:
        self._threads: dict[str, threading.Thread] = {}
        self._results: dict[str, Any] = {}

    def run(self, name: str, work: Callable[[], Any]) -> None:
        def target() -> None:
            try:
                self._results[name] = work()
            except BaseException as exc:
                traceback.print_exc()
                self._results[name] = exc

        thread = threading.Thread(target=target, name=f"cost-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def result(self, name: str, timeout: float) -> Any:
        self._threads[name].join(timeout)
        if name not in self._results:
            raise TimeoutError(f"{name} did not finish in {timeout:.0f} s")
        found = self._results[name]
        if isinstance(found, BaseException):
            raise RuntimeError(f"{name} failed: {found}") from found
        return found


def measure(generation_seconds: float, idle_seconds: float) -> dict[str, Any]:
    from bench import story_cost

    agreed = check_against_reference()
    _say(f"client schedule: the Python port agrees with web/storyq-polling.js on {agreed} cases")
    with contextlib.ExitStack() as cleanup:
        node_runs = {}
        for mode in bullmq_cost.MODES:
            seconds = idle_seconds if mode == "idle" else generation_seconds
            node_runs[mode] = run = bullmq_cost.start(mode, seconds)
            cleanup.callback(run.stop)
        _say("BullMQ started (job, job with client, idle); starting three storyq stacks")
        polling, realtime, dev = (
            cleanup.enter_context(
                story_cost.start_cost_stack(
                    POSTGRES_SERVER_URL,
                    api=api,
                    worker=not api,
                    generation_seconds=generation_seconds,
                )
            )
            for api in (True, True, False)
        )
        work = Background()
        work.run("polling", lambda: story_cost.measure_stack(polling, realtime=False, idle=True))
        work.run("realtime", lambda: story_cost.measure_stack(realtime, realtime=True, idle=False))
        work.run("dev", lambda: story_cost.dev_loop_idle(dev, idle_seconds))
        _say(f"a {generation_seconds:.0f} s story twice (client polling / Realtime), idle loops")
        deadline = max(generation_seconds, idle_seconds) + 240
        storyq = {name: work.result(name, deadline) for name in ("polling", "realtime", "dev")}
        bullmq = {mode: run.finish(timeout=deadline) for mode, run in node_runs.items()}
    return {
        "generation_seconds": generation_seconds,
        "idle_seconds": idle_seconds,
        "storyq": storyq,
        "bullmq": bullmq,
        "client_schedule_cases_checked": agreed,
    }


def figures(measured: dict[str, Any]) -> dict[str, Any]:
    """The `cost` key of bench.json: issue 18's figures, storyq's and BullMQ's."""
    storyq, bullmq = measured["storyq"], bullmq_cost.summary(measured["bullmq"])
    story = storyq["polling"]["story"]
    idle = storyq["polling"]["idle-1"]
    polling = story["billed"] + story["client_billed"]
    realtime = story["billed"] + storyq["realtime"]["story"]["client_billed"]
    return {
        "story_billed_commands": story["billed"],
        # The client's default depends on the deployment (Realtime on when Supabase is
        # configured, polling otherwise): the target must hold for both, so the larger.
        "story_billed_commands_with_client": max(polling, realtime),
        "story_billed_commands_with_client_polling": polling,
        "story_billed_commands_with_client_realtime": realtime,
        # As deployed: the schedule's invocation, once a minute.
        "idle_billed_commands_per_hour": idle["commandstats"]["billed"] * SCHEDULE_PER_HOUR,
        "idle_billed_commands_per_hour_dev_loop": storyq["dev"]["per_hour"],
        # Not in the story's figure: the schedule's invocations that run while it generates
        # (a minute's share of the idle hour each).
        "schedule_during_story": round(
            idle["commandstats"]["billed"] * measured["generation_seconds"] / 60
        ),
        "bullmq": bullmq,
        "targets": {
            "story_billed_commands": STORY_TARGET,
            "story_billed_commands_with_client": WITH_CLIENT_TARGET,
            "idle_billed_commands_per_hour": bullmq["idle_billed_commands_per_hour"] // 10,
        },
    }


def checks(measured: dict[str, Any]) -> list[str]:
    """Where the two counts of one phase (commandstats, MONITOR) disagree, or a call was not
    placed in a step: each a line of warning (the figures come from commandstats)."""
    problems = []
    for name in ("polling", "realtime"):
        for phase, found in measured["storyq"][name].items():
            if phase == "client":
                continue
            if found["commandstats"]["billed"] != found["trace_billed"]:
                problems.append(
                    f"{name}/{phase}: commandstats {found['commandstats']['billed']} != "
                    f"MONITOR {found['trace_billed']}"
                )
            if found["other"]:
                problems.append(f"{name}/{phase}: calls in no step: {sorted(found['other'])}")
    dev = measured["storyq"]["dev"]
    if dev["bill"]["billed"] != dev["trace_billed"]:
        problems.append(f"dev loop: commandstats {dev['bill']['billed']} != {dev['trace_billed']}")
    return problems


def write(measured: dict[str, Any], cost: dict[str, Any]) -> None:
    when = datetime.now(UTC).isoformat(timespec="seconds")
    settings = {k: v for k, v in production_settings().items() if v is not None}
    COST_JSON.write_text(
        json.dumps({"when": when, "settings": settings, **measured, "cost": cost}, indent=2) + "\n",
        encoding="utf-8",
    )
    bench = json.loads(BENCH_JSON.read_text(encoding="utf-8")) if BENCH_JSON.exists() else {}
    bench["cost"] = {**cost, "when": when, "details": "bench/results/cost.json"}
    BENCH_JSON.write_text(json.dumps(bench, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a 20 s story and 30 s idle windows, to try the bench out: printed, not written",
    )
    args = parser.parse_args(argv)
    os.environ.update(QUIET_ENV)
    from bench.cost_report import render

    started = time.monotonic()
    generation, idle = (20.0, 30.0) if args.quick else (GENERATION_SECONDS, IDLE_SECONDS)
    measured = measure(generation, idle)
    cost = figures(measured)
    problems = checks(measured)
    measured["checks"] = problems or ["commandstats and MONITOR agree on every phase"]
    print(render(measured, cost))
    for problem in problems:
        print(f"warning: {problem}")
    if args.quick:
        print(f"\n{time.monotonic() - started:.0f} s; --quick: nothing written")
        return
    write(measured, cost)
    print(
        f"\n{time.monotonic() - started:.0f} s; written to {COST_JSON} and to {BENCH_JSON} "
        "under `cost`"
    )


if __name__ == "__main__":
    main()
