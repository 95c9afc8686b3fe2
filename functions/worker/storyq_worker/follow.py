"""Redis follows Postgres: after Postgres has said what became of a job (a refused start, a lost
attempt, a failed or released one), make the dispatch queue hold exactly that.

Shared by the attempt (worker) and the sweep. Every call is fenced by the token of the attempt
the caller held, so Redis entries of a newer attempt are never touched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from storyq.store import TERMINAL_STATUSES, JobState
from storyq_worker.context import WorkerContext


async def follow(ctx: WorkerContext, job_id: UUID, *, held_fence: int, state: JobState) -> None:
    """Mirror `state` (the job as Postgres has it now) for the attempt `held_fence`:

    - gone or finished: its entries go (`ack`);
    - pending: it waits, delayed until its `next_attempt_at`, under its current fence;
    - processing under `held_fence` (alive): its lease is held again;
    - processing under another fence: the held attempt's entries go.
    """
    queue = ctx.dispatcher
    if state.status is None or state.status in TERMINAL_STATUSES:
        await queue.ack(job_id, held_fence, generation_seconds=None)
    elif state.status == "pending":
        if state.fence is None or state.user_id is None:  # Postgres always names both
            await queue.ack(job_id, held_fence, generation_seconds=None)
            return
        await queue.retry_later(
            job_id,
            user_id=state.user_id,
            fence=state.fence,
            delay_seconds=_seconds_until(state.next_attempt_at),
        )
    elif state.fence == held_fence:
        await queue.heartbeat(
            job_id,
            held_fence,
            lease_seconds=ctx.settings.dispatch_lease_seconds,
            user_id=state.user_id,
        )
    else:
        await queue.ack(job_id, held_fence, generation_seconds=None)


def _seconds_until(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
