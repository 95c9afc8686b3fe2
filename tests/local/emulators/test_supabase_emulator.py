"""The Supabase emulator speaks PostgREST to the real supabase-py client, over a real PostgreSQL.

Its own fixtures: a scratch database bootstrapped like a Supabase project (roles, auth schema),
a set of functions of every shape PostgREST renders, and the emulator served by uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import jwt
import psycopg
import pytest
from postgrest.exceptions import APIError
from postgrest.types import CountMethod
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import supabase
from storyq_local.emulators.supabase import create_app
from storyq_local.stack.migrate import bootstrap_sql
from storyq_local.stack.servers import ThreadedServer, free_port, serve_in_thread

SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "emulator-test-secret-with-at-least-32-characters"

ALICE = uuid.UUID("00000000-0000-4000-8000-00000000a11c")
BOB = uuid.UUID("00000000-0000-4000-8000-000000000b0b")


SCHEMA = """
create table items (
  id int primary key,
  name text not null unique,
  note text,
  created_at timestamptz not null default '2024-05-06 07:08:09.123456+00'
);
insert into items (id, name, note) values
  (1, 'apple', 'red'), (2, 'banana', null), (3, 'cherry', 'dark, sweet'), (4, 'date', 'brown');

create table notes (id int primary key, owner uuid not null, body text not null);
alter table notes enable row level security;
create policy notes_owned on notes for select to authenticated using (owner = auth.uid());
revoke all on notes from anon;
insert into notes values (1, '00000000-0000-4000-8000-00000000a11c', 'alice 1'),
  (2, '00000000-0000-4000-8000-00000000a11c', 'alice 2'),
  (3, '00000000-0000-4000-8000-000000000b0b', 'bob 1');

create table vault (secret text);
revoke all on vault from anon, authenticated;

create function add_ints(a int, b int) returns int language sql stable as $$ select a + b $$;
create function greet(name text) returns text language sql as $$ select 'hello ' || name $$;
create function echo_jsonb(doc jsonb) returns jsonb language sql as $$ select doc $$;
create function echo_json(doc json) returns json language sql as $$ select doc $$;
create function get_item(item_id int) returns items language sql stable as $$
  select * from items where id = item_id $$;
create function item_pairs(n int) returns table (pos int, label text) language sql as $$
  select g, 'item ' || g from generate_series(1, n) g $$;
create function numbers(up_to int) returns setof int language sql as $$
  select generate_series(1, up_to) $$;
create function touch(item_id int) returns void language sql as $$
  update items set note = note where id = item_id $$;
create function with_defaults(a int, b int default 10, c text default 'x') returns text
  language sql as $$ select a || '/' || b || '/' || c $$;
create function count_arrays(ids uuid[], ns int[]) returns jsonb language sql as $$
  select jsonb_build_object('ids', cardinality(ids), 'sum', (select sum(n) from unnest(ns) n),
                            'first', ids[1]) $$;
create function fixed_moment() returns timestamptz language sql as $$
  select '2024-05-06 07:08:09.123456+00'::timestamptz $$;
create function shift_moment(at timestamptz, hours int) returns timestamptz language sql as $$
  select at + make_interval(hours => hours) $$;
create function price() returns numeric language sql as $$ select 12345678901234567890.10 $$;
create function fail_plain() returns int language plpgsql as $$
  begin raise exception 'plain failure'; end $$;
create function fail_payment() returns int language plpgsql as $$
  begin raise exception 'payment required' using errcode = 'PT402'; end $$;
create function fail_detailed() returns int language plpgsql as $$
  begin raise exception 'with detail' using detail = 'the detail', hint = 'the hint'; end $$;
create function fail_internal() returns int language plpgsql as $$
  begin raise exception 'broken' using errcode = 'P0002'; end $$;
create function add_item(id int, name text) returns items language sql as $$
  insert into items (id, name) values (id, name) returning * $$;
create function admin_only() returns text language sql as $$ select 'the keys' $$;
revoke execute on function admin_only() from public, anon, authenticated;
grant execute on function admin_only() to service_role;
create function whoami() returns jsonb language sql stable as $$
  select jsonb_build_object(
    'user', current_user, 'uid', auth.uid(), 'role', auth.role(),
    'claims', current_setting('request.jwt.claims', true)::jsonb,
    'method', current_setting('request.method', true),
    'path', current_setting('request.path', true),
    'probe', current_setting('request.headers', true)::jsonb ->> 'x-probe') $$;
create function pick(a int) returns text language sql as $$ select 'one' $$;
create function pick(a int, b int) returns text language sql as $$ select 'two' $$;
create function clash(a int) returns text language sql as $$ select 'int' $$;
create function clash(a text) returns text language sql as $$ select 'text' $$;
create function whole_body(jsonb) returns jsonb language sql as $$ select $1 $$;
create function record_visit() returns int language sql as $$
  insert into items (id, name) values (100, 'visit') returning id $$;
create function created() returns text language plpgsql as $$ begin
  perform set_config('response.status', '201', true);
  perform set_config('response.headers', '[{"X-Made": "yes"}]', true);
  return 'made'; end $$;
create function teapot() returns int language plpgsql as $$ begin
  raise sqlstate 'PGRST' using message = '{"code":"T418","message":"short and stout"}',
    detail = '{"status":418,"headers":{"X-Tea":"earl grey"}}'; end $$;
create function slow_add(a int, b int) returns int language sql as $$
  select a + b from pg_sleep(0.005) $$;
"""


def mint(
    role: str | None,
    *,
    sub: uuid.UUID | None = None,
    expires_in: int = 3600,
    secret: str = SECRET,
    **extra: Any,
) -> str:
    """A Supabase-shaped HS256 token signed with the test secret."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": "supabase-test", "iat": now, "exp": now + expires_in, **extra}
    if role is not None:
        claims["role"] = role
    if sub is not None:
        claims |= {"sub": str(sub), "aud": "authenticated"}
    return jwt.encode(claims, secret, algorithm="HS256")


SERVICE_KEY = mint("service_role", expires_in=86400)
ANON_KEY = mint("anon", expires_in=86400)


def scratch_database() -> str:
    """A new database bootstrapped like a Supabase project, with the test schema."""
    name = f"storyq_test_emu_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = make_conninfo(SERVER_URL, dbname=name)
    bootstrap = bootstrap_sql()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(bootstrap.encode())
            conn.execute(SCHEMA.encode())
    except BaseException:
        drop_database(url)
        raise
    return url


def drop_database(url: str) -> None:
    name = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    url = scratch_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def emulator(database_url: str) -> Iterator[ThreadedServer]:
    server = serve_in_thread(create_app(database_url=database_url, jwt_secret=SECRET))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(emulator: ThreadedServer) -> supabase.Client:
    return supabase.create_client(emulator.url, SERVICE_KEY)


@pytest.fixture(scope="module")
def anon(emulator: ThreadedServer) -> supabase.Client:
    return supabase.create_client(emulator.url, ANON_KEY)


def user_client(url: str, user: uuid.UUID) -> supabase.Client:
    """What an app does for a signed-in user: the anon key as apikey, the user's token as bearer."""
    token = mint("authenticated", sub=user)
    options = supabase.ClientOptions(headers={"Authorization": f"Bearer {token}"})
    return supabase.create_client(url, ANON_KEY, options)


@pytest.fixture(scope="module")
def alice(emulator: ThreadedServer) -> supabase.Client:
    return user_client(emulator.url, ALICE)


@pytest.fixture
def http(emulator: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{emulator.url}/rest/v1") as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"apikey": token, "Authorization": f"Bearer {token}"}


def api_error(call: Any) -> APIError:
    with pytest.raises(APIError) as caught:
        call.execute()
    return caught.value


# -- result shapes ---------------------------------------------------------------------------


def test_scalar_functions_return_bare_values(service: supabase.Client) -> None:
    # Given functions returning int and text / When called with named arguments
    total = service.rpc("add_ints", {"a": 2, "b": 40}).execute().data
    greeting = service.rpc("greet", {"name": "ada"}).execute().data
    # Then the body is the bare JSON value
    assert total == 42
    assert greeting == "hello ada"


def test_json_and_jsonb_come_back_as_the_document(service: supabase.Client) -> None:
    doc = {"title": "t", "tags": ["a", "b"], "nested": {"n": 1.5, "none": None}}
    assert service.rpc("echo_jsonb", {"doc": doc}).execute().data == doc
    assert service.rpc("echo_json", {"doc": doc}).execute().data == doc
    assert service.rpc("echo_jsonb", {"doc": [1, "two"]}).execute().data == [1, "two"]


def test_a_function_returning_a_row_answers_an_object(service: supabase.Client) -> None:
    row = service.rpc("get_item", {"item_id": 1}).execute().data
    assert row == {
        "id": 1,
        "name": "apple",
        "note": "red",
        "created_at": "2024-05-06T07:08:09.123456+00:00",
    }


def test_a_row_function_finding_nothing_answers_nulls_like_postgrest(
    service: supabase.Client,
) -> None:
    # PostgREST renders a NULL composite as an object of nulls (PostgREST/postgrest#3694).
    row = service.rpc("get_item", {"item_id": 999}).execute().data
    assert row == {"id": None, "name": None, "note": None, "created_at": None}


def test_returns_table_answers_an_array_of_objects(service: supabase.Client) -> None:
    rows = service.rpc("item_pairs", {"n": 2}).execute().data
    assert rows == [{"pos": 1, "label": "item 1"}, {"pos": 2, "label": "item 2"}]
    assert service.rpc("item_pairs", {"n": 0}).execute().data == []


def test_setof_scalar_answers_an_array_of_scalars(service: supabase.Client) -> None:
    assert service.rpc("numbers", {"up_to": 3}).execute().data == [1, 2, 3]
    assert service.rpc("numbers", {"up_to": 0}).execute().data == []


def test_void_answers_204_without_a_body(service: supabase.Client, http: httpx.Client) -> None:
    response = http.post("/rpc/touch", json={"item_id": 1}, headers=auth(SERVICE_KEY))
    assert response.status_code == 204
    assert response.content == b""
    # supabase-py reads an empty body as []
    assert service.rpc("touch", {"item_id": 1}).execute().data == []


def test_arguments_with_defaults_may_be_left_out(service: supabase.Client) -> None:
    assert service.rpc("with_defaults", {"a": 1}).execute().data == "1/10/x"
    assert service.rpc("with_defaults", {"a": 1, "c": "z"}).execute().data == "1/10/z"
    assert service.rpc("with_defaults", {"a": 1, "b": 2, "c": "y"}).execute().data == "1/2/y"


def test_json_arrays_become_postgres_arrays(service: supabase.Client) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    result = service.rpc("count_arrays", {"ids": ids, "ns": [1, 2, 3]}).execute().data
    assert result == {"ids": 2, "sum": 6, "first": ids[0]}


def test_timestamps_are_iso_strings_with_an_offset(service: supabase.Client) -> None:
    assert service.rpc("fixed_moment", {}).execute().data == "2024-05-06T07:08:09.123456+00:00"
    shifted = service.rpc("shift_moment", {"at": "2024-01-01T23:30:00+02:00", "hours": 1})
    assert shifted.execute().data == "2024-01-01T22:30:00+00:00"


def test_numeric_keeps_every_digit(http: httpx.Client) -> None:
    response = http.post("/rpc/price", json={}, headers=auth(SERVICE_KEY))
    assert response.text == "12345678901234567890.10"


def test_overloads_are_chosen_by_argument_names(service: supabase.Client) -> None:
    assert service.rpc("pick", {"a": 1}).execute().data == "one"
    assert service.rpc("pick", {"a": 1, "b": 2}).execute().data == "two"


def test_overloads_with_the_same_names_are_ambiguous(service: supabase.Client) -> None:
    error = api_error(service.rpc("clash", {"a": 1}))
    assert error.code == "PGRST203"
    assert "public.clash(a => integer)" in str(error.message)


def test_a_single_unnamed_jsonb_parameter_receives_the_whole_body(
    service: supabase.Client,
) -> None:
    body = {"anything": [1, 2], "goes": True}
    assert service.rpc("whole_body", body).execute().data == body


def test_get_calls_functions_with_query_string_arguments(service: supabase.Client) -> None:
    assert service.rpc("add_ints", {"a": 5, "b": 6}, get=True).execute().data == 11
    ids = [str(uuid.uuid4())]
    counted = service.rpc("count_arrays", {"ids": ids, "ns": [4, 5]}, get=True).execute().data
    assert counted == {"ids": 1, "sum": 9, "first": ids[0]}
    assert service.rpc("echo_jsonb", {"doc": {"k": [1]}}, get=True).execute().data == {"k": [1]}


def test_get_runs_read_only(service: supabase.Client) -> None:
    # Given a function that writes / When called with GET / Then PostgreSQL refuses: 405
    error = api_error(service.rpc("record_visit", {}, get=True))
    assert error.code == "25006"


def test_a_function_may_set_the_status_and_headers(http: httpx.Client) -> None:
    response = http.post("/rpc/created", json={}, headers=auth(SERVICE_KEY))
    assert response.status_code == 201
    assert response.headers["x-made"] == "yes"
    assert response.json() == "made"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "status", "code", "message"),
    [
        ("fail_plain", 400, "P0001", "plain failure"),
        ("fail_payment", 402, "PT402", "payment required"),
        ("fail_internal", 500, "P0002", "broken"),
    ],
)
def test_raise_maps_to_postgrest_statuses(
    http: httpx.Client,
    service: supabase.Client,
    function: str,
    status: int,
    code: str,
    message: str,
) -> None:
    response = http.post(f"/rpc/{function}", json={}, headers=auth(SERVICE_KEY))
    assert response.status_code == status
    assert response.json() == {"code": code, "message": message, "details": None, "hint": None}
    error = api_error(service.rpc(function, {}))
    assert (error.code, error.message) == (code, message)


def test_detail_and_hint_are_passed_on(service: supabase.Client) -> None:
    error = api_error(service.rpc("fail_detailed", {}))
    assert (error.code, error.message) == ("P0001", "with detail")
    assert (error.details, error.hint) == ("the detail", "the hint")


def test_unique_violation_is_409(service: supabase.Client, http: httpx.Client) -> None:
    response = http.post(
        "/rpc/add_item", json={"id": 50, "name": "apple"}, headers=auth(SERVICE_KEY)
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "23505"
    assert "Key (name)=(apple) already exists" in body["details"]
    assert api_error(service.rpc("add_item", {"id": 51, "name": "apple"})).code == "23505"


def test_raise_sqlstate_pgrst_controls_the_response(http: httpx.Client) -> None:
    response = http.post("/rpc/teapot", json={}, headers=auth(SERVICE_KEY))
    assert response.status_code == 418
    assert response.headers["x-tea"] == "earl grey"
    assert response.json() == {
        "code": "T418",
        "message": "short and stout",
        "details": None,
        "hint": None,
    }


def test_unknown_function_is_pgrst202(http: httpx.Client) -> None:
    response = http.post("/rpc/no_such_fn", json={"b": 1, "a": 2}, headers=auth(SERVICE_KEY))
    assert response.status_code == 404
    assert response.json() == {
        "code": "PGRST202",
        "message": "Could not find the function public.no_such_fn(a, b) in the schema cache",
        "details": "Searched for the function public.no_such_fn with parameters a, b or with a "
        "single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
        "hint": None,
    }


def test_an_unknown_argument_is_pgrst202_with_a_hint(service: supabase.Client) -> None:
    error = api_error(service.rpc("add_ints", {"a": 1, "b": 2, "c": 3}))
    assert error.code == "PGRST202"
    assert (
        error.message == "Could not find the function public.add_ints(a, b, c) in the schema cache"
    )
    assert error.hint == "Perhaps you meant to call the function public.add_ints(a, b)"


def test_a_misspelt_function_gets_a_hint(service: supabase.Client) -> None:
    error = api_error(service.rpc("add_intz", {"a": 1, "b": 2}))
    assert error.hint == "Perhaps you meant to call the function public.add_ints"


def test_a_function_created_after_a_miss_is_found(
    service: supabase.Client, database_url: str
) -> None:
    assert api_error(service.rpc("late_comer", {})).code == "PGRST202"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create function late_comer() returns int language sql as $$ select 7 $$")
    assert service.rpc("late_comer", {}).execute().data == 7


def test_a_function_changed_by_a_migration_is_called_with_its_new_parameters(
    service: supabase.Client, database_url: str
) -> None:
    # Given a function the emulator has already called (and cached)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create function evolving(a int) returns int language sql as $$ select a $$")
    assert service.rpc("evolving", {"a": 1}).execute().data == 1
    # When a migration replaces it with a new signature
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("drop function evolving(int)")
        conn.execute(
            "create function evolving(a int, b int default 0) returns int"
            " language sql as $$ select a + b $$"
        )
    # Then the new parameter is accepted at once
    assert service.rpc("evolving", {"a": 1, "b": 2}).execute().data == 3


def test_an_unexposed_schema_is_406(http: httpx.Client) -> None:
    headers = {**auth(SERVICE_KEY), "Content-Profile": "auth"}
    response = http.post("/rpc/uid", json={}, headers=headers)
    assert response.status_code == 406
    assert response.json()["code"] == "PGRST106"


def test_invalid_json_is_pgrst102(http: httpx.Client) -> None:
    headers = {**auth(SERVICE_KEY), "Content-Type": "application/json"}
    response = http.post("/rpc/add_ints", content=b"{not json", headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST102"


# -- authentication and roles ----------------------------------------------------------------


def test_no_token_is_401(http: httpx.Client) -> None:
    response = http.post("/rpc/add_ints", json={"a": 1, "b": 2})
    assert response.status_code == 401
    assert set(response.json()) == {"code", "message", "details", "hint"}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (
            mint("service_role", secret="another-secret-of-at-least-32-characters"),
            "JWT cryptographic operation failed",
        ),
        (mint("service_role", expires_in=-60), "JWT expired"),
        ("not-a-jwt", "Expected 3 parts in JWT; got 1"),
        (mint("service_role", nbf=int(time.time()) + 600), "JWT not yet valid"),
    ],
)
def test_bad_tokens_are_401_pgrst301(http: httpx.Client, token: str, message: str) -> None:
    response = http.post("/rpc/add_ints", json={"a": 1, "b": 2}, headers=auth(token))
    assert response.status_code == 401
    assert response.json() == {
        "code": "PGRST301",
        "message": message,
        "details": None,
        "hint": None,
    }
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_a_token_expired_within_the_leeway_is_accepted(http: httpx.Client) -> None:
    token = mint("service_role", expires_in=-10)
    response = http.post("/rpc/add_ints", json={"a": 1, "b": 2}, headers=auth(token))
    assert response.status_code == 200


def test_the_bearer_token_wins_over_apikey(http: httpx.Client) -> None:
    user = mint("authenticated", sub=ALICE)
    headers = {"apikey": ANON_KEY, "Authorization": f"Bearer {user}"}
    assert http.post("/rpc/whoami", json={}, headers=headers).json()["user"] == "authenticated"
    # and apikey alone is enough (the gateway forwards it as the bearer)
    assert http.post("/rpc/whoami", json={}, headers={"apikey": ANON_KEY}).json()["user"] == "anon"


def test_the_role_and_claims_are_set_for_the_call(alice: supabase.Client) -> None:
    me = cast(dict[str, Any], alice.rpc("whoami", {}).execute().data)
    assert me["user"] == "authenticated"
    assert me["uid"] == str(ALICE)
    assert me["role"] == "authenticated"
    assert me["claims"]["sub"] == str(ALICE)
    assert (me["method"], me["path"]) == ("POST", "/rpc/whoami")


def test_request_headers_reach_the_database(http: httpx.Client) -> None:
    headers = {**auth(SERVICE_KEY), "X-Probe": "42"}
    me = http.post("/rpc/whoami", json={}, headers=headers).json()
    assert (me["user"], me["probe"], me["uid"]) == ("service_role", "42", None)


def test_a_function_for_service_role_only(
    service: supabase.Client, anon: supabase.Client, alice: supabase.Client
) -> None:
    assert service.rpc("admin_only", {}).execute().data == "the keys"
    # anon is refused with 401, a signed-in user with 403 (PostgREST's 42501 mapping)
    anon_error = api_error(anon.rpc("admin_only", {}))
    assert anon_error.code == "42501"
    assert "permission denied for function admin_only" in str(anon_error.message)
    assert api_error(alice.rpc("admin_only", {})).code == "42501"


def test_42501_status_depends_on_the_role(http: httpx.Client) -> None:
    user = mint("authenticated", sub=ALICE)
    assert http.post("/rpc/admin_only", json={}, headers=auth(ANON_KEY)).status_code == 401
    assert http.post("/rpc/admin_only", json={}, headers=auth(user)).status_code == 403


def test_a_role_that_does_not_exist_is_401(http: httpx.Client) -> None:
    response = http.post("/rpc/add_ints", json={"a": 1, "b": 1}, headers=auth(mint("nobody")))
    assert response.status_code == 401
    assert response.json()["code"] == "22023"


# -- table reads -----------------------------------------------------------------------------


def test_rls_shows_a_user_only_their_rows(
    emulator: ThreadedServer, service: supabase.Client
) -> None:
    # Given notes owned by Alice and Bob, under a policy owner = auth.uid()
    alice = user_client(emulator.url, ALICE)
    bob = user_client(emulator.url, BOB)
    # When each reads the table with their own token / Then RLS filters
    alice_rows = alice.table("notes").select("body").order("id").execute().data
    assert alice_rows == [{"body": "alice 1"}, {"body": "alice 2"}]
    assert bob.table("notes").select("body").execute().data == [{"body": "bob 1"}]
    # and the service role bypasses RLS
    assert len(service.table("notes").select("id").execute().data) == 3


def test_a_table_the_role_cannot_read_is_refused(
    anon: supabase.Client, alice: supabase.Client, http: httpx.Client
) -> None:
    assert api_error(anon.table("notes").select("*")).code == "42501"
    assert http.get("/notes", headers=auth(ANON_KEY)).status_code == 401
    user = mint("authenticated", sub=ALICE)
    assert http.get("/vault", headers=auth(user)).status_code == 403


def test_filters_order_and_limits(service: supabase.Client) -> None:
    def names(query: Any) -> list[str]:
        return [row["name"] for row in query.execute().data]

    items = service.table("items")
    assert names(items.select("name").eq("id", 2)) == ["banana"]
    assert names(items.select("name").neq("id", 2).lt("id", 4).order("id")) == ["apple", "cherry"]
    assert names(items.select("name").gte("id", 3).order("id", desc=True)) == ["date", "cherry"]
    assert names(items.select("name").in_("note", ["red", "dark, sweet"]).order("id")) == [
        "apple",
        "cherry",
    ]
    assert names(items.select("name").is_("note", None)) == ["banana"]
    assert names(items.select("name").order("id").limit(2).offset(1)) == ["banana", "cherry"]
    assert names(items.select("name").like("name", "*an*")) == ["banana"]
    assert names(items.select("name").not_.is_("note", None).gt("id", 3)) == ["date"]


def test_selected_columns_and_aliases(service: supabase.Client) -> None:
    rows = service.table("items").select("id, label:name").eq("id", 1).execute().data
    assert rows == [{"id": 1, "label": "apple"}]


def test_count_exact_and_single_object(service: supabase.Client, http: httpx.Client) -> None:
    counted = (
        service.table("items").select("id", count=CountMethod.exact).lte("id", 4).limit(2).execute()
    )
    assert (len(counted.data), counted.count) == (2, 4)
    one = service.table("items").select("name").eq("id", 3).single().execute()
    assert one.data == {"name": "cherry"}
    headers = {**auth(SERVICE_KEY), "Accept": "application/vnd.pgrst.object+json"}
    response = http.get("/items?select=name", headers=headers)
    assert response.status_code == 406
    assert response.json()["code"] == "PGRST116"


def test_an_unknown_table_is_404(service: supabase.Client) -> None:
    assert api_error(service.table("nothing_here").select("*")).code == "PGRST205"


def test_table_writes_are_refused_with_405(service: supabase.Client, http: httpx.Client) -> None:
    error = api_error(service.table("items").insert({"id": 9, "name": "fig"}))
    assert error.code == "PGRST117"
    assert http.delete("/items?id=eq.1", headers=auth(SERVICE_KEY)).status_code == 405


def test_a_bad_filter_is_400(http: httpx.Client) -> None:
    response = http.get("/items?id=between.1", headers=auth(SERVICE_KEY))
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST100"


# -- the async client ------------------------------------------------------------------------


async def test_the_async_client_calls_and_reads(emulator: ThreadedServer) -> None:
    client = await supabase.acreate_client(emulator.url, SERVICE_KEY)
    assert (await client.rpc("add_ints", {"a": 20, "b": 22}).execute()).data == 42
    rows = (await client.table("items").select("id").eq("name", "apple").execute()).data
    assert rows == [{"id": 1}]
    with pytest.raises(APIError) as caught:
        await client.rpc("fail_payment", {}).execute()
    assert caught.value.code == "PT402"


async def raw_post(port: int, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
    """One HTTP/1.1 request on its own connection (httpx's pool is slow past ~50 connections)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"apikey: {token}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2] or b"null")


async def test_hundreds_of_concurrent_calls_queue_on_a_small_pool(database_url: str) -> None:
    # Given an emulator with 4 connections / When 500 calls arrive at once
    server = serve_in_thread(create_app(database_url=database_url, jwt_secret=SECRET, pool_size=4))
    try:
        answers = await asyncio.gather(
            *(
                raw_post(server.port, "/rest/v1/rpc/slow_add", {"a": i, "b": 1}, SERVICE_KEY)
                for i in range(500)
            )
        )
    finally:
        server.stop()
    # Then every one is answered, correctly
    assert answers == [(200, i + 1) for i in range(500)]


# -- the rest of the surface -----------------------------------------------------------------


def test_health_jwks_and_root(emulator: ThreadedServer) -> None:
    assert httpx.get(f"{emulator.url}/healthz").text == "ok"
    assert httpx.get(f"{emulator.url}/auth/v1/.well-known/jwks.json").json() == {"keys": []}
    assert httpx.get(f"{emulator.url}/rest/v1/").json() == {}


# -- PostgreSQL unavailable ------------------------------------------------------------------


def test_no_database_answers_503_quickly() -> None:
    # Given an emulator whose database does not listen
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    server = serve_in_thread(create_app(database_url=url, jwt_secret=SECRET, pool_timeout=2.0))
    try:
        # When calls arrive / Then each gets 503 within the pool timeout, never a hang
        for _ in range(3):
            started = time.monotonic()
            response = httpx.post(
                f"{server.url}/rest/v1/rpc/add_ints",
                json={"a": 1, "b": 2},
                headers=auth(SERVICE_KEY),
                timeout=30,
            )
            assert response.status_code == 503
            assert response.json()["code"] == "PGRST000"
            assert time.monotonic() - started < 4
    finally:
        server.stop()


@dataclass
class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that can drop every connection, as a restart does."""

    target_port: int
    port: int = field(default_factory=free_port)
    up: bool = True
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> TcpProxy:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """PostgreSQL goes away: every open connection drops, new ones are refused."""
        self.up = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def resume(self) -> None:
        self.up = True

    def stop(self) -> None:
        self.cut()
        self._listener.close()


def test_a_database_restart_heals_without_a_restart_of_the_emulator(database_url: str) -> None:
    # Given an emulator reaching PostgreSQL through a proxy we can cut
    target = int(conninfo_to_dict(database_url).get("port") or 5432)
    proxy = TcpProxy(target_port=target).start()
    url = make_conninfo(database_url, port=str(proxy.port))
    server = serve_in_thread(create_app(database_url=url, jwt_secret=SECRET, pool_timeout=2.0))
    endpoint = f"{server.url}/rest/v1/rpc/add_ints"

    def call() -> httpx.Response:
        return httpx.post(endpoint, json={"a": 1, "b": 2}, headers=auth(SERVICE_KEY), timeout=30)

    try:
        assert call().status_code == 200
        # When PostgreSQL goes away / Then calls get 503 quickly
        proxy.cut()
        for _ in range(3):
            started = time.monotonic()
            assert call().status_code == 503
            assert time.monotonic() - started < 4
        # When it is back / Then calls succeed again within a few seconds, with no restart
        proxy.resume()
        deadline = time.monotonic() + 15
        statuses = [call().status_code]
        while statuses[-1] != 200 and time.monotonic() < deadline:
            statuses.append(call().status_code)
        assert statuses[-1] == 200, statuses
        assert set(statuses) <= {200, 503}
    finally:
        server.stop()
        proxy.stop()
