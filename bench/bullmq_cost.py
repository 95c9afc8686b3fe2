"""BullMQ's side of the cost benchmark: bench/bullmq/cost.mjs (the npm package pinned in
package.json, never vendored) against private redis-servers, one per measurement so that each
server's commandstats count one thing. Started in the background so they run beside storyq's.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.billing import bill
from storyq_local.stack.redis_server import RedisProcess

SCRIPT = Path(__file__).parent / "bullmq" / "cost.mjs"
ROOT = Path(__file__).resolve().parent.parent
MODES = ("job", "job-with-client", "idle")


@dataclass
class NodeRun:
    mode: str
    seconds: float
    server: RedisProcess
    process: subprocess.Popen[str]

    def finish(self, timeout: float) -> dict[str, Any]:
        """Waits for the script; its counts billed by Upstash's rule."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        finally:
            self.stop()
        if self.process.returncode != 0:
            raise RuntimeError(f"bullmq {self.mode}: exit {self.process.returncode}: {err[-2000:]}")
        answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        answer["bill"] = bill(answer["calls"], failed=answer.get("failed")).as_dict()
        return answer

    def stop(self) -> None:
        """The script (by its own pid) and its redis-server, if still running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.server.stop()


def start(mode: str, seconds: float) -> NodeRun:
    if not (ROOT / "node_modules" / "bullmq").is_dir():
        raise RuntimeError("node_modules/bullmq is missing: run `make node-deps` (npm ci)")
    server = RedisProcess().start()
    process = subprocess.Popen(
        [
            "node",
            "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON",
            str(SCRIPT),
            *("--port", str(server.port)),
            *("--mode", mode),
            *("--seconds", f"{seconds:g}"),
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return NodeRun(mode=mode, seconds=seconds, server=server, process=process)


def summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The three figures of issue 18 for BullMQ, from the runs by mode.

    A BullMQ worker spends the same commands waiting for work whether or not a job runs (a
    blocking pop and a fetch every drain delay, a stalled check every 30 s): during a job, the
    idle run's rate times the job's seconds. That background is taken out of a job's figures,
    as storyq's is (its schedule's invocations are counted as idle, not in a story); the gross
    counts stay beside them."""
    idle = runs["idle"]
    per_second = idle["bill"]["billed"] / idle["wall_seconds"]
    found: dict[str, Any] = {
        "idle_billed_commands_per_hour": round(per_second * 3600),
        "background_per_second": round(per_second, 3),
    }
    for key, mode in (
        ("story_billed_commands", "job"),
        ("story_billed_commands_with_client", "job-with-client"),
    ):
        run = runs[mode]
        background = round(per_second * run["wall_seconds"])
        found[key] = run["bill"]["billed"] - background
        found[f"{key}_gross"] = run["bill"]["billed"]
        found[f"{key}_background"] = background
    return found
