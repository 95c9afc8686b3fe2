"""The queue worker of a local stack: `storyq worker` on a thread of this process (`storyq dev`,
the browser tests), or in a process of its own that a test may SIGKILL (the reliability suite).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from storyq.config import Settings
from storyq_local.stack.processes import new_log, spawn

if TYPE_CHECKING:
    from storyq_worker.runner import Shutdown


class WorkerThread:
    """`storyq worker` (storyq_worker.runner.run_worker) on its own thread and event loop,
    stopped as the process is on SIGTERM: running generations get `grace_seconds`, then are
    handed back to the queue."""

    def __init__(self, settings: Settings, *, grace_seconds: float = 0.0) -> None:
        self.settings = settings
        self.grace_seconds = grace_seconds
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: Shutdown | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="storyq-worker", daemon=True)

    def start(self) -> WorkerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the worker loop did not start")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        from storyq_worker.runner import RunnerOptions, Shutdown, run_worker

        self._loop = asyncio.get_running_loop()
        self._shutdown = Shutdown(grace_seconds=self.grace_seconds)
        self._ready.set()
        options = RunnerOptions(
            poll_seconds=self.settings.worker_poll_seconds,
            concurrency=self.settings.max_active_jobs,
            grace_seconds=self.grace_seconds,
        )
        await run_worker(self.settings, options, self._shutdown)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to stop and wait for it; re-raise what ended it, if anything did."""
        if self._loop is not None and self._shutdown is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._shutdown.request)
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error


@dataclass
class WorkerProcess:
    """`python -m storyq_worker.runner` (what `storyq worker` runs), configured by env only."""

    env: dict[str, str]
    log_dir: Path
    concurrency: int = 5
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = field(default=None)

    def start(self) -> WorkerProcess:
        self.log = self.log or new_log(self.log_dir, "worker")
        args = ["-m", "storyq_worker.runner", "--concurrency", str(self.concurrency)]
        self.process = spawn([*args, "--grace", "0"], env=self.env, log=self.log)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def sigkill(self) -> float:
        """SIGKILL (no cleanup, no handing back); the wall-clock moment it was sent."""
        assert self.process is not None
        killed_at = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close_stdin()
        return killed_at

    def stop(self) -> None:
        """SIGTERM: with no grace, running generations are handed back to the queue."""
        if self.process is None or self.process.poll() is not None:
            self._close_stdin()
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._close_stdin()

    def _close_stdin(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
