"""The Upstash REST wire format: JSON command bodies in, Redis replies out as JSON.

Used by the Upstash emulator (`storyq_local.emulators.upstash`). Nothing here talks to Redis.

- Arguments: the SDK posts str/int/float arguments as JSON values and a bool as `true`/`false`.
  Numbers keep the exact text the client wrote (`10`, `1.5`, `1e-07`); bools become
  "true"/"false"; null, objects and nested arrays make the body malformed.
- Replies (RESP2 as redis-py's parser returns them with `decode_responses=False`): bulk and
  simple strings arrive as bytes, integers as int, nil as None, arrays as lists, and an error
  nested in an array (EXEC, Lua tables) as a `ResponseError` instance.
- With `Upstash-Encoding: base64` every string is base64-encoded except the literal "OK", which
  the SDK passes through undecoded (RESP2 cannot tell a simple string from a bulk one, so a bulk
  "OK" also travels as "OK"; the SDK decodes both to "OK"). Without it, strings are UTF-8 text
  and bytes that are not valid UTF-8 are replaced with U+FFFD (the REST text form cannot carry
  them; clients that store binary use the base64 encoding, as the SDK always does).
- An error nested in an array becomes its message, as a string like any other.
"""

from __future__ import annotations

import base64
import json

from redis.exceptions import RedisError

type Json = bool | int | float | str | list["Json"] | dict[str, "Json"] | None

MALFORMED = "ERR failed to parse command"


class MalformedBodyError(ValueError):
    """The request body is not a command (or a list of commands) Upstash would accept."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{MALFORMED}: {detail}")


def _load(body: bytes) -> object:
    try:
        # Numbers keep the client's own text: Redis parses them itself.
        return json.loads(body, parse_int=str, parse_float=str, parse_constant=str)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedBodyError("body is not JSON") from exc


def _argument(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    raise MalformedBodyError(f"argument {json.dumps(value)[:40]} is not a string or number")


def _command(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise MalformedBodyError("a command is a non-empty JSON array")
    if not isinstance(value[0], str) or not value[0]:
        raise MalformedBodyError("the command name must be a string")
    return [_argument(item) for item in value]


def parse_command(body: bytes) -> list[str]:
    """`["SET","k","v","EX",100]` → `["SET","k","v","EX","100"]`."""
    return _command(_load(body))


def parse_commands(body: bytes) -> list[list[str]]:
    """A pipeline or transaction body: a JSON array of command arrays."""
    value = _load(body)
    if not isinstance(value, list):
        raise MalformedBodyError("a pipeline is a JSON array of commands")
    return [_command(item) for item in value]


def error_message(exc: RedisError) -> str:
    """Redis's own error text: redis-py strips known prefixes ("ERR ", "NOSCRIPT ") into
    `status_code`; put them back."""
    message = str(exc)
    return f"{exc.status_code} {message}" if exc.status_code else message


def _text(value: bytes, *, b64: bool) -> str:
    if not b64:
        return value.decode("utf-8", errors="replace")
    if value == b"OK":
        return "OK"
    return base64.b64encode(value).decode("ascii")


def encode_reply(reply: object, *, b64: bool) -> Json:
    """A raw RESP2 reply as Upstash puts it in `{"result": ...}`."""
    if reply is None or isinstance(reply, int):
        return reply
    if isinstance(reply, bytes):
        return _text(reply, b64=b64)
    if isinstance(reply, list):
        return [encode_reply(item, b64=b64) for item in reply]
    if isinstance(reply, RedisError):
        return _text(error_message(reply).encode(), b64=b64)
    # Anything else (a str from a decoding parser, a float) travels as its text.
    return _text(str(reply).encode(), b64=b64)
