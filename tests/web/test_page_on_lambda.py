"""The page in Chromium against the functions in Lambda's runtime emulation, as `make sam-local`
serves them: the page from its own origin, the API from `sam local start-api` on another one
(CORS answered by the function), the worker woken through `sam local start-lambda`.
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
