"""A running job cancelled by its user while its worker process dies: SIGKILLed right after the
DELETE, before it could hear of the cancel, or SIGKILLed while the story was being written and
cancelled afterwards. Either way no worker ends the attempt: the sweep that counts it as lost
must end the job cancelled (never retried, never failed), refunded exactly once, its story
cancelled with the text written so far, nothing of it left in Redis, and the job waiting
behind it must still run."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from storyq_local.stack.servers import wait_until
from storyq_local.stack.workers import WorkerProcess
from tests.reliability import results
from tests.reliability.conftest import (
    MakeUser,
    Stack,
    Workers,
    assert_no_residue,
    drain_leftovers,
    queue_story,
)
from tests.reliability.facts import (
    all_terminal,
    assert_books_balance,
    assert_jobs_charged_once,
    rows,
    user_money,
)

# Long enough that the cancelled job is still being written when its worker dies, short enough
# (GENERATION_TIMEOUT_SECONDS is 30 in this suite) to be a normal generation.
LONG_GENERATION_SECONDS = "20"
SHORT_GENERATION_SECONDS = "0.5"


def _story(database_url: str, job_id: str) -> dict[str, Any]:
    [found] = rows(
        database_url,
        "select s.status, s.content, s.words from public.stories s"
        " join public.story_jobs j on j.story_id = s.id where j.id = %s",
        (job_id,),
    )
    return found


def _job(database_url: str, job_id: str) -> dict[str, Any]:
    [found] = rows(database_url, "select * from public.story_jobs where id = %s", (job_id,))
    return found


def _statuses(database_url: str, job_id: str) -> list[str]:
    """Every status the job went through, in order (the suite's audit)."""
    found = rows(
        database_url,
        "select new_status from reliability.job_events where job_id = %s order by id",
        (job_id,),
    )
    return [row["new_status"] for row in found]


def _cancel(api: httpx.Client, headers: dict[str, str], job_id: str) -> httpx.Response:
    return api.delete(f"/api/job/{job_id}", headers=headers)


@pytest.mark.parametrize("when", ["killed_after_delete", "killed_then_deleted"])
def test_a_cancelled_job_whose_worker_dies_ends_cancelled_and_refunded_once(
    stack: Stack, api: httpx.Client, make_user: MakeUser, workers: Workers, when: str
) -> None:
    # Given a job being written by a worker process with one slot, and another job waiting
    drain_leftovers(stack, workers)
    user = make_user(2)
    db = stack.database_url
    cancelled = queue_story(api, user, "a story its reader will stop")
    [writer] = workers.start(1, concurrency=1, GENERATION_DELAY_SECONDS=LONG_GENERATION_SECONDS)
    wait_until(
        lambda: _story(db, cancelled)["status"] == "writing",
        timeout=60,
        what="the first story being written",
    )
    waiting = queue_story(api, user, "a story that waits its turn")

    # When the user cancels it and its worker is SIGKILLed: right after the DELETE (the process
    # is paused before it, so it cannot act on anything after it), or before the DELETE
    answer, killed_at = _cancel_and_kill(api, user.headers, cancelled, writer, when=when)

    # Then the DELETE asked for the cancel, and no worker ended the attempt
    assert answer.status_code == 202, answer.text
    assert answer.json()["cancelRequested"] is True
    row = _job(db, cancelled)
    assert row["status"] == "processing", row
    assert row["cancel_requested_at"] is not None, row
    text_before = _story(db, cancelled)["content"]
    assert text_before

    # And once another worker runs (its sweep counts the silent attempt as lost)
    workers.start(1, concurrency=1, GENERATION_DELAY_SECONDS=SHORT_GENERATION_SECONDS)
    wait_until(lambda: all_terminal(db, [cancelled, waiting]), timeout=90, what="both jobs over")
    ended_after = _job(db, cancelled)["finished_at"].timestamp() - killed_at

    # Then the cancelled job ended cancelled, by the user, after one attempt: never retried,
    # never failed, refunded exactly once
    final = {str(r["id"]): r for r in assert_jobs_charged_once(db, [cancelled, waiting])}
    job = final[cancelled]
    assert (job["status"], job["cancel_reason"], job["attempts"]) == ("cancelled", "user", 1), job
    assert job["refunds"] == 1, job
    assert _statuses(db, cancelled) == ["pending", "processing", "cancelled"]
    # And its story is cancelled and keeps the text written before the worker died
    story = _story(db, cancelled)
    assert story["status"] == "cancelled", story
    assert story["content"] == text_before
    # And the job that waited ran to completion
    assert final[waiting]["status"] == "completed", final[waiting]
    assert _story(db, waiting)["status"] == "ready"
    # And the books balance: two debits, one refund
    money = user_money(db, user.id)
    assert (money["balance"], money["debits"], money["refunds"]) == (1, 2, 1), money
    assert_books_balance(db)
    # And Redis holds nothing of either job
    residue = assert_no_residue(stack)

    results.record(
        f"cancel_{when}",
        injected="SIGKILL of the worker writing a job whose cancel its user requested "
        + (
            "(DELETE, then the kill before the worker could act)"
            if when == "killed_after_delete"
            else "(the kill while writing, then the DELETE)"
        ),
        delete_status=answer.status_code,
        kill_to_cancelled_s=round(ended_after, 2),
        cancelled_status=job["status"],
        refunds=int(job["refunds"]),
        attempts=int(job["attempts"]),
        next_job=final[waiting]["status"],
        redis_residue=residue,
    )


def _cancel_and_kill(
    api: httpx.Client, headers: dict[str, str], job_id: str, worker: WorkerProcess, *, when: str
) -> tuple[httpx.Response, float]:
    """The DELETE and the SIGKILL in the order `when` names; (the answer, the kill's moment)."""
    assert worker.process is not None
    if when == "killed_then_deleted":
        killed_at = worker.sigkill()
        return _cancel(api, headers, job_id), killed_at
    # Paused before the DELETE, killed after it: the process runs no instruction in between,
    # so it cannot have heard of the cancel (a kill sent after the answer could lose the race
    # to its next heartbeat tick and test the ordinary cancel instead).
    worker.process.send_signal(signal.SIGSTOP)
    try:
        answer = _cancel(api, headers, job_id)
    finally:
        killed_at = worker.sigkill()
    return answer, killed_at
