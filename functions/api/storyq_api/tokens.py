"""Supabase access tokens, verified with PyJWT, and the principal each one speaks for.

The token header's `alg` picks the key, from a fixed allow-list: HS256 with SUPABASE_JWT_SECRET
(legacy projects, the local stack), ES256/RS256 with the project's JWKS (fetched by PyJWKClient,
cached). `none`, any other algorithm, or HS256 when no secret is configured is refused, so a
token cannot choose a weaker check than the project uses (algorithm confusion). Claims: aud
`authenticated`, exp and nbf with a small leeway, `sub` a UUID, `iss` when configured.

Admin is `app_metadata.role == "admin"`, or the service-role key itself as the bearer (what
operators' scripts and the Supabase dashboard hold).
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from storyq.config import Settings
from storyq_api.errors import AuthUnavailable, Unauthorized

MAX_TOKEN_BYTES = 8 * 1024
LEEWAY_SECONDS = 30
AUDIENCE = "authenticated"
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})

Role = Literal["user", "admin", "service"]


@dataclass(frozen=True)
class Principal:
    """Whoever a valid bearer speaks for. `user_id` is None only for the service role."""

    user_id: uuid.UUID | None
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role in ("admin", "service")


class TokenVerifier:
    """Verifies bearer tokens for one project; built once per app (the JWKS cache lives here)."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.supabase_jwt_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        self._service_key = settings.supabase_service_role_key.get_secret_value()
        self._issuer = settings.supabase_jwt_issuer
        self._jwks_url = settings.jwks_url
        self._timeout = settings.http_timeout_seconds
        self._jwks: jwt.PyJWKClient | None = None

    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            # Built on first use: HS256-only projects never fetch anything.
            self._jwks = jwt.PyJWKClient(
                self._jwks_url, cache_jwk_set=True, lifespan=300, timeout=self._timeout
            )
        return self._jwks

    async def verify(self, token: str) -> Principal:
        """The user the token speaks for; Unauthorized when it proves nothing."""
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise Unauthorized("the bearer token is too large")
        if self._service_key and hmac.compare_digest(token.encode(), self._service_key.encode()):
            return Principal(user_id=None, role="service")
        claims = await self._decode(token)
        return _principal_from_claims(claims)

    async def _decode(self, token: str) -> dict[str, Any]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            key = await self._key_for(token, algorithm)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=AUDIENCE,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "aud"], "verify_iss": bool(self._issuer)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable("the signing keys cannot be fetched right now") from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # TypeError/ValueError: a key of another type than the algorithm needs.
            raise Unauthorized("the token is not valid") from exc
        return claims

    async def _key_for(self, token: str, algorithm: object) -> Any:
        if algorithm == "HS256" and self._secret is not None:
            return self._secret
        if algorithm in ASYMMETRIC_ALGORITHMS:
            # PyJWKClient is blocking (urllib); keep the event loop free while it fetches.
            # The PyJWK itself is returned, not its raw key: PyJWT then insists that the
            # token's alg is the key's own algorithm (an EC token cannot use an RSA kid).
            return await asyncio.to_thread(self._jwks_client().get_signing_key_from_jwt, token)
        raise jwt.InvalidAlgorithmError(f"algorithm {algorithm!r} is not accepted")


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise Unauthorized("the token's subject is not a user") from exc
    app_metadata = claims.get("app_metadata")
    is_admin = isinstance(app_metadata, dict) and app_metadata.get("role") == "admin"
    return Principal(user_id=user_id, role="admin" if is_admin else "user")
