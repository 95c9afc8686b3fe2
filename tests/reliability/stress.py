"""`make stress`: the flush, restart and kill scenarios of tests/reliability, run again and again
with a busy loop on every core, as on a shared CI machine at its worst.

Each round is one pytest run of those scenarios (their own private PostgreSQL, Redis, emulators,
API and worker processes). A round fails if any promise broke: more than MAX_ACTIVE_JOBS
generations at once, a job lost or stuck, a double charge, a story written twice, Redis residue
of a finished job. Prints one line per round and a summary; writes every round's figures to
bench/results/stress.json. Not part of `make test` (it takes about half an hour).

    python -m tests.reliability.stress [--rounds 20] [--no-load]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storyq_local.config import project_root

SCENARIOS = (
    "tests/reliability/test_redis_loss.py",
    "tests/reliability/test_flush_race.py",
    "tests/reliability/test_worker_kills.py",
)
RESULTS = project_root() / "bench" / "results" / "stress.json"
LOGS = project_root() / "tests" / "artifacts" / "stress"
CAP = 5


@contextmanager
def busy_cores(enabled: bool) -> Iterator[int]:
    """One spinning process per core for the duration; how many."""
    spinners = (
        [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)
        ]
        if enabled
        else []
    )
    try:
        yield len(spinners)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def run_round(number: int) -> dict[str, Any]:
    """One pytest run of the scenarios; its outcome and figures."""
    with tempfile.TemporaryDirectory() as scratch:
        figures_file = Path(scratch) / "figures.json"
        env = {**os.environ, "STORYQ_RESULTS_FILE": str(figures_file)}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *SCENARIOS],
            cwd=project_root(),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = round(time.monotonic() - started, 1)
        scenarios = (
            json.loads(figures_file.read_text())["scenarios"] if figures_file.exists() else []
        )
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"round-{number:02d}.log").write_text(done.stdout + done.stderr)
    by_name = {entry["scenario"]: entry for entry in scenarios}
    return {
        "round": number,
        "passed": done.returncode == 0,
        "seconds": seconds,
        "summary": (done.stdout.strip().splitlines() or [""])[-1],
        "most_generations_at_once": max(
            (int(entry.get("most_generations_at_once", 0)) for entry in scenarios), default=None
        ),
        "jobs_lost": sum(int(entry.get("jobs_lost", 0)) for entry in scenarios),
        "double_charges": sum(int(entry.get("double_charges", 0)) for entry in scenarios),
        "redis_residue": sum(int(entry.get("redis_residue", 0)) for entry in scenarios),
        "scenarios": by_name,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stress", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-load", action="store_true", help="without the busy loops")
    args = parser.parse_args(argv)
    rounds: list[dict[str, Any]] = []
    with busy_cores(not args.no_load) as spinning:
        print(f"stress: {args.rounds} rounds of {', '.join(SCENARIOS)}; {spinning} busy cores")
        for number in range(1, args.rounds + 1):
            outcome = run_round(number)
            rounds.append(outcome)
            print(
                f"round {number:2d}: {'ok  ' if outcome['passed'] else 'FAIL'} "
                f"{outcome['seconds']:6.1f} s, at most {outcome['most_generations_at_once']} "
                f"at once -- {outcome['summary']}",
                flush=True,
            )
    failed = [r["round"] for r in rounds if not r["passed"]]
    peaks = [r["most_generations_at_once"] for r in rounds if r["most_generations_at_once"]]
    summary = {
        "rounds": len(rounds),
        "busy_cores": spinning,
        "failed_rounds": failed,
        "cap_violations": sum(1 for peak in peaks if peak > CAP),
        "most_generations_at_once": max(peaks, default=None),
        "jobs_lost": sum(r["jobs_lost"] for r in rounds),
        "double_charges": sum(r["double_charges"] for r in rounds),
        "redis_residue": sum(r["redis_residue"] for r in rounds),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "summary": summary,
                "rounds": rounds,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"stress: {json.dumps(summary)}")
    print(f"stress: logs in {LOGS}, figures in {RESULTS}")
    return 1 if failed or summary["cap_violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
