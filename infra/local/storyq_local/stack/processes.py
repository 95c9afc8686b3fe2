"""Apps of a local stack in processes of their own, so that their owner may kill them (the
reliability suite) or pin them to CPUs (the benchmarks).

Every process is started on a loopback port, configured by its environment only (it runs in the
temporary folder, where no .env is), logs to a file of its own, and is stopped by its own pid,
never by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from storyq_local.stack.servers import free_port, wait_until


def new_log(log_dir: Path, name: str) -> Path:
    """A new, empty log file named after `name` in `log_dir`."""
    handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=log_dir)
    os.close(handle)
    return Path(path)


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its own Upstash and Supabase settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTASH_", "SUPABASE_"))}
    env.update(extra)
    return env


def spawn(
    args: list[str], *, env: Mapping[str, str], log: Path, cpus: frozenset[int] | None = None
) -> subprocess.Popen[bytes]:
    """`python <args>` with `env`, its output appended to `log`, pinned to `cpus` when given.

    Its stdin is a pipe that nobody writes to: a child that watches it (see `serve`) notices
    when its parent is gone."""

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            env=process_env(env),
            cwd=tempfile.gettempdir(),  # no .env there: the environment alone configures it
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pin if cpus else None,  # noqa: PLW1509  # only sets the CPU affinity
        )


@dataclass
class ServedProcess:
    """One app of `python -m storyq_local.stack.serve` in its own uvicorn process, restartable on
    the same port (clients keep their URL across a crash)."""

    kind: str
    args: list[str]
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    cpus: frozenset[int] | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedProcess:
        command = ["-m", "storyq_local.stack.serve", self.kind, "--port", str(self.port)]
        self.process = spawn(
            [*command, "--until-stdin-closes", *self.args],
            env=self.env,
            log=self.log,
            cpus=self.cpus,
        )
        wait_until(self._listening, timeout=30)
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
        httpx.get(self.url + "/", timeout=1)
        return True

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_stdin()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_stdin()
        self.process = None

    def _close_stdin(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
