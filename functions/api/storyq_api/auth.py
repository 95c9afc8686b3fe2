"""Who the caller is, as FastAPI dependencies: any verified bearer, a signed-in user, an admin.

Tokens are verified in `tokens.TokenVerifier` (built once per app, in Services).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from storyq_api.deps import ServicesDep
from storyq_api.errors import Forbidden, Unauthorized
from storyq_api.tokens import Principal


@dataclass(frozen=True)
class User:
    """A signed-in user (never the service role): the owner of jobs, stories and credits."""

    id: uuid.UUID
    is_admin: bool


_bearer = HTTPBearer(auto_error=False, description="A Supabase access token")


async def authenticated(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Any verified caller whose account exists, the service role included (it has none)."""
    if credentials is None:
        raise Unauthorized("a bearer token is required", missing=True)
    principal = await services.verifier.verify(credentials.credentials)
    if principal.user_id is not None:
        await services.accounts.require(principal.user_id)
    return principal


Caller = Annotated[Principal, Depends(authenticated)]


async def current_user(caller: Caller) -> User:
    """The signed-in user; the service role is refused (it owns no jobs)."""
    if caller.user_id is None:
        raise Forbidden("the service role acts for no user; use the admin endpoints")
    return User(id=caller.user_id, is_admin=caller.is_admin)


async def current_admin(caller: Caller) -> Principal:
    """An administrator or the service role; any other valid token is 403."""
    if not caller.is_admin:
        raise Forbidden("this endpoint is for administrators")
    return caller


CurrentUser = Annotated[User, Depends(current_user)]


async def within_request_limit(user: CurrentUser, services: ServicesDep, request: Request) -> None:
    """The per-user limit on every user request but POST /api/generate (which has its own);
    every answer then carries its RateLimit-* headers."""
    await services.request_limiter.enforce(str(user.id), state=request.state)
