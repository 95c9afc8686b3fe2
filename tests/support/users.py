"""A signed-up user as the HTTP tests hold one (an id and an access token), and the tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from storyq_local.stack.tokens import access_token_claims, sign
from storyq_local.stack.users import ensure_user
from tests.support.sql import Db
from tests.support.stack import JWT_SECRET

# The `iss` of the tests' tokens (the local Supabase Auth's).
ISSUER = "http://127.0.0.1:54321/auth/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class ApiUser:
    id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def token_for(
    user_id: uuid.UUID,
    *,
    admin: bool = False,
    secret: str = JWT_SECRET,
    expires_in: int = 3600,
    **overrides: Any,
) -> str:
    """A Supabase-shaped HS256 access token; `overrides` replace or add claims."""
    claims = access_token_claims(user_id=user_id, issuer=ISSUER, expires_in=expires_in, admin=admin)
    claims.update(overrides)
    return sign(claims, secret)


def sign_up(db: Db, *, credits: int = 0, admin: bool = False) -> ApiUser:
    """A new user in `db`'s auth.users, granted `credits`, with a valid token."""
    user_id = uuid.uuid4()
    ensure_user(db.url, user_id)
    if credits:
        db.grant(user_id, credits)
    return ApiUser(id=user_id, token=token_for(user_id, admin=admin))
