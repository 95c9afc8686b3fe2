"""Dev access tokens shaped like the ones Supabase Auth issues, signed with the local secret."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'90s', '15m', '1h', '7d' or plain seconds → seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"not a duration: {text!r} (try 3600, 15m, 1h or 7d)")
    return int(number) * _UNITS[unit]


def access_token_claims(
    *, user_id: uuid.UUID, issuer: str, expires_in: int, admin: bool = False, now: int | None = None
) -> dict[str, Any]:
    """The claims of a Supabase access token for an email user."""
    issued_at = int(time.time()) if now is None else now
    app_metadata: dict[str, Any] = {"provider": "email", "providers": ["email"]}
    if admin:
        app_metadata["role"] = "admin"
    return {
        "iss": issuer,
        "sub": str(user_id),
        "aud": "authenticated",
        "exp": issued_at + expires_in,
        "iat": issued_at,
        "email": f"{user_id}@storyq.local",
        "phone": "",
        "app_metadata": app_metadata,
        "user_metadata": {},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": issued_at}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }


def sign(claims: dict[str, Any], secret: str) -> str:
    """HS256, as legacy Supabase projects and the local stack sign."""
    return jwt.encode(claims, secret, algorithm="HS256")
