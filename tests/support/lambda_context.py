"""A Lambda context with the attributes Powertools and the handlers read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LambdaContext:
    function_name: str = "storyq-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:storyq-api"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def worker_context() -> LambdaContext:
    """The worker function's (a whole 900 s invocation ahead)."""
    arn = "arn:aws:lambda:eu-central-1:123456789012:function:storyq-worker"
    return LambdaContext(function_name="storyq-worker", invoked_function_arn=arn)
