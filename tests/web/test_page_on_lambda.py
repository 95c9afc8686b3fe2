"""The page in Chromium against the functions in Lambda's runtime emulation, as `make sam-local`
serves them: the page from its own origin, the API from `sam local start-api` on another one
(CORS answered by the function), the worker woken through `sam local start-lambda`. The user's
page, then the operator's (`#admin`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from storyq_local.stack.apps import web_app
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.sam import SamLocal, SamSpec
from storyq_local.stack.servers import ThreadedServer, free_port, serve_in_thread
from tests.support.sql import Db
from tests.support.stack import WEB_DIR, sam_stack
from tests.support.users import sign_up
from tests.web.conftest import WEB_TIMINGS, goto_ready, screenshot
from tests.web.test_admin_page import FAST_REFRESH, confirm, field, stat
from tests.web.test_page import FAST_POLLING, generate, row

SLOW = 60_000  # ms: the first invocation of each warm container pays its cold start


@dataclass(frozen=True)
class OnLambda:
    stack: LocalStack
    sam: SamLocal
    page: ThreadedServer


@pytest.fixture(scope="module")
def on_lambda(postgres_server_url: str, lambda_image: str) -> Iterator[OnLambda]:
    port = free_port()
    origins = [f"http://127.0.0.1:{port}"]
    with sam_stack(
        postgres_server_url,
        lambda_image,
        prefix="storyq_web_lambda",
        settings=WEB_TIMINGS,
        sam=SamSpec(
            api_port=0,
            lambda_port=0,
            schedule_seconds=None,
            env={"CORS_ORIGINS": json.dumps(origins)},
        ),
    ) as (stack, sam):
        page = serve_in_thread(web_app(WEB_DIR, config={"apiBaseUrl": sam.api_url}), port=port)
        try:
            yield OnLambda(stack=stack, sam=sam, page=page)
        finally:
            page.stop()


def test_the_page_generates_cancels_and_reads_through_lambda(
    page: Page, on_lambda: OnLambda
) -> None:
    db = Db(on_lambda.stack.database_url)
    user = sign_up(db, credits=3)
    page.add_init_script(FAST_POLLING)
    # (its containers coming up may fail the first load: goto_ready loads it again then)
    goto_ready(page, f"{on_lambda.page.url}/?token={user.token}", timeout_ms=SLOW)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#credits")).to_have_text("3 credits", timeout=SLOW)

    # Two stories on one slot: the first is written, the second waits and is cancelled.
    first = generate(page, "A lighthouse keeper who collects storms in glass jars")
    second = generate(page, "Two foxes run a night bakery in a city that never wakes")
    expect(row(page, second)).to_have_attribute("data-status", "pending")
    row(page, second).get_by_role("button", name=re.compile("^Cancel")).click()
    expect(row(page, second)).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#credits")).to_have_text("2 credits")

    # (a 5 s story may be written before the page looks: its running state can be missed)
    expect(row(page, first)).to_have_attribute(
        "data-status", re.compile("^(processing|completed)$"), timeout=SLOW
    )
    screenshot(page, "lambda-1-running")
    expect(row(page, first)).to_have_attribute("data-status", "completed", timeout=SLOW)
    row(page, first).get_by_role("button", name=re.compile("^Read")).click()
    expect(page.locator("#reader")).to_be_visible()
    assert len(page.locator("#story-content").inner_text().split()) >= 150
    screenshot(page, "lambda-2-story")
    assert db.balance(user.id) == 2


def test_an_admin_retries_and_cancels_a_job_through_lambda(page: Page, on_lambda: OnLambda) -> None:
    # Given a job that failed (queued and failed in Postgres, as a worker would: nothing kicks
    # a worker, so it stays where the admin puts it)
    db = Db(on_lambda.stack.database_url)
    user = sign_up(db, credits=1)
    enqueue = (
        "select public.enqueue_story_job(%s, 'a kite that flies itself', 'The Kite', null, 'en',"
        " 300, 1, 3)"
    )
    job_id = str(db.value(f"{enqueue} ->> 'job_id'", (user.id,)))
    db.start(job_id)
    db.fail(job_id, code="generator_error", message="the model refused")
    failed = db.value("select count(*) from public.story_jobs where status = 'failed'")
    admin = sign_up(db, admin=True)

    # When an admin opens the operator page, served by the functions
    page.add_init_script(FAST_REFRESH)
    goto_ready(page, f"{on_lambda.page.url}/?token={admin.token}#admin", timeout_ms=SLOW)
    expect(stat(page, "failed")).to_have_text(str(failed), timeout=SLOW)
    expect(stat(page, "pause")).to_have_text("Not paused")
    page.get_by_label("failed", exact=True).check()
    page.get_by_role("button", name="Show jobs").click()
    link = page.get_by_role("link", name="The Kite")
    expect(link).to_be_visible(timeout=SLOW)
    screenshot(page, "lambda-admin-1-queue")

    # Then the job's page shows the failed attempt; Retry puts it back in the queue
    link.click()
    expect(field(page, "Status")).to_have_text("failed (refunded)", timeout=SLOW)
    expect(page.locator("#attempts tbody tr td").nth(4)).to_have_text(
        "generator_error: the model refused"
    )
    page.get_by_role("button", name="Retry…").click()
    confirm(page, "Retry the job")
    expect(page.locator("#job-action-result")).to_have_text(
        re.compile(r"^Back in the queue"), timeout=SLOW
    )
    assert db.job_status(job_id) in {"pending", "processing"}
    screenshot(page, "lambda-admin-2-retried")

    # And Cancel ends it cancelled by the admin
    page.get_by_role("button", name="Cancel job…").click()
    confirm(page, "Cancel the job")
    expect(page.locator("#job-action-result")).to_have_text(
        re.compile(r"^(Cancelled|Cancel requested)"), timeout=SLOW
    )
    expect(field(page, "Status")).to_have_text(re.compile(r"^cancelled \(by admin"), timeout=SLOW)
    screenshot(page, "lambda-admin-3-cancelled")
    assert db.run(
        "select status, cancel_reason from public.story_jobs where id = %s", (job_id,)
    ) == [("cancelled", "admin")]
    assert db.balance(user.id) == 1
