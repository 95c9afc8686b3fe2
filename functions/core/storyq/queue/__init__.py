"""The Redis dispatch queue: fair-share order, a global cap on leases, fenced leases, delayed
retries with backoff, and position/ETA in O(log n). See `dispatch` for the API."""

from storyq.queue.backoff import parse_retry_after, retry_delay
from storyq.queue.dispatch import Dispatcher
from storyq.queue.eta import DEFAULT_GENERATION_SECONDS, Position, estimated_minutes
from storyq.queue.keys import QueueKeys
from storyq.queue.models import (
    Claim,
    PendingJob,
    ProviderPause,
    ProviderPaused,
    QueueCounts,
    QueueNotReady,
    RunningJob,
)

__all__ = [
    "DEFAULT_GENERATION_SECONDS",
    "Claim",
    "Dispatcher",
    "PendingJob",
    "Position",
    "ProviderPause",
    "ProviderPaused",
    "QueueCounts",
    "QueueKeys",
    "QueueNotReady",
    "RunningJob",
    "estimated_minutes",
    "parse_retry_after",
    "retry_delay",
]
