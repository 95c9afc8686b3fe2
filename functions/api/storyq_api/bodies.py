"""JSON request bodies, read after authentication.

FastAPI parses a declared body before it runs any dependency, so a malformed body would be a
422 even without a token. Routes here declare `Annotated[Model, Depends(json_body(Model))]`
instead, after the auth dependency: the token is checked first (401/403), then the body is
validated, strictly and in JSON mode (422). `request_body(Model)` documents it in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

# Every model read this way; openapi.py adds their schemas to the document's components.
DOCUMENTED: dict[str, type[BaseModel]] = {}


def parse[ModelT: BaseModel](model: type[ModelT], body: bytes) -> ModelT:
    """The validated body, or the RequestValidationError every route answers with 422."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from exc


def json_body[ModelT: BaseModel](model: type[ModelT]) -> Callable[[Request], Awaitable[ModelT]]:
    """A dependency that reads and validates the request body as `model`."""

    async def read(request: Request) -> ModelT:
        return parse(model, await request.body())

    return read


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting `model` as the required JSON body."""
    DOCUMENTED[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# The most bytes one character takes in JSON: an astral code point escaped as a surrogate pair,
# "\ud83d\ude00" (what Python's json, requests and PHP's json_encode send by default).
ESCAPED_CHAR_BYTES = 12
# Room for the whitespace and key order a client may use around the fields.
BODY_SLACK_BYTES = 1024


def longest_body_bytes(model: type[BaseModel]) -> int:
    """The size of the longest valid `model` body in its most escaped JSON form: every string
    at its maximum length in characters at 12 bytes each, every number at its widest, plus
    keys, punctuation and BODY_SLACK_BYTES. Lengths in the contract are characters (code
    points), so the byte cap on bodies is derived from them, never the other way round."""
    schema = model.model_json_schema(by_alias=True)
    size = 2 + BODY_SLACK_BYTES
    for name, field in schema.get("properties", {}).items():
        size += len(name) + 4 + _widest_value(field)  # "name": value,
    return size


def _widest_value(field: dict[str, Any]) -> int:
    options = field.get("anyOf", [field])
    widths = [_widest_scalar(option) for option in options]
    return max(widths, default=_UNBOUNDED)


_UNBOUNDED = 64


def _widest_scalar(field: dict[str, Any]) -> int:
    if "maxLength" in field:
        return 2 + int(field["maxLength"]) * ESCAPED_CHAR_BYTES
    if field.get("type") in ("integer", "number"):
        bounds = [field.get(key) for key in ("minimum", "maximum")]
        return max((len(str(bound)) for bound in bounds if bound is not None), default=24)
    if field.get("type") in ("boolean", "null"):
        return 5
    return _UNBOUNDED
