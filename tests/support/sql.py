"""Direct SQL on a test database: what a worker or Supabase Auth would do, for tests that need a
job in a given state without running one."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

# Db.start stands in for a worker on the session's shared database, which holds every API
# test's jobs: its starts are not held back by the global cap (tested in test_store_admin), and
# count other attempts as live for an hour, so they never take another test's job away.
START_ANY_CAP = 1_000_000
START_LIVE_SECONDS = 3600.0


class Db:
    """Direct SQL on the scratch database: what a worker or Supabase Auth would do."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.run(query, params)
        return rows[0][0] if rows else None

    def grant(self, user_id: uuid.UUID, amount: int) -> None:
        self.run("select public.grant_credits(%s, %s)", (user_id, amount))

    def set_tier(self, user_id: uuid.UUID, tier: str | None) -> None:
        """What an operator (or the product's backend) does to put a user on a plan: set
        `app_metadata.tier` (None removes it: the default plan)."""
        self.run(
            "update auth.users set raw_app_meta_data = case when %s::text is null"
            " then coalesce(raw_app_meta_data, '{}') - 'tier'"
            " else coalesce(raw_app_meta_data, '{}') || jsonb_build_object('tier', %s::text) end"
            " where id = %s",
            (tier, tier, user_id),
        )

    def balance(self, user_id: uuid.UUID) -> int:
        return int(self.value("select public.credit_balance(%s)", (user_id,)))

    def job_status(self, job_id: str) -> str:
        return str(self.value("select status from public.story_jobs where id = %s", (job_id,)))

    def fence(self, job_id: str) -> int:
        """The token of the job's next (pending) or running attempt."""
        return int(self.value("select fence from public.story_jobs where id = %s", (job_id,)))

    def start(self, job_id: str, *, words: int | None = None) -> None:
        """pending → processing under the job's current fence, optionally with progress."""
        fence = self.fence(job_id)
        started = self.value(
            "select public.start_story_job(%s, %s, %s, %s)",
            (job_id, fence, START_ANY_CAP, START_LIVE_SECONDS),
        )
        assert started["started"], started
        if words is not None:
            self.run("select public.heartbeat_story_job(%s, %s, %s)", (job_id, fence, words))

    def write(self, job_id: str, text_from: int, text: str) -> None:
        """The running attempt streams `text` into its story at character `text_from`."""
        write = {
            "job_id": job_id,
            "fence": self.fence(job_id),
            "text_from": text_from,
            "text": text,
        }
        self.run("select public.write_story_texts(%s)", (Jsonb([write]),))

    def complete(self, job_id: str, content: str, result: dict[str, Any]) -> None:
        self.run(
            "select public.complete_story_job(%s, %s, %s, null, %s)",
            (job_id, self.fence(job_id), content, Jsonb(result)),
        )

    def record_usage(
        self,
        job_id: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
        estimated: bool = False,
    ) -> None:
        """The running attempt records what it used (as the worker does before it completes)."""
        usage = {
            "job_id": job_id,
            "fence": self.fence(job_id),
            "model": "gpt-4o-mini",
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost_usd,
            "estimated": estimated,
        }
        written = self.value("select public.record_story_job_usage(%s)", (Jsonb([usage]),))
        assert written == 1, written

    def retry(self, job_id: str, *, code: str = "upstream_timeout") -> None:
        """The running attempt fails, retryable: the job waits again under a new fence."""
        self.run(
            "select public.fail_story_job(%s, %s, %s, 'try again', true)",
            (job_id, self.fence(job_id), code),
        )

    def fail(self, job_id: str, *, code: str = "generator_error", message: str = "boom") -> None:
        self.run(
            "select public.fail_story_job(%s, %s, %s, %s, false)",
            (job_id, self.fence(job_id), code, message),
        )
