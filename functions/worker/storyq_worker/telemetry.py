"""Powertools Logger, Metrics and Tracer of the worker (the handler decorates its entry point
with all three; the logic only logs)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "storyq-worker"

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)
