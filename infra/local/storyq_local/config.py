"""Settings of the local stack only (where the real Redis and PostgreSQL are, which ports)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout this package runs from (the folder that holds supabase/migrations)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "supabase" / "migrations").is_dir():
            return parent
    return Path.cwd()


class LocalSettings(BaseSettings):
    """Where `make dev` and the CLI find (or start) the services behind the emulators."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/storyq"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The API's port. The emulators listen where UPSTASH_REDIS_REST_URL and SUPABASE_URL point.
    port: int = 8000
    # Where embedded servers keep their data when no system server can be had.
    state_dir: Path = Path(".storyq")
