"""Upstash's billing rule, applied to what a private redis-server counted (../shared/FACTS.md,
"Upstash billing"): every command is billed, a script's own commands included, and an
EVAL/EVALSHA counts one more; every command of a pipeline or transaction counts; AUTH, HELLO,
SELECT, PING, INFO, CONFIG and COMMAND are free.

Two views of the same server, both taken between CONFIG RESETSTAT and INFO commandstats:
- `Bill`: INFO commandstats, which counts the commands scripts run as well as the EVALSHA
  itself: the billed total, by command;
- `Trace`: MONITOR, which shows each EVAL/EVALSHA followed by the commands its script ran,
  grouped into `Call`s and named by script (storyq's by SHA, upstash-ratelimit's by the limiter
  in its key), so a total can be split into the steps that spent it. Phases are cut by ECHO
  markers sent on the server's own ordered stream, never by clocks.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from storyq.queue import scripts

FREE = frozenset({"auth", "hello", "select", "ping", "info", "config", "command"})
# Never sent to Upstash by storyq: the emulator's own connection setup (redis-py's CLIENT
# SETINFO on each pooled connection it opens; Upstash's REST API has no connections), and the
# bench's MONITOR and ECHO markers.
STORYQ_ARTEFACTS = frozenset({"client", "monitor", "echo"})
RATE_LIMIT_PREFIX = "storyq:ratelimit:"
_SCRIPT_NAMES = {
    script.sha: script.name
    for script in vars(scripts).values()
    if isinstance(script, scripts.Script)
}
STORYQ_SCRIPTS = tuple(
    script for script in vars(scripts).values() if isinstance(script, scripts.Script)
)


def base_name(command: str) -> str:
    """`config|resetstat` -> `config`: what the rule names."""
    return command.split("|", 1)[0].lower()


@dataclass(frozen=True)
class Bill:
    """Billed commands by command, and what was left out and why."""

    by_command: dict[str, int]
    free: dict[str, int]
    artefacts: dict[str, int]
    # EVALSHA answered NOSCRIPT (a fresh script cache), not billed in steady state: the EVAL
    # that follows is.
    noscript: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_command.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "billed": self.total,
            "by_command": self.by_command,
            "not_billed": {
                "free": self.free,
                "artefacts": self.artefacts,
                "noscript_evalsha": self.noscript,
            },
        }


def bill(
    calls: Mapping[str, int],
    *,
    failed: Mapping[str, int] | None = None,
    artefacts: Iterable[str] = (),
) -> Bill:
    """Upstash's rule over commandstats' calls (`failed`: failed calls, where NOSCRIPT shows)."""
    left_out = frozenset(artefacts)
    billed: Counter[str] = Counter()
    free: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for command, n in calls.items():
        name = base_name(command)
        if name in FREE:
            free[name] += n
        elif name in left_out:
            other[name] += n
        else:
            billed[name] += n
    noscript = (failed or {}).get("evalsha", 0)
    billed["evalsha"] -= noscript
    return Bill(
        by_command={k: v for k, v in sorted(billed.items()) if v},
        free=dict(sorted(free.items())),
        artefacts=dict(sorted(other.items())),
        noscript=noscript,
    )


def commandstats(client: redis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    """(calls, failed calls) per command since the last CONFIG RESETSTAT."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    failed = {
        name.removeprefix("cmdstat_"): entry.get("failed_calls", 0)
        for name, entry in stats.items()
        if entry.get("failed_calls")
    }
    return calls, failed


def storyq_bill(client: redis.Redis) -> Bill:
    calls, failed = commandstats(client)
    return bill(calls, failed=failed, artefacts=STORYQ_ARTEFACTS)


@dataclass
class Call:
    """One client command; for a script, the commands it ran (`inner`)."""

    name: str
    command: str
    args: list[str]
    inner: list[str] = field(default_factory=list)

    @property
    def billed(self) -> int:
        return 1 + len(self.inner)


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)")


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("x") and len(code) == 3:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(one, text)


def parse_monitor_line(line: str) -> tuple[bool, list[str]]:
    """(run by a script, arguments) of one MONITOR line:
    `1700000000.1 [0 127.0.0.1:5000] "EVALSHA" "ab12..." "1" "k"`, `[0 lua]` inside scripts."""
    head, _, rest = line.partition("]")
    return head.endswith(" lua"), [_unescape(arg) for arg in _QUOTED.findall(rest)]


def classify(args: list[str]) -> str:
    """A call's name: storyq's script by SHA, upstash-ratelimit's by limiter, else the command."""
    command = args[0].upper()
    if command in {"EVALSHA", "EVALSHA_RO"} and len(args) > 1:
        return _SCRIPT_NAMES.get(args[1].lower(), f"script {args[1][:8]}")
    if command in {"EVAL", "EVAL_RO"} and len(args) > 2:
        sha = hashlib.sha1(args[1].encode(), usedforsecurity=False).hexdigest()
        if sha in _SCRIPT_NAMES:
            return _SCRIPT_NAMES[sha]
        keys = args[3 : 3 + int(args[2])]
        if keys and keys[0].startswith(RATE_LIMIT_PREFIX):
            limiter = keys[0].removeprefix(RATE_LIMIT_PREFIX).split(":", 1)[0]
            return f"rate limit {limiter}"
        return "eval (unknown script)"
    return command.lower()


class Trace:
    """MONITOR on its own connection and thread, with ECHO markers to cut phases."""

    STOP = "bench:trace:stop"

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lines: list[str] = []
        where = client.connection_pool.connection_kwargs
        self._monitor = redis.Redis(
            host=where.get("host", "127.0.0.1"),
            port=where["port"],
            decode_responses=True,
            socket_timeout=None,  # MONITOR waits as long as the server is quiet
        )
        self._thread = threading.Thread(target=self._read, name="bench-monitor", daemon=True)
        self._started = threading.Event()

    def start(self) -> Trace:
        self._thread.start()
        if not self._started.wait(10):
            raise TimeoutError("MONITOR did not start")
        return self

    def _read(self) -> None:
        conn = self._monitor.connection_pool.get_connection()
        # redis-py leaves these unannotated; MONITOR needs the raw lines (its Monitor class
        # joins arguments with spaces, which loses a script's text).
        conn.send_command("MONITOR")  # type: ignore[no-untyped-call]
        conn.read_response()
        self._started.set()
        while True:
            line = str(conn.read_response())
            self._lines.append(line)
            if f'"{self.STOP}"' in line:
                conn.disconnect()  # type: ignore[no-untyped-call]
                return

    def mark(self, name: str) -> None:
        self._client.echo(f"bench:mark:{name}")

    def stop(self) -> None:
        self._client.echo(self.STOP)
        self._thread.join(30)

    def calls(self, start: str, end: str) -> list[Call]:
        """The calls between the markers `start` and `end` (after `stop`)."""
        lines = self._lines
        first, last = (
            next((i for i, line in enumerate(lines) if f'"bench:mark:{name}"' in line), None)
            for name in (start, end)
        )
        if first is None or last is None:
            raise RuntimeError(f"MONITOR lacks the markers {start!r} and {end!r}")
        found: list[Call] = []
        for line in lines[first + 1 : last]:
            scripted, args = parse_monitor_line(line)
            if not args:
                continue
            if scripted and found:
                found[-1].inner.append(args[0].lower())
            else:
                found.append(Call(name=classify(args), command=args[0].lower(), args=args))
        return [call for call in found if base_name(call.command) not in FREE | STORYQ_ARTEFACTS]


def by_name(calls: Iterable[Call]) -> dict[str, dict[str, Any]]:
    """Calls grouped by name: how many, billed commands, and which commands they billed."""
    groups: dict[str, dict[str, Any]] = {}
    for call in calls:
        group = groups.setdefault(call.name, {"calls": 0, "billed": 0, "commands": Counter()})
        group["calls"] += 1
        group["billed"] += call.billed
        group["commands"][call.command] += 1
        group["commands"].update(call.inner)
    for group in groups.values():
        group["commands"] = dict(sorted(group["commands"].items()))
    return groups
