"""The one place the store talks to PostgREST: an RPC call with its errors translated.

Arguments are made JSON-ready here (UUIDs and datetimes as strings), and every failure leaves
as a `StoreError`: a domain refusal from the SQL function, or `StoreUnavailable` when the
database or the network is down.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import httpx
from postgrest import AsyncPostgrestClient
from postgrest.exceptions import APIError
from pydantic import BaseModel, TypeAdapter

from storyq.store.errors import StoreError, StoreUnavailable, from_api_error


def _json_ready(value: object) -> object:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def call(db: AsyncPostgrestClient, function: str, params: Mapping[str, object]) -> Any:
    """`POST /rest/v1/rpc/<function>` with named arguments; the decoded JSON result."""
    body = {name: _json_ready(value) for name, value in params.items()}
    try:
        # postgrest-py annotates params as dict[str, str]; any JSON value is what it sends.
        response = await db.rpc(function, cast(dict[str, str], body)).execute()
    except APIError as exc:
        raise from_api_error(exc) from exc
    except httpx.TransportError as exc:
        raise StoreUnavailable(f"{function}: {exc.__class__.__name__}") from exc
    return response.data


async def call_model[ModelT: BaseModel](
    db: AsyncPostgrestClient, function: str, params: Mapping[str, object], model: type[ModelT]
) -> ModelT:
    """An RPC whose jsonb object result is parsed into `model`."""
    return model.model_validate(await call(db, function, params))


@functools.cache
def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    # Building an adapter compiles a validator: once per model, not once per call.
    return TypeAdapter(list[model])  # type: ignore[valid-type]


async def call_models[ModelT: BaseModel](
    db: AsyncPostgrestClient, function: str, params: Mapping[str, object], model: type[ModelT]
) -> list[ModelT]:
    """An RPC whose jsonb array result is parsed into a list of `model`."""
    rows: list[ModelT] = _list_adapter(model).validate_python(await call(db, function, params))
    return rows


async def call_int(db: AsyncPostgrestClient, function: str, params: Mapping[str, object]) -> int:
    result = await call(db, function, params)
    if not isinstance(result, int) or isinstance(result, bool):
        raise StoreError(f"{function} returned {result!r}, not an integer")
    return result


async def call_bool(db: AsyncPostgrestClient, function: str, params: Mapping[str, object]) -> bool:
    result = await call(db, function, params)
    if not isinstance(result, bool):
        raise StoreError(f"{function} returned {result!r}, not a boolean")
    return result
