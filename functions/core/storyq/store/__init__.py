"""The Supabase data layer as typed async Python: every call is one RPC to a SQL function.

Owns nothing but the mapping: state lives in Postgres, transitions are the SQL functions in
supabase/migrations, and this package gives them names, types and domain exceptions.

    store = Store(async_postgrest(settings))
    job = await store.jobs.enqueue(EnqueueRequest(...))
"""

from __future__ import annotations

from postgrest import AsyncPostgrestClient

from storyq.results import JobResult, ResultUsage
from storyq.store.admin import AdminStore
from storyq.store.credits import CreditStore
from storyq.store.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    InvalidArgument,
    InvalidStatus,
    JobNotCancellable,
    JobNotFound,
    JobNotRetryable,
    StaleAttempt,
    StoreError,
    StoreUnavailable,
    StoryNotFound,
    UserNotFound,
)
from storyq.store.job_browser import (
    NO_TIER,
    AttemptOutcome,
    JobAttempt,
    JobDetails,
    JobFilter,
    ListedJob,
    ListedJobPage,
)
from storyq.store.jobs import MAX_PAGE_SIZE, JobStore
from storyq.store.models import (
    TERMINAL_STATUSES,
    AttemptUsage,
    BeatReply,
    CancelReason,
    CleanableStatus,
    CompletedJob,
    DispatchableJob,
    DispatchSnapshot,
    EnqueuedJob,
    EnqueueRequest,
    FailOutcome,
    Failure,
    Heartbeat,
    Job,
    JobCursor,
    JobPage,
    JobState,
    JobStatus,
    LostAttempt,
    QueueCounts,
    RetriedJob,
    StalledJob,
    StartedJob,
    StartRefused,
    Story,
    StoryStatus,
    TextWrite,
    TierCounts,
    WalkPlace,
)
from storyq.store.stories import StoryStore
from storyq.store.users import UserStore


class Store:
    """The stores over one service-role PostgREST client (which the caller owns)."""

    def __init__(self, db: AsyncPostgrestClient) -> None:
        self.db = db
        self.jobs = JobStore(db)
        self.stories = StoryStore(db)
        self.credits = CreditStore(db)
        self.admin = AdminStore(db)
        self.users = UserStore(db)


__all__ = [
    "MAX_PAGE_SIZE",
    "NO_TIER",
    "TERMINAL_STATUSES",
    "AdminStore",
    "AttemptOutcome",
    "AttemptUsage",
    "BeatReply",
    "CancelReason",
    "CleanableStatus",
    "CompletedJob",
    "CreditStore",
    "DispatchSnapshot",
    "DispatchableJob",
    "EnqueueRequest",
    "EnqueuedJob",
    "FailOutcome",
    "Failure",
    "Heartbeat",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidAmount",
    "InvalidArgument",
    "InvalidStatus",
    "Job",
    "JobAttempt",
    "JobCursor",
    "JobDetails",
    "JobFilter",
    "JobNotCancellable",
    "JobNotFound",
    "JobNotRetryable",
    "JobPage",
    "JobResult",
    "JobState",
    "JobStatus",
    "JobStore",
    "ListedJob",
    "ListedJobPage",
    "LostAttempt",
    "QueueCounts",
    "ResultUsage",
    "RetriedJob",
    "StaleAttempt",
    "StalledJob",
    "StartRefused",
    "StartedJob",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Story",
    "StoryNotFound",
    "StoryStatus",
    "StoryStore",
    "TextWrite",
    "TierCounts",
    "UserNotFound",
    "UserStore",
    "WalkPlace",
]
