"""Dev tokens carry the claims Supabase Auth issues, so the API treats them like real ones."""

from __future__ import annotations

import uuid

import jwt
import pytest

from storyq.config import DEV_JWT_SECRET
from storyq_local.stack.tokens import access_token_claims, parse_duration, sign


def test_token_has_supabase_claims_and_verifies_with_the_secret() -> None:
    user = uuid.uuid4()
    token = sign(
        access_token_claims(
            user_id=user, issuer="http://127.0.0.1:54321/auth/v1", expires_in=3600, admin=True
        ),
        DEV_JWT_SECRET,
    )
    claims = jwt.decode(
        token,
        DEV_JWT_SECRET,
        algorithms=["HS256"],
        audience="authenticated",
        issuer="http://127.0.0.1:54321/auth/v1",
    )
    assert claims["sub"] == str(user)
    assert claims["role"] == "authenticated"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["app_metadata"]["role"] == "admin"


def test_a_plain_user_token_is_not_admin() -> None:
    claims = access_token_claims(user_id=uuid.uuid4(), issuer="x", expires_in=60)
    assert "role" not in claims["app_metadata"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1y", "soon", "0m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
