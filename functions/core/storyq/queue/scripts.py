"""The queue's Lua scripts: read once at import from the package, run by SHA.

Each operation lives in its own `<name>.lua` with a header naming its KEYS, ARGV and reply.
`common.lua` (shared local functions: the fair-share score, the Redis clock, lease checks) is
put in front of every one of them, so that logic is written once; the SHA is that of the
combined text. A call is one EVALSHA; on NOSCRIPT (a fresh or flushed script cache) it is sent
once more as EVAL, which also caches it, so the next call is an EVALSHA again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

from upstash_redis.asyncio import Redis
from upstash_redis.errors import UpstashError

_PACKAGE = files(__package__ or "storyq.queue")
_COMMON = _PACKAGE.joinpath("common.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Script:
    """One operation's script: its name, full source and SHA1."""

    name: str
    source: str
    sha: str

    @classmethod
    def load(cls, name: str) -> Script:
        body = _PACKAGE.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        source = f"{_COMMON}\n-- operation: {name}\n{body}"
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        return cls(name=name, source=source, sha=sha)

    async def run(self, redis: Redis, keys: Sequence[str], args: Sequence[str]) -> object:
        """EVALSHA, falling back to EVAL when Redis does not know the script yet."""
        try:
            reply: object = await redis.evalsha(self.sha, keys=list(keys), args=list(args))
        except UpstashError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            reply = await redis.eval(self.source, keys=list(keys), args=list(args))
        return reply


ENQUEUE = Script.load("enqueue")
CLAIM = Script.load("claim")
HEARTBEAT = Script.load("heartbeat")
ACK = Script.load("ack")
UNCLAIM = Script.load("unclaim")
RETRY_LATER = Script.load("retry_later")
REMOVE = Script.load("remove")
EMPTY = Script.load("empty")
SWEEP = Script.load("sweep")
POSITION = Script.load("position")
COUNTS = Script.load("counts")
PAUSE = Script.load("pause")
