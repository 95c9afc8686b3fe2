"""The page in headless Chromium against the real API, worker, Redis and Postgres.

The main flow: sign in by link, generate three stories, see them queue, cancel the third,
reload while the first is being written, see both unfinished ones picked up and finished,
read one. Then sign-in, errors (401, 402, 422, 429), the job list's "load more", and what
localStorage resumes. Screenshots land in tests/artifacts/web/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Locator, Page, Route, expect

from storyq_local.stack.servers import ThreadedServer
from storyq_local.stack.web import installed_supabase_js
from storyq_local.stack.workers import WorkerThread
from tests.support.users import ApiUser as WebUser
from tests.web.conftest import (
    Users,
    WebStack,
    cancel_unfinished,
    screenshot,
    serve_api,
)
from tests.web.supabase_project import SupabaseProject

# Records every status each job row shows, across reloads (sessionStorage outlives them).
RECORDER = """
(() => {
  const KEY = 'storyq.test.transitions';
  const record = (id, status) => {
    const all = JSON.parse(sessionStorage.getItem(KEY) || '{}');
    const list = all[id] || (all[id] = []);
    if (list[list.length - 1] !== status) list.push(status);
    sessionStorage.setItem(KEY, JSON.stringify(all));
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const nodes = m.type === 'attributes' ? [m.target] : [...m.addedNodes];
      for (const el of nodes) {
        if (el instanceof HTMLElement && el.matches('li.job[data-status]')) {
          record(el.dataset.jobId, el.dataset.status);
        }
      }
    }
  }).observe(document, { subtree: true, childList: true, attributes: true,
                         attributeFilter: ['data-status'] });
})();
"""

SLOW = 30_000  # ms: a story takes 5 s here, two in a row about 11 s plus polling

# The page's default poll intervals (2-15 s, derived from the ETA) could step over a whole
# 5-second generation; polling every 1-2 s here lets the test see every state. The defaults
# themselves are tested in test_client.py.
FAST_POLLING = "window.STORYQ_CONFIG = { pollMinMs: 1000, pollMaxMs: 2000 };"


def open_app(page: Page, server: ThreadedServer, user: WebUser) -> None:
    page.goto(f"{server.url}/?token={user.token}")
    page.wait_for_selector("html[data-ready='true']")
    expect(page.locator("#app")).to_be_visible()


def row(page: Page, job_id: str) -> Locator:
    return page.locator(f"#jobs li[data-job-id='{job_id}']")


def generate(
    page: Page, prompt: str, *, title: str = "", words: int = 300, language: str = "en"
) -> str:
    """Fill the form, click Generate, return the new job's id (the list's first row)."""
    before = page.locator("#jobs li").count()
    page.evaluate("document.querySelector('#generate-form details').open = true")
    page.fill("#prompt", prompt)
    page.fill("#title", title)
    page.fill("#language", language)
    page.fill("#target-words", str(words))
    page.click("#generate")
    expect(page.locator("#jobs li")).to_have_count(before + 1)
    job_id = page.locator("#jobs li").first.get_attribute("data-job-id")
    assert job_id
    return job_id


def transitions(page: Page) -> dict[str, list[str]]:
    raw = page.evaluate("sessionStorage.getItem('storyq.test.transitions') || '{}'")
    result: dict[str, list[str]] = json.loads(raw)
    return result


def in_order(seen: list[str], expected: list[str]) -> bool:
    """`expected` is a subsequence of `seen`."""
    remaining = iter(seen)
    return all(status in remaining for status in expected)


def test_generate_watch_cancel_reload_and_read(
    page: Page, api_server: ThreadedServer, users: Users, worker: WorkerThread
) -> None:
    user = users.new(credits=10)
    page.add_init_script(FAST_POLLING)
    page.add_init_script(RECORDER)
    open_app(page, api_server, user)
    assert "token=" not in page.url, "the token must leave the address bar"
    expect(page.locator("#credits")).to_have_text("10 credits")

    first = generate(
        page, "A lighthouse keeper who collects storms in glass jars", title="The Storm Keeper"
    )
    second = generate(page, "Two foxes run a night bakery in a city that never wakes")
    third = generate(page, "A map that redraws itself whenever someone lies")
    expect(page.locator("#credits")).to_have_text("7 credits")

    # The third waits behind the other two, with a position and an ETA.
    queued = re.compile(r"Position \d+ of \d+ in the queue · about (a minute|\d+ min|\d+ h)")
    expect(row(page, third)).to_have_attribute("data-status", "pending")
    expect(row(page, third).locator(".job-detail")).to_have_text(queued)
    expect(row(page, third).locator(".badge")).to_have_text("Queued")
    screenshot(page, "1-queued")

    # Cancel it: refunded at once.
    row(page, third).get_by_role("button", name=re.compile("^Cancel")).click()
    expect(row(page, third)).to_have_attribute("data-status", "cancelled")
    expect(row(page, third).locator(".job-detail")).to_have_text("Cancelled · credit refunded")
    expect(page.locator("#credits")).to_have_text("8 credits")
    expect(row(page, third).get_by_role("button", name=re.compile("^Cancel"))).to_be_hidden()

    # The first is written, with progress, while the second waits next in line.
    expect(row(page, first)).to_have_attribute("data-status", "processing", timeout=SLOW)
    expect(row(page, first).locator(".job-detail")).to_have_text(
        re.compile(r"Writing… [\d,]+ words \(\d+ %\)"), timeout=SLOW
    )
    expect(row(page, first).locator("progress")).to_be_visible()
    expect(row(page, second)).to_have_attribute("data-status", "pending")
    expect(row(page, second).locator(".job-detail")).to_have_text(
        re.compile(r"^Next in line · about")
    )
    screenshot(page, "2-processing")

    # Reload midway: the unfinished jobs are picked up (token from localStorage, jobs from the
    # API's pending/processing lists) and followed to the end without another click.
    page.reload()
    page.wait_for_selector("html[data-ready='true']")
    expect(page.locator("#app")).to_be_visible()
    expect(row(page, first)).to_be_visible()
    expect(row(page, second)).to_be_visible()
    expect(row(page, third)).to_have_attribute("data-status", "cancelled")
    expect(row(page, first)).to_have_attribute("data-status", "completed", timeout=SLOW)
    # (the second may be written before the page looks again: its running state can be missed)
    expect(row(page, second)).to_have_attribute(
        "data-status", re.compile("^(processing|completed)$"), timeout=SLOW
    )
    screenshot(page, "3-after-reload")
    expect(row(page, second)).to_have_attribute("data-status", "completed", timeout=SLOW)
    expect(row(page, second).locator(".badge")).to_have_text("Ready")
    expect(row(page, first).locator(".job-detail")).to_have_text(
        re.compile(r"^[\d,]+ words · written in \d+ s · finished ")
    )

    seen = transitions(page)
    for job_id in (first, second):
        assert in_order(seen[job_id], ["pending", "processing", "completed"]), seen[job_id]
    assert seen[third] == ["pending", "cancelled"]
    watching = page.evaluate(f"localStorage.getItem('storyq.watching.{user.id}')")
    assert json.loads(watching) == {}, "finished jobs are no longer watched"

    # Read the first.
    row(page, first).get_by_role("button", name=re.compile("^Read")).click()
    reader = page.locator("#reader")
    expect(reader).to_be_visible()
    expect(page.locator("#story-title")).to_have_text("The Storm Keeper")
    expect(page.locator("#story-title")).to_be_focused()
    expect(page.locator("#story-meta")).to_have_text(re.compile(r"[\d,]+ words · en · written"))
    assert page.locator("#story-content p").count() >= 3
    text = page.locator("#story-content").inner_text()
    assert len(text.split()) >= 150
    expect(page.locator("#story-prompt")).to_have_text(
        "A lighthouse keeper who collects storms in glass jars"
    )
    screenshot(page, "4-story")
    page.keyboard.press("Escape")
    expect(reader).to_be_hidden()
    expect(row(page, first).get_by_role("button", name=re.compile("^Read"))).to_be_focused()

    expect(page.locator("#credits")).to_have_text("8 credits")
    assert users.balance(user) == 8


def test_sign_in_by_pasting_a_token_and_sign_out(
    page: Page, api_server: ThreadedServer, users: Users
) -> None:
    user = users.new(credits=2)
    page.goto(f"{api_server.url}/")
    page.wait_for_selector("html[data-ready='true']")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#password-form")).to_be_hidden()  # no Supabase configured
    screenshot(page, "0-sign-in")
    page.get_by_label("Access token").fill(user.token)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#credits")).to_have_text("2 credits")
    expect(page.locator("#who")).to_have_text(f"Signed in as {str(user.id)[:8]}")
    expect(page.locator("#jobs-empty")).to_be_visible()
    assert page.evaluate("localStorage.getItem('storyq.token')") == user.token

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('storyq.token')") is None


def test_a_rejected_token_sends_back_to_sign_in_saying_why(
    page: Page, api_server: ThreadedServer
) -> None:
    page.goto(f"{api_server.url}/?token=not-a-token")
    page.wait_for_selector("html[data-ready='true']")
    notice = page.locator("#notice")
    expect(notice).to_be_visible()
    expect(notice).to_have_attribute("data-code", "unauthorized")
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_contain_text("Please sign in again")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('storyq.token')") is None
    screenshot(page, "error-401")


def test_not_enough_credits_is_said_plainly(
    page: Page, api_server: ThreadedServer, users: Users
) -> None:
    user = users.new(credits=0)
    open_app(page, api_server, user)
    expect(page.locator("#credits")).to_have_text("0 credits")
    page.fill("#prompt", "A story I cannot afford")
    page.click("#generate")
    notice = page.locator("#notice")
    expect(notice).to_have_attribute("data-code", "insufficient_credits")
    expect(notice).to_contain_text("Not enough credits")
    expect(notice).to_contain_text("your balance is 0")
    expect(page.locator("#jobs li")).to_have_count(0)
    expect(page.locator("#generate")).to_be_enabled()
    screenshot(page, "error-402")
    notice.get_by_role("button", name="Dismiss").click()
    expect(notice).to_be_hidden()


def test_invalid_input_is_shown_field_by_field(
    page: Page, api_server: ThreadedServer, users: Users
) -> None:
    user = users.new(credits=1)
    open_app(page, api_server, user)
    page.click("#generate")  # no prompt: caught before any request
    notice = page.locator("#notice")
    expect(notice).to_contain_text("write a prompt first")
    expect(page.locator("#prompt")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#prompt")).to_be_focused()

    page.evaluate("document.querySelector('#generate-form details').open = true")
    page.fill("#prompt", "A story in a language that is not a tag")
    page.fill("#language", "English!")
    page.click("#generate")
    expect(notice).to_have_attribute("data-code", "validation_error")
    expect(notice).to_contain_text("Please check the form")
    expect(notice).to_contain_text("language:")
    assert users.balance(user) == 1


@pytest.fixture
def strict_server(web_stack: WebStack) -> Iterator[ThreadedServer]:
    """The API with one Generate a minute per user."""
    server = serve_api(web_stack.settings.model_copy(update={"generate_rate_limit": 1}))
    yield server
    server.stop()


def test_rate_limited_generate_waits_for_retry_after(
    page: Page, strict_server: ThreadedServer, users: Users, web_stack: WebStack
) -> None:
    user = users.new(credits=5)
    open_app(page, strict_server, user)
    generate(page, "The first story of the minute")
    page.fill("#prompt", "One story too many")
    page.click("#generate")
    notice = page.locator("#notice")
    expect(notice).to_have_attribute("data-code", "rate_limited")
    expect(notice).to_contain_text(re.compile(r"Too many requests.*try again in \d+ s"))
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#generate-hint")).to_have_text(
        re.compile(r"You can generate again in \d+ s")
    )
    screenshot(page, "error-429")
    assert users.balance(user) == 4
    cancel_unfinished(web_stack.database_url)


def test_the_list_loads_more_and_filters(
    page: Page, api_server: ThreadedServer, api: httpx.Client, users: Users
) -> None:
    user = users.new(credits=12)
    ids: list[str] = []
    for n in range(12):
        answer = api.post(
            "/api/generate", json={"prompt": f"story number {n}"}, headers=user.headers
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["jobId"])
    for job_id in ids[:11]:
        assert api.delete(f"/api/job/{job_id}", headers=user.headers).status_code == 200

    open_app(page, api_server, user)
    rows = page.locator("#jobs li")
    expect(rows).to_have_count(10)
    assert rows.first.get_attribute("data-job-id") == ids[-1]  # newest first
    load_more = page.get_by_role("button", name="Load more")
    expect(load_more).to_be_visible()
    load_more.click()
    expect(rows).to_have_count(12)
    expect(load_more).to_be_hidden()
    assert [rows.nth(i).get_attribute("data-job-id") for i in range(12)] == ids[::-1]

    page.get_by_label("Show").select_option("cancelled")
    expect(rows).to_have_count(10)
    expect(load_more).to_be_visible()
    assert all(rows.nth(i).get_attribute("data-status") == "cancelled" for i in range(10))
    page.get_by_label("Show").select_option("pending")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-job-id") == ids[-1]
    api.delete(f"/api/job/{ids[-1]}", headers=user.headers)


def test_local_storage_resume_drops_finished_and_unknown_jobs(
    page: Page, api_server: ThreadedServer, api: httpx.Client, users: Users
) -> None:
    user = users.new(credits=1)
    answer = api.post("/api/generate", json={"prompt": "cancelled at once"}, headers=user.headers)
    job_id = answer.json()["jobId"]
    api.delete(f"/api/job/{job_id}", headers=user.headers)
    unknown = "00000000-0000-4000-8000-000000000000"
    key = f"storyq.watching.{user.id}"
    stored = json.dumps({job_id: {"prompt": "cancelled at once"}, unknown: {}})
    page.add_init_script(f"localStorage.setItem({json.dumps(key)}, {json.dumps(stored)})")
    open_app(page, api_server, user)
    expect(row(page, job_id)).to_have_attribute("data-status", "cancelled")
    expect(row(page, job_id).locator(".job-title")).to_have_text("cancelled at once")
    page.wait_for_function(
        f"() => localStorage.getItem({json.dumps(key)}) === '{{}}'", timeout=10_000
    )
    expect(row(page, unknown)).to_have_count(0)


def test_every_control_is_labelled(page: Page, api_server: ThreadedServer, users: Users) -> None:
    user = users.new()
    open_app(page, api_server, user)
    unlabelled: list[Any] = page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select, button')]
            .filter((el) => !el.closest('template'))
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !el.textContent.trim())
            .map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("h1").count() == 1


# --- Supabase: the real supabase-js, loaded from the page's own origin --------------------


def loaded_scripts(page: Page) -> list[str]:
    urls: list[str] = page.evaluate(
        "() => performance.getEntriesByType('resource')"
        ".filter((e) => e.initiatorType === 'script').map((e) => e.name)"
    )
    return urls


def api_polls(page: Page, job_id: str) -> int:
    polls: int = page.evaluate(
        "(id) => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.endsWith(`/api/job/${id}`)).length",
        job_id,
    )
    return polls


def test_the_supabase_js_bundle_is_served_from_the_pages_origin(
    page: Page, api_server: ThreadedServer
) -> None:
    project = SupabaseProject().attach(page)
    page.add_init_script(project.config_script())
    bundle = installed_supabase_js()
    assert bundle is not None, "supabase-js is not installed: `npm ci` (make test runs it)"
    with page.expect_response(re.compile(r"/vendor/supabase\.js$")) as answer:
        page.goto(f"{api_server.url}/")
    page.wait_for_selector("html[data-ready='true']")
    # The npm package's UMD file, from this origin (never a CDN), under the page's CSP.
    assert answer.value.url == f"{api_server.url}/web/vendor/supabase.js"
    assert answer.value.status == 200
    assert answer.value.body() == bundle.read_bytes()
    assert "script-src 'self'" in (answer.value.header_value("content-security-policy") or "")
    assert page.evaluate("typeof window.supabase.createClient") == "function"
    assert page.evaluate("typeof window.supabase.createClient('http://x.test', 'k').channel") == (
        "function"
    )
    assert all(url.startswith(api_server.url) for url in loaded_scripts(page))
    expect(page.locator("#password-form")).to_be_visible()  # Supabase Auth is offered


def test_without_supabase_no_bundle_is_loaded(page: Page, api_server: ThreadedServer) -> None:
    page.goto(f"{api_server.url}/")
    page.wait_for_selector("html[data-ready='true']")
    assert not any("supabase" in url for url in loaded_scripts(page))
    assert page.evaluate("typeof window.supabase") == "undefined"
    expect(page.locator("#password-form")).to_be_hidden()


def test_supabase_auth_and_realtime_where_configured(
    page: Page, api_server: ThreadedServer, users: Users, web_stack: WebStack
) -> None:
    cancel_unfinished(web_stack.database_url)
    user = users.new(credits=1)
    project = SupabaseProject(accounts={"ada@example.com": ("correct horse", user.token)})
    project.attach(page)
    page.add_init_script(project.config_script())
    page.goto(f"{api_server.url}/")
    page.wait_for_selector("html[data-ready='true']")
    expect(page.locator("#password-form")).to_be_visible()

    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#notice")).to_contain_text("Invalid login credentials")
    expect(page.locator("#app")).to_be_hidden()

    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#credits")).to_have_text("1 credit")  # the session's token was sent
    assert project.sign_ins == ["ada@example.com", "ada@example.com"]
    assert page.evaluate("localStorage.getItem('storyq.token')") is None  # supabase-js keeps it

    job_id = generate(page, "A story followed through Realtime")
    channel = project.wait(page, project.open_channels)[0]
    # What supabase-js itself sent to join: the row filter, and the session's token (RLS).
    assert channel.topic == f"realtime:storyq-job-{job_id}"
    assert channel.config["postgres_changes"] == [
        {"event": "*", "schema": "public", "table": "story_jobs", "filter": f"id=eq.{job_id}"}
    ]
    assert channel.access_token == user.token
    assert project.sockets[0].startswith(project.url.replace("http", "ws") + "/realtime/v1/")
    assert f"apikey={project.anon_key}" in project.sockets[0]

    # With the channel up, polling slows to 30 s; a change that leaves the status as it was
    # (a heartbeat) asks nothing, a change of status makes the watcher ask at once.
    page.wait_for_timeout(500)
    asked = api_polls(page, job_id)
    with psycopg.connect(web_stack.database_url) as conn:
        record = conn.execute(
            "select to_jsonb(j) from public.story_jobs j where id = %s", (job_id,)
        ).fetchone()
    assert record is not None
    row_now = dict(record[0])
    project.push_change(channel, row_now, row_now)
    page.wait_for_timeout(1000)
    assert api_polls(page, job_id) == asked, "no poll while Realtime is up and the status holds"
    project.push_change(channel, {**row_now, "status": "processing"}, row_now)
    page.wait_for_function(
        "([id, n]) => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.endsWith(`/api/job/${id}`)).length > n",
        arg=[job_id, asked],
        timeout=2000,
    )

    row(page, job_id).get_by_role("button", name=re.compile("^Cancel")).click()
    expect(row(page, job_id)).to_have_attribute("data-status", "cancelled")
    project.wait(page, lambda: channel.left)  # the real client left the channel
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#password-form")).to_be_visible()
    project.wait(page, lambda: project.sign_outs == 1)


def test_realtime_follows_a_job_to_the_end_with_a_pasted_token(
    page: Page, api_server: ThreadedServer, users: Users, web_stack: WebStack, worker: WorkerThread
) -> None:
    """Signed in with a pasted token (no Supabase session), the page still joins with the
    user's token, so RLS lets Realtime deliver the user's rows: each change the worker makes
    reaches the page at once, while the fallback poll is 15 s away."""
    user = users.new(credits=1)
    project = SupabaseProject().attach(page)
    page.add_init_script(project.config_script())
    page.add_init_script(RECORDER)
    open_app(page, api_server, user)
    job_id = generate(page, "A story woken by every change of its row")
    channel = project.wait(page, project.open_channels)[0]
    assert channel.access_token == user.token

    # The worker starts it, writes it (5 s) and finishes it; every row change is relayed.
    started = time.monotonic()
    pushed = project.relay(
        page,
        web_stack.database_url,
        until=lambda: row(page, job_id).get_attribute("data-status") == "completed",
        timeout=SLOW / 1000,
    )
    # Sooner than the 15-s fallback poll, and the 5-s writing was seen: the changes woke it.
    assert time.monotonic() - started < 14
    assert pushed >= 2  # started, heartbeats, completed
    assert in_order(transitions(page)[job_id], ["pending", "processing", "completed"])
    project.wait(page, lambda: channel.left)


def test_polling_takes_over_when_realtime_refuses_the_channel(
    page: Page, api_server: ThreadedServer, users: Users, worker: WorkerThread
) -> None:
    user = users.new(credits=1)
    project = SupabaseProject(refuse_joins=True).attach(page)
    page.add_init_script(project.config_script(pollMinMs=1000, pollMaxMs=2000))
    page.add_init_script(RECORDER)
    open_app(page, api_server, user)
    job_id = generate(page, "A story followed by polling alone")
    project.wait(page, lambda: project.refused)
    expect(row(page, job_id)).to_have_attribute("data-status", "completed", timeout=SLOW)
    assert in_order(transitions(page)[job_id], ["pending", "processing", "completed"])


# --- watching it write, stopping it -------------------------------------------------------

WRITING_SECONDS = 15.0  # long enough to see the text grow at the 1-2 s polls, and to reload


@pytest.fixture
def slow_worker(web_stack: WebStack) -> Iterator[WorkerThread]:
    """A worker whose template generator releases each story over WRITING_SECONDS."""
    cancel_unfinished(web_stack.database_url)
    web_stack.redis.client().flushall()
    settings = web_stack.settings.model_copy(
        update={"generation_delay_seconds": WRITING_SECONDS, "generation_timeout_seconds": 60.0}
    )
    thread = WorkerThread(settings).start()
    yield thread
    thread.stop()


def reader_view(page: Page) -> tuple[str | None, str]:
    """The reader's story status and its text (blocks one per line; '' for the hint)."""
    view: list[Any] = page.evaluate(
        """() => [document.querySelector('#reader').dataset.status || null,
                 [...document.querySelectorAll('#story-content > :not(.hint)')]
                   .map((el) => el.textContent).join('\\n')]"""
    )
    return view[0], view[1]


class TextSeen:
    """The distinct texts the reader showed while the story was being written."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.texts: list[str] = []
        self.status: str | None = None

    def sample(self) -> str | None:
        self.status, text = reader_view(self.page)
        if self.status == "writing" and text and (not self.texts or text != self.texts[-1]):
            self.texts.append(text)
        return self.status

    def until(self, check: Any, *, timeout: float = SLOW / 1000) -> None:
        deadline = time.monotonic() + timeout
        while not check(self):
            assert time.monotonic() < deadline, f"reader still {self.status}: {self.texts[-3:]}"
            self.page.wait_for_timeout(100)
            self.sample()

    def assert_grew(self, at_least: int) -> None:
        assert len(self.texts) >= at_least, self.texts
        for shorter, longer in zip(self.texts, self.texts[1:], strict=False):
            assert len(shorter) < len(longer), (shorter, longer)
            assert longer.startswith(shorter), (shorter, longer)


def story_reads(page: Page, story_id: str) -> int:
    reads: int = page.evaluate(
        "(id) => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.endsWith(`/api/story/${id}`)).length",
        story_id,
    )
    return reads


def test_the_reader_shows_the_story_growing_also_after_a_reload(
    page: Page,
    api_server: ThreadedServer,
    api: httpx.Client,
    users: Users,
    slow_worker: WorkerThread,
) -> None:
    """Without Realtime the text is re-read at each poll of the job (1-2 s here)."""
    user = users.new(credits=1)
    page.add_init_script(FAST_POLLING)
    open_app(page, api_server, user)
    job_id = generate(page, "A bell founder who casts a bell that rings only for the truth")
    expect(row(page, job_id)).to_have_attribute("data-status", "processing", timeout=SLOW)
    row(page, job_id).get_by_role("button", name=re.compile("^Read")).click()
    expect(page.locator("#reader")).to_be_visible()
    story_id = page.locator("#reader").get_attribute("data-story-id")
    assert story_id
    assert page.url.endswith(f"#story={story_id}")

    # Given the story being written, the text shown grows, each view a prefix of the next.
    seen = TextSeen(page)
    seen.until(lambda s: len(s.texts) >= 3 or s.status == "ready")
    seen.assert_grew(3)
    expect(page.locator("#story-meta")).to_have_text(
        re.compile(r"^Being written… [\d,]+ words so far")
    )
    expect(page.locator("#story-content")).to_have_attribute("aria-busy", "true")
    screenshot(page, "live-1-writing")
    # The text costs no polls of its own: it is read when the job is.
    assert story_reads(page, story_id) <= api_polls(page, job_id) + 1

    # When the page is reloaded midway, the reader comes back with the text so far.
    before = seen.texts[-1]
    page.reload()
    page.wait_for_selector("html[data-ready='true']")
    expect(page.locator("#reader")).to_be_visible()
    seen.until(lambda s: s.status in ("writing", "ready") and bool(reader_view(page)[1]))
    status, text = reader_view(page)
    assert status == "writing", "the reload came after the story was written: too slow a machine?"
    assert text.startswith(before), (before, text)
    screenshot(page, "live-2-after-reload")
    seen.texts = [text]
    seen.until(lambda s: len(s.texts) >= 2 or s.status == "ready")
    seen.assert_grew(2)

    # Then the whole story, as the API has it.
    expect(page.locator("#reader")).to_have_attribute("data-status", "ready", timeout=SLOW)
    story = api.get(f"/api/story/{story_id}", headers=user.headers).json()
    assert reader_view(page)[1] == "\n".join(
        block.strip() for block in story["content"].split("\n\n") if block.strip()
    )
    assert reader_view(page)[1].startswith(seen.texts[-1])
    expect(page.locator("#story-content")).to_have_attribute("aria-busy", "false")
    expect(row(page, job_id)).to_have_attribute("data-status", "completed", timeout=SLOW)


def test_realtime_brings_the_text_without_reading_the_api(
    page: Page,
    api_server: ThreadedServer,
    users: Users,
    web_stack: WebStack,
    slow_worker: WorkerThread,
) -> None:
    """With Realtime up, each change of the story's row carries its text: no polls for it."""
    user = users.new(credits=1)
    project = SupabaseProject().attach(page)
    page.add_init_script(project.config_script())
    open_app(page, api_server, user)
    job_id = generate(page, "A cartographer of tides who maps a sea that moves inland")
    project.wait(page, project.open_channels)
    project.relay(
        page,
        web_stack.database_url,
        until=lambda: row(page, job_id).get_attribute("data-status") == "processing",
        timeout=SLOW / 1000,
    )
    row(page, job_id).get_by_role("button", name=re.compile("^Read")).click()
    expect(page.locator("#reader")).to_be_visible()
    story_id = page.locator("#reader").get_attribute("data-story-id")
    assert story_id
    channel = project.wait(
        page, lambda: [c for c in project.open_channels() if c.table == "stories"]
    )[0]
    assert channel.topic.startswith(f"realtime:storyq-story-{story_id}")
    assert channel.config["postgres_changes"] == [
        {"event": "*", "schema": "public", "table": "stories", "filter": f"id=eq.{story_id}"}
    ]
    assert channel.access_token == user.token

    seen = TextSeen(page)
    project.relay(
        page,
        web_stack.database_url,
        until=lambda: seen.sample() == "ready",
        timeout=SLOW / 1000 + WRITING_SECONDS,
    )
    seen.assert_grew(3)
    # One read to open it, one to catch up when the channel joined; the rest came by Realtime.
    assert story_reads(page, story_id) <= 2
    expect(page.locator("#story-meta")).to_have_text(re.compile(r"^[\d,]+ words · en · written"))
    project.wait(page, lambda: channel.left)


def test_stop_a_running_story_keeps_its_text_and_refunds(
    page: Page,
    api_server: ThreadedServer,
    api: httpx.Client,
    users: Users,
    slow_worker: WorkerThread,
) -> None:
    user = users.new(credits=2)
    page.add_init_script(FAST_POLLING)
    page.add_init_script(RECORDER)
    open_app(page, api_server, user)
    job_id = generate(page, "A glassblower whose bottles hold the weather of one afternoon")
    expect(page.locator("#credits")).to_have_text("1 credit")
    expect(row(page, job_id).get_by_role("button", name=re.compile("^Stop"))).to_be_hidden()
    expect(row(page, job_id).locator(".job-detail")).to_have_text(
        re.compile(r"^Writing… [\d,]+ words"), timeout=SLOW
    )
    row(page, job_id).get_by_role("button", name=re.compile("^Read")).click()
    seen = TextSeen(page)
    seen.until(lambda s: len(s.texts) >= 1)
    screenshot(page, "stop-1-writing")

    # When Stop is clicked, the job is being stopped, then ends cancelled and refunded.
    stop = row(page, job_id).get_by_role("button", name=re.compile("^Stop"))
    expect(stop).to_have_attribute("aria-label", re.compile("^Stop "))
    stop.click()
    expect(stop).to_be_hidden()
    expect(row(page, job_id)).to_have_attribute("data-status", "cancelled", timeout=SLOW)
    expect(row(page, job_id).locator(".job-detail")).to_have_text("Stopped · credit refunded")
    expect(page.locator("#credits")).to_have_text("2 credits")
    assert users.balance(user) == 2
    job = api.get(f"/api/job/{job_id}", headers=user.headers).json()
    assert (job["status"], job["cancelReason"], job["refunded"]) == ("cancelled", "user", True)
    assert in_order(transitions(page)[job_id], ["pending", "processing", "cancelled"])

    # The reader keeps the text written before the stop, as the story row has it.
    expect(page.locator("#reader")).to_have_attribute("data-status", "cancelled", timeout=SLOW)
    story = api.get(f"/api/story/{job['storyId']}", headers=user.headers).json()
    assert story["status"] == "cancelled"
    assert story["content"]
    text = reader_view(page)[1]
    assert text.startswith(seen.texts[0])
    assert text.split() == story["content"].split()
    expect(page.locator("#story-meta")).to_have_text(
        re.compile(r"^Stopped · [\d,]+ words written before it was cancelled")
    )
    expect(row(page, job_id).get_by_role("button", name=re.compile("^Read"))).to_be_visible()
    screenshot(page, "stop-2-stopped")


def test_stop_too_late_shows_the_story_finished(
    page: Page, api_server: ThreadedServer, users: Users, web_stack: WebStack, worker: WorkerThread
) -> None:
    """The DELETE reaches the API only once the story is written: 409, and the row says Ready."""
    user = users.new(credits=1)
    page.add_init_script(FAST_POLLING)
    open_app(page, api_server, user)
    job_id = generate(page, "A clock that runs a minute ahead of disaster")
    expect(row(page, job_id)).to_have_attribute("data-status", "processing", timeout=SLOW)

    def after_completion(route: Route) -> None:
        deadline = time.monotonic() + SLOW / 1000
        while time.monotonic() < deadline:
            with psycopg.connect(web_stack.database_url) as conn:
                found = conn.execute(
                    "select status from public.story_jobs where id = %s", (job_id,)
                ).fetchone()
            if found and found[0] == "completed":
                break
            time.sleep(0.2)
        route.continue_()

    page.route(
        re.compile(rf"/api/job/{job_id}$"),
        lambda r: after_completion(r) if r.request.method == "DELETE" else r.continue_(),
    )
    row(page, job_id).get_by_role("button", name=re.compile("^Stop")).click()
    notice = page.locator("#notice")
    expect(notice).to_have_attribute("data-code", "job_not_cancellable", timeout=SLOW)
    expect(notice).to_contain_text("Already finished")
    expect(row(page, job_id)).to_have_attribute("data-status", "completed", timeout=SLOW)
    expect(row(page, job_id).locator(".badge")).to_have_text("Ready")
    assert users.balance(user) == 0
