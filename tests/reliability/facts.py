"""What the database says happened: job rows, the audit of every job transition and story write
(triggers this suite installs on its own scratch database), and the money invariants.

Postgres is the source of truth, so every promise is checked here, not from what the API said.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

TERMINAL = ("completed", "failed", "cancelled")

# Test instrumentation, not product schema: one row per job status/attempt change and per
# story content write, stamped with clock_timestamp() (the moment, not the transaction start).
AUDIT_SQL = """
create schema if not exists reliability;
create table if not exists reliability.job_events (
  id bigint generated always as identity primary key,
  job_id uuid not null,
  attempt integer not null,
  new_status text not null,
  at timestamptz not null default clock_timestamp()
);
create table if not exists reliability.story_writes (
  id bigint generated always as identity primary key,
  story_id uuid not null,
  at timestamptz not null default clock_timestamp()
);
create or replace function reliability.record_job_event() returns trigger
language plpgsql as $$
begin
  if tg_op = 'INSERT' or new.status is distinct from old.status
     or new.attempts is distinct from old.attempts then
    insert into reliability.job_events (job_id, attempt, new_status)
    values (new.id, new.attempts, new.status);
  end if;
  return new;
end $$;
create or replace function reliability.record_story_write() returns trigger
language plpgsql as $$
begin
  insert into reliability.story_writes (story_id) values (new.id);
  return new;
end $$;
drop trigger if exists reliability_job_events on public.story_jobs;
create trigger reliability_job_events after insert or update on public.story_jobs
  for each row execute function reliability.record_job_event();
drop trigger if exists reliability_story_writes on public.stories;
create trigger reliability_story_writes after update on public.stories
  for each row when ((new.status = 'ready' and old.status is distinct from 'ready')
                     or (old.status = 'ready' and new.content is distinct from old.content))
  execute function reliability.record_story_write();
"""


def install_audit(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(AUDIT_SQL)


def rows(
    database_url: str, query: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row, connect_timeout=5) as conn:
        return list(conn.execute(query, params).fetchall())


def jobs(database_url: str, job_ids: Iterable[uuid.UUID | str]) -> list[dict[str, Any]]:
    """The job rows with their refund count, in no particular order."""
    return rows(
        database_url,
        "select j.*, (select count(*) from public.credit_ledger l"
        "  where l.job_id = j.id and l.kind = 'refund') as refunds,"
        " (select count(*) from public.credit_ledger l"
        "  where l.job_id = j.id and l.kind = 'debit') as debits"
        " from public.story_jobs j where j.id = any(%s)",
        ([str(job_id) for job_id in job_ids],),
    )


def all_terminal(database_url: str, job_ids: Sequence[uuid.UUID | str]) -> bool:
    found = jobs(database_url, job_ids)
    return len(found) == len(job_ids) and all(row["status"] in TERMINAL for row in found)


def pending_count(database_url: str) -> int:
    [row] = rows(
        database_url,
        "select count(*) as n from public.story_jobs where status in ('pending', 'processing')",
    )
    return int(row["n"])


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime
    # What the attempt ended as: completed, or pending/failed when its worker was lost.
    outcome: str = "completed"


def most_at_once(intervals: Iterable[Interval]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    edges: list[tuple[datetime, int]] = []
    for interval in intervals:
        edges += [(interval.start, 1), (interval.end, -1)]
    edges.sort(key=lambda edge: (edge[0], edge[1]))
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def processing_intervals(database_url: str, job_ids: Sequence[uuid.UUID | str]) -> list[Interval]:
    """Every attempt's time in `processing`, from the audit: from its start to the job's next
    transition (finished, handed back, or reaped after its worker died)."""
    events = rows(
        database_url,
        "select job_id, new_status, at,"
        " lead(at) over (partition by job_id order by id) as next_at,"
        " lead(new_status) over (partition by job_id order by id) as next_status"
        " from reliability.job_events where job_id = any(%s)",
        ([str(job_id) for job_id in job_ids],),
    )
    return [
        Interval(event["at"], event["next_at"], event["next_status"])
        for event in events
        if event["new_status"] == "processing" and event["next_at"] is not None
    ]


def row_intervals(database_url: str, job_ids: Sequence[uuid.UUID | str]) -> list[Interval]:
    """started_at → finished_at of the job rows (the last attempt of each job)."""
    return [
        Interval(row["started_at"], row["finished_at"])
        for row in jobs(database_url, job_ids)
        if row["started_at"] is not None and row["finished_at"] is not None
    ]


def story_writes(database_url: str, job_ids: Sequence[uuid.UUID | str]) -> dict[str, int]:
    """How many times each job's story got its finished text (became ready), or had its text
    changed once ready: 1 for a completed job, 0 otherwise. The text streamed while the
    story is written does not count."""
    found = rows(
        database_url,
        "select j.id::text as job_id, count(w.id) as writes from public.story_jobs j"
        " left join reliability.story_writes w on w.story_id = j.story_id"
        " where j.id = any(%s) group by j.id",
        ([str(job_id) for job_id in job_ids],),
    )
    return {row["job_id"]: int(row["writes"]) for row in found}


@dataclass(frozen=True)
class Ledger:
    """The money facts of the whole database (job rows may have been cleaned by an admin, so
    debits are matched to jobs per scenario, in `assert_jobs_charged_once`)."""

    users_out_of_balance: int
    negative_balances: int
    double_debits: int
    double_refunds: int
    unrefunded_failures: int
    refunds_of_live_jobs: int
    stories_with_two_jobs: int


def ledger(database_url: str) -> Ledger:
    [row] = rows(
        database_url,
        """
        select
          (select count(*) from public.credit_balances b
            where b.balance <> coalesce((select sum(amount) from public.credit_ledger l
                                         where l.user_id = b.user_id), 0)) as out_of_balance,
          (select count(*) from public.credit_balances where balance < 0) as negative,
          (select count(*) from (select job_id from public.credit_ledger where kind = 'debit'
                                 group by job_id having count(*) > 1) d) as double_debits,
          (select count(*) from (select job_id from public.credit_ledger where kind = 'refund'
                                 group by job_id having count(*) > 1) r) as double_refunds,
          (select count(*) from public.story_jobs j where j.status in ('failed', 'cancelled')
             and j.cost > 0 and not exists (select from public.credit_ledger l
               where l.job_id = j.id and l.kind = 'refund')) as unrefunded,
          (select count(*) from public.story_jobs j where j.status not in ('failed', 'cancelled')
             and exists (select from public.credit_ledger l
               where l.job_id = j.id and l.kind = 'refund')) as refunds_live,
          (select count(*) from (select story_id from public.story_jobs group by story_id
                                 having count(*) > 1) s) as shared_stories
        """,
    )
    return Ledger(
        users_out_of_balance=int(row["out_of_balance"]),
        negative_balances=int(row["negative"]),
        double_debits=int(row["double_debits"]),
        double_refunds=int(row["double_refunds"]),
        unrefunded_failures=int(row["unrefunded"]),
        refunds_of_live_jobs=int(row["refunds_live"]),
        stories_with_two_jobs=int(row["shared_stories"]),
    )


def assert_books_balance(database_url: str) -> Ledger:
    """Ledger sums == balances, none negative, one debit and at most one refund per job,
    a refund exactly when a job failed or was cancelled, one job per story."""
    books = ledger(database_url)
    assert books == Ledger(0, 0, 0, 0, 0, 0, 0), books
    return books


def assert_jobs_charged_once(
    database_url: str, job_ids: Sequence[uuid.UUID | str], *, cost: int = 1
) -> list[dict[str, Any]]:
    """Each of these jobs exists, carries one debit of `cost`, and a refund only if it failed
    or was cancelled; its rows."""
    found = jobs(database_url, job_ids)
    assert len(found) == len(set(map(str, job_ids))), "a job the API accepted is missing"
    for row in found:
        assert (row["debits"], row["cost"]) == (1, cost), row
        expected_refunds = 1 if row["status"] in ("failed", "cancelled") else 0
        assert row["refunds"] == expected_refunds, row
        assert row["refunded"] == bool(expected_refunds), row
    return found


def user_money(database_url: str, user_id: uuid.UUID) -> dict[str, int]:
    """A user's balance, granted credits, debit count and refund count."""
    [row] = rows(
        database_url,
        "select public.credit_balance(%(u)s) as balance,"
        " (select coalesce(sum(amount), 0) from public.credit_ledger"
        "   where user_id = %(u)s and kind in ('grant', 'signup')) as granted,"
        " (select count(*) from public.credit_ledger where user_id = %(u)s and kind = 'debit')"
        "   as debits,"
        " (select count(*) from public.credit_ledger where user_id = %(u)s and kind = 'refund')"
        "   as refunds,"
        " (select count(*) from public.story_jobs where user_id = %(u)s) as jobs",
        {"u": user_id},
    )
    return {key: int(value) for key, value in row.items()}


def balance(database_url: str, user_id: uuid.UUID) -> int:
    [row] = rows(database_url, "select public.credit_balance(%s) as b", (user_id,))
    return int(row["b"])


def finished_job_ids(database_url: str) -> set[str]:
    """Every job Postgres has finished (completed, failed, cancelled)."""
    found = rows(
        database_url,
        "select id::text as id from public.story_jobs where status = any(%s)",
        (list(TERMINAL),),
    )
    return {row["id"] for row in found}


def redis_residue(client: Any, job_ids: set[str]) -> dict[str, list[str]]:
    """Every Redis key, sorted-set member or hash field that still names one of `job_ids`, by
    key: scans the whole keyspace, whatever the key prefix (rate-limit windows name users, not
    jobs, and are no residue)."""
    residue: dict[str, list[str]] = {}
    for raw_key in client.scan_iter("*", count=1000):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        kind = client.type(raw_key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "zset":
            names = [_text(m) for m in client.zrange(raw_key, 0, -1)]
        elif kind == "hash":
            names = [_text(f).rsplit(":", 1)[0] for f in client.hkeys(raw_key)]
        else:
            names = [key]
        hits = sorted({name for name in names if any(job in name for job in job_ids)})
        if hits:
            residue[key] = hits
    return residue


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
