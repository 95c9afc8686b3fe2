"""Powertools Logger, Metrics and Tracer of the worker (the handler decorates its entry point
with all three; the logic only logs)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "storyq-worker"

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
# Only httpx (Upstash, PostgREST, OpenAI) is patched: the default patches every library X-Ray
# knows and loads botocore at import, which the worker never uses (~70 ms of cold start).
tracer = Tracer(service=SERVICE, patch_modules=("httpx",))
