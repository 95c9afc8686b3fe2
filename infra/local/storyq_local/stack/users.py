"""Local stand-ins for what Supabase Auth does: users in auth.users and their access tokens."""

from __future__ import annotations

import sys
import uuid

import psycopg

from storyq.config import Settings
from storyq_local.stack.tokens import access_token_claims, sign


def ensure_user(database_url: str, user_id: uuid.UUID) -> bool:
    """Insert the user into auth.users as signing up would; False when it already existed."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "insert into auth.users (id, aud, role, email, email_confirmed_at,"
            " raw_app_meta_data, raw_user_meta_data)"
            " values (%s, 'authenticated', 'authenticated', %s, now(),"
            ' \'{"provider":"email","providers":["email"]}\', \'{}\')'
            " on conflict (id) do nothing returning id",
            (user_id, f"{user_id}@storyq.local"),
        ).fetchone()
    return row is not None


def issuer(settings: Settings) -> str:
    """The `iss` Supabase Auth writes: the project's auth URL unless configured otherwise."""
    return settings.supabase_jwt_issuer or f"{settings.supabase_url.rstrip('/')}/auth/v1"


def dev_token(
    settings: Settings,
    *,
    database_url: str | None,
    user_id: uuid.UUID,
    admin: bool = False,
    expires_in: int = 3600,
) -> str:
    """A signed access token; the user is created in auth.users first when a database is given."""
    secret = settings.supabase_jwt_secret
    if secret is None:
        raise SystemExit("storyq token signs with SUPABASE_JWT_SECRET, which is not set")
    if database_url is not None:
        try:
            ensure_user(database_url, user_id)
        except psycopg.Error as exc:
            print(f"warning: could not record the user in auth.users: {exc}", file=sys.stderr)
    claims = access_token_claims(
        user_id=user_id, issuer=issuer(settings), expires_in=expires_in, admin=admin
    )
    return sign(claims, secret.get_secret_value())
