"""`make sam-local`: the built functions in Lambda's runtime emulation (`sam local start-api`)
against the local stack, with the API on http://127.0.0.1:3000 (issue 17, first step).

dockerd up (infra/local/lambda-image.sh docker-up; stopped at the end when this started it) →
the Lambda image for python3.13 (built or reused) → the local stack as `make dev` has it
(the dev database and Redis, the emulators on 127.0.0.1:8079 and :54321 for the CLI) plus the
same emulators on the docker0 gateway address, where function containers reach this machine →
an --env-vars file for both functions → `sam local start-api` in the foreground. Ctrl-C or
SIGTERM stops sam (and its containers), the stack and the dockerd it started.

Traps:
- sam's --env-vars only overrides variables the template declares (samcli EnvironmentVariables
  .resolve): UPSTASH_REDIS_REST_TOKEN, GENERATION_DELAY_SECONDS, LEASE_SECONDS, ... given there
  never reach a container. The functions run with the dev defaults for everything undeclared.
- `--docker-network host` (the README's old line) does not work: sam talks to the emulator in
  the container through a published port, which host networking ignores. Containers stay on
  the bridge and reach the emulators at the gateway address, so those must listen there.
- WORKER_FUNCTION_NAME is emptied: the API's kick would otherwise go to AWS's Lambda endpoint.
  Kicking the worker through `sam local start-lambda` is the next step of issue 17.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from types import FrameType

from storyq.config import Settings
from storyq_local.config import LocalSettings, project_root
from storyq_local.devstack import DEV_USER, dev_spec
from storyq_local.stack import apps
from storyq_local.stack.builder import LocalStack, start_stack
from storyq_local.stack.servers import serve_in_thread
from storyq_local.stack.users import dev_token

ROOT = project_root()
IMAGE_SCRIPT = ROOT / "infra" / "local" / "lambda-image.sh"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
FUNCTIONS = ("ApiFunction", "WorkerFunction")
# What the template declares for the functions (Globals and each function): the only names
# sam's --env-vars can set.
DECLARED = (
    "STORYQ_ENV",
    "STORYQ_SECRETS_PATH",
    "UPSTASH_REDIS_REST_URL",
    "SUPABASE_URL",
    "MAX_ACTIVE_JOBS",
    "GENERATOR",
    "OPENAI_MODEL",
    "OPENAI_BASE_URL",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "WORKER_FUNCTION_NAME",
    "CORS_ORIGINS",
)
STOP_SECONDS = 15.0


def _script(*args: str) -> str:
    """Run lambda-image.sh; its last line of output."""
    done = subprocess.run(
        ["bash", str(IMAGE_SCRIPT), *args], check=True, stdout=subprocess.PIPE, text=True
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def docker_gateway() -> str:
    """docker0's address: this machine as containers on the default bridge see it. (Debian's
    dockerd 20.10 leaves Gateway out of `docker network inspect bridge`, so ask the link.)"""
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "docker0"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.split()
    address = shown[shown.index("inet") + 1].split("/")[0]
    if not address:
        raise SystemExit("docker0 has no IPv4 address")
    return address


def function_env(stack: LocalStack, *, upstash_url: str, supabase_url: str) -> dict[str, str]:
    """The stack's settings as the functions' environment, with the gateway URLs."""
    env = stack.env(upstash_redis_rest_url=upstash_url, supabase_url=supabase_url)
    env.update(
        STORYQ_SECRETS_PATH="",
        WORKER_FUNCTION_NAME="",
        POWERTOOLS_LOG_LEVEL=os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
    )
    return {name: value for name, value in env.items() if name in DECLARED}


def write_env_vars(path: Path, env: dict[str, str]) -> None:
    path.write_text(json.dumps({name: env for name in FUNCTIONS}, indent=2) + "\n")


def sam_command(*, image: str, env_vars: Path, port: int, gateway_env: dict[str, str]) -> list[str]:
    return [
        str(SAM),
        "local",
        "start-api",
        *("--port", str(port)),
        *("--invoke-image", image),
        "--skip-pull-image",
        *("--env-vars", str(env_vars)),
        "--parameter-overrides",
        "Architecture=x86_64",
        f"UpstashRedisRestUrl={gateway_env['UPSTASH_REDIS_REST_URL']}",
        f"SupabaseUrl={gateway_env['SUPABASE_URL']}",
        "SnapStart=off",
    ]


def run(port: int) -> int:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    local = LocalSettings()
    with ExitStack() as cleanup:
        started_docker = (
            subprocess.run(
                ["docker", "info"],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ).returncode
            != 0
        )
        _script("docker-up")
        if started_docker:
            cleanup.callback(_script, "docker-down")
        t0 = time.monotonic()
        image = _script("build", "--keep-docker")
        print(f"image {image} ({time.monotonic() - t0:.1f} s)", flush=True)
        gateway = docker_gateway()

        # The dev stack without its in-process API and worker: the functions are those.
        stack = start_stack(replace(dev_spec(settings, local), api=None, worker=None))
        cleanup.callback(stack.stop)
        redis_url = stack.redis.url
        secret = settings.supabase_jwt_secret
        assert secret is not None  # dev_spec refuses a settings without one
        upstash = serve_in_thread(
            apps.upstash_app(
                redis_url=redis_url, token=settings.upstash_redis_rest_token.get_secret_value()
            ),
            host=gateway,
            port=8079,
        )
        cleanup.callback(upstash.stop)
        supabase = serve_in_thread(
            apps.supabase_app(
                database_url=stack.database_url,
                jwt_secret=secret.get_secret_value(),
                pool_size=20,
                pool_timeout=5.0,
            ),
            host=gateway,
            port=54321,
        )
        cleanup.callback(supabase.stop)

        env = function_env(stack, upstash_url=upstash.url, supabase_url=supabase.url)
        work = Path(tempfile.mkdtemp(prefix="storyq-sam-local-"))
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        env_vars = work / "env.json"
        write_env_vars(env_vars, env)
        token = dev_token(stack.settings(), database_url=stack.database_url, user_id=DEV_USER)
        api = f"http://127.0.0.1:{port}"
        print(
            f"\nstoryq functions in Lambda containers (image {image}).\n"
            f"  API               {api}  (sam local start-api)\n"
            f"  emulators         {upstash.url}, {supabase.url} (for the containers)\n"
            f"  env vars          {env_vars}\n"
            f"  dev user          {DEV_USER}\n\n"
            f"  export TOKEN={token}\n"
            f"  curl -s {api}/api/health\n"
            f'  curl -s -H "Authorization: Bearer $TOKEN" {api}/api/me\n\n'
            "Ctrl-C stops everything.",
            flush=True,
        )
        sam = subprocess.Popen(
            sam_command(image=image, env_vars=env_vars, port=port, gateway_env=env),
            cwd=ROOT,
            env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
            start_new_session=True,  # our signal handler forwards Ctrl-C once
        )

        stopping = threading.Event()

        def stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()
            if sam.poll() is None:
                sam.send_signal(signal.SIGINT)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while sam.poll() is None and not stopping.is_set():
            time.sleep(0.2)
        print("stopping…", flush=True)
        try:
            code = sam.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            sam.kill()
            code = sam.wait()
        left = _sam_containers()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], stdout=subprocess.DEVNULL, check=False)
        return 0 if stopping.is_set() or code == 0 else code


def _sam_containers() -> list[str]:
    """Containers sam left (a killed sam does not remove its own)."""
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=sam.cli.container.type"],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return found.stdout.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sam-local", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAM_LOCAL_PORT", "3000")))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("sam-local starts dockerd and debootstraps: run it as root")
    return run(args.port)


if __name__ == "__main__":
    sys.exit(main())
