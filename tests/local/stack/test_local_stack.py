"""The local-stack builder in the mode the main suites do not use (every app in a process of its
own, as the reliability suite and the benchmarks run it): it serves, counts what each emulator
answers, and leaves nothing running once stopped; and a served app goes away with its parent."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storyq_local.stack.builder import ApiSpec, EmulatorSpec, start_stack
from storyq_local.stack.processes import ServedProcess
from storyq_local.stack.redis_server import RedisProcess
from tests.support.stack import UPSTASH_TOKEN, scratch_spec


def _database_exists(server_url: str, url: str) -> bool:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(make_conninfo(server_url, dbname="postgres")) as conn:
        row = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
    return row is not None


def test_a_stack_in_processes_serves_counts_and_stops_every_process(
    postgres_server_url: str,
) -> None:
    # Given a stack whose emulators (the OpenAI one too) and API each run in a process of their own
    spec = scratch_spec(
        postgres_server_url,
        prefix="storyq_stack",
        emulators=EmulatorSpec(where="process", count_requests=True, openai=True),
        api=ApiSpec(where="process"),
    )
    with start_stack(spec) as stack:
        assert stack.api is not None
        assert stack.openai is not None
        served = [stack.upstash, stack.supabase, stack.openai, stack.api]
        processes = [app.process for app in served if isinstance(app, ServedProcess)]
        assert len(processes) == 4
        before = stack.request_counts()

        # When the API's health check is asked for
        health = httpx.get(f"{stack.api.url}/api/health", timeout=10)

        # Then it answers through both emulators, and each counted what it answered
        assert health.json() == {"status": "ok", "redis": "ok", "database": "ok"}
        after = stack.request_counts()
        assert after["upstash"].total() > before["upstash"].total()
        rpc = "/rest/v1/rpc/health_check"
        assert after["supabase"][rpc] == before["supabase"][rpc] + 1

        # And the stack's settings point the openai generator at its emulator, which answers
        # (the test settings keep GENERATOR=template; `storyq dev` leaves it openai)
        settings = stack.settings()
        assert settings.openai_base_url == f"{stack.openai.url}/v1"
        assert settings.openai_api_key is not None
        story = httpx.post(
            f"{settings.openai_base_url}/chat/completions",
            json={"model": "story", "messages": [{"role": "user", "content": "about 20 words"}]},
            headers={"Authorization": f"Bearer {settings.openai_api_key.get_secret_value()}"},
            timeout=10,
        )
        assert story.json()["choices"][0]["finish_reason"] == "stop"
        assert stack.request_counts()["openai"]["/v1/chat/completions"] == 1
        database_url = stack.database_url

    # And once stopped, none of its processes runs and its scratch database is gone
    assert all(process is not None and process.poll() is not None for process in processes)
    assert not _database_exists(postgres_server_url, database_url)


def test_a_served_app_stops_when_the_process_that_started_it_is_gone(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    # Given an Upstash emulator served in a process of its own
    served = ServedProcess(
        kind="upstash",
        args=["--redis-url", redis_process.url],
        env={"UPSTASH_REDIS_REST_TOKEN": UPSTASH_TOKEN},
        log=tmp_path / "upstash.log",
    ).start()
    assert served.process is not None
    assert served.process.stdin is not None

    # When the other end of its stdin closes, as it does when its parent dies
    served.process.stdin.close()

    # Then it exits by itself
    assert served.process.wait(20) == 0
