"""Bearer tokens: what is accepted, what is 401, and who is an admin (403 otherwise)."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest

from storyq.config import Settings
from storyq_local.stack.users import ensure_user
from tests.api.conftest import GENERATE_BODY, assert_problem, client_for, dead_url
from tests.conftest import JWT_SECRET
from tests.support.users import ISSUER, bearer, token_for

# The subject of the tokens below that should pass: a user who signed up (a valid token of a
# deleted account is refused; see test_contract_edges).
SIGNED_UP = uuid.uuid4()


@pytest.fixture(autouse=True)
def _signed_up(database_url: str) -> None:
    ensure_user(database_url, SIGNED_UP)


def _unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="storyq", error="invalid_token"'


async def test_a_valid_token_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me", headers=bearer(token_for(SIGNED_UP)))
    assert response.status_code == 200
    assert response.json() == {"userId": str(SIGNED_UP), "credits": 0, "isAdmin": False}


async def test_no_token_is_401_with_a_bare_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="storyq"'


async def test_another_scheme_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "....", "Bearer"])
async def test_garbage_is_401(client: httpx.AsyncClient, garbage: str) -> None:
    _unauthorized(await client.get("/api/me", headers=bearer(garbage)))


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(SIGNED_UP),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
        "iss": ISSUER,
    }
    claims.update(overrides)
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_alg_none_is_401(client: httpx.AsyncClient) -> None:
    token = jwt.encode(_claims(), key="", algorithm="none")
    _unauthorized(await client.get("/api/me", headers=bearer(token)))


async def test_alg_none_with_a_signature_stripped_from_a_real_token_is_401(
    client: httpx.AsyncClient,
) -> None:
    _, payload, _ = token_for(uuid.uuid4()).split(".")
    forged_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    _unauthorized(await client.get("/api/me", headers=bearer(f"{forged_header}.{payload}.")))


async def test_a_token_signed_with_another_secret_is_401(client: httpx.AsyncClient) -> None:
    token = token_for(uuid.uuid4(), secret="another-secret-of-at-least-thirty-two-bytes!")
    _unauthorized(await client.get("/api/me", headers=bearer(token)))


async def test_a_tampered_payload_is_401(client: httpx.AsyncClient) -> None:
    # Given a real token whose payload is swapped for one that claims admin
    header, payload, signature = token_for(uuid.uuid4()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["app_metadata"] = {"role": "admin"}
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _unauthorized(await client.get("/api/admin/queue", headers=bearer(tampered)))


async def test_another_hmac_algorithm_is_401(client: httpx.AsyncClient) -> None:
    token = jwt.encode(_claims(), JWT_SECRET, algorithm="HS384")
    _unauthorized(await client.get("/api/me", headers=bearer(token)))


async def test_an_expired_token_is_401(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    token = jwt.encode(_claims(iat=now - 7200, exp=now - 60), JWT_SECRET, algorithm="HS256")
    response = await client.get("/api/me", headers=bearer(token))
    _unauthorized(response)
    assert "expired" in response.json()["detail"]


async def test_a_token_just_past_exp_is_within_the_leeway(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    token = jwt.encode(_claims(iat=now - 3600, exp=now - 5), JWT_SECRET, algorithm="HS256")
    assert (await client.get("/api/me", headers=bearer(token))).status_code == 200


async def test_a_token_not_yet_valid_is_401(client: httpx.AsyncClient) -> None:
    token = jwt.encode(_claims(nbf=int(time.time()) + 300), JWT_SECRET, algorithm="HS256")
    _unauthorized(await client.get("/api/me", headers=bearer(token)))


@pytest.mark.parametrize("audience", ["anon", "service_role", ["other"]])
async def test_a_wrong_audience_is_401(client: httpx.AsyncClient, audience: object) -> None:
    token = jwt.encode(_claims(aud=audience), JWT_SECRET, algorithm="HS256")
    _unauthorized(await client.get("/api/me", headers=bearer(token)))


@pytest.mark.parametrize("missing", ["aud", "exp", "sub"])
async def test_a_missing_required_claim_is_401(client: httpx.AsyncClient, missing: str) -> None:
    claims = _claims()
    del claims[missing]
    _unauthorized(await client.get("/api/me", headers=bearer(jwt.encode(claims, JWT_SECRET))))


async def test_a_subject_that_is_not_a_user_id_is_401(client: httpx.AsyncClient) -> None:
    token = jwt.encode(_claims(sub="service-account"), JWT_SECRET, algorithm="HS256")
    _unauthorized(await client.get("/api/me", headers=bearer(token)))


async def test_the_issuer_is_checked_when_configured(settings: Settings) -> None:
    strict = settings.model_copy(update={"supabase_jwt_issuer": ISSUER})
    good = jwt.encode(_claims(), JWT_SECRET, algorithm="HS256")
    wrong = jwt.encode(_claims(iss="https://evil.example/auth/v1"), JWT_SECRET, algorithm="HS256")
    missing = _claims()
    del missing["iss"]
    async with client_for(strict) as http:
        assert (await http.get("/api/me", headers=bearer(good))).status_code == 200
        _unauthorized(await http.get("/api/me", headers=bearer(wrong)))
        _unauthorized(await http.get("/api/me", headers=bearer(jwt.encode(missing, JWT_SECRET))))


async def test_an_oversized_token_is_401_before_any_parsing(client: httpx.AsyncClient) -> None:
    token = jwt.encode(_claims(user_metadata={"pad": "x" * 9000}), JWT_SECRET, algorithm="HS256")
    assert len(token) > 8 * 1024
    _unauthorized(await client.get("/api/me", headers=bearer(token)))


async def test_hs256_is_refused_when_the_project_has_no_jwt_secret(settings: Settings) -> None:
    jwks_only = settings.model_copy(update={"supabase_jwt_secret": None})
    async with client_for(jwks_only) as http:
        response = await http.get("/api/me", headers=bearer(token_for(uuid.uuid4())))
    _unauthorized(response)


async def test_an_asymmetric_token_is_503_when_the_keys_cannot_be_fetched(
    settings: Settings,
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k1"})
    async with client_for(settings.model_copy(update={"supabase_jwks_url": dead_url()})) as http:
        response = await http.get("/api/me", headers=bearer(token))
    assert_problem(response, 503, "auth_unavailable")


@pytest.mark.parametrize("path", ["/api/generate", "/api/admin/queue/clean", "/api/admin/credits"])
async def test_authentication_comes_before_body_validation(
    client: httpx.AsyncClient, path: str
) -> None:
    # Neither an invalid nor an unreadable body tells a caller without a token anything
    for body in (b'{"nonsense": true}', b"{not json"):
        response = await client.post(
            path, content=body, headers={**bearer("x.y.z"), "Content-Type": "application/json"}
        )
        assert response.status_code == 401, (path, body)


async def test_admins_get_403_not_422_for_a_user_token_with_a_bad_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/admin/queue/clean", content=b"{not json", headers=bearer(token_for(SIGNED_UP))
    )
    assert_problem(response, 403, "forbidden")


async def test_user_tokens_get_403_on_admin_endpoints(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/admin/queue", headers=bearer(token_for(SIGNED_UP)))
    assert_problem(response, 403, "forbidden")


async def test_admin_tokens_and_the_service_role_key_are_admins(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = bearer(token_for(SIGNED_UP, admin=True))
    service = bearer(settings.supabase_service_role_key.get_secret_value())
    assert (await client.get("/api/admin/queue", headers=admin)).status_code == 200
    assert (await client.get("/api/admin/queue", headers=service)).status_code == 200


async def test_admin_in_user_metadata_is_not_admin(client: httpx.AsyncClient) -> None:
    # user_metadata is writable by the user; only app_metadata is the project's word
    token = token_for(SIGNED_UP, user_metadata={"role": "admin"})
    response = await client.get("/api/admin/queue", headers=bearer(token))
    assert_problem(response, 403, "forbidden")


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/health")).status_code == 200


async def test_every_other_endpoint_needs_a_token(client: httpx.AsyncClient) -> None:
    job = uuid.uuid4()
    calls = [
        ("POST", "/api/generate"),
        ("GET", f"/api/job/{job}"),
        ("DELETE", f"/api/job/{job}"),
        ("GET", "/api/jobs"),
        ("GET", f"/api/story/{job}"),
        ("GET", "/api/me"),
        ("GET", "/api/admin/queue"),
        ("POST", "/api/admin/queue/clean"),
        ("POST", "/api/admin/queue/empty"),
        ("POST", f"/api/admin/job/{job}/retry"),
        ("POST", "/api/admin/credits"),
    ]
    for method, path in calls:
        body = GENERATE_BODY if method == "POST" else None
        response = await client.request(method, path, json=body)
        assert response.status_code == 401, (method, path, response.text)
