"""The `storyq` operator verbs, run in process with the environment pointing at this session's
emulators: the same operations as the admin endpoints, with the service role."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from storyq.config import Settings
from storyq_api.schemas import QueueStats
from storyq_local.cli_admin import main
from storyq_local.stack.redis_server import RedisProcess
from tests.api.conftest import dead_url
from tests.conftest import JWT_SECRET, UPSTASH_TOKEN
from tests.support.sql import Db
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What an operator's shell would hold; no .env is read (the cwd is empty)."""
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "STORYQ_ENV": "dev",
        "UPSTASH_REDIS_REST_URL": settings.upstash_redis_rest_url,
        "UPSTASH_REDIS_REST_TOKEN": UPSTASH_TOKEN,
        "UPSTASH_REST_RETRIES": "0",
        "SUPABASE_URL": settings.supabase_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
    }.items():
        monkeypatch.setenv(name, value)


def _job(db: Db, user: ApiUser, status: str = "pending") -> str:
    """A job enqueued through the SQL function (what POST /api/generate runs)."""
    enqueue = "select public.enqueue_story_job(%s, 'a story', null, null, 'en', 500, 1, 3)"
    job_id = str(db.value(f"{enqueue} ->> 'job_id'", (user.id,)))
    if status != "pending":
        db.start(job_id)
        if status == "failed":
            db.fail(job_id)
        elif status == "completed":
            db.complete(job_id, "The end.", {})
    return job_id


def test_credits_add(
    cli_env: None, make_user: MakeUser, db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    user = make_user(credits=1)
    assert main(["credits", "add", "--user", str(user.id), "--amount", "4"]) == 0
    assert db.balance(user.id) == 5
    assert f"user {user.id} now has 5 credit(s)" in capsys.readouterr().out


def test_credits_add_for_an_unknown_user_fails_cleanly(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["credits", "add", "--user", str(uuid.uuid4()), "--amount", "4"]) == 1
    assert "no such user" in capsys.readouterr().err


def test_stats(
    cli_env: None, make_user: MakeUser, db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    _job(db, make_user(credits=1), "failed")
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    for name in ("waiting", "active", "delayed", "completed", "failed", "cancelled"):
        assert out.count(name) >= 1
    assert "max active 5" in out
    assert "today (UTC)" in out
    assert "provider   not paused" in out
    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["failed"] >= 1
    assert stats["source"] == "redis"
    # the document GET /api/admin/queue answers
    assert set(stats) == set(QueueStats.model_json_schema(by_alias=True)["properties"])


def test_clean(
    cli_env: None, make_user: MakeUser, db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    user = make_user(credits=2)
    done, failed = _job(db, user, "completed"), _job(db, user, "failed")
    assert main(["clean", "completed", "--older-than", "1h"]) == 0
    assert db.value("select count(*) from story_jobs where id = %s", (done,)) == 1
    assert main(["clean", "completed"]) == 0
    assert db.value("select count(*) from story_jobs where id = %s", (done,)) == 0
    assert db.job_status(failed) == "failed"
    assert "completed job(s)" in capsys.readouterr().out


def test_clean_refuses_other_statuses(cli_env: None) -> None:
    with pytest.raises(SystemExit):
        main(["clean", "pending"])


def test_retry_then_empty(
    cli_env: None,
    make_user: MakeUser,
    db: Db,
    redis_process: RedisProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = make_user(credits=1)
    job_id = _job(db, user, "failed")
    assert main(["retry", job_id]) == 0
    assert db.job_status(job_id) == "pending"
    assert redis_process.client().zscore("storyq:waiting", job_id) is not None
    assert "is pending again" in capsys.readouterr().out

    assert main(["empty"]) == 0
    assert db.job_status(job_id) == "cancelled"
    assert redis_process.client().zscore("storyq:waiting", job_id) is None
    assert job_id in capsys.readouterr().out


def test_retry_refusals(
    cli_env: None, make_user: MakeUser, db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = _job(db, make_user(credits=1))
    assert main(["retry", pending]) == 1
    assert "only a failed job" in capsys.readouterr().err
    assert main(["retry", str(uuid.uuid4())]) == 1
    assert "no such job" in capsys.readouterr().err


def test_cancel_a_waiting_a_running_and_a_completed_job(
    cli_env: None, make_user: MakeUser, db: Db, capsys: pytest.CaptureFixture[str]
) -> None:
    user = make_user(credits=3)
    waiting, running, completed = (
        _job(db, user),
        _job(db, user, "processing"),
        _job(db, user, "completed"),
    )
    assert main(["cancel", waiting]) == 0
    assert "is cancelled (refunded: yes)" in capsys.readouterr().out
    assert main(["cancel", running]) == 0
    assert "is being cancelled" in capsys.readouterr().out
    assert (
        db.value("select cancel_reason from public.story_jobs where id = %s", (running,)) == "admin"
    )
    assert main(["cancel", completed]) == 1
    assert "cannot be cancelled" in capsys.readouterr().err


def test_a_dead_database_is_reported_not_raised(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUPABASE_URL", dead_url())
    assert main(["stats"]) == 1
    assert "database cannot be reached" in capsys.readouterr().err
