"""The operator page (`#admin`) in headless Chromium against the real API, worker, Redis and
Postgres of the web tests' private stack: the queue's counts, the job browser's filters and
pages, a job's page with its attempts and its text, and the actions (retry, cancel, empty,
clean, credits), each confirmed in the page's dialog and checked in the database. A token that
is not an admin's sees "Admins only". Screenshots land in tests/artifacts/web/admin-*.png.

No worker runs unless a test starts one: jobs stay where the test puts them (through the API,
or moved along by `Db` as a worker would), so what the page shows can be checked exactly.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from storyq_local.stack.servers import ThreadedServer
from storyq_local.stack.users import dev_token
from storyq_local.stack.workers import WorkerThread
from tests.support.sql import Db
from tests.support.users import ApiUser as WebUser
from tests.web.conftest import Users, WebStack, cancel_unfinished, goto_ready, screenshot

# The queue is read again every second and an unfinished job's page twice a second (10 s and
# 2 s by default), so that what changes shows within the expectations' default 5 s.
FAST_REFRESH = (
    "window.STORYQ_CONFIG = { pollMinMs: 1000, pollMaxMs: 2000,"
    " adminRefreshMs: 1000, adminJobRefreshMs: 500 };"
)
SLOW = 30_000  # ms: three 5-second stories in a row, on a loaded machine

# The browser's local time a day ago, as a datetime-local field takes it.
A_DAY_AGO_LOCAL = """() => {
  const d = new Date(Date.now() - 86400000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`
    + `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}"""


@pytest.fixture
def db(web_stack: WebStack) -> Db:
    return Db(web_stack.database_url)


@pytest.fixture(autouse=True)
def quiet_queue(web_stack: WebStack) -> Iterator[None]:
    """Nothing waiting or running (what earlier tests left is closed, Redis is empty), and no
    worker; closed again afterwards, so no later test's worker picks up what this one left."""
    cancel_unfinished(web_stack.database_url)
    web_stack.redis.client().flushall()
    yield
    cancel_unfinished(web_stack.database_url)


@pytest.fixture
def admin(web_stack: WebStack) -> WebUser:
    user_id = uuid.uuid4()
    token = dev_token(
        web_stack.settings, database_url=web_stack.database_url, user_id=user_id, admin=True
    )
    return WebUser(id=user_id, token=token)


def open_page(page: Page, server: ThreadedServer, user: WebUser, where: str = "") -> None:
    """Sign in by link at `where` (a hash), with the fast refreshes; the page ready."""
    page.add_init_script(FAST_REFRESH)
    goto_ready(page, f"{server.url}/?token={user.token}{where}")


def stat(page: Page, name: str) -> Locator:
    return page.locator(f"#queue [data-stat='{name}']")


def field(page: Page, name: str) -> Locator:
    return page.locator(f"#admin-job-fields dd[data-field='{name}']")


def job_rows(page: Page) -> Locator:
    return page.locator("#admin-jobs tbody tr")


def listed_ids(page: Page) -> list[str]:
    rows = job_rows(page)
    return [rows.nth(i).get_attribute("data-job-id") or "" for i in range(rows.count())]


def confirm(page: Page, button: str, *, shot: str = "") -> None:
    """Answer the page's confirmation dialog with `button` ("Go back" or the action), after a
    screenshot of it named `shot` if one is given."""
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    if shot:
        screenshot(page, shot)
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_be_hidden()


def queue_story(api: httpx.Client, user: WebUser, **body: object) -> str:
    answer = api.post(
        "/api/generate",
        json={"prompt": "a story", "targetWords": 300, **body},
        headers=user.headers,
    )
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["jobId"]
    return job_id


def test_the_queue_counts_change_as_a_user_queues_stories(
    page: Page,
    api_server: ThreadedServer,
    api: httpx.Client,
    users: Users,
    web_stack: WebStack,
    admin: WebUser,
) -> None:
    # Given an admin on the user's page, who has the Operator link
    open_page(page, api_server, admin)
    expect(page.locator("#app")).to_be_visible()
    page.get_by_role("link", name="Operator").click()

    # When they open it, the queue is empty and the provider not paused
    expect(page.locator("#queue")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    expect(page.get_by_role("link", name="Operator")).to_have_attribute("aria-current", "page")
    expect(stat(page, "waiting")).to_have_text("0")
    expect(stat(page, "active")).to_have_text("0")
    expect(stat(page, "oldest")).to_have_text("none waiting")
    expect(stat(page, "pause")).to_have_text("Not paused")
    expect(stat(page, "slots")).to_have_text("0 of 1 in use")
    expect(page.locator("#tiers tbody")).to_have_text("Nothing is waiting or running.")
    completed_before = int(stat(page, "completed").inner_text().replace(",", ""))
    screenshot(page, "admin-1-queue-empty")

    # When a user queues three stories, the next read (Refresh) counts them, by tier too
    user = users.new(credits=3)
    queued = [queue_story(api, user, prompt=f"story {n} of three") for n in range(3)]
    page.get_by_role("button", name="Refresh").click()
    expect(stat(page, "waiting")).to_have_text("3")
    expect(stat(page, "held")).to_have_text("0")
    expect(stat(page, "oldest")).to_have_text(re.compile(r"^waiting [\d.]+ s \(since .+\)$"))
    free = page.locator("#tiers tr[data-tier='free'] td")
    expect(free).to_have_text(["3", "0"])
    screenshot(page, "admin-2-queue-waiting")

    # When a worker writes them, the page (reading every second here) shows one running, then
    # all three completed, with the mean generation time and today's usage
    worker = WorkerThread(web_stack.settings).start()
    try:
        expect(stat(page, "active")).to_have_text("1", timeout=SLOW)
        expect(stat(page, "slots")).to_have_text("1 of 1 in use")
        expect(stat(page, "completed")).to_have_text(str(completed_before + 3), timeout=SLOW)
        expect(stat(page, "waiting")).to_have_text("0")
        expect(stat(page, "active")).to_have_text("0")
    finally:
        worker.stop()
    expect(stat(page, "mean")).to_have_text(re.compile(r"^[\d.]+ s$"))
    expect(stat(page, "tokens")).to_have_text(
        re.compile(r"^[\d,]+ \([\d,]+ prompt, [\d,]+ completion\)$")
    )
    expect(stat(page, "cost")).to_have_text(re.compile(r"^\$\d+\.\d{4}$"))
    expect(stat(page, "source")).to_have_text("Redis (live)")
    # (the job browser's page is read again with the counts)
    for job_id in queued:
        expect(page.locator(f"#admin-jobs tr[data-job-id='{job_id}']")).to_have_attribute(
            "data-status", "completed"
        )
    screenshot(page, "admin-3-queue-drained")


def test_the_job_browser_filters_and_pages(
    page: Page,
    api_server: ThreadedServer,
    api: httpx.Client,
    users: Users,
    db: Db,
    admin: WebUser,
) -> None:
    # Given 30 jobs of Alice (the 12 oldest cancelled and created two days ago) and 2 of Bob,
    # who is on the pro plan
    alice, bob = users.new(credits=30), users.new(credits=2)
    db.set_tier(bob.id, "pro")
    alices = [queue_story(api, alice, title=f"Alice {n:02}") for n in range(30)]
    bobs = [queue_story(api, bob, title=f"Bob {n}") for n in range(2)]
    for job_id in alices[:12]:
        assert api.delete(f"/api/job/{job_id}", headers=alice.headers).status_code == 200
    db.run(
        "update public.story_jobs set created_at = created_at - interval '2 days'"
        " where id = any(%s::uuid[])",
        (alices[:12],),
    )
    newest_first = [
        str(row[0])
        for row in db.run(
            "select id from public.story_jobs where user_id = %s order by created_at desc, id desc",
            (alice.id,),
        )
    ]
    assert sorted(newest_first) == sorted(alices)

    open_page(page, api_server, admin, "#admin")
    expect(job_rows(page).first).to_be_visible()

    # When the admin shows Alice's jobs ten a page: three pages, newest first, none twice
    page.get_by_label("User id", exact=True).fill(str(alice.id))
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Show jobs").click()
    next_page = page.get_by_role("button", name="Next page")
    first_page = page.get_by_role("button", name="First page")
    seen: list[str] = []
    for number in (1, 2, 3):
        expect(page.locator("#jobs-page")).to_have_text(re.compile(f"^Page {number}: 10 jobs"))
        expect(job_rows(page)).to_have_count(10)
        seen += listed_ids(page)
        if number < 3:
            expect(next_page).to_be_visible()
            next_page.click()
    expect(next_page).to_be_hidden()
    assert seen == newest_first, "30 jobs, each once, newest first"
    screenshot(page, "admin-4-job-browser-page-3")
    page.get_by_role("button", name="Previous page").click()
    expect(page.locator("#jobs-page")).to_have_text(re.compile("^Page 2: 10 jobs"))
    expect(job_rows(page).first).to_have_attribute("data-job-id", newest_first[10])
    assert listed_ids(page) == newest_first[10:20]
    first_page.click()
    expect(page.locator("#jobs-page")).to_have_text(re.compile("^Page 1: 10 jobs"))
    expect(first_page).to_be_hidden()
    assert listed_ids(page) == newest_first[:10]

    # Several statuses at once, 25 a page: every one of Alice's jobs, in two pages
    page.get_by_label("waiting", exact=True).check()
    page.get_by_label("cancelled", exact=True).check()
    page.get_by_label("Per page").select_option("25")
    page.get_by_role("button", name="Show jobs").click()
    expect(page.locator("#jobs-page")).to_have_text(re.compile("^Page 1: 25 jobs"))
    next_page.click()
    expect(page.locator("#jobs-page")).to_have_text(re.compile("^Page 2: 5 jobs"))
    assert listed_ids(page) == newest_first[25:]

    # Cancelled only: the 12
    page.get_by_label("waiting", exact=True).uncheck()
    page.get_by_role("button", name="Show jobs").click()
    expect(job_rows(page)).to_have_count(12)
    expect(job_rows(page).locator(".badge")).to_have_text(["cancelled"] * 12)

    # Created before a day ago: the 12 moved back; from a day ago on: the other 18
    page.get_by_label("cancelled", exact=True).uncheck()
    a_day_ago = page.evaluate(A_DAY_AGO_LOCAL)
    page.get_by_label("Created before").fill(a_day_ago)
    page.get_by_role("button", name="Show jobs").click()
    expect(job_rows(page)).to_have_count(12)
    assert sorted(listed_ids(page)) == sorted(alices[:12])
    page.get_by_label("Created before").fill("")
    page.get_by_label("Created from").fill(a_day_ago)
    page.get_by_role("button", name="Show jobs").click()
    expect(job_rows(page)).to_have_count(18)
    assert listed_ids(page) == newest_first[:18]

    # A tier: Bob's two on pro; nothing running
    page.get_by_role("button", name="Clear filters").click()
    expect(page.get_by_label("User id", exact=True)).to_have_value("")
    page.get_by_label("Tier").fill("pro")
    page.get_by_role("button", name="Show jobs").click()
    expect(job_rows(page)).to_have_count(2)
    assert listed_ids(page) == bobs[::-1]
    page.get_by_label("running", exact=True).check()
    page.get_by_role("button", name="Show jobs").click()
    expect(page.get_by_text("No jobs match these filters.")).to_be_visible()
    expect(job_rows(page)).to_have_count(0)

    # Each row links to the job's page
    page.get_by_label("running", exact=True).uncheck()
    page.get_by_role("button", name="Show jobs").click()
    page.get_by_role("link", name="Bob 1").click()
    expect(page).to_have_url(re.compile(f"#admin/job/{bobs[1]}$"))
    expect(page.locator("#admin-job-title")).to_have_text("Bob 1")
    expect(field(page, "User id")).to_have_text(str(bob.id))
    expect(field(page, "Tier")).to_have_text("pro (priority 2)")
    page.go_back()
    expect(page.locator("#browser")).to_be_visible()


def test_a_jobs_page_shows_its_attempts_and_its_text_as_it_is_written(
    page: Page,
    api_server: ThreadedServer,
    api: httpx.Client,
    users: Users,
    db: Db,
    admin: WebUser,
) -> None:
    # Given a job whose first attempt timed out (after using some tokens) and whose second is
    # writing its story
    user = users.new(credits=1)
    job_id = queue_story(api, user, title="The Glass Orchard", prompt="an orchard of glass trees")
    db.start(job_id)
    db.record_usage(job_id, prompt_tokens=120, completion_tokens=800, cost_usd=0.0005)
    db.retry(job_id, code="upstream_timeout")
    db.start(job_id, words=8)
    opening = "Once upon a time there was an orchard of glass."
    db.write(job_id, 0, opening)

    # When the admin opens its page
    open_page(page, api_server, admin, f"#admin/job/{job_id}")
    expect(page.locator("#admin-job")).to_be_visible()
    expect(page.locator("#browser")).to_be_hidden()

    # Then it shows the job, both attempts and the text so far
    expect(page.locator("#admin-job-title")).to_have_text("The Glass Orchard")
    expect(page.locator("#admin-job-title")).to_be_focused()
    expect(field(page, "Status")).to_have_text("running")
    expect(field(page, "Attempts")).to_have_text("2 of 3")
    expect(field(page, "Prompt")).to_have_text("an orchard of glass trees")
    expect(field(page, "Last heartbeat")).to_have_text(re.compile(r" ago\)$"))
    attempts = page.locator("#attempts tbody tr")
    expect(attempts).to_have_count(2)
    first = attempts.nth(0).locator("th, td")
    expect(first).to_have_text(
        [
            "1",
            re.compile(r"\d"),
            re.compile(r"\d"),
            re.compile(r"^[\d.]+ s$"),
            "retrying",
            "upstream_timeout: try again",
            "gpt-4o-mini",
            "920 (120 + 800)",
            "$0.0005",
        ]
    )
    second = attempts.nth(1).locator("th, td")
    expect(second.nth(0)).to_have_text("2")
    expect(second.nth(2)).to_have_text("\N{EN DASH}")
    expect(second.nth(3)).to_have_text(re.compile(r" so far$"))
    expect(second.nth(4)).to_have_text("running")
    expect(second.nth(7)).to_have_text("not recorded")
    expect(page.locator("#admin-story")).to_have_text(opening)
    expect(page.locator("#admin-story-meta")).to_have_text(
        re.compile(r"^Being written · \d+ words$")
    )
    expect(page.get_by_role("button", name="Cancel job…")).to_be_visible()
    expect(page.get_by_role("button", name="Retry…")).to_be_hidden()
    screenshot(page, "admin-5-job-writing")

    # When more text is written, the page shows it without a click
    more = "\n\nEvery tree rang like a bell when the wind came down from the hills."
    db.write(job_id, len(opening), more)
    expect(page.locator("#admin-story p")).to_have_text([opening, more.strip()])

    # And once the story is finished, the page says so
    db.record_usage(job_id, prompt_tokens=100, completion_tokens=900, cost_usd=0.0006)
    db.complete(job_id, opening + more, {})
    expect(field(page, "Status")).to_have_text("completed")
    expect(page.locator("#admin-story-meta")).to_have_text(re.compile(r"^Ready"))
    expect(second.nth(4)).to_have_text("completed")
    expect(second.nth(7)).to_have_text("1,000 (100 + 900)")
    expect(page.get_by_role("button", name="Cancel job…")).to_be_hidden()
    screenshot(page, "admin-6-job-completed")


def test_retry_a_failed_job_and_cancel_a_waiting_one(
    page: Page,
    api_server: ThreadedServer,
    api: httpx.Client,
    users: Users,
    db: Db,
    admin: WebUser,
) -> None:
    # Given a user with a failed job (refunded) and a waiting one
    user = users.new(credits=2)
    failed = queue_story(api, user, title="The Failed One")
    waiting = queue_story(api, user, title="The Waiting One")
    db.start(failed)
    db.fail(failed, code="generator_error", message="the model refused")
    assert users.balance(user) == 1

    # When the admin opens the failed job, it says why it failed
    open_page(page, api_server, admin, f"#admin/job/{failed}")
    expect(field(page, "Status")).to_have_text("failed (refunded)")
    expect(field(page, "Error")).to_have_text("generator_error: the model refused")
    expect(page.get_by_role("button", name="Cancel job…")).to_be_hidden()
    retry = page.get_by_role("button", name="Retry…")

    # Going back from the confirmation does nothing
    retry.click()
    expect(page.get_by_role("dialog")).to_contain_text("Retry this job?")
    confirm(page, "Go back")
    expect(page.locator("#job-action-result")).to_have_text("Nothing was done.")
    assert db.job_status(failed) == "failed"

    # Confirmed, the job is back in the queue, charged nothing
    retry.click()
    confirm(page, "Retry the job", shot="admin-confirm-retry")
    expect(page.locator("#job-action-result")).to_have_text(
        re.compile(r"^Back in the queue at position \d+ of \d+\.$")
    )
    expect(field(page, "Status")).to_have_text(re.compile("^waiting"))
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(retry).to_be_hidden()
    screenshot(page, "admin-7-job-retried")
    assert db.job_status(failed) == "pending"
    assert users.balance(user) == 1

    # When the admin opens the waiting job and cancels it, it is cancelled and refunded
    page.evaluate(f"location.hash = '#admin/job/{waiting}'")
    expect(page.locator("#admin-job-title")).to_have_text("The Waiting One")
    page.get_by_role("button", name="Cancel job…").click()
    confirm(page, "Cancel the job", shot="admin-confirm-cancel")
    expect(page.locator("#job-action-result")).to_have_text("Cancelled and refunded.")
    expect(field(page, "Status")).to_have_text("cancelled (by admin, refunded)")
    expect(page.get_by_role("button", name="Cancel job…")).to_be_hidden()
    screenshot(page, "admin-8-job-cancelled")
    assert db.run(
        "select status, cancel_reason from public.story_jobs where id = %s", (waiting,)
    ) == [("cancelled", "admin")]
    assert users.balance(user) == 2


def test_empty_clean_and_grant_credits(
    page: Page,
    api_server: ThreadedServer,
    api: httpx.Client,
    users: Users,
    db: Db,
    admin: WebUser,
) -> None:
    # Given three waiting jobs, and two cancelled ones that finished three hours ago
    user = users.new(credits=5)
    waiting = [queue_story(api, user, prompt=f"waiting {n}") for n in range(3)]
    old = [queue_story(api, user, prompt=f"old {n}") for n in range(2)]
    for job_id in old:
        assert api.delete(f"/api/job/{job_id}", headers=user.headers).status_code == 200
    db.run(
        "update public.story_jobs set finished_at = now() - interval '3 hours'"
        " where id = any(%s::uuid[])",
        (old,),
    )
    assert users.balance(user) == 2
    open_page(page, api_server, admin, "#admin")
    expect(stat(page, "waiting")).to_have_text("3")

    # Empty: going back does nothing; confirmed, the three are cancelled and refunded
    empty = page.get_by_role("button", name="Empty the queue…")
    empty.click()
    expect(page.get_by_role("dialog")).to_contain_text(
        "Every waiting job (about 3 jobs, retries included) will be cancelled and their"
        " credits refunded."
    )
    confirm(page, "Go back")
    expect(page.locator("#empty-result")).to_have_text("Nothing was done.")
    assert [db.job_status(job_id) for job_id in waiting] == ["pending"] * 3
    empty.click()
    confirm(page, "Empty the queue", shot="admin-confirm-empty")
    expect(page.locator("#empty-result")).to_have_text(
        "Cancelled 3 waiting jobs and refunded their credits."
    )
    expect(stat(page, "waiting")).to_have_text("0")
    assert db.run(
        "select distinct status, cancel_reason from public.story_jobs where id = any(%s::uuid[])",
        (waiting,),
    ) == [("cancelled", "admin")]
    assert users.balance(user) == 5

    # Clean the cancelled jobs that finished more than two hours ago: only the two old ones
    expected = db.value(
        "select count(*) from public.story_jobs where status = 'cancelled'"
        " and finished_at < now() - interval '2 hours'"
    )
    assert expected >= 2
    page.get_by_label("Jobs to clean").select_option("cancelled")
    page.get_by_label("Finished more than (hours) ago").fill("2")
    page.get_by_role("button", name="Clean…").click()
    expect(page.get_by_role("dialog")).to_contain_text(
        "The rows of cancelled jobs that finished more than 2 hours ago will be deleted."
    )
    confirm(page, "Delete cancelled jobs", shot="admin-confirm-clean")
    expect(page.locator("#clean-result")).to_have_text(f"Deleted {expected} cancelled jobs.")
    assert (
        db.value("select count(*) from public.story_jobs where id = any(%s::uuid[])", (old,)) == 0
    )
    assert (
        db.value("select count(*) from public.story_jobs where id = any(%s::uuid[])", (waiting,))
        == 3
    )
    # (their stories stay)
    assert db.value("select count(*) from public.stories where user_id = %s", (user.id,)) == 5

    # Grant credits to the user
    page.get_by_label("Grant to user id").fill(str(user.id))
    page.get_by_label("Credits to grant").fill("7")
    page.get_by_role("button", name="Grant credits…").click()
    expect(page.get_by_role("dialog")).to_contain_text(
        f"7 credits will be added to the balance of user {user.id}."
    )
    confirm(page, "Grant 7 credits", shot="admin-confirm-credits")
    expect(page.locator("#credits-result")).to_have_text(f"User {user.id} now has 12 credits.")
    assert users.balance(user) == 12

    # A user id that is no user: the problem's title and detail
    page.get_by_label("Grant to user id").fill(str(uuid.uuid4()))
    page.get_by_role("button", name="Grant credits…").click()
    confirm(page, "Grant 7 credits")
    result = page.locator("#credits-result")
    expect(result).to_have_text("Not Found: no such user")
    expect(result).to_have_attribute("data-code", "not_found")
    expect(result).to_have_attribute("role", "alert")
    screenshot(page, "admin-9-actions")


def test_a_user_who_is_not_an_admin_sees_admins_only(
    page: Page, api_server: ThreadedServer, api: httpx.Client, users: Users
) -> None:
    # Given a user who is no admin, on their page: no Operator link
    user = users.new(credits=1)
    open_page(page, api_server, user)
    expect(page.locator("#app")).to_be_visible()
    expect(page.get_by_role("link", name="Operator")).to_be_hidden()

    # When they open the operator page's address, they are told it is for admins only
    page.evaluate("location.hash = '#admin'")
    expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    expect(page.locator("#admin")).to_be_hidden()
    expect(page.locator("#app")).to_be_hidden()
    screenshot(page, "admin-10-admins-only")

    # And so is a job's page, opened straight from its address
    job_id = queue_story(api, user)
    goto_ready(page, f"{api_server.url}/#admin/job/{job_id}")
    expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    expect(page.locator("#admin-job")).to_be_hidden()
    page.get_by_role("link", name="Back to your stories").click()
    expect(page.locator("#app")).to_be_visible()
    expect(page.get_by_role("heading", name="Admins only")).to_be_hidden()

    # And the API refuses them the operator's endpoints
    for path in ("/api/admin/queue", "/api/admin/jobs", f"/api/admin/job/{job_id}"):
        answer = api.get(path, headers=user.headers)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["code"] == "forbidden"
    assert api.delete(f"/api/job/{job_id}", headers=user.headers).status_code == 200


def test_the_skip_link_a_mangled_link_and_signing_out_keep_the_operator_page_sound(
    page: Page, api_server: ThreadedServer, api: httpx.Client, users: Users, admin: WebUser
) -> None:
    # Given an admin on a job's page
    user = users.new(credits=1)
    job_id = queue_story(api, user)
    open_page(page, api_server, admin, f"#admin/job/{job_id}")
    expect(page.locator("#admin-job")).to_be_visible()
    expect(page.locator("#admin-job-fields")).to_contain_text(str(job_id))

    # When they use the "Skip to content" link, they stay on the operator page
    page.locator("a.skip").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#admin-job")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()

    # When a mangled job link is opened, the page still starts and says no such job is found
    goto_ready(page, f"{api_server.url}/#admin/job/%E0%A4%A")
    expect(page.locator("#admin-job")).to_be_visible()
    expect(page.locator("#admin-job-fields")).not_to_contain_text(str(job_id))

    # When they sign out, nothing of the last job shown stays in the page
    open_page(page, api_server, admin, f"#admin/job/{job_id}")
    expect(page.locator("#admin-job-fields")).to_contain_text(str(job_id))
    page.get_by_role("button", name="Sign out").click()
    assert str(job_id) not in (page.locator("#admin-job").text_content() or "")
    assert api.delete(f"/api/job/{job_id}", headers=user.headers).status_code == 200
