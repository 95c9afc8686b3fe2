"""Reading the queue scripts' replies (arrays of strings and integers, as Upstash returns them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from uuid import UUID

from storyq.queue.eta import DEFAULT_GENERATION_SECONDS
from storyq.queue.models import Claim


def as_list(reply: object) -> list[object]:
    """An array reply; TypeError for anything else."""
    if not isinstance(reply, list):
        raise TypeError(f"expected an array from the queue script, got {reply!r}")
    return reply


def as_int(value: object) -> int:
    """An integer reply (Upstash may send it as text); TypeError for anything else."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value)
    raise TypeError(f"expected an integer from the queue script, got {value!r}")


def as_mean(value: object) -> float:
    """The rolling mean generation time in seconds, or the default before any was recorded."""
    return float(value) if isinstance(value, str) and value else DEFAULT_GENERATION_SECONDS


def as_claims(reply: object, *, width: int = 3, probe: bool = False) -> list[Claim]:
    """Claims from a flat reply of `width` items each: job, user, fence (, score)."""
    items = as_list(reply)
    return [
        Claim(
            job_id=UUID(str(group[0])),
            user_id=UUID(str(group[1])) if group[1] else None,
            fence=as_int(group[2]),
            score=str(group[3]) if width > 3 else "",
            probe=probe,
        )
        for group in chunks(items, width)
    ]


def chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in runs of `size` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
