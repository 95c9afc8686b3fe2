"""Fuzzing: schemathesis generates requests for every operation of the OpenAPI document the
served API publishes, and sends each with a user's token, an admin's token and a forged one.
No answer may be a 5xx, and every answer must match the document (status, content type,
headers, body schema)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.schemas import BaseSchema

from storyq_local.config import project_root
from storyq_local.stack.users import ensure_user
from tests.reliability import results
from tests.reliability.conftest import Stack, token_for
from tests.reliability.facts import rows

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25

_sent: dict[str, int] = {}


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{stack.api.url}/openapi.json")


@pytest.fixture(scope="module")
def fuzz_headers(stack: Stack) -> dict[str, dict[str, str]]:
    """A user with plenty of credits, an admin, and a token signed with the wrong secret."""
    user, admin = uuid.uuid4(), uuid.uuid4()
    for someone in (user, admin):
        ensure_user(stack.database_url, someone)
    rows(stack.database_url, "select public.grant_credits(%s, 10000) as b", (user,))
    forged = token_for(stack, user, admin=True, iss="https://evil.example/auth/v1")
    return {
        "user": {"Authorization": f"Bearer {token_for(stack, user)}"},
        "admin": {"Authorization": f"Bearer {token_for(stack, admin, admin=True)}"},
        "forged": {"Authorization": f"Bearer {forged}"},
    }


# The operations, as the committed document lists them (the served one is checked to match);
# schemathesis' own pytest integration (`from_fixture`) does not run under pytest 9.
COMMITTED = json.loads((project_root() / "functions" / "api" / "openapi.json").read_text())
OPERATIONS = [
    (method.upper(), path)
    for path, methods in COMMITTED["paths"].items()
    for method in methods
    if method in ("get", "post", "put", "patch", "delete")
]


def test_the_served_document_lists_the_committed_operations(api_schema: BaseSchema) -> None:
    # Given the served OpenAPI document, Then it has exactly the committed operations
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]  # an Err would raise here, as it should
    served = {(operation.method.upper(), operation.path) for operation in operations}
    assert served == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_without_5xx_and_as_documented(
    api_schema: BaseSchema,
    fuzz_headers: dict[str, dict[str, str]],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def generated(case: Case[Any]) -> None:
        # Given a generated request, When it is sent as a user, an admin and a forger,
        # Then no answer is a 5xx and each matches the OpenAPI document
        for who, headers in fuzz_headers.items():
            merged: dict[str, Any] = {**dict(case.headers or {}), **headers}
            case.call_and_validate(headers=merged, checks=CHECKS)
            key = f"{method} {path} {mode.value} as {who}"
            _sent[key] = _sent.get(key, 0) + 1

    try:
        generated()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("the operation has nothing a request could get wrong (no parameters)")


def test_fuzzing_summary() -> None:
    # Given the fuzzing above, Then record what it sent (it asserts on its own)
    operations = {" ".join(key.split()[:2]) for key in _sent}
    results.record(
        "fuzzing",
        injected=f"schemathesis {schemathesis.__version__}: generated requests for every "
        f"operation (up to {MAX_EXAMPLES} valid and {MAX_EXAMPLES} invalid examples each), "
        "each sent with a user token, an admin token and a forged token; checks: no 5xx, "
        "status code, content type, headers and body schema conform",
        runs=sum(_sent.values()),
        operations=len(operations),
        server_errors=0,
        schema_violations=0,
    )
