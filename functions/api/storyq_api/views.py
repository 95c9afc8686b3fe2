"""From store rows to the JSON of the contract (schemas), status by status."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from storyq.queue import Position
from storyq.store import Job, JobDetails, ListedJob, Story
from storyq.store import JobResult as RecordedResult
from storyq_api.schemas import (
    AdminJob,
    AdminJobDetail,
    JobError,
    JobResult,
    JobView,
    Progress,
    ResultUsage,
    StoryView,
    WaitTime,
)

# A processing job never shows 100 %: that is what `completed` is for.
MAX_RUNNING_PERCENT = 99


def wait_time(position: Position | None) -> WaitTime | None:
    if position is None:
        return None
    return WaitTime(
        position=position.position,
        queue_length=position.queue_length,
        active_jobs=position.active_jobs,
        estimated_minutes=position.estimated_minutes,
        may_be_overtaken=position.may_be_overtaken,
        at_user_cap=position.at_user_cap,
        held_by_user_cap=position.held,
        own_jobs_ahead=position.own_ahead,
    )


def job_view(
    job: Job,
    *,
    position: Position | None = None,
    target_words: int | None = None,
    with_wait_time: bool = False,
) -> JobView:
    """The job as GET /api/job shows it. Sections by status: pending → waitTime (when asked
    for: null if Redis could not say), processing → progress, completed → result, failed →
    error and refunded, cancelled → refunded and cancelReason. Every job has cancelRequested."""
    fields: dict[str, Any] = {
        "job_id": job.job_id,
        "story_id": job.story_id,
        "title": job.title,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "cancel_requested": job.cancel_requested,
    }
    if job.status == "pending" and with_wait_time:
        fields["wait_time"] = wait_time(position)
    elif job.status == "processing":
        fields["progress"] = _progress(job.progress_words or 0, target_words)
    elif job.status == "completed":
        fields["result"] = _result(job)
    elif job.status == "failed":
        fields["error"] = JobError(
            code=job.error_code or "generation_failed",
            message=job.error_message or "the story could not be generated",
        )
        fields["refunded"] = job.refunded
    elif job.status == "cancelled":
        fields["refunded"] = job.refunded
        fields["cancel_reason"] = job.cancel_reason  # None for jobs cancelled before 2026-12
    return JobView(**fields)


def cancel_answer(job: Job, response: Response) -> JobView:
    """DELETE's answer: 202 while the job is still being cancelled, 200 once it is."""
    if job.status == "processing":
        response.status_code = 202
        return job_view(job, target_words=job.target_words)
    return job_view(job)


def _progress(words: int, target_words: int | None) -> Progress:
    percent = 0
    if target_words:
        percent = min(MAX_RUNNING_PERCENT, words * 100 // target_words)
    return Progress(words=words, percent=percent)


def _result(job: Job) -> JobResult:
    recorded = job.result or RecordedResult()
    # The row's own times stand in for a result written without the generation time.
    seconds = recorded.generation_time
    if seconds is None and job.started_at is not None and job.finished_at is not None:
        seconds = (job.finished_at - job.started_at).total_seconds()
    fields: dict[str, Any] = {
        "generation_time": None if seconds is None else round(seconds, 3),
        "quality": recorded.quality,
        "words": recorded.words if recorded.words is not None else job.progress_words,
    }
    if recorded.usage is not None:
        # Left unset otherwise, so the answer has no `usage` rather than a null one.
        fields["usage"] = ResultUsage(
            prompt_tokens=recorded.usage.prompt_tokens,
            completion_tokens=recorded.usage.completion_tokens,
            cost_usd=recorded.usage.cost_usd,
        )
    return JobResult(**fields)


def story_view(story: Story) -> StoryView:
    return StoryView(
        story_id=story.story_id,
        job_id=story.job_id,
        title=story.title,
        prompt=story.prompt,
        genre=story.genre,
        language=story.language,
        target_words=story.target_words,
        status=story.status,
        content=story.content,
        words=story.words,
        created_at=story.created_at,
        completed_at=story.completed_at,
    )


def admin_job_view(job: ListedJob) -> AdminJob:
    """A job as the operator's job browser lists it (field for field, whatever its status)."""
    return AdminJob.model_validate(job.model_dump())


def admin_job_detail(details: JobDetails) -> AdminJobDetail:
    """A job with its request, story so far and attempts, as an operator inspects it."""
    return AdminJobDetail.model_validate(details.model_dump())
