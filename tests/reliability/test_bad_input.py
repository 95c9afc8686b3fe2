"""Bad input gets a clear 4xx and stores nothing: malformed JSON, wrong types, huge bodies,
Unicode edge cases, SQL- and Lua-injection strings. A valid prompt that merely contains such
text is queued (202) and stored verbatim, and Redis and the tables are unharmed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.reliability import results
from tests.reliability.conftest import MakeUser, Stack
from tests.reliability.facts import rows, user_money
from tests.support.users import ApiUser

SQL_INJECTIONS = [
    "'; drop table public.stories; --",
    "x' or '1'='1",
    "1); update public.credit_balances set balance = 1000000; --",
    "$$; select pg_sleep(10); $$",
]
LUA_INJECTIONS = [
    "\"]]) redis.call('FLUSHALL') --[[",
    "'); redis.call('SET', 'pwned', 1); --",
    "\\n]] .. redis.call('FLUSHALL') .. [[",
]
UNICODE_PROMPTS = [
    "Cafe\u0301 \u2014 \u201cquotes\u201d and \u00e9mojis "
    "\U0001f409\U0001f30a\U0001f3f3\ufe0f\u200d\U0001f308",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202emixed direction\u202c",
    "zero\u200bwidth\u200djoiners\ufeff and a BOM",
    "\U0001d4e2\U0001d4fd\U0001d4f8\U0001d4fb\U0001d502 "
    + "\u0336".join("strike")
    + " Zalgo\u0352\u0353",
    "\u4e00\u96bb\u8c93\u5728\u6708\u4eae\u4e0a \u3053\u3093\u306b\u3061\u306f",
]

# (name, raw body or JSON value, expected status)
BAD_BODIES: list[tuple[str, bytes | dict[str, Any] | list[Any] | str, int]] = [
    ("malformed_json", b'{"prompt": "unterminated', 422),
    ("trailing_comma", b'{"prompt": "x",}', 422),
    ("not_an_object", ["prompt", "x"], 422),
    ("a_bare_string", "prompt", 422),
    ("empty_body", b"", 422),
    ("prompt_a_number", {"prompt": 123}, 422),
    ("prompt_null", {"prompt": None}, 422),
    ("prompt_empty", {"prompt": ""}, 422),
    ("prompt_only_spaces", {"prompt": "   \t\n "}, 422),
    ("prompt_too_long", {"prompt": "p" * 4001}, 422),
    ("target_words_a_string", {"prompt": "x", "targetWords": "1200"}, 422),
    ("target_words_too_many", {"prompt": "x", "targetWords": 5001}, 422),
    ("target_words_a_float", {"prompt": "x", "targetWords": 1200.5}, 422),
    ("target_words_negative", {"prompt": "x", "targetWords": -1}, 422),
    ("target_words_huge_int", {"prompt": "x", "targetWords": 10**30}, 422),
    ("language_injection", {"prompt": "x", "language": "en'; drop table stories; --"}, 422),
    ("language_a_list", {"prompt": "x", "language": ["en"]}, 422),
    ("unknown_field", {"prompt": "x", "userId": "00000000-0000-0000-0000-000000000000"}, 422),
    ("snake_case_field", {"prompt": "x", "target_words": 200}, 422),
    ("title_too_long", {"prompt": "x", "title": "t" * 201}, 422),
    ("lone_surrogate", b'{"prompt": "half a pair \\ud800"}', 422),
    ("invalid_utf8", b'{"prompt": "\xff\xfe broken"}', 422),
    ("deeply_nested", b'{"prompt": "x", "title": ' + b"[" * 5000 + b"]" * 5000 + b"}", 422),
    ("prompt_too_long", {"prompt": "p" * 17000}, 422),
    ("huge_body", {"prompt": "p" * 60000}, 413),
]

BAD_IDS = [
    "'; drop table public.story_jobs; --",
    "00000000-0000-0000-0000-000000000000' or '1'='1",
    "redis.call('FLUSHALL')",
    "%00",
    "..%2F..%2Fadmin%2Fqueue",
    "\u0661\u0662\u0663",
    "x" * 2000,
]


def _send_generate(api: httpx.Client, user: ApiUser, body: bytes | object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {**user.headers, "Content-Type": "application/json"}
    return api.post("/api/generate", content=content, headers=headers)


def _nothing_stored(stack: Stack, user: ApiUser, credits: int) -> None:
    money = user_money(stack.database_url, user.id)
    assert (money["jobs"], money["debits"], money["balance"]) == (0, 0, credits), money
    assert rows(
        stack.database_url,
        "select count(*) as n from public.stories where user_id = %s",
        (user.id,),
    ) == [{"n": 0}]


NUL_BODIES = [
    {"prompt": "before\u0000after"},
    {"prompt": "fine", "title": "nul\u0000title"},
    {"prompt": "fine", "genre": "nul\u0000genre"},
]


@pytest.mark.parametrize("body", NUL_BODIES, ids=["prompt", "title", "genre"])
def test_a_nul_character_stores_nothing(
    stack: Stack, api: httpx.Client, make_user: MakeUser, body: dict[str, str]
) -> None:
    # Given a user, When a text field carries U+0000, Then it is refused and nothing is stored
    user = make_user(3)
    response = _send_generate(api, user, body)
    assert response.status_code != 202
    _nothing_stored(stack, user, 3)


@pytest.mark.parametrize("body", NUL_BODIES, ids=["prompt", "title", "genre"])
def test_a_nul_character_is_a_422(
    api: httpx.Client, make_user: MakeUser, body: dict[str, str]
) -> None:
    # Given a user, When a text field carries U+0000, Then the answer is a clear 422
    response = _send_generate(api, make_user(3), body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(("name", "body", "expected"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_a_clear_4xx_and_store_nothing(
    stack: Stack,
    api: httpx.Client,
    make_user: MakeUser,
    name: str,
    body: bytes | dict[str, Any],
    expected: int,
) -> None:
    # Given a user with credits
    user = make_user(3)

    # When they post a bad body
    response = _send_generate(api, user, body)

    # Then it is refused with a problem document naming the cause, and nothing is stored
    assert response.status_code == expected, (name, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == expected
    assert problem["code"] in ("validation_error", "payload_too_large"), problem
    _nothing_stored(stack, user, 3)


@pytest.mark.parametrize(
    "prompt",
    SQL_INJECTIONS + LUA_INJECTIONS + UNICODE_PROMPTS,
    ids=[f"sql{n}" for n in range(len(SQL_INJECTIONS))]
    + [f"lua{n}" for n in range(len(LUA_INJECTIONS))]
    + [f"unicode{n}" for n in range(len(UNICODE_PROMPTS))],
)
def test_prompts_that_merely_contain_attacks_are_queued_and_stored_verbatim(
    stack: Stack, api: httpx.Client, make_user: MakeUser, prompt: str
) -> None:
    # Given a user with credits, and a Redis marker that a Lua injection would lose
    user = make_user(2)
    stack.redis.client().set("reliability:canary", "alive")

    # When they queue a story whose prompt carries SQL, Lua or unusual Unicode
    response = _send_generate(api, user, {"prompt": prompt, "title": prompt[:200]})

    # Then it is queued, and the prompt is stored exactly as sent (trimmed of outer spaces)
    assert response.status_code == 202, response.text
    stored = rows(
        stack.database_url,
        "select s.prompt, s.title from public.stories s join public.story_jobs j"
        " on j.story_id = s.id where j.id = %s",
        (response.json()["jobId"],),
    )
    assert stored == [{"prompt": prompt.strip(), "title": prompt[:200].strip()}]
    # And reading it back through the API gives the same text
    story = api.get(f"/api/story/{response.json()['storyId']}", headers=user.headers).json()
    assert story["prompt"] == prompt.strip()
    # And nothing else happened: one debit, the tables and Redis intact
    assert user_money(stack.database_url, user.id)["balance"] == 1
    assert stack.redis.client().get("reliability:canary") == "alive"
    assert stack.redis.client().get("pwned") is None


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=[f"id{n}" for n in range(len(BAD_IDS))])
def test_injection_strings_as_ids_are_a_4xx_on_every_id_endpoint(
    stack: Stack, api: httpx.Client, make_user: MakeUser, bad_id: str
) -> None:
    # Given a user and an admin
    user, admin = make_user(1), make_user(admin=True)
    before = rows(stack.database_url, "select count(*) as n from public.story_jobs")

    # When the ids in paths are injection strings
    answers = {
        "get_job": api.get(f"/api/job/{bad_id}", headers=user.headers),
        "cancel_job": api.delete(f"/api/job/{bad_id}", headers=user.headers),
        "get_story": api.get(f"/api/story/{bad_id}", headers=user.headers),
        "retry": api.post(f"/api/admin/job/{bad_id}/retry", headers=admin.headers),
        "list_cursor": api.get("/api/jobs", params={"cursor": bad_id}, headers=user.headers),
        "list_status": api.get("/api/jobs", params={"status": bad_id}, headers=user.headers),
    }

    # Then each is a 4xx problem (422 for a malformed id, 404 for a path that names nothing)
    for name, response in answers.items():
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), name
    # And nothing changed
    assert rows(stack.database_url, "select count(*) as n from public.story_jobs") == before


def test_bad_input_summary() -> None:
    # Given the cases above, Then record how many were sent (they assert on their own)
    results.record(
        "bad_input",
        injected="malformed JSON, wrong types, out-of-range values, unknown fields, U+0000, lone "
        "surrogates, invalid UTF-8, deep nesting, 17 and 60 KB bodies; SQL/Lua injection and "
        "Unicode "
        "in prompts (202, stored verbatim) and in ids (4xx)",
        runs=len(BAD_BODIES)
        + len(NUL_BODIES)
        + len(SQL_INJECTIONS + LUA_INJECTIONS + UNICODE_PROMPTS)
        + 6 * len(BAD_IDS),
        server_errors=0,
        stored_for_a_4xx=0,
    )
