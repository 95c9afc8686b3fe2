"""The Upstash REST emulator, driven by the real upstash-redis SDK (sync and async),
upstash-ratelimit and raw HTTP, and compared with redis-py speaking to the same redis-server.

The module starts its own redis-server (which tests flush and restart) and emulator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from upstash_ratelimit import FixedWindow, Ratelimit, SlidingWindow, TokenBucket
from upstash_ratelimit.asyncio import Ratelimit as AsyncRatelimit
from upstash_redis import Redis as UpstashRedis
from upstash_redis.asyncio import Redis as AsyncUpstashRedis
from upstash_redis.errors import UpstashError

from storyq_local.emulators.upstash import create_app, strip_shebang
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import ThreadedServer, serve_in_thread

TOKEN = "emulator-test-token"
SHEBANG_SCRIPT = "#!lua flags=allow-key-locking\nreturn 1"
WRONGPASS = {"error": "WRONGPASS invalid or missing auth token"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def emulator(redis_server: RedisProcess) -> Iterator[ThreadedServer]:
    server = serve_in_thread(create_app(redis_url=redis_server.url, token=TOKEN))
    yield server
    server.stop()


@pytest.fixture
def direct(redis_server: RedisProcess) -> Iterator[redis.Redis]:
    """redis-py on the same server, with a clean database for each test."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def raw(redis_server: RedisProcess, direct: redis.Redis) -> Iterator[redis.Redis]:
    """redis-py without response callbacks: Redis's own RESP2 reply shapes."""
    client = redis.Redis(port=redis_server.port, decode_responses=True, protocol=2)
    client.response_callbacks.clear()
    yield client
    client.close()


@pytest.fixture
def sdk(emulator: ThreadedServer, direct: redis.Redis) -> Iterator[UpstashRedis]:
    with UpstashRedis(emulator.url, TOKEN, rest_retries=0, allow_telemetry=False) as client:
        yield client


@pytest.fixture
async def async_sdk(
    emulator: ThreadedServer, direct: redis.Redis
) -> AsyncIterator[AsyncUpstashRedis]:
    client = AsyncUpstashRedis(emulator.url, TOKEN, rest_retries=0, allow_telemetry=False)
    yield client
    await client.close()


@pytest.fixture
def http(emulator: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=10) as client:
        yield client


def _raw_reply(client: redis.Redis, command: list[Any]) -> Any:
    """The reply exactly as Redis sent it (`client` has no response callbacks)."""
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def _auth(*, b64: bool = True) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if b64:
        headers["Upstash-Encoding"] = "base64"
    return headers


# --- the SDK's answers equal Redis's -------------------------------------------------------


def test_strings_integers_and_nil_round_trip(sdk: UpstashRedis, direct: redis.Redis) -> None:
    # Given values written through the emulator
    assert sdk.set("s", "value", ex=100)
    assert sdk.incrby("n", 41) == 41
    # When they are read back through both paths
    # Then the SDK sees what redis-py sees, and a missing key is None
    assert sdk.get("s") == direct.get("s") == "value"
    assert sdk.incr("n") == 42 == int(direct.get("n") or 0)
    assert sdk.get("missing") is None
    assert sdk.mget("s", "missing", "n") == direct.mget("s", "missing", "n")
    assert 0 < sdk.ttl("s") <= 100


def test_non_ascii_and_awkward_strings_survive(sdk: UpstashRedis, direct: redis.Redis) -> None:
    # Given Ukrainian text, emoji, JSON-ish text, the empty string and the literal "OK"
    values = {
        "ключ-🙂": "Жили-були дід та баба 👴👵",  # noqa: RUF001  # Cyrillic on purpose
        "quotes": '{"a": "b\\n", "c": [1, 2]}\r\n\t',
        "empty": "",
        "ok": "OK",
    }
    for key, value in values.items():
        sdk.set(key, value)
    # When read back
    # Then each is byte-for-byte what was written, in both directions
    for key, value in values.items():
        assert sdk.get(key) == value
        assert direct.get(key) == value


def test_numbers_and_bools_are_stringified_like_the_sdk_sends_them(
    sdk: UpstashRedis, direct: redis.Redis
) -> None:
    # Given arguments the SDK posts as JSON numbers and booleans
    sdk.execute(["SET", "int", 100])
    sdk.execute(["SET", "float", 1.5])
    sdk.execute(["SET", "bool", True])
    # Then Redis stored their text
    assert direct.mget("int", "float", "bool") == ["100", "1.5", "true"]
    # And numeric arguments work where Redis expects numbers
    assert sdk.execute(["EXPIRE", "int", 60]) is True
    assert sdk.incrbyfloat("float", 0.25) == 1.75


def test_raw_reply_shapes_match_redis(
    sdk: UpstashRedis, direct: redis.Redis, raw: redis.Redis
) -> None:
    # Given lists, sets, streams and strings in Redis
    direct.rpush("list", "a", "b", "ц")
    direct.sadd("set", "1", "2", "3")
    direct.xadd("stream", {"field": "значення"}, id="1-0")
    direct.xadd("stream", {"a": "1", "b": "2"}, id="2-0")
    direct.set("s", "x")
    commands: list[list[Any]] = [
        ["LRANGE", "list", 0, -1],
        ["SMEMBERS", "set"],
        ["XRANGE", "stream", "-", "+"],
        ["MGET", "s", "nope"],
        ["TYPE", "list"],
        ["PING"],
        ["ECHO", "привіт"],
        ["STRLEN", "s"],
        ["EVAL", "return {1, {'два', {3, false}}, 'x'}", 0],
        ["LPOS", "list", "nope"],
    ]
    for command in commands:
        # When the same command goes through the emulator and straight to Redis
        # Then the replies have the same shape and values (simple strings included)
        assert sdk.execute(command) == _raw_reply(raw, command), command


def test_ping_and_ok_travel_as_the_sdk_expects(http: httpx.Client) -> None:
    # When SET and PING go over raw HTTP with base64 encoding
    set_reply = http.post("/", json=["SET", "k", "v"], headers=_auth()).json()
    ping_reply = http.post("/", json=["PING"], headers=_auth()).json()
    # Then "OK" is left as is and every other string is base64
    assert set_reply == {"result": "OK"}
    assert ping_reply == {"result": base64.b64encode(b"PONG").decode()}


def test_hashes_sorted_sets_and_scans_match_redis(sdk: UpstashRedis, direct: redis.Redis) -> None:
    # Given a hash and a sorted set written through the emulator
    sdk.hset("h", values={"name": "Оксана", "age": "7"})
    sdk.zadd("z", {"low": 1.5, "high": 10, "мід": 3})
    # Then HGETALL and ZRANGE WITHSCORES read like redis-py's
    assert sdk.hgetall("h") == direct.hgetall("h")
    assert sdk.zrange("z", 0, -1, withscores=True) == direct.zrange("z", 0, -1, withscores=True)
    assert sdk.zscore("z", "high") == 10.0
    # And a full SCAN finds every key
    cursor, keys = sdk.scan(0, count=1000)
    assert cursor == 0
    assert sorted(keys) == sorted(direct.scan_iter())


def test_redis_errors_raise_with_redis_message(sdk: UpstashRedis, direct: redis.Redis) -> None:
    # Given a string key
    direct.set("s", "x")
    with pytest.raises(redis.ResponseError) as expected:
        direct.lpush("s", "y")
    # When a list command hits it through the emulator
    # Then the SDK raises UpstashError carrying Redis's own message
    with pytest.raises(UpstashError) as raised:
        sdk.lpush("s", "y")
    assert str(raised.value) == str(expected.value)
    assert str(raised.value).startswith("WRONGTYPE ")
    # And an error whose prefix redis-py strips keeps its "ERR"
    with pytest.raises(UpstashError, match=r"^ERR value is not an integer"):
        sdk.incr("s")


# --- pipelines and transactions ------------------------------------------------------------


def test_pipeline_runs_each_command(sdk: UpstashRedis) -> None:
    # Given a pipeline
    pipeline = sdk.pipeline()
    pipeline.set("p", "1")
    pipeline.incr("p")
    pipeline.get("p")
    pipeline.hset("ph", values={"f": "v"})
    pipeline.hgetall("ph")
    # When it runs
    # Then every command answered, with the SDK's usual formatting
    assert pipeline.exec() == [True, 2, "2", 1, {"f": "v"}]


def test_pipeline_commands_are_independent(http: httpx.Client, direct: redis.Redis) -> None:
    # Given a pipeline whose middle command fails
    body = [["SET", "a", "1"], ["INCR", "a", "extra"], ["SET", "b", "2"], ["BLPOP", "l", 0]]
    # When it is posted
    response = http.post("/pipeline", json=body, headers=_auth())
    # Then that command and the refused one answer errors and the others ran
    assert response.status_code == 200
    first, second, third, fourth = response.json()
    assert first == {"result": "OK"}
    assert second["error"].startswith("ERR wrong number of arguments")
    assert third == {"result": "OK"}
    assert "BLPOP" in fourth["error"]
    assert direct.mget("a", "b") == ["1", "2"]


def test_multi_exec_runs_as_a_transaction(sdk: UpstashRedis) -> None:
    # Given a transaction
    tx = sdk.multi()
    tx.set("t", "10")
    tx.incrby("t", 5)
    tx.get("t")
    # Then its results arrive in order
    assert tx.exec() == [True, 15, "15"]


def test_multi_exec_discarded_transaction_changes_nothing(
    http: httpx.Client, direct: redis.Redis
) -> None:
    # Given a transaction with a command Redis refuses to queue
    body = [["SET", "t", "1"], ["SET", "t"]]
    # When it is posted
    response = http.post("/multi-exec", json=body, headers=_auth())
    # Then it answers one error with 400, and the SET before it did not happen
    assert response.status_code == 400
    assert response.json()["error"].startswith("EXECABORT")
    assert direct.get("t") is None


def test_multi_exec_reports_runtime_errors_per_command(
    http: httpx.Client, direct: redis.Redis
) -> None:
    # Given a transaction whose second command fails only when it runs
    direct.set("s", "text")
    body = [["SET", "t", "1"], ["INCR", "s"], ["GET", "t"]]
    # When it is posted
    response = http.post("/multi-exec", json=body, headers=_auth(b64=False))
    # Then each command has its own answer, as Redis's EXEC gives them
    assert response.status_code == 200
    assert response.json() == [
        {"result": "OK"},
        {"error": "ERR value is not an integer or out of range"},
        {"result": "1"},
    ]


async def test_multi_exec_is_atomic_under_concurrency(
    async_sdk: AsyncUpstashRedis, direct: redis.Redis
) -> None:
    # Given many concurrent transactions that each increment a counter twice
    async def two_increments() -> list[Any]:
        tx = async_sdk.multi()
        tx.incr("counter")
        tx.incr("counter")
        return await tx.exec()

    # When they run at once
    results = await asyncio.gather(*(two_increments() for _ in range(100)))
    # Then no other increment landed between the two of any transaction
    assert all(second == first + 1 for first, second in results)
    assert sorted(first for first, _ in results) == list(range(1, 200, 2))
    assert direct.get("counter") == "200"


# --- scripts -------------------------------------------------------------------------------


def test_eval_evalsha_and_script_cache(sdk: UpstashRedis, direct: redis.Redis) -> None:
    # Given a script loaded through the emulator
    script = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"
    sha = sdk.script_load(script)
    # Then its SHA is the one the client computes, and Redis knows it
    assert sha == hashlib.sha1(script.encode()).hexdigest()
    assert sdk.script_exists(sha, "0" * 40) == [True, False]
    # And EVAL and EVALSHA answer like redis-py's
    expected = direct.eval(script, 1, "k", "ж", 41)
    assert sdk.eval(script, keys=["k"], args=["ж", "41"]) == expected == ["k", "ж", 42]
    assert sdk.evalsha(sha, keys=["k"], args=["ж", "41"]) == expected


def test_shebang_scripts_with_upstash_flags_run(sdk: UpstashRedis, direct: redis.Redis) -> None:
    # Given a script with Upstash's allow-key-locking flag, which redis-server 7 refuses
    with pytest.raises(redis.ResponseError, match="shebang"):
        direct.eval(SHEBANG_SCRIPT, 0)
    original_sha = hashlib.sha1(SHEBANG_SCRIPT.encode()).hexdigest()
    # When it goes through the emulator
    # Then EVAL runs it, SCRIPT LOAD answers the SHA of the original text,
    # and EVALSHA and SCRIPT EXISTS accept that SHA
    assert sdk.eval(SHEBANG_SCRIPT) == 1
    assert sdk.script_load(SHEBANG_SCRIPT) == original_sha
    assert sdk.evalsha(original_sha) == 1
    assert sdk.script_exists(original_sha) == [True]


def test_shebang_keeps_the_flags_redis_knows(sdk: UpstashRedis) -> None:
    # Given a read-only script that also carries Upstash's flag
    script = "#!lua flags=no-writes,allow-key-locking\nreturn redis.call('SET', KEYS[1], 'x')"
    # When it tries to write
    # Then Redis still enforces no-writes
    with pytest.raises(UpstashError, match="Write commands are not allowed"):
        sdk.eval(script, keys=["k"])


def test_strip_shebang_keeps_line_numbers() -> None:
    # Given scripts with and without flags Redis rejects
    # Then only the rejected flags go, and the line count stays
    assert strip_shebang("#!lua flags=allow-key-locking\nreturn 1") == "\nreturn 1"
    assert strip_shebang("#!lua flags=no-writes,allow-key-locking\nx") == "#!lua flags=no-writes\nx"
    assert strip_shebang("#!lua flags=no-writes\nreturn 1") is None
    assert strip_shebang("return 1") is None


@pytest.mark.parametrize(
    "limiter",
    [
        SlidingWindow(max_requests=3, window=10),
        FixedWindow(max_requests=3, window=10),
        TokenBucket(max_tokens=3, refill_rate=3, interval=10),
    ],
    ids=["sliding", "fixed", "token-bucket"],
)
def test_ratelimit_allows_three_then_refuses(sdk: UpstashRedis, limiter: Any) -> None:
    # Given a limit of 3 per 10 s
    ratelimit = Ratelimit(redis=sdk, limiter=limiter, prefix="test")
    # When one identifier asks 4 times
    answers = [ratelimit.limit("user-1") for _ in range(4)]
    # Then 3 pass and the 4th is refused, and another identifier is unaffected
    assert [answer.allowed for answer in answers] == [True, True, True, False]
    assert answers[-1].remaining == 0
    assert ratelimit.limit("user-2").allowed


async def test_async_ratelimit(async_sdk: AsyncUpstashRedis) -> None:
    # Given the async rate limiter on the async client
    ratelimit = AsyncRatelimit(
        redis=async_sdk, limiter=SlidingWindow(max_requests=3, window=10), prefix="test-async"
    )
    # Then it allows 3 and refuses the 4th
    answers = [(await ratelimit.limit("user")).allowed for _ in range(4)]
    assert answers == [True, True, True, False]


# --- the async client ----------------------------------------------------------------------


async def test_async_client_round_trips(async_sdk: AsyncUpstashRedis, direct: redis.Redis) -> None:
    # Given values written through the async client
    assert await async_sdk.set("a", "Київ 🌻")
    await async_sdk.hset("h", values={"k": "v"})
    await async_sdk.zadd("z", {"m": 2.5})
    # Then they read back like redis-py reads them
    assert await async_sdk.get("a") == direct.get("a") == "Київ 🌻"
    assert await async_sdk.hgetall("h") == direct.hgetall("h")
    assert await async_sdk.zrange("z", 0, -1, withscores=True) == [("m", 2.5)]
    assert await async_sdk.ping() == "PONG"
    with pytest.raises(UpstashError, match=r"^WRONGTYPE"):
        await async_sdk.hgetall("a")


async def test_many_concurrent_requests(async_sdk: AsyncUpstashRedis, direct: redis.Redis) -> None:
    # When 300 increments arrive at once (more than the pool's 64 connections)
    results = await asyncio.gather(*(async_sdk.incr("hits") for _ in range(300)))
    # Then each got its own value and none was lost
    assert sorted(results) == list(range(1, 301))
    assert direct.get("hits") == "300"


# --- HTTP details --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_bad_token_is_refused(http: httpx.Client, headers: dict[str, str]) -> None:
    # When a command arrives without the right bearer token
    response = http.post("/", json=["PING"], headers=headers)
    # Then it is refused like Upstash refuses it
    assert response.status_code == 401
    assert response.json() == WRONGPASS


def test_sdk_with_a_wrong_token_raises(emulator: ThreadedServer) -> None:
    # Given a client holding the wrong token
    client = UpstashRedis(emulator.url, "wrong", rest_retries=0, allow_telemetry=False)
    # Then its calls raise WRONGPASS
    with client, pytest.raises(UpstashError, match=r"^WRONGPASS"):
        client.get("k")


@pytest.mark.parametrize(
    "command",
    [
        ["BLPOP", "l", 0],
        ["brpop", "l", 1],
        ["BZPOPMIN", "z", 0],
        ["SUBSCRIBE", "ch"],
        ["WATCH", "k"],
        ["MULTI"],
        ["SELECT", 1],
        ["XREAD", "COUNT", 1, "BLOCK", 0, "STREAMS", "s", "$"],
    ],
    ids=lambda command: " ".join(str(part) for part in command[:4]),
)
def test_blocking_and_connection_state_commands_are_refused(
    http: httpx.Client, command: list[Any]
) -> None:
    # When a command that REST cannot serve arrives
    response = http.post("/", json=command, headers=_auth())
    # Then it is refused with 400 and a clear error
    assert response.status_code == 400
    assert "not available" in response.json()["error"]


def test_xread_without_block_is_served(http: httpx.Client, direct: redis.Redis) -> None:
    # Given a stream
    direct.xadd("s", {"f": "v"}, id="1-0")
    # When XREAD is asked without BLOCK (a key may even be called "block")
    body = ["XREAD", "COUNT", 1, "STREAMS", "s", "block", "0", "0"]
    response = http.post("/", json=body, headers=_auth(b64=False))
    # Then it is answered
    assert response.status_code == 200
    assert response.json() == {"result": [["s", [["1-0", ["f", "v"]]]]]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/", b"not json"),
        ("/", b'{"command": "GET"}'),
        ("/", b"[]"),
        ("/", b'[["GET", "k"]]'),
        ("/", b'["SET", "k", null]'),
        ("/pipeline", b'["GET", "k"]'),
        ("/multi-exec", b"[1, 2]"),
    ],
)
def test_malformed_bodies_are_refused(http: httpx.Client, path: str, body: bytes) -> None:
    # When the body is not a command (or list of commands)
    response = http.post(path, content=body, headers=_auth())
    # Then it is refused with 400 and an error
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR failed to parse command")


def test_redis_error_is_a_400(http: httpx.Client) -> None:
    # When Redis rejects a command
    response = http.post("/", json=["NOSUCHCOMMAND"], headers=_auth())
    # Then the emulator answers 400 with Redis's message
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR unknown command")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_not_allowed(http: httpx.Client, method: str) -> None:
    # When a command endpoint is called with a method other than POST
    response = http.request(method, "/", headers=_auth())
    # Then it answers 405
    assert response.status_code == 405
    assert "error" in response.json()


def test_healthz_needs_no_token(http: httpx.Client) -> None:
    # When the health check is asked without a token
    response = http.get("/healthz")
    # Then it answers ok
    assert response.status_code == 200
    assert response.text == "ok"


def test_without_base64_strings_are_text(http: httpx.Client, redis_server: RedisProcess) -> None:
    # Given a valid UTF-8 value and bytes that are not UTF-8
    binary = redis.Redis(port=redis_server.port)
    binary.set("text", "Львів".encode())
    binary.set("bytes", b"\xff\xfeA")
    binary.close()
    # When they are read without Upstash-Encoding
    text = http.post("/", json=["GET", "text"], headers=_auth(b64=False)).json()
    bad = http.post("/", json=["GET", "bytes"], headers=_auth(b64=False)).json()
    encoded = http.post("/", json=["GET", "bytes"], headers=_auth()).json()
    # Then text arrives as text, undecodable bytes are replaced, and base64 keeps them exact
    assert text == {"result": "Львів"}
    assert bad == {"result": "\ufffd\ufffdA"}
    assert base64.b64decode(encoded["result"]) == b"\xff\xfeA"


# --- Redis going away ----------------------------------------------------------------------


@pytest.fixture
def lone_stack() -> Iterator[tuple[RedisProcess, ThreadedServer]]:
    """An emulator over a redis-server of its own, which the test may stop and start."""
    server = RedisProcess().start()
    app_server = serve_in_thread(create_app(redis_url=server.url, token=TOKEN))
    yield server, app_server
    app_server.stop()
    server.stop()


async def test_redis_restart_does_not_wedge_the_emulator(
    lone_stack: tuple[RedisProcess, ThreadedServer],
) -> None:
    server, app_server = lone_stack
    async with AsyncUpstashRedis(
        app_server.url, TOKEN, rest_retries=0, allow_telemetry=False
    ) as client:
        # Given many pooled connections in use
        assert len(set(await asyncio.gather(*(client.incr("n") for _ in range(40))))) == 40
        # When Redis stops
        server.stop()
        # Then calls answer 503 with an error, which the SDK raises
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(app_server.url, json=["GET", "n"], headers=_auth())
        assert response.status_code == 503
        assert "error" in response.json()
        with pytest.raises(UpstashError):
            await client.get("n")
        # And once Redis is back, the very next calls succeed, however many at once
        server.start()
        answers = await asyncio.gather(*(client.incr("n") for _ in range(40)))
        assert sorted(answers) == list(range(1, 41))
