"""Compatibility path: `storyq_local.stack.redis_server` and `storyq_local.stack.servers` own
these now (bench/ uses them too, and may not import tests). Kept only while tests/api imports
from here; import from storyq_local.stack instead."""

from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import wait_until

__all__ = ["RedisProcess", "wait_until"]
