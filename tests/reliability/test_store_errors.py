"""How the store names PostgREST's failures: a dependency that is down or overloaded must be a
503 (StoreUnavailable), never an unexplained 500."""

from __future__ import annotations

import pytest
from postgrest.exceptions import APIError

from storyq.store.errors import StoreUnavailable, from_api_error


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("PGRST000", "Could not connect to the database"),
        ("PGRST001", "Could not connect due to an internal error"),
        ("57P01", "terminating connection due to administrator command"),
        ("08006", "connection failure"),
    ],
)
def test_connection_failures_are_unavailable(code: str, message: str) -> None:
    # Given PostgREST's answer that the database cannot be reached, Then it is a 503 error
    error = from_api_error(APIError({"code": code, "message": message}))
    assert isinstance(error, StoreUnavailable)


def test_a_pool_timeout_is_unavailable() -> None:
    # Given PostgREST timed out waiting for a pooled connection (it answers 504)
    error = from_api_error(
        APIError(
            {"code": "PGRST003", "message": "Timed out acquiring connection from connection pool."}
        )
    )
    # Then the store calls the database unavailable (503), as it does for a refused connection
    assert isinstance(error, StoreUnavailable)
