"""JWT authentication for the Supabase emulator, as PostgREST (behind Supabase's gateway) does it.

Owns reading the token (`Authorization: Bearer`, else the `apikey` header), verifying it
(HS256 with the project's secret, exp/iat/nbf with 30 s leeway, no audience), PostgREST's 401
answers (PGRST301 with its messages and `WWW-Authenticate`; PGRST302 when no token at all), and
the role the request runs as (the `role` claim, anon when absent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from storyq_local.emulators.supabase.errors import PostgrestError

JWT_LEEWAY_S = 30

_JWT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "JWT expired"),
    (jwt.InvalidSignatureError, "JWT cryptographic operation failed"),
    (jwt.InvalidAlgorithmError, "Wrong or unsupported encoding algorithm"),
)


@dataclass(frozen=True)
class Caller:
    """Who the request runs as: the JWT's role and claims."""

    role: str
    claims: str

    @property
    def authenticated(self) -> bool:
        return self.role != "anon"


def _jwt_message(exc: jwt.InvalidTokenError, token: str) -> str:
    for kind, message in _JWT_ERRORS:
        if isinstance(exc, kind):
            return message
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "JWT issued at future" if "(iat)" in str(exc) else "JWT not yet valid"
    if isinstance(exc, jwt.DecodeError) and token.count(".") != 2:
        return f"Expected 3 parts in JWT; got {token.count('.') + 1}"
    return "JWT couldn't be decoded"


def _jwt_error(message: str) -> PostgrestError:
    header = f'Bearer error="invalid_token", error_description="{message}"'
    return PostgrestError(401, "PGRST301", message, headers={"WWW-Authenticate": header})


def authenticate(headers: Mapping[str, str], secret: str) -> Caller:
    """The caller named by `Authorization: Bearer <jwt>` (else `apikey`), or a 401."""
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    token = bearer.strip() if scheme.lower() == "bearer" else headers.get("apikey")
    if token is None:
        raise PostgrestError(
            401,
            "PGRST302",
            "Anonymous access is disabled",
            hint="Send the project's anon or service_role key as apikey and bearer token.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not token:
        raise _jwt_error("Empty JWT is sent in Authorization header")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=JWT_LEEWAY_S, options={"verify_aud": False}
        )
    except jwt.InvalidTokenError as exc:
        raise _jwt_error(_jwt_message(exc, token)) from exc
    role = claims.get("role") or "anon"
    if not isinstance(role, str):
        raise _jwt_error("Parsing claims failed")
    return Caller(role=role, claims=json.dumps(claims))
