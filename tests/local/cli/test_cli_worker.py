"""`storyq worker`'s options, as the CLI registers them."""

from __future__ import annotations

import argparse

import pytest

from storyq.config import Settings
from storyq_local.cli_worker import register
from storyq_worker.runner import RunnerOptions, options_from


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="storyq")
    register(parser.add_subparsers(dest="verb", required=True))
    return parser.parse_args(["worker", *argv])


def test_options_default_to_the_settings(default_settings: Settings) -> None:
    args = parse()
    assert callable(args.run)
    assert options_from(args, default_settings) == RunnerOptions(
        poll_seconds=default_settings.worker_poll_seconds,
        concurrency=default_settings.max_active_jobs,
    )


def test_options_override_the_settings(default_settings: Settings) -> None:
    options = options_from(
        parse("--poll", "0.5", "--concurrency", "2", "--grace", "5"), default_settings
    )
    assert options == RunnerOptions(poll_seconds=0.5, concurrency=2, grace_seconds=5)
    # sweeps every half lease (a minute at most), never more often than it polls
    assert options.sweep_seconds(default_settings) == 30.0


def test_nonsense_options_are_refused(default_settings: Settings) -> None:
    with pytest.raises(ValueError, match="--concurrency"):
        options_from(parse("--concurrency", "0"), default_settings)
