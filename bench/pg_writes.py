"""What a stretch of work wrote to PostgreSQL: WAL bytes (pg_current_wal_lsn before and after),
split by the table each WAL record touches (pg_walinspect, on a cluster of the bench's own, so
no other database's WAL is in the window), the heap updates per table read from the same
records, and the cumulative statistics' row counters (pg_stat_user_tables).

The statistics lag: a backend reports its counters when it goes idle, at most once a second,
and one that could not report retries only after PGSTAT_IDLE_INTERVAL (10 s). `table_stats`
therefore reads them after SETTLE_SECONDS of quiet; the WAL records are exact at once.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg

TABLES = ("stories", "story_jobs")
SETTLE_SECONDS = 11.0
_REL = re.compile(r"rel \d+/\d+/(\d+)")


def install(database_url: str) -> None:
    """pg_walinspect in the bench's database (a contrib extension; superuser)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_walinspect")


def wal_lsn(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def table_stats(database_url: str, *, settle: bool = True) -> dict[str, dict[str, int]]:
    """n_tup_ins / n_tup_upd / n_tup_hot_upd of TABLES (after SETTLE_SECONDS of quiet)."""
    if settle:
        time.sleep(SETTLE_SECONDS)
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = conn.execute(
            "select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd from pg_stat_user_tables"
            " where schemaname = 'public' and relname = any(%s)",
            (list(TABLES),),
        ).fetchall()
    return {
        str(name): {"inserted": int(ins), "updated": int(upd), "hot_updated": int(hot)}
        for name, ins, upd, hot in found
    }


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        table: {key: after[table][key] - before[table].get(key, 0) for key in after[table]}
        for table in after
        if table in before
    }


@dataclass(frozen=True)
class WalWindow:
    """The WAL between two LSNs: total bytes, and by table (its TOAST table and indexes
    included; `other`: the rest, commit records and catalog included)."""

    total_bytes: int
    by_table: dict[str, dict[str, int]]

    def as_dict(self) -> dict[str, Any]:
        return {"total_bytes": self.total_bytes, "by_table": self.by_table}


def _owners(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str]]:
    """relfilenode -> (the public table it belongs to, what it is: heap, toast or index)."""
    found = conn.execute(
        "select c.oid, c.relfilenode, c.relname, n.nspname,"
        " (select i.indrelid from pg_index i where i.indexrelid = c.oid),"
        " (select o.oid from pg_class o where o.reltoastrelid = c.oid)"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where c.relfilenode <> 0"
    ).fetchall()
    by_oid = {row[0]: row for row in found}

    def owner(oid: int) -> tuple[str, str]:
        _, _, name, schema, index_of, toast_of = by_oid[oid]
        if index_of is not None and index_of in by_oid:
            table, part = owner(index_of)
            return table, "index" if part == "heap" else f"{part} index"
        if toast_of is not None and toast_of in by_oid:
            return owner(toast_of)[0], "toast"
        return (str(name) if schema == "public" else "other"), "heap"

    return {int(row[1]): owner(row[0]) for row in found}


def wal_window(database_url: str, start: str, end: str) -> WalWindow:
    """Bytes of the WAL records in [start, end), by table and part, with their counts of heap
    UPDATE and HOT_UPDATE records (one per row version written)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        owners = _owners(conn)
        row = conn.execute("select pg_wal_lsn_diff(%s, %s)::bigint", (end, start)).fetchone()
        assert row is not None
        total = row[0]
        records = conn.execute(
            "select resource_manager, record_type, record_length, fpi_length, block_ref"
            " from pg_get_wal_records_info(%s, %s)",
            (start, end),
        ).fetchall()
    by_table: dict[str, Counter[str]] = {}
    for manager, kind, length, fpi, block_ref in records:
        match = _REL.search(block_ref or "")
        table, part = owners.get(int(match.group(1)), ("other", "heap")) if match else ("other", "")
        if table not in TABLES:
            table = "other"
        counts = by_table.setdefault(table, Counter())
        counts["record_bytes"] += int(length)
        counts["full_page_image_bytes"] += int(fpi)
        counts["records"] += 1
        if part:
            counts[f"{part}_bytes"] += int(length)
        base = str(kind).split("+", 1)[0]  # UPDATE+INIT: the record also starts a page
        if manager == "Heap" and part == "heap" and base in ("UPDATE", "HOT_UPDATE"):
            counts[f"heap_{base.lower()}s"] += 1
    return WalWindow(
        total_bytes=int(total), by_table={t: dict(sorted(c.items())) for t, c in by_table.items()}
    )
