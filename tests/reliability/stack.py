"""Real processes the reliability suite owns and breaks on purpose: a private PostgreSQL cluster,
the emulators and the API served by uvicorn in their own processes, and worker processes.

Every process is started on a free loopback port and stopped by its own pid, never by name.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from storyq_local.config import project_root
from storyq_local.servers import free_port
from tests.support.processes import wait_until

ROOT = project_root()
# Logs of the processes this suite starts; removed with the stack (see conftest).
LOG_DIR = Path(tempfile.mkdtemp(prefix="storyq-reliability-logs-"))


def _new_log(name: str) -> Path:
    handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=LOG_DIR)
    os.close(handle)
    return Path(path)


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def private_postgres_available() -> bool:
    return _postgres_bin("initdb") is not None and _postgres_bin("pg_ctl") is not None


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: root hands the cluster to the `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster of our own, so a test may stop it without harming others."""

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="storyq-pg-")))

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            _as_postgres_user(list(args)),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, user="postgres")
        initdb = _postgres_bin("initdb")
        assert initdb is not None
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self.start()

    def start(self) -> PrivatePostgres:
        pg_ctl = _postgres_bin("pg_ctl")
        assert pg_ctl is not None
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c max_connections=200"
        )
        self._run(
            pg_ctl,
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.workdir / "log"),
            "-w",
            "start",
        )
        wait_until(self.answers, timeout=30)
        return self

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = _postgres_bin("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def destroy(self) -> None:
        if self.answers():
            self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


def _python_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTASH_", "SUPABASE_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class ServedApp:
    """One of `tests.reliability.serve`'s apps in its own uvicorn process, restartable on the
    same port (clients keep their URL across a crash)."""

    kind: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: _new_log("app"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedApp:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.serve", self.kind, str(self.port)],
                env=_python_env(self.env),
                cwd=tempfile.gettempdir(),  # no .env there: the environment alone configures it
                stdout=log,
                stderr=subprocess.STDOUT,
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
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@dataclass
class WorkerProcess:
    """`python -m storyq_worker.runner` (what `storyq worker` runs), configured by env only."""

    env: dict[str, str]
    concurrency: int = 5
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: _new_log("worker"))

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "storyq_worker.runner",
                    "--concurrency",
                    str(self.concurrency),
                    "--grace",
                    "0",
                ],
                env=_python_env(self.env),
                cwd=tempfile.gettempdir(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
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
        return killed_at

    def stop(self) -> None:
        """SIGTERM: with no grace, running generations are handed back to the queue."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
