"""Powertools Logger, Metrics and Tracer of the API, and the few metrics it records.

The handler decorates the Lambda entry point with all three (handler.py); routes only call the
small functions below. A metric never breaks a request: outside Lambda (uvicorn, tests) the
namespace may be unset, and then nothing is recorded.
"""

from __future__ import annotations

from importlib.util import find_spec

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "storyq-api"

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
# X-Ray needs aws-xray-sdk (aws-lambda-powertools[tracer]); without it, run untraced rather
# than fail at cold start. Only httpx (Upstash, PostgREST) is patched: patching every library
# X-Ray knows loads botocore at import, ~60 ms of cold start for the rare worker kick.
tracer = Tracer(
    service=SERVICE,
    disabled=True if find_spec("aws_xray_sdk") is None else None,
    patch_modules=("httpx",),
)


def _add(name: str, unit: MetricUnit, value: float) -> None:
    if not metrics.namespace:
        return
    try:
        metrics.add_metric(name=name, unit=unit, value=value)
    except Exception:  # telemetry is best effort; the request goes on
        logger.warning("metric not recorded", extra={"metric": name}, exc_info=True)


def job_queued(*, latency_ms: float) -> None:
    """A job was debited and queued: count it and record how long the enqueue took."""
    _add("JobsQueued", MetricUnit.Count, 1)
    _add("EnqueueLatency", MetricUnit.Milliseconds, latency_ms)


def generate_rejected(reason: str) -> None:
    """POST /api/generate refused a request; `reason` is the problem code (rate_limited, ...)."""
    _add("GenerateRejected", MetricUnit.Count, 1)
    _add(f"GenerateRejected_{reason}", MetricUnit.Count, 1)


def dispatch_degraded(operation: str) -> None:
    """Redis could not be reached after Postgres committed; the sweeper will catch up."""
    _add("DispatchDegraded", MetricUnit.Count, 1)
    _add(f"DispatchDegraded_{operation}", MetricUnit.Count, 1)
