"""`storyq worker`: the long-running local worker (the same sweep and drain as the Lambda)."""

from __future__ import annotations

import argparse


def _cmd_worker(args: argparse.Namespace) -> int:
    from storyq_worker.runner import run

    return run(args)


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `storyq worker [--poll 2] [--concurrency N] [--grace 30]` to the CLI's verbs."""
    from storyq_worker.runner import add_arguments

    worker = verbs.add_parser("worker", help="run the queue worker locally until SIGTERM/SIGINT")
    add_arguments(worker)
    worker.set_defaults(run=_cmd_worker)
