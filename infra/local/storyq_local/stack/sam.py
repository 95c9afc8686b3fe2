"""The built functions in Lambda's runtime emulation: `sam local start-api` (the HTTP API) and
`sam local start-lambda` (the Lambda Invoke API) side by side, against a LocalStack, with the
API's kick and the worker's hand-off going through start-lambda and a scheduler standing in for
EventBridge's `rate(1 minute)` sweep. Used by `make sam-local`, tests/deploy and bench/.

    with docker_session() as image:             # dockerd up, the Lambda image built or reused
        with start_sam_local(stack, SamSpec(), image=image) as sam:
            httpx.get(sam.api_url + "/api/health")
            sam.invoke("WorkerFunction", {"source": "manual"})

How the stack's settings reach the containers: sam's `--env-vars` overrides only variables the
template declares (samcli EnvironmentVariables.resolve), so instead each run writes a copy of the
built template (`local_template`) whose functions declare exactly the settings `make dev`'s
processes run with (every Settings field: `settings_env`), with the emulators' URLs on the
docker0 gateway, where the containers reach this machine, and with the kick pointed at
start-lambda: WORKER_FUNCTION_NAME is the worker's logical id and AWS_ENDPOINT_URL_LAMBDA (the
AWS SDKs' service-specific endpoint variable, which boto3 reads by itself) is start-lambda's
URL. In AWS neither is set that way.

Traps (see also infra/local/lambda-image.sh):
- `--docker-network host` does not work: sam talks to the Runtime Interface Emulator in each
  container through a published port, which host networking ignores. Containers stay on the
  default bridge, so whatever they call must listen on the gateway address.
- sam answers Ctrl-C only after stopping its warm containers one by one (about 10 s each, the
  RIE ignores SIGTERM). `SamLocal.stop` kills this run's containers first (found by the
  STORYQ_SAM_RUN variable they carry), then interrupts both sam processes together.
- sam gives a declared variable the value of the same name in its own environment, over the
  template's (samcli EnvironmentVariables.resolve, "shell environment values, second
  priority"): `make sam-local` started with SUPABASE_URL=http://127.0.0.1:... would hand the
  containers an address they cannot reach. sam runs without the names the template declares
  (`_sam_process_env`).
- start-lambda (SAM CLI 1.170, pinned) accepts InvocationType=Event and runs it on a pool;
  with warm containers each function has one container and invocations of it queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from storyq.config import Settings
from storyq_local.config import project_root
from storyq_local.stack import apps
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.processes import new_log
from storyq_local.stack.servers import ThreadedServer, free_port, serve_in_thread

ROOT = project_root()
IMAGE_SCRIPT = ROOT / "infra" / "local" / "lambda-image.sh"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
BUILD = ROOT / ".aws-sam" / "build"
LAYER = "CoreLayer"
LAYER_REPOSITORY = "storyq-lambda-layer"
API_FUNCTION = "ApiFunction"
WORKER_FUNCTION = "WorkerFunction"
# What EventBridge Scheduler sends every minute (template.yaml, WorkerFunction.Events.Sweep).
SCHEDULE_EVENT = {"source": "aws.scheduler", "detail-type": "Scheduled Event"}
RUN_VARIABLE = "STORYQ_SAM_RUN"
# How long a stopping sam may take after its containers are gone, before it is killed.
SAM_EXIT_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class SamSpec:
    """What to run. Ports 0 take free ones."""

    api_port: int = 3000  # start-api, on 127.0.0.1
    lambda_port: int = 3001  # start-lambda, on the docker0 gateway (containers call it)
    build_dir: Path = BUILD
    # EAGER: every function's container starts with sam and stays (no cold start per request);
    # None: a new container per invocation, as `sam local invoke` does.
    warm_containers: Literal["EAGER", "LAZY"] | None = "EAGER"
    # The stand-in for EventBridge's schedule; None: no scheduled sweeps.
    schedule_seconds: float | None = 60.0
    # More environment for both functions, over the stack's (Settings names in capitals).
    env: Mapping[str, str] = field(default_factory=dict)
    # False: no start-api nor start-lambda, only what `SamLocal.invoke_cli` needs (the template,
    # the image, the emulators); the API then kicks nothing (WORKER_FUNCTION_NAME is empty).
    serve: bool = True
    log_dir: Path | None = None  # sam's output; None: the stack's log folder


# --- docker and the image --------------------------------------------------------------------


def _image_script(*args: str) -> str:
    """Run lambda-image.sh; its last line of output."""
    done = subprocess.run(
        ["bash", str(IMAGE_SCRIPT), *args], check=True, stdout=subprocess.PIPE, text=True
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def docker_answers() -> bool:
    probe = subprocess.run(
        ["docker", "info"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return probe.returncode == 0


@contextmanager
def docker_session() -> Iterator[str]:
    """dockerd answering (installed and started when needed) and the Lambda image for the
    template's runtime (built, or reused by its recipe's hash); yields the image's tag. The
    dockerd this started is stopped on exit, with its bridge and iptables rules."""
    started = not docker_answers()
    _image_script("docker-up")
    try:
        yield _image_script("build", "--keep-docker")
    finally:
        if started:
            _image_script("docker-down")


def layer_image(image: str, build_dir: Path) -> str:
    """`image` with the built CoreLayer at /opt (where Lambda unpacks layers), tagged by a hash of
    the layer's files, made once per layer content (docker create, cp, commit). The template
    given to sam then has no layer: sam rebuilds its image for a layer defined in the template
    on every start and every `sam local invoke` (about 20 s each, samcli LambdaImage.build);
    for an image without layers it adds its emulator once and reuses that image after."""
    layer = build_dir / LAYER
    if not (layer / "python").is_dir():
        raise RuntimeError(f"no {layer}/python: `make sam-build` first")
    digest = hashlib.sha256(image.encode())
    # Every file, bytecode included: a build without it (a plain `sam build`) must not reuse
    # an image made from a compiled one, nor the other way round (cold starts differ 2.5x).
    for path in sorted(layer.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(layer)).encode())
            digest.update(path.read_bytes())
    repository = f"{LAYER_REPOSITORY}-{digest.hexdigest()[:12]}"
    tag = f"{repository}:latest"
    found = subprocess.run(["docker", "image", "inspect", tag], check=False, capture_output=True)
    if found.returncode == 0:
        return tag
    container = subprocess.run(
        ["docker", "create", image], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    try:
        subprocess.run(["docker", "cp", f"{layer}/.", f"{container}:/opt/"], check=True)
        subprocess.run(["docker", "commit", container, tag], check=True, stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(["docker", "rm", "-f", container], check=False, capture_output=True)
    _forget_older_layer_images(keep=repository)
    return tag


def _forget_older_layer_images(*, keep: str, newest: int = 3) -> None:
    """Remove the layer images of older builds (and sam's images made from them), keeping the
    `newest` repositories: another checkout's tests or `make sam-local` may be using one.
    Without -f, so an image a container still uses stays."""
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}"],
        check=False,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.splitlines()
    created: dict[str, str] = {}
    names: dict[str, list[str]] = {}
    for line in listed:
        name, _, when = line.partition("\t")
        repository = name.split(":")[0]
        if repository.startswith(LAYER_REPOSITORY):
            created[repository] = max(created.get(repository, ""), when)
            names.setdefault(repository, []).append(name)
    ordered = sorted(created, key=lambda repository: created[repository], reverse=True)
    old = [name for repo in ordered[newest:] if repo != keep for name in names[repo]]
    if old:
        subprocess.run(["docker", "rmi", *old], check=False, capture_output=True)


def docker_gateway() -> str:
    """docker0's IPv4 address: this machine as containers on the default bridge see it.
    (Debian's dockerd 20.10 leaves Gateway out of `docker network inspect bridge`.)"""
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "docker0"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.split()
    if "inet" not in shown:
        raise RuntimeError("docker0 has no IPv4 address: is dockerd running?")
    return shown[shown.index("inet") + 1].split("/")[0]


# --- the template ----------------------------------------------------------------------------


def local_template(build_dir: Path, env: Mapping[str, str], dest: Path) -> Path:
    """A copy of `build_dir`'s template (JSON, which sam reads like YAML) whose functions declare
    exactly `env` as their environment and use no layer (it is in the image: `layer_image`),
    whose code paths are absolute (the copy lives elsewhere) and whose parameters all have
    defaults fit for this machine (no --parameter-overrides needed). Returns `dest`."""
    from cfnlint.decode import decode  # a dev dependency, like everything in storyq_local

    template, problems = decode(str(build_dir / "template.yaml"))
    if problems or template is None:
        raise RuntimeError(f"{build_dir / 'template.yaml'} does not parse: {problems}")
    template = json.loads(json.dumps(template))  # plain dicts
    # Defaults for what `sam deploy` would ask, so that a plain `sam local invoke -t` runs it.
    parameters = template.get("Parameters", {})
    for parameter in parameters.values():
        parameter.setdefault("Default", "")
    if "Architecture" in parameters:
        parameters["Architecture"]["Default"] = host_architecture()
    if "SnapStart" in parameters:
        parameters["SnapStart"]["Default"] = "off"  # sam local runs no published versions
    globals_ = template.get("Globals", {}).get("Function", {})
    globals_.pop("Environment", None)
    globals_.pop("Layers", None)  # the layer is in the image (`layer_image`)
    template["Resources"].pop(LAYER, None)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = str((build_dir / properties[key]).resolve())
        if resource["Type"] == "AWS::Serverless::Function":
            properties["Environment"] = {"Variables": dict(env)}
            properties.pop("Layers", None)
    dest.write_text(json.dumps(template, indent=1) + "\n", encoding="utf-8")
    return dest


# --- running ---------------------------------------------------------------------------------


@dataclass
class SamLocal:
    """A running pair of sam processes. `stop()` (or leaving the `with`) ends them."""

    api_url: str
    lambda_url: str
    run_id: str
    template: Path
    image: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]]
    cleanup: ExitStack = field(default_factory=ExitStack, repr=False)

    def invoke(self, function: str, event: Mapping[str, Any], *, timeout: float = 120.0) -> Any:
        """A RequestResponse invoke through start-lambda; the function's answer, decoded.
        Raises RuntimeError when the function failed (X-Amz-Function-Error)."""
        answer = httpx.post(
            f"{self.lambda_url}/2015-03-31/functions/{function}/invocations",
            json=dict(event),
            timeout=timeout,
        )
        answer.raise_for_status()
        if answer.headers.get("x-amz-function-error"):
            raise RuntimeError(f"{function} failed: {answer.text}")
        return answer.json()

    def invoke_event(self, function: str, event: Mapping[str, Any]) -> int:
        """An asynchronous (InvocationType=Event) invoke, as the kick sends; the status (202)."""
        answer = httpx.post(
            f"{self.lambda_url}/2015-03-31/functions/{function}/invocations",
            json=dict(event),
            headers={"X-Amz-Invocation-Type": "Event"},
            timeout=10,
        )
        return answer.status_code

    def invoke_cli(self, function: str, event: Mapping[str, Any], *, timeout: float = 180) -> Any:
        """`sam local invoke <function> -e <event>`: a new container for this one invocation, as
        a developer runs it; the function's answer, decoded (sam prints it last on stdout).
        Raises RuntimeError with sam's output when it fails."""
        event_file = self.template.with_name(f"event-{uuid.uuid4().hex[:8]}.json")
        event_file.write_text(json.dumps(dict(event)), encoding="utf-8")
        try:
            done = subprocess.run(
                [
                    *sam_command(
                        "invoke", template=self.template, image=self.image, host=None, port=None
                    ),
                    *("--event", str(event_file)),
                    function,
                ],
                cwd=self.template.parent,
                env=_sam_process_env(self.env),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            event_file.unlink(missing_ok=True)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise RuntimeError(
                f"sam local invoke {function} exited {done.returncode}:\n{done.stderr[-3000:]}"
            )
        return json.loads(lines[-1])

    def containers(self) -> list[str]:
        """This run's function containers (running or not)."""
        return run_containers(self.run_id)

    def stop(self) -> None:
        self.cleanup.close()

    def __enter__(self) -> SamLocal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sam_process_env(declared: Mapping[str, str]) -> dict[str, str]:
    """This process's environment for sam, without the variables the functions declare (sam
    would pass ours to the containers instead of the template's), telemetry off."""
    env = {name: value for name, value in os.environ.items() if name not in declared}
    env["SAM_CLI_TELEMETRY"] = "0"
    return env


def run_containers(run_id: str) -> list[str]:
    """Containers sam made whose environment carries STORYQ_SAM_RUN=`run_id`."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=sam.cli.container.type"],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout.split()
    if not listed:
        return []
    inspected = subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}} {{json .Config.Env}}", *listed],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout.splitlines()
    mark = f"{RUN_VARIABLE}={run_id}"
    return [line.split(" ", 1)[0] for line in inspected if mark in line]


def _remove_containers(run_id: str) -> None:
    found = run_containers(run_id)
    if found:
        subprocess.run(
            ["docker", "rm", "-f", *found],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _stop_processes(processes: list[subprocess.Popen[bytes]], run_id: str) -> None:
    """Containers first (sam would stop them one by one, slowly), then both sams at once."""
    _remove_containers(run_id)
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + SAM_EXIT_SECONDS
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    _remove_containers(run_id)  # one sam may have started a container while stopping


def settings_env(settings: Settings) -> dict[str, str]:
    """Every field of `settings` as the environment variable that sets it (names in capitals,
    secrets in clear, lists and mappings as JSON, unset optional fields left out)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[name.upper()] = str(value)
    return env


def function_env(
    stack: LocalStack, *, upstash_url: str, supabase_url: str, lambda_url: str, run_id: str
) -> dict[str, str]:
    """Both functions' environment: the stack's settings, all of them, as `make dev`'s API and
    worker have them; the emulators at the containers' address; no SSM; the kick through
    start-lambda; Powertools as the template configures it, without X-Ray (no daemon here)."""
    settings = stack.settings(upstash_redis_rest_url=upstash_url, supabase_url=supabase_url)
    return {
        **settings_env(settings),
        "STORYQ_SECRETS_PATH": "",
        "WORKER_FUNCTION_NAME": WORKER_FUNCTION,
        "AWS_ENDPOINT_URL_LAMBDA": lambda_url,
        "POWERTOOLS_SERVICE_NAME": "storyq",
        "POWERTOOLS_METRICS_NAMESPACE": "storyq",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
        "POWERTOOLS_TRACE_DISABLED": "1",
        RUN_VARIABLE: run_id,
    }


def sam_command(
    verb: Literal["start-api", "start-lambda", "invoke"],
    *,
    template: Path,
    image: str,
    host: str | None,
    port: int | None,
    warm: str | None = None,
) -> list[str]:
    return [
        str(SAM),
        "local",
        verb,
        *("--template", str(template)),
        *(("--host", host) if host else ()),
        *(("--port", str(port)) if port else ()),
        *("--invoke-image", image),
        "--skip-pull-image",
        *(("--warm-containers", warm) if warm else ()),
    ]


def host_architecture() -> Literal["x86_64", "arm64"]:
    """The template's Architecture value for this machine (containers run natively)."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"


def _serve_emulators(stack: LocalStack, gateway: str, cleanup: ExitStack) -> tuple[str, str]:
    """The stack's two emulators once more, on the gateway address (same Redis, same database,
    same secrets): what the containers call."""
    spec = stack.spec
    servers: list[ThreadedServer] = [
        serve_in_thread(
            apps.upstash_app(redis_url=stack.redis.url, token=spec.upstash_token),
            host=gateway,
            port=free_port(),
        ),
        serve_in_thread(
            apps.supabase_app(
                database_url=stack.database_url,
                jwt_secret=spec.jwt_secret,
                pool_size=spec.emulators.supabase_pool_size,
                pool_timeout=spec.emulators.supabase_pool_timeout,
            ),
            host=gateway,
            port=free_port(),
        ),
    ]
    for server in servers:
        cleanup.callback(server.stop)
    return servers[0].url, servers[1].url


def start_sam_local(stack: LocalStack, spec: SamSpec, *, image: str) -> SamLocal:
    """start-lambda, then start-api, each answering, the schedule running. Raises RuntimeError
    (with sam's log) when one exits before it answers."""
    if not (spec.build_dir / "template.yaml").is_file():
        raise RuntimeError(f"no {spec.build_dir}/template.yaml: `make sam-build` first")
    cleanup = ExitStack()
    try:
        return _start(stack, spec, image, cleanup)
    except BaseException:
        cleanup.close()
        raise


def _start(stack: LocalStack, spec: SamSpec, image: str, cleanup: ExitStack) -> SamLocal:
    gateway = docker_gateway()
    run_id = uuid.uuid4().hex[:12]
    lambda_port = spec.lambda_port or free_port()
    api_port = spec.api_port or free_port()
    lambda_url = f"http://{gateway}:{lambda_port}"
    upstash_url, supabase_url = _serve_emulators(stack, gateway, cleanup)
    env = {
        **function_env(
            stack,
            upstash_url=upstash_url,
            supabase_url=supabase_url,
            lambda_url=lambda_url,
            run_id=run_id,
        ),
        **({} if spec.serve else {"WORKER_FUNCTION_NAME": ""}),
        **spec.env,
    }
    log_dir = spec.log_dir or stack.log_dir
    template = local_template(spec.build_dir, env, log_dir / f"sam-template-{run_id}.json")
    image = layer_image(image, spec.build_dir)
    processes: list[subprocess.Popen[bytes]] = []
    cleanup.callback(_stop_processes, processes, run_id)
    for verb, host, port in (
        ()
        if not spec.serve
        else (
            ("start-lambda", gateway, lambda_port),
            ("start-api", "127.0.0.1", api_port),
        )
    ):
        log_path = new_log(log_dir, f"sam-{verb}")
        log = cleanup.enter_context(log_path.open("ab"))
        process = subprocess.Popen(
            sam_command(
                verb,  # type: ignore[arg-type]
                template=template,
                image=image,
                host=host,
                port=port,
                warm=spec.warm_containers,
            ),
            cwd=log_dir,
            env=_sam_process_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals reach it only from us (`_stop_processes`)
        )
        processes.append(process)
        _wait_listening(process, host, port, log_path=log_path, verb=verb)
    running = SamLocal(
        api_url=f"http://127.0.0.1:{api_port}",
        lambda_url=lambda_url,
        run_id=run_id,
        template=template,
        image=image,
        env=env,
        processes=processes,
        cleanup=cleanup,
    )
    if spec.serve and spec.schedule_seconds:
        schedule = Schedule(running, spec.schedule_seconds).start()
        cleanup.callback(schedule.stop)
    return running


def _wait_listening(
    process: subprocess.Popen[bytes], host: str, port: int, *, log_path: Path, verb: str
) -> None:
    """Until sam answers on `port`; RuntimeError with its log as soon as it exits instead.
    EAGER warm containers start before sam listens: a few seconds per function."""
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"sam local {verb} exited ({process.returncode}):\n{tail}")
        try:
            httpx.get(f"http://{host}:{port}/", timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sam local {verb} not answering on {host}:{port}") from None
        time.sleep(0.5)


class Schedule:
    """EventBridge Scheduler's stand-in: the template's schedule event, asynchronously, to the
    worker every `seconds` (the first one at once), as long as it runs."""

    def __init__(self, sam: SamLocal, seconds: float) -> None:
        self.sam = sam
        self.seconds = seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sam-schedule", daemon=True)

    def start(self) -> Schedule:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set():
            # sam stopping or busy: the next tick tries again, as EventBridge would
            with contextlib.suppress(httpx.HTTPError):
                self.sam.invoke_event(WORKER_FUNCTION, SCHEDULE_EVENT)
            self._stopping.wait(self.seconds)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
