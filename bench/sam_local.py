"""`python -m bench.sam_local` (`make bench-sam-local`): cold-start and warm invoke durations of
the built functions through the SAM CLI's Lambda emulation (storyq_local.stack.sam), beside the
in-process API that `make dev` runs. Numbers, not assertions; on this machine, which other work
may share (the load average at start and end is recorded).

One private stack (a scratch database on the tests' PostgreSQL server, a private redis-server,
both emulators and the API on threads of this process, as `make dev` has them; the limits of
bench.stack out of the way) and one user with credits (bench.users). Powertools logs warnings
only and sends no metrics, in the functions as in the in-process API. Measured, in this order:

1. in-process (`make dev`): GET /api/health and GET /api/me (Bearer token) against the API on
   its thread, over one keep-alive httpx client: the first request, then WARM_RUNS each; then
   CONCURRENT GET /api/health at once (one connection each, opened beforehand): the batch.
2. cold, `sam local invoke`: ApiFunction with events/health.json and WorkerFunction with
   events/worker_schedule.json (nothing queued), COLD_RUNS each after one unmeasured run, each
   a new container: the wall time of the whole command (sam's own start, the container's
   creation and removal included), and the function's Duration from the emulator's REPORT line
   on stderr. The Runtime Interface Emulator starts the runtime lazily, at the first invoke:
   its `Init Duration` is a few hundredths of a millisecond and its `Duration` includes the
   runtime's start and the handler's imports (recorded both, as printed). Wall minus Duration
   is what sam and docker add: the CLI's own start, the container made, started and removed.
3. warm, `sam local start-api` + `start-lambda` with warm containers EAGER, started STARTS times
   (free ports, no schedule): how long until both listen with their containers up; through
   start-api, the first GET /api/health (the container's own cold start: runtime, imports, the
   app built) and WARM_RUNS after it, the first GET /api/me and WARM_RUNS after it; through
   start-lambda, the first RequestResponse invoke of WorkerFunction with the schedule event and
   WARM_RUNS after it. Each wall time is the HTTP round trip seen by a client here (one
   httpx client per endpoint); the function's own Duration per request comes from the
   REPORT lines in sam's log, in order, so wall minus Duration is what sam adds per request.
   Warm series of every start are pooled; each start gives one first request.
   In the last start, CONCURRENT GET /api/health at once through start-api, as in 1: the
   batch's wall time, the sum of their Durations and the containers before and after.

The number of .pyc files in the layer image is recorded beside the build's: layer_image reuses
an image by a hash of the layer's files without __pycache__, so an image once baked from a
build without bytecode (a plain `sam build`) is used for a compiled build too, and every cold
start then compiles the layer. `--image` bakes the layer onto another tag of the Lambda image
(a new layer image, from this build).

Every figure is median, max and, from P90_MIN samples on, p90, in ms. Writes
bench/results/sam_local.json and prints a table (bench.report's).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.report import Row, render
from bench.stack import JWT_SECRET, POWERTOOLS_ENV, SETTINGS, UPSTASH_TOKEN
from bench.users import BenchUser, create_users
from storyq_local.config import project_root
from storyq_local.stack.builder import ApiSpec, DatabaseSpec, LocalStack, StackSpec, start_stack
from storyq_local.stack.sam import (
    API_FUNCTION,
    BUILD,
    SCHEDULE_EVENT,
    WORKER_FUNCTION,
    SamLocal,
    SamSpec,
    _sam_process_env,
    docker_session,
    sam_command,
    start_sam_local,
)

RESULTS = Path(__file__).parent / "results" / "sam_local.json"
POSTGRES_SERVER_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
EVENTS = project_root() / "events"
COLD_RUNS = 10
WARM_RUNS = 50
STARTS = 5
CONCURRENT = 5
P90_MIN = 20
# Quiet Powertools in the containers too (function_env reads POWERTOOLS_LOG_LEVEL from here).
FUNCTION_ENV = {
    "POWERTOOLS_LOG_LEVEL": POWERTOOLS_ENV["POWERTOOLS_LOG_LEVEL"],
    "POWERTOOLS_METRICS_DISABLED": "1",
}
# The emulator's REPORT line: `REPORT RequestId: … [Init Duration: x ms]\tDuration: y ms\t…`.
_REPORT = re.compile(
    r"REPORT RequestId: \S+\s+(?:Init Duration: (?P<init>[\d.]+) ms\s+)?"
    r"Duration: (?P<duration>[\d.]+) ms"
)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def summary(values_ms: list[float]) -> dict[str, Any]:
    """n, median, p90 (from P90_MIN samples), max and the runs, in ms."""
    found: dict[str, Any] = {"n": len(values_ms)}
    if not values_ms:
        return found
    found["median_ms"] = round(statistics.median(values_ms), 2)
    if len(values_ms) >= P90_MIN:
        found["p90_ms"] = round(statistics.quantiles(values_ms, n=10, method="inclusive")[8], 2)
    found["max_ms"] = round(max(values_ms), 2)
    found["runs_ms"] = [round(v, 2) for v in values_ms]
    return found


def reports(text: str) -> list[dict[str, float | None]]:
    """Every REPORT line in `text`, in order: its Init Duration (None when absent) and Duration."""
    return [
        {
            "init_ms": float(m["init"]) if m["init"] else None,
            "duration_ms": float(m["duration"]),
        }
        for m in _REPORT.finditer(text)
    ]


def _timed(call: Callable[[], httpx.Response]) -> float:
    """One request's wall time in ms; raises unless it answered 200 without a function error."""
    started = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200 or answer.headers.get("x-amz-function-error"):
        raise RuntimeError(f"{answer.request.url} answered {answer.status_code}: {answer.text}")
    return elapsed


def _series(call: Callable[[], httpx.Response], runs: int) -> tuple[float, list[float]]:
    """The first request's wall time, then `runs` more."""
    first = _timed(call)
    return first, [_timed(call) for _ in range(runs)]


# --- 1. the in-process API -------------------------------------------------------------------


def in_process(api_url: str, user: BenchUser, runs: int) -> dict[str, Any]:
    with httpx.Client(base_url=api_url, timeout=60) as http:
        health_first, health = _series(lambda: http.get("/api/health"), runs)
        me_first, me = _series(lambda: http.get("/api/me", headers=user.authorization), runs)
    return {
        "health": {"first_ms": round(health_first, 2), "warm": summary(health)},
        "me": {"first_ms": round(me_first, 2), "warm": summary(me)},
        "concurrent": concurrent_requests(api_url, CONCURRENT),
    }


# --- 2. cold: sam local invoke ---------------------------------------------------------------


def _invoke_cli(sam: SamLocal, function: str, event: Path) -> dict[str, Any]:
    """`sam local invoke <function> --event <event>` once: wall ms and the REPORT line."""
    command = [
        *sam_command("invoke", template=sam.template, image=sam.image, host=None, port=None),
        *("--event", str(event)),
        function,
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=sam.template.parent,
        env=_sam_process_env(sam.env),  # as SamLocal.invoke_cli runs it
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1000
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"sam local invoke {function} exited {done.returncode}:\n{done.stderr}")
    answer = json.loads(lines[-1])
    if function == API_FUNCTION and answer.get("statusCode") != 200:
        raise RuntimeError(f"{function} answered {answer}")
    found = reports(done.stderr)
    return {"wall_ms": wall, **(found[-1] if found else {"init_ms": None, "duration_ms": None})}


def cold_cli(sam: SamLocal, function: str, event: Path, runs: int) -> dict[str, Any]:
    _invoke_cli(sam, function, event)  # unmeasured: sam's image check, the page cache
    done = [_invoke_cli(sam, function, event) for _ in range(runs)]
    inits = [d["init_ms"] for d in done if d["init_ms"] is not None]
    return {
        "event": str(event.relative_to(project_root())),
        "wall": summary([d["wall_ms"] for d in done]),
        "report_duration": summary([d["duration_ms"] for d in done if d["duration_ms"]]),
        "report_init_duration": summary(inits),
        # sam's own start, the container made, started, stopped and removed
        "wall_minus_duration": summary(
            [d["wall_ms"] - d["duration_ms"] for d in done if d["duration_ms"]]
        ),
    }


def bytecode_files(image: str, folder: str = "/opt/python") -> int:
    """How many .pyc files `image` has under `folder` (the layer, as baked by layer_image)."""
    listed = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "/usr/bin/find", image, folder, "-name", "*.pyc"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return len(listed.split())


# --- 3. warm: start-api and start-lambda -----------------------------------------------------


def _log_text(folder: Path, verb: str) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(folder.glob(f"sam-{verb}-*.log")))


def concurrent_requests(api_url: str, count: int) -> dict[str, Any]:
    """`count` GET /api/health at once from one client (a connection each, opened first)."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    with (
        httpx.Client(base_url=api_url, timeout=120, limits=limits) as http,
        ThreadPoolExecutor(count) as pool,
    ):

        def one(_: int) -> float:
            return _timed(lambda: http.get("/api/health"))

        list(pool.map(one, range(count)))  # unmeasured: the connections opened
        started = time.perf_counter()
        each = list(pool.map(one, range(count)))
        batch = (time.perf_counter() - started) * 1000
    return {"requests": count, "batch_wall_ms": round(batch, 2), "each": summary(each)}


def one_start(
    stack: LocalStack, spec: SamSpec, image: str, user: BenchUser, runs: int, *, concurrent: int
) -> dict[str, Any]:
    """sam as `spec` says, once; the first request of each kind and `runs` more."""
    assert spec.log_dir is not None
    log_dir = spec.log_dir
    log_dir.mkdir(parents=True)
    started = time.perf_counter()
    sam = start_sam_local(stack, spec, image=image)
    found: dict[str, Any] = {}
    try:
        found["start_ms"] = (time.perf_counter() - started) * 1000
        found["containers"] = len(sam.containers())
        invoke_url = f"{sam.lambda_url}/2015-03-31/functions/{WORKER_FUNCTION}/invocations"
        with (
            httpx.Client(base_url=sam.api_url, timeout=120) as http,
            httpx.Client(timeout=120) as lam,
        ):
            found["health"] = _series(lambda: http.get("/api/health"), runs)
            found["me"] = _series(lambda: http.get("/api/me", headers=user.authorization), runs)
            found["worker"] = _series(lambda: lam.post(invoke_url, json=SCHEDULE_EVENT), runs)
        if concurrent:
            before = len(sam.containers())
            found["concurrent"] = {
                **concurrent_requests(sam.api_url, concurrent),
                "containers_before": before,
                "containers_after": len(sam.containers()),
            }
        found["containers_at_end"] = len(sam.containers())
    finally:
        stopping = time.perf_counter()
        sam.stop()
        found["stop_s"] = round(time.perf_counter() - stopping, 2)
    # The functions' own Durations, in the order of the requests (one container per function).
    api_reports = reports(_log_text(log_dir, "start-api"))
    worker_reports = reports(_log_text(log_dir, "start-lambda"))
    expected = 2 * (runs + 1)
    found["reports"] = {
        "health": api_reports[: runs + 1] if len(api_reports) >= expected else [],
        "me": api_reports[runs + 1 : expected] if len(api_reports) >= expected else [],
        "worker": worker_reports[: runs + 1] if len(worker_reports) >= runs + 1 else [],
        # the concurrent batch's own Durations (its 2 x `concurrent` requests follow the series)
        "concurrent": [r["duration_ms"] for r in api_reports[expected:]],
        "api_lines": len(api_reports),
        "worker_lines": len(worker_reports),
    }
    return found


def warm(
    stack: LocalStack, image: str, user: BenchUser, runs: int, starts: int, build_dir: Path
) -> dict[str, Any]:
    done = []
    for index in range(starts):
        _say(f"start-api + start-lambda, start {index + 1} of {starts}")
        spec = SamSpec(
            warm_containers="EAGER",
            schedule_seconds=None,
            api_port=0,
            lambda_port=0,
            build_dir=build_dir,
            env=FUNCTION_ENV,
            log_dir=stack.log_dir / f"sam-warm-{index}",
        )
        concurrent = CONCURRENT if index == starts - 1 else 0
        done.append(one_start(stack, spec, image, user, runs, concurrent=concurrent))
    result: dict[str, Any] = {
        "starts": starts,
        "start": summary([d["start_ms"] for d in done]),
        "stop_s": [d["stop_s"] for d in done],
        "containers": [d["containers"] for d in done],
        "containers_at_end": [d["containers_at_end"] for d in done],
    }
    for key in ("health", "me", "worker"):
        report_lists = [d["reports"][key] for d in done if d["reports"][key]]
        # what sam adds to each warm request: its wall time here minus the function's Duration
        added = [
            wall - report["duration_ms"]
            for d in done
            if d["reports"][key]
            for wall, report in zip(d[key][1], d["reports"][key][1:], strict=True)
        ]
        result[key] = {
            "first": summary([d[key][0] for d in done]),
            "warm": summary([ms for d in done for ms in d[key][1]]),
            "report_first": summary([r[0]["duration_ms"] for r in report_lists]),
            "report_first_init": [r[0]["init_ms"] for r in report_lists],
            "report_warm": summary([x["duration_ms"] for r in report_lists for x in r[1:]]),
            "warm_minus_duration": summary(added),
        }
    result["report_lines"] = [
        {"api": d["reports"]["api_lines"], "worker": d["reports"]["worker_lines"]} for d in done
    ]
    if "concurrent" in done[-1]:
        durations = done[-1]["reports"]["concurrent"][-CONCURRENT:]
        result["concurrent"] = {
            **done[-1]["concurrent"],
            "report_durations_ms": durations,
            "report_durations_sum_ms": round(sum(durations), 2),
        }
    return result


# --- the run ---------------------------------------------------------------------------------


def _spec(log_dir: Path) -> StackSpec:
    return StackSpec(
        database=DatabaseSpec(server_url=POSTGRES_SERVER_URL, scratch_prefix="storyq_bench_sam"),
        api=ApiSpec(),  # on a thread of this process, as `make dev` runs it
        upstash_token=UPSTASH_TOKEN,
        jwt_secret=JWT_SECRET,
        settings=SETTINGS,
        log_dir=log_dir,
    )


@contextlib.contextmanager
def _stack() -> Iterator[LocalStack]:
    log_dir = Path(tempfile.mkdtemp(prefix="storyq-bench-sam-"))  # kept: the table names it
    with start_stack(_spec(log_dir)) as stack:
        yield stack


def measure(
    *, cold_runs: int, warm_runs: int, starts: int, build_dir: Path, image: str | None
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "build_dir": str(build_dir),
        "runs": {"cold": cold_runs, "warm": warm_runs, "starts": starts},
    }
    started = time.monotonic()
    with ExitStack() as cleanup:
        stack = cleanup.enter_context(_stack())
        results["log_dir"] = str(stack.log_dir)
        assert stack.api is not None
        user = create_users(stack.database_url, 1, credits=10, secret=JWT_SECRET)[0]
        _say(f"in-process API {stack.api.url}")
        results["in_process"] = in_process(stack.api.url, user, warm_runs)
        made = cleanup.enter_context(docker_session())  # dockerd up in any case
        image = image or made
        results["image"] = image
        with start_sam_local(
            stack,
            SamSpec(serve=False, schedule_seconds=None, build_dir=build_dir, env=FUNCTION_ENV),
            image=image,
        ) as sam:
            results["layer_image"] = sam.image
            results["layer_bytecode_files"] = {
                "image": bytecode_files(sam.image),
                "build": sum(1 for _ in (build_dir / "CoreLayer").rglob("*.pyc")),
            }
            results["cold"] = {}
            for function, event in (
                (API_FUNCTION, EVENTS / "health.json"),
                (WORKER_FUNCTION, EVENTS / "worker_schedule.json"),
            ):
                _say(f"sam local invoke {function}: 1 + {cold_runs}")
                results["cold"][function] = cold_cli(sam, function, event, cold_runs)
        results["warm"] = warm(stack, image, user, warm_runs, starts, build_dir)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


# --- the table -------------------------------------------------------------------------------


def _fmt(s: Mapping[str, Any], unit: str = "ms") -> str:
    """'median / p90 / max' (p90 when there is one) and n."""
    if not s.get("n"):
        return "n/a"
    scale = 1000 if unit == "s" else 1
    parts = [s["median_ms"], *([s["p90_ms"]] if "p90_ms" in s else []), s["max_ms"]]
    digits = 2 if unit == "s" else 1
    return " / ".join(f"{p / scale:.{digits}f}" for p in parts) + f" {unit} (n={s['n']})"


def build_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    local = results["in_process"]
    section = "in-process API (make dev)"
    for key, label in (("health", "GET /api/health"), ("me", "GET /api/me")):
        rows.append(Row(section, f"{label} first", f"{local[key]['first_ms']:.1f} ms"))
        rows.append(Row(section, f"{label} warm", _fmt(local[key]["warm"])))
    rows.append(_concurrent_row(section, local["concurrent"]))
    section = "cold: sam local invoke"
    pyc = results["layer_bytecode_files"]
    rows.append(
        Row(
            section,
            "layer image's bytecode (.pyc files)",
            f"{pyc['image']} in {results['layer_image']} (the build has {pyc['build']})",
        )
    )
    for function, cold in results["cold"].items():
        rows += [
            Row(section, f"{function} ({cold['event']}) wall", _fmt(cold["wall"])),
            Row(section, "  REPORT Duration", _fmt(cold["report_duration"])),
            Row(section, "  REPORT Init Duration", _fmt(cold["report_init_duration"])),
            Row(section, "  wall - Duration (sam, container)", _fmt(cold["wall_minus_duration"])),
        ]
    hot = results["warm"]
    section = "start-api + start-lambda, EAGER"
    containers = ", ".join(
        f"{a} / {b}" for a, b in zip(hot["containers"], hot["containers_at_end"], strict=True)
    )
    rows.append(Row(section, "start until both listen", _fmt(hot["start"], "s")))
    rows.append(Row(section, "containers after start / at end", containers))
    for key, label in (
        ("health", "GET /api/health (start-api)"),
        ("me", "GET /api/me (start-api)"),
        ("worker", "WorkerFunction schedule (start-lambda)"),
    ):
        entry = hot[key]
        rows += [
            Row(section, f"{label} first", _fmt(entry["first"])),
            Row(section, "  REPORT Duration", _fmt(entry["report_first"])),
            Row(section, f"{label} warm", _fmt(entry["warm"])),
            Row(section, "  REPORT Duration", _fmt(entry["report_warm"])),
            Row(section, "  wall - Duration (sam)", _fmt(entry["warm_minus_duration"])),
        ]
    many = hot.get("concurrent")
    if many:
        row = _concurrent_row(section, many)
        rows.append(
            Row(
                row.section,
                row.name,
                f"{row.value}; Durations sum {many['report_durations_sum_ms']:.0f} ms; "
                f"containers {many['containers_before']} -> {many['containers_after']}",
            )
        )
    return rows


def _concurrent_row(section: str, many: Mapping[str, Any]) -> Row:
    each = many["each"]
    return Row(
        section,
        f"{many['requests']} GET /api/health at once",
        f"batch {many['batch_wall_ms']:.0f} ms, each {each['median_ms']:.0f} / "
        f"{each['max_ms']:.0f} ms",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench.sam_local", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--cold", type=int, default=COLD_RUNS, help="sam local invoke runs")
    parser.add_argument("--warm", type=int, default=WARM_RUNS, help="warm requests per series")
    parser.add_argument("--starts", type=int, default=STARTS, help="start-api/lambda starts")
    parser.add_argument(
        "--build-dir", type=Path, default=BUILD, help="a sam build (default .aws-sam/build)"
    )
    parser.add_argument(
        "--image", help="the Lambda image the layer is baked onto (default make lambda-image's)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the Lambda image needs dockerd (and debootstrap): run it as root")
    # The in-process API reads Powertools' settings from this process's environment.
    os.environ.update(POWERTOOLS_ENV)
    results = measure(
        cold_runs=args.cold,
        warm_runs=args.warm,
        starts=args.starts,
        build_dir=args.build_dir.resolve(),
        image=args.image,
    )
    rows = build_rows(results)
    results["table"] = [row.as_dict() for row in rows]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(rows))
    print(
        f"\nmedian / p90 / max (p90 from {P90_MIN} samples); {results['seconds']:.0f} s; load "
        f"average {results['machine']['load_average_at_start']} -> "
        f"{results['machine']['load_average_at_end']}; written to {RESULTS} "
        f"(logs: {results['log_dir']})"
    )


if __name__ == "__main__":
    main()
