"""Credits: granting them and reading a balance (debits and refunds happen inside the job
transitions, see jobs.py)."""

from __future__ import annotations

from uuid import UUID

from postgrest import AsyncPostgrestClient

from storyq.store._rpc import call_int


class CreditStore:
    """Credit balances and the ledger, through the service-role PostgREST client."""

    def __init__(self, db: AsyncPostgrestClient) -> None:
        self._db = db

    async def grant(self, user_id: UUID, amount: int, *, reason: str = "grant") -> int:
        """Add credits (recorded in the ledger); the new balance.

        Raises InvalidAmount (amount <= 0), UserNotFound.
        """
        params = {"p_user_id": user_id, "p_amount": amount, "p_reason": reason}
        return await call_int(self._db, "grant_credits", params)

    async def balance(self, user_id: UUID) -> int:
        """The user's balance (0 for a user never credited)."""
        return await call_int(self._db, "credit_balance", {"p_user_id": user_id})
