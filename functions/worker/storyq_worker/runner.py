"""The local worker: `storyq worker` or `python -m storyq_worker.runner` (what the old
`node queue/storyWorker.js` was). The same sweep and drain as the Lambda, in a loop without
end: it polls for jobs every `--poll` seconds, sweeps every half lease, and never holds more
than `--concurrency` generations (the global MAX_ACTIVE_JOBS cap applies across processes).

On SIGTERM or SIGINT it stops claiming and lets its running generations finish for up to
`--grace` seconds; then (or at a second signal) it gives them back (a retryable failed
attempt, re-queued at once) and exits 0. Nothing it held is lost either way.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from storyq.config import Settings, get_settings
from storyq.generation import Generator
from storyq_worker.context import WorkerContext, open_context
from storyq_worker.drain import DrainOptions, drain
from storyq_worker.summary import Summary
from storyq_worker.sweep import sweep

DEFAULT_GRACE_SECONDS = 30.0
MAX_SWEEP_SECONDS = 60.0


@dataclass(frozen=True)
class RunnerOptions:
    poll_seconds: float
    concurrency: int
    grace_seconds: float = DEFAULT_GRACE_SECONDS

    def sweep_seconds(self, settings: Settings) -> float:
        """Half a lease (a dead worker's job is retried soon), between poll and a minute."""
        return min(MAX_SWEEP_SECONDS, max(self.poll_seconds, settings.lease_seconds / 2))


class Shutdown:
    """First request: stop claiming, and give back what still runs after the grace period.
    Second request: give it back now."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.stop = asyncio.Event()
        self.abandon = asyncio.Event()

    def request(self) -> None:
        if self.stop.is_set():
            self.abandon.set()
            return
        self.stop.set()
        asyncio.get_running_loop().call_later(self.grace_seconds, self.abandon.set)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request)


async def _sweep_periodically(
    ctx: WorkerContext, *, every: float, stop: asyncio.Event, summary: Summary
) -> None:
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            summary.merge(await sweep(ctx))
        else:
            return


async def run_worker(
    settings: Settings,
    options: RunnerOptions,
    shutdown: Shutdown,
    *,
    generator: Generator | None = None,
) -> Summary:
    """Sweep, then drain and sweep until `shutdown` is requested and nothing runs."""
    async with open_context(settings, generator=generator) as ctx:
        summary = await sweep(ctx)
        sweeper = asyncio.create_task(
            _sweep_periodically(
                ctx, every=options.sweep_seconds(settings), stop=shutdown.stop, summary=summary
            )
        )
        try:
            drained = await drain(
                ctx,
                DrainOptions(
                    concurrency=options.concurrency,
                    poll_seconds=options.poll_seconds,
                    stop=shutdown.stop,
                    abandon=shutdown.abandon,
                ),
            )
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        return summary.merge(drained)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `storyq worker` (also of `python -m storyq_worker.runner`)."""
    parser.add_argument(
        "--poll",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often to look for new jobs (default: WORKER_POLL_SECONDS)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="generations this process runs at once (default: MAX_ACTIVE_JOBS; the global "
        "limit of MAX_ACTIVE_JOBS across all workers holds regardless)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running generations may finish before they are "
        f"handed back to the queue (default: {DEFAULT_GRACE_SECONDS:g})",
    )


def options_from(args: argparse.Namespace, settings: Settings) -> RunnerOptions:
    poll = settings.worker_poll_seconds if args.poll is None else args.poll
    concurrency = settings.max_active_jobs if args.concurrency is None else args.concurrency
    if poll <= 0 or concurrency < 1 or args.grace < 0:
        raise ValueError("--poll must be > 0, --concurrency >= 1 and --grace >= 0")
    return RunnerOptions(poll_seconds=poll, concurrency=concurrency, grace_seconds=args.grace)


async def _serve(settings: Settings, options: RunnerOptions) -> Summary:
    shutdown = Shutdown(options.grace_seconds)
    shutdown.install_signal_handlers()
    return await run_worker(settings, options, shutdown)


def run(args: argparse.Namespace) -> int:
    """`storyq worker`: run until SIGTERM/SIGINT, then exit 0."""
    settings = get_settings()
    options = options_from(args, settings)
    print(
        f"storyq worker: generator={settings.generator}, polling every "
        f"{options.poll_seconds:g} s, up to {options.concurrency} at once "
        f"(global limit {settings.max_active_jobs}); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    summary = asyncio.run(_serve(settings, options))
    counts = ", ".join(f"{name} {value}" for name, value in summary.as_dict().items() if value)
    print(f"storyq worker: stopped ({counts or 'nothing done'})", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storyq-worker", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
