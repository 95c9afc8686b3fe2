"""Waiting for something the test cannot await directly: poll it, with a deadline."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import overload


@overload
async def eventually[T](
    check: Callable[[], Awaitable[T]], *, timeout: float = ..., every: float = ...
) -> T: ...


@overload
async def eventually[T](
    check: Callable[[], T], *, timeout: float = ..., every: float = ...
) -> T: ...


async def eventually(
    check: Callable[[], object], *, timeout: float = 20.0, every: float = 0.05
) -> object:
    """Call `check` (plain or async) every `every` seconds until it returns something truthy,
    and return that; TimeoutError once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)
