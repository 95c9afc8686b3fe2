"""JSON request bodies, read after authentication.

FastAPI parses a declared body before it runs any dependency, so a malformed body would be a
422 even without a token. Routes here declare `Annotated[Model, Depends(json_body(Model))]`
instead, after the auth dependency: the token is checked first (401/403), then the body is
validated, strictly and in JSON mode (422). `request_body(Model)` documents it in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

# Every model read this way; openapi.py adds their schemas to the document's components.
DOCUMENTED: dict[str, type[BaseModel]] = {}


def parse(model: type[ModelT], body: bytes) -> ModelT:
    """The validated body, or the RequestValidationError every route answers with 422."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from exc


def json_body(model: type[ModelT]) -> Callable[[Request], Awaitable[ModelT]]:
    """A dependency that reads and validates the request body as `model`."""

    async def read(request: Request) -> ModelT:
        return parse(model, await request.body())

    return read


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting `model` as the required JSON body."""
    DOCUMENTED[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
