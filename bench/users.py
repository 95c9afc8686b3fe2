"""Benchmark users: rows in auth.users with credits, and their access tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg

from storyq_local.stack.tokens import access_token_claims, sign

ISSUER = "http://127.0.0.1/auth/v1"


@dataclass(frozen=True)
class BenchUser:
    id: uuid.UUID
    token: str

    @property
    def authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def create_users(database_url: str, count: int, *, credits: int, secret: str) -> list[BenchUser]:
    """`count` users as signing up would make them, each granted `credits` (one connection)."""
    ids = [uuid.uuid4() for _ in range(count)]
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into auth.users (id, aud, role, email, email_confirmed_at,"
            " raw_app_meta_data, raw_user_meta_data)"
            " values (%s, 'authenticated', 'authenticated', %s, now(),"
            ' \'{"provider":"email","providers":["email"]}\', \'{}\')',
            [(uid, f"{uid}@bench.storyq.local") for uid in ids],
        )
        cur.executemany(
            "select public.grant_credits(%s, %s, 'bench')", [(uid, credits) for uid in ids]
        )
    return [
        BenchUser(
            id=uid,
            token=sign(
                access_token_claims(user_id=uid, issuer=ISSUER, expires_in=3 * 3600), secret
            ),
        )
        for uid in ids
    ]


def cancel_pending(database_url: str) -> int:
    """Cancel and refund every pending job (what POST /api/admin/queue/empty does)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select jsonb_array_length(public.empty_story_queue())").fetchone()
    return int(row[0]) if row else 0
