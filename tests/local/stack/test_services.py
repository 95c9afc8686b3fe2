"""Finding the PostgreSQL and Redis the local stack runs on (storyq_local.stack.services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyq_local.stack.servers import free_port
from storyq_local.stack.services import NoPostgres, ensure_postgres


def test_a_reachable_server_is_used_as_it_is(postgres_server_url: str, tmp_path: Path) -> None:
    assert ensure_postgres(postgres_server_url, tmp_path) == postgres_server_url


def test_without_any_postgresql_the_error_says_what_to_install(tmp_path: Path) -> None:
    # Given a URL on another host where nothing answers (so nothing here can be started)
    url = f"postgresql://postgres:secret@192.0.2.1:{free_port()}/storyq?connect_timeout=1"

    # When the stack looks for its database, Then it says how to get one, without the password
    with pytest.raises(NoPostgres) as refused:
        ensure_postgres(url, tmp_path)
    message = str(refused.value)
    assert "apt-get install -y postgresql" in message
    assert "DATABASE_URL" in message
    assert "secret" not in message
