"""A signed-up user as the HTTP tests hold one: an id and an access token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class ApiUser:
    id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)
