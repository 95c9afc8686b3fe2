"""Whether a verified token's subject still has an account.

A Supabase access token stays valid until it expires (an hour by default) after its user is
deleted from auth.users. A deleted account gets one answer on every route: 401
`user_not_found` (errors.AccountGone). Answering it costs a lookup, so a container remembers the
users it found for `REMEMBER_SECONDS`: a deletion is noticed within that time, and at once by
POST /api/generate, whose debit needs the account.
"""

from __future__ import annotations

from uuid import UUID

from cachetools import TTLCache

from storyq.store import UserStore
from storyq_api.errors import AccountGone

REMEMBER_SECONDS = 60.0
MAX_REMEMBERED = 10_000


class AccountCheck:
    """One per app (per Lambda container): the accounts seen to exist lately."""

    def __init__(
        self,
        users: UserStore,
        *,
        remember_seconds: float = REMEMBER_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        self._users = users
        self._seen: TTLCache[UUID, bool] = TTLCache(maxsize=max_remembered, ttl=remember_seconds)

    async def require(self, user_id: UUID) -> None:
        """Return when `user_id` has an account.

        Raises AccountGone (401) when it has none, StoreUnavailable (503) when the database
        cannot say.
        """
        if user_id in self._seen:
            return
        if not await self._users.exists(user_id):
            raise AccountGone()
        self._seen[user_id] = True

    def forget(self, user_id: UUID) -> None:
        """The store found no such user: ask again next time."""
        self._seen.pop(user_id, None)
