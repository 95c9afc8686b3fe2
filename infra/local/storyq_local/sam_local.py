"""`make sam-local`: the whole service as Lambda functions, in the SAM CLI's runtime emulation.

    API        http://127.0.0.1:3000   sam local start-api (SAM_LOCAL_PORT)
    Lambda     http://<docker0>:3001   sam local start-lambda: the API's kick and the worker's
                                       hand-off invoke the worker here (SAM_LOCAL_LAMBDA_PORT)
    page       http://127.0.0.1:3080/  the reference page, talking to the API above
                                       (SAM_LOCAL_WEB_PORT)
    schedule   the worker's sweep every 60 s, as EventBridge does (SAM_LOCAL_SCHEDULE_SECONDS)

Behind them the same stack as `make dev` (the dev database and Redis, both emulators, the dev
user), with the same settings: whatever the environment or .env sets (GENERATION_DELAY_SECONDS,
MAX_ACTIVE_JOBS, LEASE_SECONDS, rate limits, ...) reaches the function containers
(storyq_local.stack.sam). Containers are kept warm: a request pays a cold start only on the
first call. Stays in the foreground; Ctrl-C or SIGTERM stops the containers, both sam
processes, the stack and the dockerd it started, within seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from types import FrameType

from storyq.config import Settings
from storyq_local.config import LocalSettings
from storyq_local.devstack import DEV_GENERATION_DELAY_SECONDS, DEV_USER, dev_spec
from storyq_local.stack.apps import web_app
from storyq_local.stack.builder import start_stack
from storyq_local.stack.sam import SamSpec, docker_session, start_sam_local
from storyq_local.stack.servers import serve_in_thread
from storyq_local.stack.users import dev_token
from storyq_local.stack.web import default_web_directory


class Stop(BaseException):
    """Ctrl-C or SIGTERM, raised where the main thread is, so that everything started unwinds
    (in reverse order: containers and sam, the page, the stack, the dockerd it started). A
    BaseException, so no `except Exception` on the way (a poll, a probe) swallows it."""

    asked_at = 0.0


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    Stop.asked_at = Stop.asked_at or time.monotonic()
    # Once: a second Ctrl-C must not break off the cleanup (sam runs in its own session).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stop


def run(*, port: int, lambda_port: int, web_port: int, schedule_seconds: float) -> int:
    settings = Settings()
    if "GENERATION_DELAY_SECONDS" not in os.environ and settings.generation_delay_seconds == 0:
        settings = settings.model_copy(
            update={"generation_delay_seconds": DEV_GENERATION_DELAY_SECONDS}
        )
    local = LocalSettings()
    api = f"http://127.0.0.1:{port}"
    page_origins = [f"http://127.0.0.1:{web_port}", f"http://localhost:{web_port}"]
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    started = time.monotonic()
    try:
        with ExitStack() as cleanup:
            image = cleanup.enter_context(docker_session())
            # The dev stack without its in-process API and worker: the functions are those.
            stack = cleanup.enter_context(
                start_stack(replace(dev_spec(settings, local), api=None, worker=None))
            )
            web = default_web_directory()
            page = None
            if web is not None:
                page = serve_in_thread(
                    web_app(web, config={"apiBaseUrl": api}), port=web_port, log_level="warning"
                )
                cleanup.callback(page.stop)
            sam = cleanup.enter_context(
                start_sam_local(
                    stack,
                    SamSpec(
                        api_port=port,
                        lambda_port=lambda_port,
                        schedule_seconds=schedule_seconds,
                        env={"CORS_ORIGINS": json.dumps([*settings.cors_origins, *page_origins])},
                    ),
                    image=image,
                )
            )
            token = dev_token(stack.settings(), database_url=stack.database_url, user_id=DEV_USER)
            print(
                f"\nstoryq runs as Lambda functions (up in {time.monotonic() - started:.0f} s).\n"
                f"  API        {api}  (sam local start-api)\n"
                f"  Lambda     {sam.lambda_url}  (sam local start-lambda: kicks, hand-offs)\n"
                f"  page       {f'{page.url}/?token={token}' if page else '(no web/ folder)'}\n"
                f"  schedule   the worker's sweep every {schedule_seconds:g} s\n"
                f"  settings   generation {settings.generation_delay_seconds:g} s, "
                f"{settings.max_active_jobs} slot(s), lease {settings.lease_seconds:g} s\n"
                f"  logs       {stack.log_dir}\n"
                f"  containers {len(sam.containers())} warm, each with STORYQ_SAM_RUN={sam.run_id}"
                " in its environment\n"
                f"  template   {sam.template} (the build, with this environment)\n"
                f"  dev user   {DEV_USER}\n\n"
                f"  export TOKEN={token}\n"
                f'  curl -s -H "Authorization: Bearer $TOKEN" {api}/api/me\n'
                f'  curl -s -X POST -H "Authorization: Bearer $TOKEN" '
                "-H 'content-type: application/json' "
                f'-d \'{{"prompt": "A fox learns to sail"}}\' {api}/api/generate\n'
                f"  curl -s -X POST {sam.lambda_url}/2015-03-31/functions/WorkerFunction/"
                "invocations -d @events/worker_schedule.json\n"
                f"  .venv-sam/bin/sam local invoke -t {sam.template} --invoke-image {sam.image}"
                " --skip-pull-image -e events/health.json ApiFunction\n\n"
                f"Credits: storyq credits add --user {DEV_USER} --amount 10\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
            while all(process.poll() is None for process in sam.processes):
                time.sleep(0.5)
            print("a sam process exited: stopping", file=sys.stderr, flush=True)
            return 1
    except Stop:
        print(f"stopped in {time.monotonic() - Stop.asked_at:.1f} s", flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sam-local", description=(__doc__ or "").split("\n")[0])
    env = os.environ.get
    parser.add_argument("--port", type=int, default=int(env("SAM_LOCAL_PORT", "3000")))
    parser.add_argument(
        "--lambda-port", type=int, default=int(env("SAM_LOCAL_LAMBDA_PORT", "3001"))
    )
    parser.add_argument("--web-port", type=int, default=int(env("SAM_LOCAL_WEB_PORT", "3080")))
    parser.add_argument(
        "--schedule-seconds",
        type=float,
        default=float(env("SAM_LOCAL_SCHEDULE_SECONDS", "60")),
        help="the worker's sweep interval (EventBridge's rate(1 minute) in AWS)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("sam-local starts dockerd and debootstraps an image: run it as root")
    return run(
        port=args.port,
        lambda_port=args.lambda_port,
        web_port=args.web_port,
        schedule_seconds=args.schedule_seconds,
    )


if __name__ == "__main__":
    sys.exit(main())
