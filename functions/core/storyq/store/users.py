"""Accounts: whether a user still exists in auth.users (Supabase Auth owns the table)."""

from __future__ import annotations

from uuid import UUID

from postgrest import AsyncPostgrestClient

from storyq.store._rpc import call_bool


class UserStore:
    """Questions about accounts, through the service-role PostgREST client."""

    def __init__(self, db: AsyncPostgrestClient) -> None:
        self._db = db

    async def exists(self, user_id: UUID) -> bool:
        """True while `user_id` is in auth.users; False once the account is deleted.

        Raises StoreUnavailable when the database cannot be reached.
        """
        return await call_bool(self._db, "user_exists", {"p_user_id": user_id})
