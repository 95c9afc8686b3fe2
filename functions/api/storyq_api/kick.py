"""The "kick": an asynchronous invoke of the worker function right after an enqueue, so a job
starts within a second instead of at the next scheduled sweep.

Only in AWS (WORKER_FUNCTION_NAME set); locally the dev worker polls. A failed kick is logged
and forgotten: the job is committed and the sweep a minute later dispatches it anyway.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from storyq_api.telemetry import logger


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
        """Wake the worker; True when Lambda accepted the event."""
        if not self.function_name:
            return False
        payload = json.dumps(
            {"source": "storyq.api", "kick": True, "reason": "enqueue", "jobId": job_id}
        ).encode()
        try:
            status = await asyncio.wait_for(asyncio.to_thread(self._invoke, payload), self._timeout)
        except Exception:  # best effort by design (module docstring)
            logger.warning("worker kick failed", extra={"job_id": job_id}, exc_info=True)
            return False
        return status == 202
