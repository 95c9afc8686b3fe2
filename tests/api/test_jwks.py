"""Asymmetric tokens (new Supabase projects): RS256/ES256 verified with the project's JWKS,
served here by a tiny local server; the public key can never be used as an HMAC secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storyq.config import Settings
from storyq_local.stack.servers import ThreadedServer, serve_in_thread
from storyq_local.stack.users import ensure_user
from tests.api.conftest import assert_problem, client_for
from tests.support.users import ISSUER, bearer

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(public_key: Any, *, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(public_key))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@dataclass
class JwksServer:
    server: ThreadedServer
    fetches: list[float]

    @property
    def url(self) -> str:
        return f"{self.server.url}/auth/v1/.well-known/jwks.json"


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    keys = {
        "keys": [
            _jwk(RSA_KEY.public_key(), kid="rsa-1", alg="RS256"),
            _jwk(EC_KEY.public_key(), kid="ec-1", alg="ES256"),
        ]
    }
    fetches: list[float] = []

    async def jwks(_: Request) -> JSONResponse:
        fetches.append(time.time())
        return JSONResponse(keys)

    app = Starlette(routes=[Route("/auth/v1/.well-known/jwks.json", jwks)])
    server = serve_in_thread(app)
    yield JwksServer(server=server, fetches=fetches)
    server.stop()


@pytest.fixture
def jwks_settings(settings: Settings, jwks_server: JwksServer) -> Settings:
    return settings.model_copy(update={"supabase_jwks_url": jwks_server.url})


def _claims(user_id: uuid.UUID, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(user_id),
        "aud": "authenticated",
        "role": "authenticated",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
        **extra,
    }


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")]
)
async def test_tokens_signed_with_a_published_key_are_accepted(
    jwks_settings: Settings, database_url: str, key: Any, alg: str, kid: str
) -> None:
    user_id = uuid.uuid4()
    ensure_user(database_url, user_id)
    token = jwt.encode(_claims(user_id), key, algorithm=alg, headers={"kid": kid})
    async with client_for(jwks_settings) as http:
        response = await http.get("/api/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["userId"] == str(user_id)


async def test_the_key_set_is_fetched_once_and_cached(
    jwks_settings: Settings, jwks_server: JwksServer, database_url: str
) -> None:
    user_id = uuid.uuid4()
    ensure_user(database_url, user_id)
    token = jwt.encode(_claims(user_id), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    before = len(jwks_server.fetches)
    async with client_for(jwks_settings) as http:
        for _ in range(5):
            assert (await http.get("/api/me", headers=bearer(token))).status_code == 200
    assert len(jwks_server.fetches) - before == 1


async def test_hs256_forged_with_the_public_key_is_refused(jwks_settings: Settings) -> None:
    # Given the classic confusion attack: HMAC-SHA256 keyed with the published RSA key's PEM
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(_claims(uuid.uuid4())).encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(hmac.new(pem, signing_input, hashlib.sha256).digest())
    forged = (signing_input + b"." + signature).decode()
    # Then it is refused, whether or not the project also has an HS256 secret
    for settings in (jwks_settings, jwks_settings.model_copy(update={"supabase_jwt_secret": None})):
        async with client_for(settings) as http:
            response = await http.get("/api/me", headers=bearer(forged))
        assert_problem(response, 401, "unauthorized")


async def test_a_token_signed_with_an_unpublished_key_is_refused(jwks_settings: Settings) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(uuid.uuid4()), stranger, algorithm="RS256", headers={"kid": "rsa-1"})
    async with client_for(jwks_settings) as http:
        response = await http.get("/api/me", headers=bearer(token))
    assert_problem(response, 401, "unauthorized")


async def test_an_unknown_kid_is_refused(jwks_settings: Settings) -> None:
    token = jwt.encode(_claims(uuid.uuid4()), RSA_KEY, algorithm="RS256", headers={"kid": "nope"})
    async with client_for(jwks_settings) as http:
        response = await http.get("/api/me", headers=bearer(token))
    assert_problem(response, 401, "unauthorized")


async def test_an_ec_key_cannot_sign_for_the_rsa_kid(jwks_settings: Settings) -> None:
    token = jwt.encode(_claims(uuid.uuid4()), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"})
    async with client_for(jwks_settings) as http:
        response = await http.get("/api/me", headers=bearer(token))
    assert_problem(response, 401, "unauthorized")


async def test_expired_asymmetric_tokens_are_refused(jwks_settings: Settings) -> None:
    now = int(time.time())
    claims = _claims(uuid.uuid4(), iat=now - 7200, exp=now - 120)
    token = jwt.encode(claims, EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
    async with client_for(jwks_settings) as http:
        response = await http.get("/api/me", headers=bearer(token))
    assert_problem(response, 401, "unauthorized")
