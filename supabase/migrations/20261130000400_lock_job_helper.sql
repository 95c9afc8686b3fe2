-- One helper for "lock the job row or raise job_not_found" (issue 15), which four functions
-- each spelled out: start_story_job, retry_failed_story_job, cancel_story_job and the fence
-- check private.lock_running_fence (complete, fail and release go through it). They are
-- re-created below with the same signatures, attributes and refusals (PT404 job_not_found);
-- `create or replace` keeps their grants. Lock order is unchanged: start_story_job still locks
-- the job row before it takes the start gate.
--
-- requeue_stalled_story_job keeps its own lock: a missing job is an outcome (`gone`) there,
-- not an error.

-- Lock the job row until the end of the transaction and return it. With p_user_id given, only
-- that user's job is found: another user's job is reported as missing, so its existence is not
-- revealed. Raises job_not_found (PT404). Called from the security definer functions only.
create function private.lock_job(p_job_id uuid, p_user_id uuid default null)
returns public.story_jobs
language plpgsql
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into v_job from public.story_jobs
  where id = p_job_id and (p_user_id is null or user_id = p_user_id)
  for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  return v_job;
end
$$;

revoke all on function private.lock_job(uuid, uuid) from public;

-- Lock the job and check that p_fence is its running attempt: the fence of every write.
create or replace function private.lock_running_fence(p_job_id uuid, p_fence bigint)
returns public.story_jobs
language plpgsql
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_job(p_job_id);
  if v_job.status <> 'processing' or v_job.fence is distinct from p_fence then
    raise exception using errcode = 'PT409', message = 'stale_attempt',
      detail = pg_catalog.format('job is %s under fence %s; fence %s may not write',
        v_job.status, v_job.fence, p_fence);
  end if;
  return v_job;
end
$$;

-- Start the attempt that holds p_fence: pending -> processing, one more attempt counted.
-- Returns {started: true, ...what the worker needs} or {started: false, reason, ...job state}
-- with reason `capacity` (p_max_active attempts run; nothing changed, the claim goes back),
-- `running` (this fence already started: another claim of the same attempt), `stale` (the
-- job has a newer fence) or `finished` (completed, failed or cancelled).
-- Raises job_not_found, invalid_argument.
create or replace function public.start_story_job(
  p_job_id uuid, p_fence bigint, p_max_active integer, p_live_seconds double precision
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_story public.stories;
  v_running integer;
  v_reason text;
begin
  if coalesce(p_max_active, 0) < 1 or coalesce(p_live_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'max_active >= 1 and live_seconds > 0 are required';
  end if;
  -- The count below must see every start committed before the gate was ours: each statement
  -- takes a fresh snapshot only under read committed.
  if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    raise exception using errcode = 'PT500', message = 'read_committed_required',
      detail = 'start_story_job counts running attempts under its gate: read committed only';
  end if;

  v_job := private.lock_job(p_job_id);
  -- The start gate: one start at a time across the deployment, so two starts cannot both see
  -- a free slot. Taken after the job's own row (so no start waits on a row while holding it)
  -- and held until commit; under it only rows no one else holds are locked (skip locked).
  perform pg_catalog.pg_advisory_xact_lock(1937011313, 1);
  v_reason := case
    when v_job.status in ('completed', 'failed', 'cancelled') then 'finished'
    when v_job.fence is distinct from p_fence then 'stale'
    when v_job.status <> 'pending' then 'running'
  end;
  if v_reason is null then
    v_running := private.running_attempts(p_live_seconds);
    if v_running >= p_max_active then
      v_reason := 'capacity';
    end if;
  end if;
  if v_reason is not null then
    return private.job_state(v_job)
      || pg_catalog.jsonb_build_object('started', false, 'reason', v_reason);
  end if;

  -- The clock, not the transaction's start: the gate may have been waited on.
  update public.story_jobs
  set status = 'processing', attempts = attempts + 1,
      started_at = pg_catalog.clock_timestamp(), heartbeat_at = pg_catalog.clock_timestamp(),
      progress_words = 0
  where id = p_job_id
  returning * into v_job;

  select * into strict v_story from public.stories where id = v_job.story_id;
  return pg_catalog.jsonb_build_object(
    'started', true, 'job_id', v_job.id, 'story_id', v_story.id, 'user_id', v_job.user_id,
    'prompt', v_story.prompt, 'title', v_story.title, 'genre', v_story.genre,
    'language', v_story.language, 'target_words', v_story.target_words,
    'fence', v_job.fence, 'attempt', v_job.attempts, 'max_attempts', v_job.max_attempts
  );
end
$$;

-- failed -> pending with a fresh retry budget and a new fence (never a reused one: a worker
-- left over from before the retry stays refused). Nothing is charged again.
create or replace function public.retry_failed_story_job(p_job_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_job(p_job_id);
  if v_job.status <> 'failed' then
    raise exception using errcode = 'PT409', message = 'job_not_retryable',
      detail = pg_catalog.format('job is %s; only failed jobs can be retried', v_job.status);
  end if;
  update public.story_jobs
  set status = 'pending', attempts = 0, fence = pg_catalog.nextval('private.story_job_fence_seq'),
      error_code = null, error_message = null, result = null, progress_words = null,
      started_at = null, heartbeat_at = null, finished_at = null,
      queued_at = pg_catalog.now(), next_attempt_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  update public.stories set status = 'pending', completed_at = null where id = v_job.story_id;
  return private.job_json(v_job);
end
$$;

-- The user (or an admin, p_user_id null) withdraws a job that has not started.
create or replace function public.cancel_story_job(p_job_id uuid, p_user_id uuid default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_job(p_job_id, p_user_id);
  if v_job.status <> 'pending' then
    raise exception using errcode = 'PT409', message = 'job_not_cancellable',
      detail = pg_catalog.format('job is %s', v_job.status);
  end if;
  perform private.cancel_pending_job(p_job_id, 'cancelled');
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return private.job_json(v_job);
end
$$;
