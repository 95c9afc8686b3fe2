"""`storyq dev` (what `make dev` runs) brings the whole stack up and prints a working token; with
`--generator openai` its worker writes through the OpenAI emulator."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from psycopg.conninfo import make_conninfo

from storyq_local.stack.postgres import drop_database
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import free_port, wait_until

STORYQ = (sys.executable, "-m", "storyq_local.cli")


@pytest.fixture(params=["template", "openai"])
def dev_stack(
    request: pytest.FixtureRequest, postgres_server_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int, Path, dict[str, str], str]]:
    # A Redis of its own: the session's carries other tests' queues and leases.
    redis_process = RedisProcess().start()
    api_port, upstash_port, supabase_port = free_port(), free_port(), free_port()
    database_url = make_conninfo(postgres_server_url, dbname=f"storyq_devstack_{os.getpid()}")
    env = {
        # No provider configured: `--generator openai` then runs the emulator.
        **{name: value for name, value in os.environ.items() if not name.startswith("OPENAI_")},
        "PORT": str(api_port),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_process.url,
        "UPSTASH_REDIS_REST_URL": f"http://127.0.0.1:{upstash_port}",
        "SUPABASE_URL": f"http://127.0.0.1:{supabase_port}",
        "STATE_DIR": str(tmp_path / "state"),
        "GENERATION_DELAY_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*STORYQ, "dev", "--generator", request.param],
            env=env,
            cwd=tmp_path,  # no .env from the checkout
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process, api_port, log, env, request.param
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        drop_database(database_url)
        redis_process.stop()


def test_dev_prints_a_token_and_a_curl_line_that_reports_ok(
    dev_stack: tuple[subprocess.Popen[str], int, Path, dict[str, str], str],
) -> None:
    process, api_port, log, env, generator = dev_stack
    # When the stack has printed its banner
    wait_until(lambda: "export TOKEN=" in log.read_text() or process.poll() is not None, timeout=90)
    output = log.read_text()
    assert process.poll() is None, output

    # Then the curl line it printed answers ok for Redis and the database
    match = re.search(r"curl -s (http://127\.0\.0\.1:\d+/api/health)", output)
    assert match is not None, output
    health = httpx.get(match.group(1), timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "redis": "ok", "database": "ok"}

    # And with the token it printed and credits granted as it says, a story gets written
    token = re.search(r"export TOKEN=(\S+)", output)
    user = re.search(r"--user (\S+) --amount", output)
    assert token is not None
    assert user is not None
    granted = subprocess.run(
        [*STORYQ, "credits", "add", "--user", user.group(1), "--amount", "2"],
        env=env,
        cwd=log.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert granted.returncode == 0, granted.stderr
    api = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    queued = httpx.post(
        f"{api}/api/generate", json={"prompt": "a lighthouse in a storm"}, headers=headers
    )
    assert queued.status_code == 202, queued.text
    job_url = f"{api}/api/job/{queued.json()['jobId']}"
    wait_until(
        lambda: httpx.get(job_url, headers=headers).json()["status"] == "completed", timeout=30
    )

    # And with --generator openai the story came from the OpenAI emulator, which it printed
    if generator == "openai":
        assert "OpenAI emulator" in output
        assert httpx.get(job_url, headers=headers).json()["title"] == "The Storm Collector"

    # And SIGINT stops everything cleanly
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{api_port}/api/health", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the API still answers after SIGINT")
