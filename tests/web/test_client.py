"""storyq-client.js on its own, in Chromium: poll intervals, Retry-After, backoff, errors,
Idempotency-Key, and the Supabase Realtime hook with the real supabase-js (the npm package's
UMD bundle, served by the page's origin) against a Realtime websocket answered by Playwright
(tests/web/supabase_project.py; the local emulator has no Realtime). Some tests speak to the
real API, some to a fake fetch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from playwright.sync_api import Page

from storyq_local.stack.servers import ThreadedServer
from tests.support.stack import WEB_DIR
from tests.web.conftest import Users, cancel_unfinished
from tests.web.supabase_project import SupabaseProject

IMPORT = "const m = await import('/web/storyq-client.js');"

# A fetch that answers from a script of [status, body, headers] and records what was asked.
FAKE_FETCH = """
const script = ANSWERS;
const calls = [];
const fakeFetch = async (url, init) => {
  calls.push({ url: String(url), method: init.method, headers: init.headers,
               at: performance.now() });
  const next = script.length > 1 ? script.shift() : script[0];
  if (next === 'network') throw new TypeError('Failed to fetch');
  const [status, body, headers] = next;
  return new Response(body === null ? null : JSON.stringify(body), {
    status, headers: { 'Content-Type': 'application/json', ...(headers || {}) },
  });
};
"""

JOB = {
    "jobId": "11111111-1111-4111-8111-111111111111",
    "storyId": "22222222-2222-4222-8222-222222222222",
    "attempts": 0,
    "maxAttempts": 3,
    "createdAt": "2026-01-01T00:00:00Z",
    "startedAt": None,
    "finishedAt": None,
}


def job(status: str, **extra: Any) -> dict[str, Any]:
    return {**JOB, "status": status, **extra}


@pytest.fixture
def module_page(page: Page, api_server: ThreadedServer) -> Page:
    page.goto(f"{api_server.url}/web/")
    page.wait_for_selector("html[data-ready='true']")
    return page


def run(page: Page, body: str, answers: list[Any] | None = None, arg: Any = None) -> Any:
    """Evaluate `body` (an async function body with `m`, the module, and `arg` in scope)."""
    fake = FAKE_FETCH.replace("ANSWERS", _js(answers)) if answers is not None else ""
    return page.evaluate(f"async (arg) => {{ {IMPORT} {fake} {body} }}", arg)


def _js(value: Any) -> str:
    return json.dumps(value)


def test_poll_delay_follows_the_job(module_page: Page) -> None:
    delays = run(
        module_page,
        """
        const now = Date.parse('2026-01-01T00:01:00Z');
        const started = '2026-01-01T00:00:50Z';  // 10 s ago
        const job = (status, extra) => ({ ...arg, status, ...extra });
        return {
          head: m.pollDelay(job('pending', { waitTime: { position: 0, estimatedMinutes: 5 } })),
          near: m.pollDelay(job('pending', { waitTime: { position: 1, estimatedMinutes: 1 } })),
          far: m.pollDelay(job('pending', { waitTime: { position: 40, estimatedMinutes: 45 } })),
          unknown: m.pollDelay(job('pending', { waitTime: null })),
          running: m.pollDelay(job('processing', {})),
          nearlyDone: m.pollDelay(job('processing', {
            startedAt: started, progress: { words: 900, percent: 90 } }), { now }),
          justStarted: m.pollDelay(job('processing', {
            startedAt: started, progress: { words: 50, percent: 5 } }), { now }),
          halfway: m.pollDelay(job('processing', {
            startedAt: '2026-01-01T00:00:30Z', progress: { words: 600, percent: 50 } }), { now }),
          completed: m.pollDelay(job('completed', {})),
          failed: m.pollDelay(job('failed', {})),
          cancelled: m.pollDelay(job('cancelled', {})),
        };
        """,
        arg=JOB,
    )
    assert delays == {
        "head": 3000,  # next in line: soon
        "near": 3000,  # a twentieth of a one-minute ETA
        "far": 15000,  # far back: rarely (the ceiling)
        "unknown": 5000,
        "running": 3000,
        "nearlyDone": 2000,  # the floor
        "justStarted": 5000,  # the processing ceiling
        "halfway": 3000,  # 30 s left: a tenth
        "completed": None,
        "failed": None,
        "cancelled": None,
    }


def test_retry_after_is_read_as_seconds_or_a_date(module_page: Page) -> None:
    parsed = run(
        module_page,
        """
        const now = Date.parse('Wed, 21 Oct 2026 07:28:00 GMT');
        return [m.parseRetryAfter('7'), m.parseRetryAfter(' 1.5 '),
                m.parseRetryAfter('Wed, 21 Oct 2026 07:28:30 GMT', now),
                m.parseRetryAfter('Wed, 21 Oct 2026 07:27:00 GMT', now),
                m.parseRetryAfter('soon'), m.parseRetryAfter(''), m.parseRetryAfter(null)];
        """,
    )
    assert parsed == [7000, 1500, 30000, 0, None, None, None]


def test_idempotency_keys_are_uuids(module_page: Page) -> None:
    keys = run(module_page, "return [m.newIdempotencyKey(), m.newIdempotencyKey()];")
    assert keys[0] != keys[1]
    assert all(len(key) == 36 and key[14] == "4" for key in keys)


def test_problem_details_become_storyq_errors(module_page: Page, users: Users) -> None:
    user = users.new()
    errors = run(
        module_page,
        """
        const out = {};
        const anonymous = new m.StoryqClient({ getToken: () => null });
        const signed = new m.StoryqClient({ getToken: () => arg });
        const offline = new m.StoryqClient({ baseUrl: 'http://127.0.0.1:9', getToken: () => arg });
        const take = async (name, promise) => {
          try { await promise; out[name] = 'no error'; }
          catch (e) {
            out[name] = { isError: e instanceof m.StoryqError, status: e.status, code: e.code,
                          transient: e.transient, detail: e.detail, errors: e.errors.length,
                          type: e.type };
          }
        };
        await take('unauthorized', anonymous.listJobs());
        await take('notFound', signed.getJob('00000000-0000-4000-8000-000000000000'));
        await take('invalid', signed.generate({ prompt: 'x', targetWords: 5 }));
        await take('broke', signed.generate({ prompt: 'a story' }));
        await take('network', offline.listJobs());
        out.me = await signed.me();
        return out;
        """,
        arg=user.token,
    )
    assert errors["unauthorized"]["status"] == 401
    assert errors["unauthorized"]["code"] == "unauthorized"
    assert errors["unauthorized"]["isError"] is True
    assert errors["unauthorized"]["type"].startswith("urn:storyq:problem:")
    assert errors["notFound"]["status"] == 404
    assert errors["notFound"]["code"] == "not_found"
    assert errors["invalid"]["status"] == 422
    assert errors["invalid"]["errors"] >= 1
    assert errors["broke"]["status"] == 402
    assert errors["broke"]["code"] == "insufficient_credits"
    assert errors["broke"]["transient"] is False
    assert errors["network"]["status"] == 0
    assert errors["network"]["code"] == "network_error"
    assert errors["network"]["transient"] is True
    assert errors["me"]["userId"] == str(user.id)
    assert errors["me"]["credits"] == 0


def test_me_is_null_where_the_api_has_no_such_endpoint(module_page: Page) -> None:
    me = run(
        module_page,
        """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        return await client.me();
        """,
        answers=[[404, {"status": 404, "code": "not_found", "detail": "no route"}]],
    )
    assert me is None


def test_the_client_speaks_the_contract(module_page: Page, users: Users, web_stack: Any) -> None:
    """generate (with a replayed Idempotency-Key), getJob, listJobs, getStory, cancel (twice)."""
    cancel_unfinished(web_stack.database_url)
    user = users.new(credits=3)
    out = run(
        module_page,
        """
        const client = new m.StoryqClient({ baseUrl: '', getToken: async () => arg });
        const body = { prompt: 'a clockmaker who repairs hours', title: 'Hours', targetWords: 300 };
        const key = m.newIdempotencyKey();
        const first = await client.generate(body, { idempotencyKey: key });
        const again = await client.generate(body, { idempotencyKey: key });
        let conflict = null;
        try { await client.generate({ ...body, title: 'Other' }, { idempotencyKey: key }); }
        catch (e) { conflict = e.code; }
        const job = await client.getJob(first.jobId);
        const pending = await client.listJobs({ status: 'pending', limit: 5 });
        const story = await client.getStory(first.storyId);
        const cancelled = await client.cancel(first.jobId);
        const again2 = await client.cancel(first.jobId);
        const me = await client.me();
        return { first, again, conflict, job, pending, story, cancelled, again2, me };
        """,
        arg=user.token,
    )
    first, again = out["first"], out["again"]
    assert first["status"] == "queued"
    assert first["replayed"] is False
    assert again["jobId"] == first["jobId"]
    assert again["replayed"] is True
    assert out["conflict"] == "idempotency_conflict"
    assert out["job"]["status"] == "pending"
    assert out["job"]["waitTime"]["estimatedMinutes"] >= 1
    assert [j["jobId"] for j in out["pending"]["jobs"]] == [first["jobId"]]
    assert out["story"]["prompt"] == "a clockmaker who repairs hours"
    assert out["story"]["content"] is None
    assert out["cancelled"]["status"] == "cancelled"
    assert out["cancelled"]["refunded"] is True
    # Cancelling again answers the same, with no second refund.
    assert out["again2"]["status"] == "cancelled"
    assert out["again2"]["refunded"] is True
    assert out["me"]["credits"] == 3  # debited once, refunded once
    assert users.balance(user) == 3


def test_list_jobs_pages_with_the_cursor(module_page: Page) -> None:
    urls = run(
        module_page,
        """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        const page = await client.listJobs({ status: 'completed', limit: 2 });
        await client.listJobs({ cursor: page.nextCursor });
        return calls.map((c) => c.url);
        """,
        answers=[[200, {"jobs": [], "nextCursor": "abc+/="}]],
    )
    assert urls == ["/api/jobs?status=completed&limit=2", "/api/jobs?cursor=abc%2B%2F%3D"]


def test_watch_honours_retry_after_backs_off_and_stops_when_done(module_page: Page) -> None:
    out = run(
        module_page,
        """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        const seen = [], retries = [];
        const final = await client.watchJob(arg.id, (job) => seen.push(job.status), {
          minIntervalMs: 50, maxIntervalMs: 100, maxBackoffMs: 400,
          onRetry: (error, delay) => retries.push([error.status, error.code, delay]),
        });
        const gaps = calls.slice(1).map((c, i) => Math.round(c.at - calls[i].at));
        return { final: final.status, seen, retries, gaps, calls: calls.length,
                 auth: calls[0].headers.Authorization };
        """,
        answers=[
            [429, {"status": 429, "code": "rate_limited"}, {"Retry-After": "1"}],
            "network",
            [503, {"status": 503, "code": "database_unavailable"}],
            [200, job("pending", waitTime={"position": 0, "estimatedMinutes": 1})],
            [200, job("processing", progress={"words": 10, "percent": 5})],
            [200, job("completed", result={"words": 300, "generationTime": 5})],
        ],
        arg={"id": JOB["jobId"]},
    )
    assert out["final"] == "completed"
    assert out["seen"] == ["pending", "processing", "completed"]
    assert out["calls"] == 6  # and no poll after the terminal status
    assert out["auth"] == "Bearer t"
    assert out["retries"][0] == [429, "rate_limited", 1000]  # Retry-After, as asked
    assert [r[:2] for r in out["retries"][1:]] == [
        [0, "network_error"],
        [503, "database_unavailable"],
    ]
    # Backoff doubles with each failure in a row (±10 % jitter): 200 ms, then 400 ms.
    assert 180 <= out["retries"][1][2] <= 220
    assert 360 <= out["retries"][2][2] <= 440
    assert out["gaps"][0] >= 950  # it did wait for Retry-After


def test_watch_waits_as_long_as_the_server_suggests_unless_given_a_ceiling(
    module_page: Page,
) -> None:
    # Given an API that answers "processing, ask again in 1 s" twice, then "completed"
    answers = [
        [200, job("processing", progress={"words": 10, "percent": 5}), {"Retry-After": "1"}],
        [200, job("processing", progress={"words": 90, "percent": 50}), {"Retry-After": "1"}],
        [200, job("completed", result={"words": 300, "generationTime": 5})],
    ]
    watch = """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        await client.watchJob(arg.id, () => {}, arg.options);
        return calls.slice(1).map((c, i) => Math.round(c.at - calls[i].at));
    """
    # When a client with the default ceiling watches it, Then it waits the full second each time
    # (its own estimate alone would have asked after 50 ms)
    followed = run(
        module_page, watch, answers, arg={"id": JOB["jobId"], "options": {"minIntervalMs": 50}}
    )
    assert len(followed) == 2
    assert all(950 <= gap <= 3000 for gap in followed), followed
    # And a client configured with a 100-ms ceiling keeps it
    capped = run(
        module_page,
        watch,
        answers,
        arg={"id": JOB["jobId"], "options": {"minIntervalMs": 50, "maxIntervalMs": 100}},
    )
    assert all(gap < 900 for gap in capped), capped


def test_next_poll_follows_the_server_within_the_callers_bounds(module_page: Page) -> None:
    waits = run(
        module_page,
        """
        const running = { ...arg, status: 'processing', progress: { words: 10, percent: 5 } };
        const same = (ms) => ms;
        return {
          server: m.nextPollMs(running, { retryAfterMs: 20000, spread: same }),
          serverTooLong: m.nextPollMs(running, { retryAfterMs: 600000, spread: same }),
          serverTooShort: m.nextPollMs(running, { retryAfterMs: 0, spread: same }),
          ceiling: m.nextPollMs(running, { retryAfterMs: 20000, maxMs: 2000, minMs: 1000 }),
          fallback: m.nextPollMs(running, { spread: same }),
          realtime: m.nextPollMs(running, { retryAfterMs: 2000, realtimeMs: 30000 }),
          done: m.nextPollMs({ ...arg, status: 'completed' }, { retryAfterMs: 5000 }),
        };
        """,
        arg=JOB,
    )
    assert waits == {
        "server": 20000,  # the API knows the progress: followed
        "serverTooLong": 60000,  # never more than a minute without a ceiling of the caller's
        "serverTooShort": 2000,  # nor less than the floor
        "ceiling": 2000,  # a caller's ceiling (the page's pollMaxMs) is kept
        "fallback": 3000,  # no header: pollDelay, as before
        "realtime": 30000,  # Realtime up: status changes wake it, the poll is a safety net
        "done": None,
    }


def test_watch_rejects_on_errors_that_retrying_cannot_fix(module_page: Page) -> None:
    out = run(
        module_page,
        """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        try { await client.watchJob(arg.id, () => {}, { minIntervalMs: 50 }); return 'resolved'; }
        catch (e) { return [e.name, e.status, e.code, calls.length]; }
        """,
        answers=[[401, {"status": 401, "code": "unauthorized", "detail": "token expired"}]],
        arg={"id": JOB["jobId"]},
    )
    assert out == ["StoryqError", 401, "unauthorized", 1]


def test_watch_stops_when_aborted(module_page: Page) -> None:
    out = run(
        module_page,
        """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        const controller = new AbortController();
        const watching = client.watchJob(arg.id, () => controller.abort(),
                                         { signal: controller.signal });
        try { await watching; return 'resolved'; }
        catch (e) { return [e.name, calls.length]; }
        """,
        answers=[[200, job("pending", waitTime=None)]],
        arg={"id": JOB["jobId"]},
    )
    assert out == ["AbortError", 1]


# The real supabase-js client, from the bundle the page's origin serves.
REAL_SUPABASE = "const supabase = window.supabase.createClient(arg.url, arg.key);"


def with_supabase_js(page: Page, project: SupabaseProject) -> dict[str, str]:
    """Load the bundle into the page and answer its Realtime socket; the createClient args."""
    project.attach(page)
    page.add_script_tag(url="/web/vendor/supabase.js")
    assert page.evaluate("typeof window.supabase.createClient") == "function"
    return {"url": project.url, "key": project.anon_key}


def test_subscribe_is_woken_by_realtime_changes(module_page: Page) -> None:
    project = SupabaseProject()
    arg = {"id": JOB["jobId"], **with_supabase_js(module_page, project)}
    run(
        module_page,
        REAL_SUPABASE
        + """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch, supabase });
        const seen = [];
        const started = performance.now();
        window.__done = client
          .subscribe(arg.id, (job) => seen.push(job.status), {
            minIntervalMs: 50, realtimeIntervalMs: 60000,
          })
          .then((job) => ({ final: job.status, seen, ms: performance.now() - started,
                            calls: calls.length }));
        """,
        answers=[
            [200, job("pending", waitTime={"position": 0, "estimatedMinutes": 1})],
            [200, job("processing", progress={"words": 10, "percent": 5})],
            [200, job("completed", result={"words": 300, "generationTime": 5})],
        ],
        arg=arg,
    )
    channel = project.wait(module_page, project.open_channels)[0]
    assert channel.topic == f"realtime:storyq-job-{JOB['jobId']}"
    assert channel.config["postgres_changes"] == [
        {"event": "*", "schema": "public", "table": "story_jobs", "filter": f"id=eq.{JOB['jobId']}"}
    ]
    # Without Realtime the next poll would be a minute away: each row change wakes it now.
    row = {"id": JOB["jobId"], "status": "pending"}
    for status in ("processing", "completed"):
        module_page.wait_for_timeout(300)
        project.push_change(channel, {**row, "status": status}, row)
    out = module_page.evaluate("window.__done")
    assert out["final"] == "completed"
    assert out["seen"] == ["pending", "processing", "completed"]
    assert out["calls"] == 3
    assert out["ms"] < 3000
    project.wait(module_page, lambda: channel.left)  # removeChannel: the client left it


def test_subscribe_shows_heartbeat_progress_without_asking_the_api(module_page: Page) -> None:
    project = SupabaseProject()
    arg = {"id": JOB["jobId"], **with_supabase_js(module_page, project)}
    run(
        module_page,
        REAL_SUPABASE
        + """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch, supabase });
        window.__seen = [];
        window.__done = client
          .subscribe(arg.id, (job) => window.__seen.push([job.status, job.progress?.words]), {
            minIntervalMs: 50, realtimeIntervalMs: 60000,
          })
          .then((job) => ({ final: job.status, calls: calls.length }));
        """,
        answers=[
            [200, job("processing", progress={"words": 100, "percent": 10})],
            [200, job("completed", result={"words": 1000, "generationTime": 5})],
        ],
        arg=arg,
    )
    channel = project.wait(module_page, project.open_channels)[0]
    project.wait(module_page, lambda: module_page.evaluate("window.__seen.length") == 1)
    # Given a running job, When the worker's heartbeats change its row (status unchanged)
    row = {"id": JOB["jobId"], "status": "processing", "progress_words": 100}
    for words in (300, 600):
        project.push_change(channel, {**row, "progress_words": words}, row)
    # Then the page sees the words grow (and the API is asked nothing more: see `calls` below)
    project.wait(module_page, lambda: module_page.evaluate("window.__seen.length") == 3)
    module_page.wait_for_timeout(300)
    seen = module_page.evaluate("window.__seen")
    assert seen == [["processing", 100], ["processing", 300], ["processing", 600]]
    # And when the job finishes, the change of status makes it ask at once
    project.push_change(channel, {**row, "status": "completed"}, row)
    out = module_page.evaluate("window.__done")
    assert out == {"final": "completed", "calls": 2}


def test_subscribe_falls_back_to_polling_when_the_channel_fails(module_page: Page) -> None:
    project = SupabaseProject(refuse_joins=True)
    arg = {"id": JOB["jobId"], **with_supabase_js(module_page, project)}
    out = run(
        module_page,
        REAL_SUPABASE
        + """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch, supabase });
        const seen = [];
        const final = await client.subscribe(arg.id, (job) => seen.push(job.status), {
          minIntervalMs: 50, maxIntervalMs: 100, realtimeIntervalMs: 60000,
        });
        return { final: final.status, seen };
        """,
        answers=[
            [200, job("pending", waitTime={"position": 0, "estimatedMinutes": 1})],
            [200, job("completed", result={"words": 300, "generationTime": 5})],
        ],
        arg=arg,
    )
    assert out == {"final": "completed", "seen": ["pending", "completed"]}
    assert set(project.refused) == {f"realtime:storyq-job-{JOB['jobId']}"}


def test_subscribe_without_supabase_is_watch(module_page: Page) -> None:
    out = run(
        module_page,
        """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        const final = await client.subscribe(arg.id, () => {},
                                             { minIntervalMs: 50, maxIntervalMs: 60 });
        return [final.status, calls.length];
        """,
        answers=[
            [200, job("processing")],
            [200, job("completed")],
        ],
        arg={"id": JOB["jobId"]},
    )
    assert out == ["completed", 2]


STORY = {
    "storyId": JOB["storyId"],
    "jobId": JOB["jobId"],
    "title": None,
    "prompt": "p",
    "words": None,
    "createdAt": "2026-01-01T00:00:00Z",
    "completedAt": None,
}


def story(status: str, content: str | None) -> dict[str, Any]:
    return {**STORY, "status": status, "content": content}


def test_watch_story_reads_only_at_the_pace_it_is_given(module_page: Page) -> None:
    """Without Realtime the text is re-read each time nextRead() resolves (the page: each poll
    of the job), never on its own clock; an older view of the text never replaces a newer one."""
    out = run(
        module_page,
        """
        const client = new m.StoryqClient({ getToken: () => 't', fetch: fakeFetch });
        const shown = [];
        let paced = 0;
        const final = await client.watchStory(arg, (s) => shown.push(s.content), {
          nextRead: () => { paced += 1; return new Promise((r) => setTimeout(r, 30)); },
        });
        return { final: final.status, shown, reads: calls.length, paced };
        """,
        answers=[
            [200, story("pending", None)],
            [200, story("writing", "Once")],
            [200, story("writing", "Once upon")],
            [200, story("writing", "Once")],  # stale: left before the one above
            [200, story("writing", "Once upon a time")],
            [200, story("cancelled", "Once upon a time")],
        ],
        arg=STORY["storyId"],
    )
    assert out["final"] == "cancelled"
    assert out["shown"] == [None, "Once", "Once upon", "Once upon a time", "Once upon a time"]
    assert out["reads"] == 6
    assert out["paced"] == 5  # one read per nextRead, after the first


def test_the_client_runs_without_a_page() -> None:
    """The module is usable outside the browser too (Node's global fetch)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the browser tests above cover the module)")
    script = """
    import { StoryqClient, pollDelay } from './web/storyq-client.js';
    const answers = [{ status: 'processing' }, { status: 'completed' }];
    const client = new StoryqClient({ getToken: () => 't',
      fetch: async () => new Response(JSON.stringify(answers.shift()), { status: 200 }) });
    const seen = [];
    const job = await client.watchJob('x', (j) => seen.push(j.status),
                                      { minIntervalMs: 10, maxIntervalMs: 20 });
    console.log(JSON.stringify({ final: job.status, seen, delay: pollDelay({ status: 'pending',
      waitTime: { position: 3, estimatedMinutes: 9 } }) }));
    """
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=WEB_DIR.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "final": "completed",
        "seen": ["processing", "completed"],
        "delay": 15000,
    }


def test_a_finished_story_line_shows_what_it_cost_when_known(module_page: Page) -> None:
    lines = module_page.evaluate(
        """async (arg) => {
          const f = await import('/web/format.js');
          const done = (result) => ({ ...arg, status: 'completed',
            finishedAt: '2026-01-01T00:05:00Z', result });
          return {
            priced: f.detailOf(done({ words: 1200, generationTime: 270,
              usage: { promptTokens: 120, completionTokens: 1680, costUsd: 0.001026 } })),
            template: f.detailOf(done({ words: 300, generationTime: 5 })),
          };
        }""",
        JOB,
    )
    assert lines["priced"].startswith("1,200 words · written in ")
    assert lines["priced"].endswith(" · 1,800 tokens ($0.0010)")
    assert "tokens" not in lines["template"]
