"""Who may see what: forged and broken tokens are 401 on every endpoint, one user's ids are 404
to another, admin endpoints are 403 to users, and the tables read through the Supabase emulator
with a user's own token (role authenticated) show only that user's rows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import supabase
from storyq.config import DEV_ANON_KEY
from storyq_local.stack.tokens import access_token_claims
from tests.conftest import JWT_SECRET
from tests.reliability import results
from tests.reliability.conftest import MakeUser, Stack, queue_story
from tests.reliability.facts import rows, user_money
from tests.support.users import ApiUser

pytestmark = [
    # The HS512 forgery is short-keyed on purpose; supabase-py's own deprecations are not ours.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:supabase.*"),
]

# Every endpoint that needs a token, with a harmless body where one is needed.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/generate", {"prompt": "a forged request"}),
    ("GET", "/api/job/{job}", None),
    ("DELETE", "/api/job/{job}", None),
    ("GET", "/api/jobs", None),
    ("GET", "/api/story/{story}", None),
    ("GET", "/api/me", None),
    ("GET", "/api/admin/queue", None),
    ("POST", "/api/admin/queue/clean", {"status": "completed", "olderThanSeconds": 86400}),
    ("POST", "/api/admin/queue/empty", None),
    ("POST", "/api/admin/job/{job}/retry", None),
    ("POST", "/api/admin/credits", {"userId": "{user}", "amount": 1}),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def forged_tokens(stack: Stack, victim: uuid.UUID) -> dict[str, str]:
    """Tokens that must prove nothing, each claiming to be `victim` (an admin, where it helps)."""
    now = int(time.time())

    def claims(**changes: Any) -> dict[str, Any]:
        base = access_token_claims(user_id=victim, issuer=stack.issuer, expires_in=3600, admin=True)
        base.update(changes)
        return base

    def hs256(payload: dict[str, Any], secret: str = JWT_SECRET) -> str:
        return jwt.encode(payload, secret, algorithm="HS256")

    attacker = _rsa_key()
    public_pem = attacker.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    confused = _segments({"alg": "HS256", "typ": "JWT"}, claims())
    confused_signature = hmac.new(public_pem, confused.encode(), hashlib.sha256).digest()
    valid = hs256(claims())
    header, _, signature = valid.split(".")
    tampered_payload = _b64(json.dumps(claims(sub=str(uuid.uuid4()))).encode())
    return {
        "alg_none": _segments({"alg": "none", "typ": "JWT"}, claims()) + ".",
        "alg_none_uppercase": _segments({"alg": "NONE", "typ": "JWT"}, claims()) + ".",
        "hs256_signed_with_an_rsa_public_key": f"{confused}.{_b64(confused_signature)}",
        "rs256_signed_by_an_unknown_key": jwt.encode(
            claims(), attacker, algorithm="RS256", headers={"kid": "attacker"}
        ),
        "hs512_with_the_right_secret": jwt.encode(claims(), JWT_SECRET, algorithm="HS512"),
        "wrong_secret": hs256(claims(), "not-the-project-secret-but-32-characters-long"),
        "expired": hs256(claims(exp=now - 3600, iat=now - 7200)),
        "not_yet_valid": hs256(claims(nbf=now + 3600)),
        "wrong_audience": hs256(claims(aud="somebody-else")),
        "wrong_issuer": hs256(claims(iss="https://evil.example/auth/v1")),
        "no_expiry": hs256({k: v for k, v in claims().items() if k != "exp"}),
        "subject_not_a_user": hs256(claims(sub="service_role")),
        "tampered_payload": f"{header}.{tampered_payload}.{signature}",
        "oversized": hs256(claims(padding="x" * 9000)),
        "anon_key": DEV_ANON_KEY,
        "not_a_jwt": "definitely-not-a-token",
    }


@pytest.fixture(scope="module")
def owner_ids(stack: Stack) -> dict[str, str]:
    """Ids of a real job and story (owned by someone), to put in paths."""
    from storyq_local.stack.tokens import sign
    from storyq_local.stack.users import ensure_user

    owner = uuid.uuid4()
    ensure_user(stack.database_url, owner)
    rows(stack.database_url, "select public.grant_credits(%s, 1) as b", (owner,))
    token = sign(
        access_token_claims(user_id=owner, issuer=stack.issuer, expires_in=3600), JWT_SECRET
    )
    with httpx.Client(base_url=stack.api.url, timeout=30) as api:
        job = queue_story(api, ApiUser(owner, token), "the owner's story")
        story = api.get(f"/api/job/{job}", headers={"Authorization": f"Bearer {token}"})
    return {"job": job, "story": story.json()["storyId"], "user": str(owner)}


def _fill(template: str, ids: dict[str, str]) -> str:
    return template.format(**ids)


def _body(body: dict[str, Any] | None, ids: dict[str, str]) -> dict[str, Any] | None:
    if body is None:
        return None
    return {
        key: _fill(value, ids) if isinstance(value, str) else value for key, value in body.items()
    }


Send = Callable[[str, str, dict[str, Any] | None, dict[str, str]], httpx.Response]


@pytest.fixture
def send(api: httpx.Client, owner_ids: dict[str, str]) -> Send:
    def call(
        method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response:
        return api.request(
            method, _fill(path, owner_ids), json=_body(body, owner_ids), headers=headers
        )

    return call


def test_forged_and_broken_tokens_are_401_on_every_endpoint(
    stack: Stack, send: Send, owner_ids: dict[str, str]
) -> None:
    # Given tokens forged for the job's owner as an admin: alg none, HS/RS confusion, expired...
    tokens = forged_tokens(stack, uuid.UUID(owner_ids["user"]))
    before = rows(stack.database_url, "select count(*) as n from public.story_jobs")

    # When each is sent to every endpoint
    answers: dict[tuple[str, str, str], int] = {}
    for name, token in tokens.items():
        for method, path, body in ENDPOINTS:
            response = send(method, path, body, {"Authorization": f"Bearer {token}"})
            answers[(name, method, path)] = response.status_code
            if response.status_code == 401:
                assert response.json()["code"] == "unauthorized"
    for method, path, body in ENDPOINTS:
        answers[("no_token", method, path)] = send(method, path, body, {}).status_code

    # Then every answer is 401 and nothing was queued
    assert {key: code for key, code in answers.items() if code != 401} == {}
    assert rows(stack.database_url, "select count(*) as n from public.story_jobs") == before
    results.record(
        "forged_tokens",
        injected=f"{len(tokens) + 1} kinds of bad token (alg none, HS/RS confusion, unknown RS256 "
        "key, HS512, wrong secret, expired, not yet valid, wrong aud, wrong iss, no exp, tampered "
        "payload, oversized, anon key, garbage, none) on every authenticated endpoint",
        runs=len(answers),
        answers={"401": len(answers)},
    )


def test_another_users_ids_are_404_and_admin_endpoints_are_403(
    stack: Stack, send: Send, make_user: MakeUser, owner_ids: dict[str, str]
) -> None:
    # Given user B, who owns nothing of user A's
    intruder = make_user(5)

    # When B uses A's job and story ids on every endpoint
    checks = {
        ("GET", "/api/job/{job}"): 404,
        ("DELETE", "/api/job/{job}"): 404,
        ("GET", "/api/story/{story}"): 404,
        ("GET", "/api/admin/queue"): 403,
        ("POST", "/api/admin/queue/clean"): 403,
        ("POST", "/api/admin/queue/empty"): 403,
        ("POST", "/api/admin/job/{job}/retry"): 403,
        ("POST", "/api/admin/credits"): 403,
    }
    bodies = {(method, path): body for method, path, body in ENDPOINTS}
    answers = {
        key: send(key[0], key[1], bodies[key], intruder.headers).status_code for key in checks
    }

    # Then A's things do not exist for B, and the admin endpoints are forbidden
    assert answers == checks
    listed = send("GET", "/api/jobs", None, intruder.headers).json()["jobs"]
    assert owner_ids["job"] not in {job["jobId"] for job in listed}
    # And A's job is untouched, B was charged nothing
    status = rows(
        stack.database_url,
        "select status from public.story_jobs where id = %s",
        (owner_ids["job"],),
    )
    assert status[0]["status"] in ("pending", "processing", "completed")
    assert user_money(stack.database_url, intruder.id)["balance"] == 5
    assert send("GET", "/api/me", None, intruder.headers).status_code == 200
    results.record(
        "cross_user_access",
        injected="user B sends user A's job and story ids to every endpoint; "
        "a non-admin calls every admin endpoint",
        runs=len(answers) + 1,
        answers={"404": 3, "403": 5},
    )


def _rest(stack: Stack, token: str) -> supabase.Client:
    client = supabase.create_client(stack.supabase.url, DEV_ANON_KEY)
    client.postgrest.auth(token)
    return client


def test_rls_shows_users_only_their_own_rows_through_the_supabase_emulator(
    stack: Stack, api: httpx.Client, make_user: MakeUser
) -> None:
    # Given two users with a job, a story, a balance and ledger entries each
    alice, bob = make_user(3), make_user(3)
    queue_story(api, alice, "alice's secret")
    queue_story(api, bob, "bob's secret")

    # When each reads the tables directly with their own token (role authenticated)
    seen: dict[str, set[str]] = {}
    for table in ("story_jobs", "stories", "credit_balances", "credit_ledger"):
        data = _rest(stack, alice.token).table(table).select("user_id").execute().data
        seen[table] = {str(row["user_id"]) for row in data}  # type: ignore[index,call-overload]

    # Then Alice sees her rows only, in every table
    assert seen == {table: {str(alice.id)} for table in seen}
    # And a forged or missing token sees nothing
    anonymous = supabase.create_client(stack.supabase.url, DEV_ANON_KEY)
    with pytest.raises(Exception, match=r"permission denied|42501"):
        anonymous.table("story_jobs").select("id").execute()
    # And, as their role in the database, the user cannot write their balance (the emulator
    # serves reads only, so the write goes straight to PostgreSQL with the same role and claims)
    with psycopg.connect(stack.database_url) as conn:
        conn.execute("set local role authenticated")
        conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": str(alice.id), "role": "authenticated"}),),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update public.credit_balances set balance = 1000")
    assert rows(
        stack.database_url,
        "select balance from public.credit_balances where user_id = %s",
        (alice.id,),
    ) == [{"balance": 2}]
    results.record(
        "rls_direct_reads",
        injected="a user's own token reading story_jobs, stories, credit_balances, credit_ledger "
        "through the Supabase emulator; anon reads; a user updating their balance",
        runs=6,
        rows_of_other_users_seen=0,
    )
