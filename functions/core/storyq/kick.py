"""The "kick": an asynchronous invoke of the worker function, so a job starts within a second
instead of at the next scheduled sweep. The API kicks after an enqueue when a slot is free; a
worker invocation that no longer has time to claim kicks a fresh one when a slot frees up
while jobs wait (a hand-off).

Only in AWS (a function name known); locally the dev worker polls. A failed kick is logged
and forgotten: the job is committed and the sweep a minute later dispatches it anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)


class WorkerKicker:
    """Invokes `function_name` with InvocationType=Event; a no-op without a function name."""

    def __init__(self, function_name: str | None, *, timeout: float) -> None:
        self.function_name = function_name
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def _lambda(self) -> Any:
        with self._lock:  # boto3 clients are thread-safe, their creation is not
            if self._client is None:
                import boto3  # in the Lambda runtime; imported only when a kick is configured
                from botocore.config import Config

                self._client = boto3.client(
                    "lambda",
                    config=Config(
                        connect_timeout=2,
                        read_timeout=self._timeout,
                        retries={"max_attempts": 1, "mode": "standard"},
                    ),
                )
            return self._client

    def _invoke(self, payload: bytes) -> int:
        answer = self._lambda().invoke(
            FunctionName=self.function_name, InvocationType="Event", Payload=payload
        )
        return int(answer.get("StatusCode", 0))

    async def kick(self, *, job_id: str) -> bool:
        """Wake the worker for a new job; True when Lambda accepted the event."""
        event = {"source": "storyq.api", "kick": True, "reason": "enqueue", "jobId": job_id}
        return await self._send(event)

    async def hand_off(self) -> bool:
        """Wake a fresh worker invocation to take the slots this one no longer has time for."""
        return await self._send({"source": "storyq.worker", "kick": True, "reason": "handoff"})

    async def _send(self, event: dict[str, object]) -> bool:
        if not self.function_name:
            return False
        payload = json.dumps(event).encode()
        try:
            status = await asyncio.wait_for(asyncio.to_thread(self._invoke, payload), self._timeout)
        except Exception:  # best effort by design (module docstring)
            logger.warning("worker kick failed", extra={"kick": event}, exc_info=True)
            return False
        return status == 202
