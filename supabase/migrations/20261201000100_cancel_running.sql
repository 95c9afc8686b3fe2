-- Cancelling a running generation, and the waiting TTL (issue 19).
--
-- A cancel of a processing job is a request: Postgres records it (cancel_requested_at,
-- cancel_reason), the worker running the attempt learns of it from its next heartbeat answer
-- (heartbeat_story_jobs), stops its generation and ends the job cancelled and refunded
-- under its fence (cancel_running_story_job). The fence decides a race with completion: the
-- first of complete_story_job and cancel_running_story_job to lock the row wins, the other is
-- a stale attempt, so a job ends exactly one of completed or cancelled, refunded at most once.
--
-- An attempt that ends otherwise while a cancel is requested (its generation failed, the
-- worker shut down, or it went silent and the sweep counts it as lost) is not retried: it
-- ends cancelled and refunded (private.fail_attempt, release_story_job).
--
-- A job still waiting JOB_TTL_SECONDS after it was queued, never started, is cancelled with
-- reason `expired` and refunded by the sweep (expire_story_jobs), which skips a row a start
-- holds at that moment: that start decides.

alter table public.story_jobs
  add column cancel_requested_at timestamp with time zone,
  add column cancel_reason text,
  add constraint story_jobs_cancel_reason_check
    check (cancel_reason is null or cancel_reason in ('user', 'admin', 'expired'));

comment on column public.story_jobs.cancel_requested_at is
  'When a user or an admin asked to cancel the job (a processing job ends cancelled once its worker hears of it).';
comment on column public.story_jobs.cancel_reason is
  'Who cancelled (or asked to): user, admin, or expired (still waiting after JOB_TTL_SECONDS).';

-- Cancel a job that has not started (or whose attempt is over and is being cancelled): the
-- job and its story end cancelled (the story keeps whatever text it has), refunded once.
create or replace function private.cancel_pending_job(p_job_id uuid, p_reason text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_story_id uuid;
begin
  update public.story_jobs
  set status = 'cancelled', finished_at = pg_catalog.now(), heartbeat_at = null
  where id = p_job_id and status in ('pending', 'processing')
  returning story_id into strict v_story_id;
  update public.stories set status = 'cancelled' where id = v_story_id;
  perform private.refund_job(p_job_id, p_reason);
end
$$;

-- A failed attempt of a job whose cancel was requested ends the job cancelled (refunded),
-- never retried nor failed: the worker's generation error, or the sweep's "worker lost".
create or replace function private.fail_attempt(
  p_job_id uuid,
  p_error_code text,
  p_error_message text,
  p_retryable boolean,
  p_retry_delay_seconds double precision
)
returns public.story_jobs
language plpgsql
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into strict v_job from public.story_jobs where id = p_job_id;
  if v_job.cancel_requested_at is not null then
    perform private.cancel_pending_job(p_job_id, 'cancelled: ' || v_job.cancel_reason);
    select * into strict v_job from public.story_jobs where id = p_job_id;
    return v_job;
  end if;
  if coalesce(p_retryable, false) and v_job.attempts < v_job.max_attempts then
    update public.story_jobs
    set status = 'pending', error_code = p_error_code, error_message = p_error_message,
        heartbeat_at = null, fence = pg_catalog.nextval('private.story_job_fence_seq'),
        next_attempt_at = pg_catalog.now()
          + pg_catalog.make_interval(secs => greatest(coalesce(p_retry_delay_seconds, 0), 0))
    where id = p_job_id
    returning * into v_job;
    return v_job;
  end if;
  update public.story_jobs
  set status = 'failed', error_code = p_error_code, error_message = p_error_message,
      finished_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  update public.stories set status = 'failed' where id = v_job.story_id;
  perform private.refund_job(p_job_id, 'generation failed: ' || coalesce(p_error_code, ''));
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return v_job;
end
$$;

-- The job JSON gains `cancel_requested` (a cancel was asked for); `cancel_requested_at` and
-- `cancel_reason` come with the row.
create or replace function private.job_json(p_job public.story_jobs)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select (pg_catalog.to_jsonb(p_job) - 'id')
    || pg_catalog.jsonb_build_object(
      'job_id', p_job.id, 'title', s.title, 'target_words', s.target_words,
      'cancel_requested', p_job.cancel_requested_at is not null
    )
  from (select 1) as one
  left join public.stories s on s.id = p_job.story_id
$$;

-- The user (p_user_id: only that user's job) or an admin (p_user_id null) cancels a job:
-- pending, it is cancelled and refunded at once; processing, the request is recorded and the
-- job JSON returned (`cancel_requested`; the worker ends it); already cancelled, or being
-- cancelled, the job as it is (nothing changes, nothing is refunded again). Raises
-- job_not_found, job_not_cancellable (completed or failed), invalid_argument.
drop function public.cancel_story_job(uuid, uuid);
create function public.cancel_story_job(
  p_job_id uuid, p_user_id uuid default null, p_reason text default null
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_reason text := coalesce(p_reason, case when p_user_id is null then 'admin' else 'user' end);
begin
  if v_reason not in ('user', 'admin') then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'reason is user or admin';
  end if;
  v_job := private.lock_job(p_job_id, p_user_id);
  if v_job.status in ('completed', 'failed') then
    raise exception using errcode = 'PT409', message = 'job_not_cancellable',
      detail = pg_catalog.format('job is %s', v_job.status);
  end if;
  if v_job.status <> 'cancelled' and v_job.cancel_requested_at is null then
    update public.story_jobs
    set cancel_requested_at = pg_catalog.now(), cancel_reason = v_reason
    where id = p_job_id;
    if v_job.status = 'pending' then
      perform private.cancel_pending_job(p_job_id, 'cancelled');
    end if;
  end if;
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return private.job_json(v_job);
end
$$;

-- The admin's "cancel every waiting job": reason `admin`.
create or replace function public.empty_story_queue()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job_ids uuid[];
  v_job_id uuid;
begin
  select coalesce(pg_catalog.array_agg(id order by id), '{}') into v_job_ids
  from (select id from public.story_jobs where status = 'pending' order by id for update) j;
  foreach v_job_id in array v_job_ids loop
    update public.story_jobs set cancel_reason = 'admin' where id = v_job_id;
    perform private.cancel_pending_job(v_job_id, 'queue emptied');
  end loop;
  return pg_catalog.to_jsonb(v_job_ids);
end
$$;

-- The worker whose attempt p_fence learned of a cancel request ends the job: cancelled,
-- refunded once, the story keeping the text it has. Raises stale_attempt when the attempt no
-- longer runs (it completed first, or another attempt owns the job), cancel_not_requested.
create function public.cancel_running_story_job(p_job_id uuid, p_fence bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_running_fence(p_job_id, p_fence);
  if v_job.cancel_requested_at is null then
    raise exception using errcode = 'PT409', message = 'cancel_not_requested',
      detail = 'only a job whose cancel was requested may be cancelled by its worker';
  end if;
  perform private.cancel_pending_job(p_job_id, 'cancelled: ' || v_job.cancel_reason);
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return private.job_state(v_job);
end
$$;

-- Giving a running attempt back (the worker shuts down) while a cancel is requested ends the
-- job cancelled instead of queueing it again.
create or replace function public.release_story_job(p_job_id uuid, p_fence bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_running_fence(p_job_id, p_fence);
  if v_job.cancel_requested_at is not null then
    perform private.cancel_pending_job(p_job_id, 'cancelled: ' || v_job.cancel_reason);
    select * into strict v_job from public.story_jobs where id = p_job_id;
    return private.job_state(v_job);
  end if;
  update public.story_jobs
  set status = 'pending', attempts = attempts - 1, heartbeat_at = null,
      fence = pg_catalog.nextval('private.story_job_fence_seq'),
      next_attempt_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  return private.job_state(v_job);
end
$$;

-- heartbeat_story_jobs, also answering whether each attempt must stop for a cancel: returns
-- `[{"job_id", "fence", "cancel"}]` for the beats recorded (an attempt missing from the
-- answer no longer owns its job).
create or replace function public.heartbeat_story_jobs(p_beats jsonb)
returns jsonb
language sql
volatile
security definer
set search_path = ''
as $$
  with beats as (
    select b.job_id, b.fence, b.words
    from pg_catalog.jsonb_to_recordset(coalesce(p_beats, '[]'::jsonb))
      as b(job_id uuid, fence bigint, words integer)
  ),
  owned as (
    select j.id from public.story_jobs j
    join beats b on b.job_id = j.id and b.fence = j.fence
    where j.status = 'processing'
    order by j.id
    for update of j
  ),
  beat as (
    update public.story_jobs j
    set heartbeat_at = pg_catalog.clock_timestamp(),
        progress_words = coalesce(b.words, j.progress_words)
    from beats b
    where j.id = b.job_id and j.fence = b.fence and j.status = 'processing'
      and j.id in (select id from owned)
    returning j.id, j.fence, j.cancel_requested_at is not null as cancel
  )
  select coalesce(
    pg_catalog.jsonb_agg(
      pg_catalog.jsonb_build_object('job_id', id, 'fence', fence, 'cancel', cancel)
      order by id),
    '[]'::jsonb)
  from beat
$$;

-- Cancel (reason `expired`, refunded) at most p_limit jobs still waiting p_ttl_seconds after
-- they were queued, oldest first, never started (started_at null: a job back in the queue for
-- a retry, or released by a worker shutting down, has started and does not expire; an admin
-- retry queues a job afresh). Rows another transaction holds (a start in progress) are
-- skipped: that start decides. Walks story_jobs_pending_queued_at_idx. Returns the ids of the
-- jobs cancelled.
create function public.expire_story_jobs(p_ttl_seconds double precision, p_limit integer)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job_ids uuid[];
  v_job_id uuid;
begin
  if coalesce(p_ttl_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'ttl_seconds > 0 is required';
  end if;
  -- One expiry at a time (sweeps run side by side): two would each refund their own jobs'
  -- users in their own order and could deadlock on the balances. The others skip it.
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('storyq.expire_story_jobs')) then
    return '[]'::jsonb;
  end if;
  select coalesce(pg_catalog.array_agg(id order by queued_at, id), '{}') into v_job_ids
  from (
    select id, queued_at from public.story_jobs
    where status = 'pending' and started_at is null
      and queued_at <= pg_catalog.now() - pg_catalog.make_interval(secs => p_ttl_seconds)
    order by queued_at, id
    limit greatest(coalesce(p_limit, 0), 0)
    for update skip locked
  ) j;
  foreach v_job_id in array v_job_ids loop
    update public.story_jobs set cancel_reason = 'expired' where id = v_job_id;
    perform private.cancel_pending_job(v_job_id, 'expired');
  end loop;
  return pg_catalog.to_jsonb(v_job_ids);
end
$$;

revoke execute on function
  public.cancel_story_job(uuid, uuid, text),
  public.cancel_running_story_job(uuid, bigint),
  public.expire_story_jobs(double precision, integer)
from public, anon, authenticated;

grant execute on function
  public.cancel_story_job(uuid, uuid, text),
  public.cancel_running_story_job(uuid, bigint),
  public.expire_story_jobs(double precision, integer)
to service_role;

-- The start gate counts dead attempts as lost only when that touches no balance: an attempt
-- whose cancel was requested would end cancelled and refunded (locking its user's balance),
-- so, like a dead last attempt, it is left to the sweeper and still counted. Those it does
-- take go back to pending with their story (whose other writers lock the job row first, so
-- a row they hold is skipped): the caller, holding the gate, never waits on a lock.
create or replace function private.running_attempts(p_live_seconds double precision)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_job_id uuid;
begin
  for v_job_id in
    select id from public.story_jobs
    where status = 'processing' and attempts < max_attempts and cancel_requested_at is null
      and heartbeat_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_live_seconds)
    order by heartbeat_at, id
    for update skip locked
  loop
    perform private.fail_attempt(v_job_id, 'worker_lost',
      pg_catalog.format('no heartbeat for %s s', p_live_seconds), true, 0);
  end loop;
  return (select pg_catalog.count(*) from public.story_jobs where status = 'processing');
end
$$;
