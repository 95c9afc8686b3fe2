"""Compatibility path: `storyq_local.stack.servers` owns this now. Kept only while files outside the
stack's owners still import from here; import from `storyq_local.stack.servers` instead."""

from storyq_local.stack.servers import (
    ThreadedServer,
    free_port,
    serve_in_thread,
)

__all__ = [
    "ThreadedServer",
    "free_port",
    "serve_in_thread",
]
