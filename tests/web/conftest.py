"""Fixtures of the browser tests: a private stack (Redis, Postgres, both emulators, the API
serving web/ through `mount_web`, as `storyq dev` serves it), a worker loop on a thread, users
with tokens and credits, and Debian's Chromium driven by Playwright for Python.

The stack is private (as the worker tests' is) because the worker's sweep re-dispatches every
pending job in its database: with MAX_ACTIVE_JOBS=1 the jobs other test modules leave behind
would hold the only slot and the queue positions here would mean nothing.

No browser is downloaded: Playwright launches /usr/bin/chromium (`make test` installs the
Debian package). Screenshots go to tests/artifacts/web/ (gitignored).
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from storyq.config import Settings
from storyq_local.stack.apps import api_app
from storyq_local.stack.builder import ApiSpec
from storyq_local.stack.redis_server import RedisProcess, SharedRedis
from storyq_local.stack.servers import ThreadedServer, serve_in_thread
from storyq_local.stack.users import dev_token
from storyq_local.stack.workers import WorkerThread
from tests.support.stack import WEB_DIR, private_stack
from tests.support.users import ApiUser as WebUser

try:  # a clear failure below, not a collection error, when the package is missing
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Playwright,
        Request,
        sync_playwright,
    )
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# One slot and a five-second "generation": the second story waits while the first is written,
# the third waits behind it (and is cancelled), and every state lasts long enough for the
# page's 2-5 s polls to see it. Heartbeats (lease / 3) report progress twice a second.
WEB_TIMINGS: dict[str, Any] = {
    "max_active_jobs": 1,
    "generation_delay_seconds": 5.0,
    "lease_seconds": 1.5,
    "generation_timeout_seconds": 30.0,
    "retry_base_seconds": 0.1,
    "retry_max_seconds": 0.5,
    "worker_poll_seconds": 0.2,
    "worker_time_margin_seconds": 1.0,
    "generate_rate_limit": 100,
    "read_rate_limit": 5000,
}


@dataclass(frozen=True)
class WebStack:
    database_url: str
    redis: RedisProcess | SharedRedis
    settings: Settings
    api: ThreadedServer  # the API with the page, on a thread


@dataclass
class Users:
    """Signs users up (auth.users) and grants credits, as Supabase Auth and an admin would."""

    stack: WebStack
    made: list[WebUser] = field(default_factory=list)

    def new(self, *, credits: int = 0) -> WebUser:
        user_id = uuid.uuid4()
        token = dev_token(
            self.stack.settings, database_url=self.stack.database_url, user_id=user_id
        )
        if credits:
            with psycopg.connect(self.stack.database_url, autocommit=True) as conn:
                conn.execute("select public.grant_credits(%s, %s)", (user_id, credits))
        user = WebUser(id=user_id, token=token)
        self.made.append(user)
        return user

    def balance(self, user: WebUser) -> int:
        with psycopg.connect(self.stack.database_url) as conn:
            row = conn.execute("select public.credit_balance(%s)", (user.id,)).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="package")
def web_stack(postgres_server_url: str) -> Iterator[WebStack]:
    with private_stack(
        postgres_server_url, prefix="storyq_web", settings=WEB_TIMINGS, api=ApiSpec(web=WEB_DIR)
    ) as stack:
        assert isinstance(stack.api, ThreadedServer)
        yield WebStack(
            database_url=stack.database_url,
            redis=stack.redis,
            settings=stack.settings(),
            api=stack.api,
        )


def serve_api(settings: Settings) -> ThreadedServer:
    """Another API with the page mounted, on other settings (a lower limit)."""
    return serve_in_thread(api_app(settings, web=WEB_DIR))


@pytest.fixture(scope="package")
def api_server(web_stack: WebStack) -> ThreadedServer:
    return web_stack.api


@pytest.fixture
def users(web_stack: WebStack) -> Users:
    return Users(web_stack)


def cancel_unfinished(database_url: str) -> None:
    """Close what an earlier test left waiting or running, so no sweep picks it up."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update public.story_jobs set status = 'cancelled', finished_at = now()"
            " where status in ('pending', 'processing')"
        )


@pytest.fixture
def worker(web_stack: WebStack) -> Iterator[WorkerThread]:
    """A running worker (template generator, 5 s per story, one slot) on an empty queue."""
    cancel_unfinished(web_stack.database_url)
    web_stack.redis.client().flushall()
    thread = WorkerThread(web_stack.settings).start()
    yield thread
    thread.stop()


@pytest.fixture
def api(api_server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=10) as client:
        yield client


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if sync_playwright is None:
        pytest.fail(
            "the browser tests need Playwright for Python: `.venv/bin/pip install playwright` "
            "(never `playwright install`: the tests drive Debian's /usr/bin/chromium)"
        )
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail(
            "the browser tests need Debian's Chromium at /usr/bin/chromium: "
            "`apt-get update && apt-get install -y chromium` (make test installs it)"
        )
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
        args=CHROMIUM_ARGS,
        headless=True,
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1000, "height": 900}, locale="en-GB")
    yield context
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test body failed (the page fixture screenshots failures)."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page that fails the test on any uncaught script error or console error, and leaves a
    screenshot of how a failed test ended in tests/artifacts/web/<test>-failed.png. Chromium's
    own "Failed to load resource" lines (the 4xx the tests provoke on purpose) are not errors."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console.error: {msg.text}")

    page.on("console", on_console)
    yield page
    if request.node.stash.get(FAILED, False):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):  # the page may be gone; the failure matters more
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failed.png"), full_page=True)
    assert not errors, f"the page reported errors: {errors}"


# Chromium fails the requests it has in flight with this when a network interface comes or
# goes: docker's veths, as `sam local` starts a container (this run's, or another run's on the
# same machine). A page that lost its scripts so never starts.
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


def goto_ready(page: Page, url: str, *, timeout_ms: float = 30_000, loads: int = 3) -> None:
    """Open `url` and wait until the page has started (`html[data-ready]`). A load whose
    requests Chromium failed with ERR_NETWORK_CHANGED is made again, as a user would reload,
    up to `loads` times in all; any other failure to start fails the test, naming what failed."""
    for load in range(1, loads + 1):
        failed: list[str] = []

        def on_failed(request: Request, failed: list[str] = failed) -> None:
            failed.append(f"{request.url}: {request.failure}")

        page.on("requestfailed", on_failed)
        try:
            try:
                page.goto(url)
            except PlaywrightError as exc:
                if NETWORK_CHANGED not in str(exc) or load == loads:
                    raise
                continue
            deadline = time.monotonic() + timeout_ms / 1000
            while time.monotonic() < deadline:
                with contextlib.suppress(PlaywrightTimeoutError):
                    page.wait_for_selector("html[data-ready='true']", timeout=500)
                    return
                if any(NETWORK_CHANGED in failure for failure in failed):
                    break
            else:
                raise AssertionError(f"the page did not start; requests that failed: {failed}")
            if load == loads:
                raise AssertionError(f"the page did not start {loads} times: {failed}")
        finally:
            page.remove_listener("requestfailed", on_failed)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
