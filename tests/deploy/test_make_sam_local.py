"""`make sam-local` (python -m storyq_local.sam_local) as a developer runs it: it prints a token
and curl lines that work against the functions in Lambda containers, the environment's settings
reach those containers, and Ctrl-C or SIGTERM stops it, containers included, within 20 s."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from psycopg.conninfo import make_conninfo

from storyq_local.stack.postgres import drop_database
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.sam import run_containers
from storyq_local.stack.servers import free_port, wait_until
from storyq_local.stack.users import ensure_user
from tests.support.users import bearer, token_for

STOP_WITHIN_SECONDS = 20.0  # issue 17's promise for Ctrl-C and SIGTERM


@dataclass
class SamLocalRun:
    process: subprocess.Popen[str]
    log: Path
    api: str
    web: str
    database_url: str

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def sam_local(postgres_server_url: str, lambda_image: str, tmp_path: Path) -> Iterator[SamLocalRun]:
    redis_process = RedisProcess().start()
    database_url = make_conninfo(postgres_server_url, dbname=f"storyq_samlocal_{os.getpid()}")
    api_port, lambda_port, web_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SAM_LOCAL_PORT": str(api_port),
        "SAM_LOCAL_LAMBDA_PORT": str(lambda_port),
        "SAM_LOCAL_WEB_PORT": str(web_port),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_process.url,
        "UPSTASH_REDIS_REST_URL": f"http://127.0.0.1:{free_port()}",
        "SUPABASE_URL": f"http://127.0.0.1:{free_port()}",
        "STATE_DIR": str(tmp_path / "state"),
        # Settings a developer would set, which must reach the function containers
        "MAX_ACTIVE_JOBS": "2",
        "GENERATION_DELAY_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "sam-local.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "storyq_local.sam_local"],
            env=env,
            cwd=tmp_path,  # no .env from the checkout
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    run = SamLocalRun(
        process=process,
        log=log,
        api=f"http://127.0.0.1:{api_port}",
        web=f"http://127.0.0.1:{web_port}",
        database_url=database_url,
    )
    try:
        wait_until(
            lambda: "Ctrl-C stops everything" in run.output() or process.poll() is not None,
            timeout=240,
            interval=0.5,
            what="make sam-local's banner",
        )
        assert process.poll() is None, run.output()
        yield run
    finally:
        if process.poll() is None:  # the test failed before stopping it: stop it the way it says
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        found = re.search(r"STORYQ_SAM_RUN=(\w+)", run.output())
        left = run_containers(found.group(1)) if found else []
        if left:
            subprocess.run(["docker", "rm", "-f", *left], check=False, capture_output=True)
        drop_database(database_url)
        redis_process.stop()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_make_sam_local_serves_the_service_and_stops_cleanly(
    sam_local: SamLocalRun, stop_signal: signal.Signals
) -> None:
    output = sam_local.output()
    run = re.search(r"STORYQ_SAM_RUN=(\w+)", output)
    assert run is not None, output
    assert run_containers(run.group(1)), "no warm containers"

    # The printed token and curl line work against start-api
    token = re.search(r"export TOKEN=(\S+)", output)
    assert token is not None, output
    me = httpx.get(f"{sam_local.api}/api/me", headers=bearer(token.group(1)), timeout=60)
    assert me.status_code == 200, me.text
    assert f"{sam_local.api}/api/me" in output

    # The environment's MAX_ACTIVE_JOBS reached the API's container
    admin_id = uuid.uuid4()
    ensure_user(sam_local.database_url, admin_id)
    admin = token_for(admin_id, admin=True)
    queue = httpx.get(f"{sam_local.api}/api/admin/queue", headers=bearer(admin), timeout=60)
    assert queue.status_code == 200, queue.text
    assert queue.json()["maxActive"] == 2

    # The page is served beside it and talks to that API
    config = httpx.get(f"{sam_local.web}/web/config.js", timeout=10)
    assert f'"apiBaseUrl": "{sam_local.api}"' in config.text

    # When the developer presses Ctrl-C (or the process gets SIGTERM)
    asked = time.monotonic()
    sam_local.process.send_signal(stop_signal)
    try:
        code = sam_local.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 60 s after {stop_signal.name}:\n{sam_local.output()[-3000:]}")
    took = time.monotonic() - asked

    # Then it is gone within 20 s, with its containers, and said so
    assert code == 0, sam_local.output()[-3000:]
    assert took <= STOP_WITHIN_SECONDS, f"{took:.1f} s"
    assert run_containers(run.group(1)) == [], "containers were left behind"
    assert "stopped" in sam_local.output()
