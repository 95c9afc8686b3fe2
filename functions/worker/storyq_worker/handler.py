"""The worker Lambda: one entry point for the EventBridge schedule (every minute) and the API's
asynchronous "kick" after an enqueue. Both run the same invocation: sweep, then drain.

Returns the invocation's summary (what was reaped, requeued, rebuilt, claimed, completed,
failed, retried, ...), which is also emitted as metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from storyq import snapstart
from storyq.config import Settings, get_settings
from storyq.generation import Generator
from storyq_worker.invocation import run_invocation
from storyq_worker.telemetry import logger, metrics, tracer

# The core (storyq.*) logs through the standard library: its lines get this Logger's JSON
# handler, level and keys (the correlation id included), like the function's own.
logging.getLogger("storyq")
copy_config_to_registered_loggers(source_logger=logger, include={"storyq"})


class RemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def trigger_of(event: Mapping[str, Any]) -> str:
    """'kick' for the API's payload, 'handoff' for a worker's, 'schedule' for anything else
    (EventBridge, manual)."""
    source = event.get("source")
    if source == "storyq.api":
        return "kick"
    return "handoff" if source == "storyq.worker" else "schedule"


def invoke(
    event: Mapping[str, Any],
    context: RemainingTime | None,
    *,
    settings: Settings,
    generator: Generator | None = None,
) -> dict[str, Any]:
    """The handler's work without the Powertools decorators (tests call it with their own
    Settings and generator)."""
    trigger = trigger_of(event)
    remaining = None
    if context is not None:
        remaining = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
    summary = asyncio.run(
        run_invocation(settings, remaining_seconds=remaining, generator=generator)
    )
    logger.info("invocation done", extra={"trigger": trigger, "job_id": event.get("jobId")})
    return {"trigger": trigger, **summary.as_dict()}


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = invoke(event, context, settings=get_settings())
    if metrics.namespace:  # unset outside Lambda (sam local invoke without it): no metrics
        for name, value in summary.items():
            if isinstance(value, int) and value:
                metrics.add_metric(name=f"Jobs_{name}", unit=MetricUnit.Count, value=value)
        metrics.add_metric(name="Invocations", unit=MetricUnit.Count, value=1)
    return summary


def _nothing_of_its_own() -> None:
    """The worker keeps no client between invocations (each opens and closes its own)."""


# After a SnapStart restore the settings and secrets are read again, before the first event.
snapstart.register(before_snapshot=_nothing_of_its_own, after_restore=get_settings)
