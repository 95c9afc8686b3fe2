-- The guarantees enforced where the truth is.
--
-- 1. A fencing token that only grows. `story_jobs.fence` is the token of the job's next (while
--    pending) or running (while processing) attempt. It is drawn from one sequence each time
--    the job becomes startable (enqueue, a retry, a release, a lost attempt, an admin retry),
--    so it never repeats and is never reset; the retry budget is `attempts`, a count of its
--    own. Redis leases carry the fence; every write of an attempt names it and is refused
--    when it is not the job's current one.
-- 2. The global cap checked when an attempt starts. `start_story_job` is serialised by one
--    advisory lock and refuses (`capacity`) while p_max_active attempts are processing; a
--    processing attempt whose heartbeat is older than p_live_seconds is dead by definition
--    (its worker stops generating well before, see storyq_worker.lease) and is counted as a
--    lost attempt first, so it holds no slot. No Redis flush, eviction or failed step can put
--    more than p_max_active attempts in `processing` at once.
-- 3. Liveness decided by the Postgres heartbeat: the sweeper's `requeue_stalled_story_job`
--    refuses to take a job from an attempt whose heartbeat is fresh (`live`), whatever Redis
--    says about its lease.
-- 4. Idempotency keys in a table of their own, kept for their TTL whatever cleaning does to
--    job rows; cancelled jobs can be cleaned.
--
-- Refusals that the worker acts on come back as data (the job's current state), not errors,
-- so Redis can be made to follow Postgres in the same step.

create sequence private.story_job_fence_seq as bigint;

alter table public.story_jobs add column fence bigint;
update public.story_jobs set fence = pg_catalog.nextval('private.story_job_fence_seq');
alter table public.story_jobs
  alter column fence set default pg_catalog.nextval('private.story_job_fence_seq'),
  alter column fence set not null;

comment on column public.story_jobs.fence is
  'Fencing token of the next (pending) or running (processing) attempt; only ever grows.';
comment on column public.story_jobs.attempts is
  'Attempts started (the retry budget, reset by an admin retry); the fence is separate.';

-- The job state the worker and sweeper make Redis follow.
create function private.job_state(p_job public.story_jobs)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'job_id', p_job.id, 'user_id', p_job.user_id, 'status', p_job.status,
    'fence', p_job.fence, 'attempts', p_job.attempts, 'max_attempts', p_job.max_attempts,
    'next_attempt_at', case when p_job.status = 'pending' then p_job.next_attempt_at end,
    'refunded', p_job.refunded
  )
$$;

-- A failed attempt (its row locked by the caller): pending again under a new fence while it is
-- retryable and attempts remain, otherwise failed for good with the story, and refunded once.
create function private.fail_attempt(
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

-- Attempts now processing, after counting the dead ones (heartbeat older than p_live_seconds)
-- as lost, so that they hold no slot. Only attempts with retries left are taken here: they go
-- back to pending and touch no other row. A dead last attempt (its job fails and is refunded,
-- which locks the story and the balance) and rows another transaction holds are left to the
-- sweeper and still counted, so the caller, holding the start gate, never waits on a lock.
create function private.running_attempts(p_live_seconds double precision)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_job_id uuid;
begin
  for v_job_id in
    select id from public.story_jobs
    where status = 'processing' and attempts < max_attempts
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

-- Lock the job and check that p_fence is its running attempt: the fence of every write.
create function private.lock_running_fence(p_job_id uuid, p_fence bigint)
returns public.story_jobs
language plpgsql
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  if v_job.status <> 'processing' or v_job.fence is distinct from p_fence then
    raise exception using errcode = 'PT409', message = 'stale_attempt',
      detail = pg_catalog.format('job is %s under fence %s; fence %s may not write',
        v_job.status, v_job.fence, p_fence);
  end if;
  return v_job;
end
$$;

revoke all on function private.job_state(public.story_jobs),
  private.fail_attempt(uuid, text, text, boolean, double precision),
  private.running_attempts(double precision),
  private.lock_running_fence(uuid, bigint) from public;

drop function public.start_story_job(uuid, integer);
drop function public.heartbeat_story_job(uuid, integer, integer);
drop function public.complete_story_job(uuid, integer, text, text, jsonb);
drop function public.fail_story_job(uuid, integer, text, text, boolean, double precision);
drop function public.release_story_job(uuid, integer);
drop function public.requeue_stalled_story_job(uuid, integer, text, text, double precision);
drop function public.dispatchable_story_jobs(integer);
drop function public.stalled_story_jobs(double precision, integer);
drop function private.lock_running_attempt(uuid, integer);

-- Start the attempt that holds p_fence: pending -> processing, one more attempt counted.
-- Returns {started: true, ...what the worker needs} or {started: false, reason, ...job state}
-- with reason `capacity` (p_max_active attempts run; nothing changed, the claim goes back),
-- `running` (this fence already started: another claim of the same attempt), `stale` (the
-- job has a newer fence) or `finished` (completed, failed or cancelled).
-- Raises job_not_found, invalid_argument.
create function public.start_story_job(
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

  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
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

-- Liveness and progress of the running attempt p_fence; false tells its worker to stop.
create function public.heartbeat_story_job(
  p_job_id uuid, p_fence bigint, p_words integer default null
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.story_jobs
  set heartbeat_at = pg_catalog.clock_timestamp(),
      progress_words = coalesce(p_words, progress_words)
  where id = p_job_id and status = 'processing' and fence = p_fence;
  return found;
end
$$;

create function public.complete_story_job(
  p_job_id uuid, p_fence bigint, p_content text, p_title text, p_result jsonb
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_words integer := pg_catalog.regexp_count(coalesce(p_content, ''), '\S+');
begin
  v_job := private.lock_running_fence(p_job_id, p_fence);

  update public.stories
  set content = p_content, words = v_words, status = 'ready',
      completed_at = pg_catalog.now(), title = coalesce(nullif(p_title, ''), title)
  where id = v_job.story_id;

  update public.story_jobs
  set status = 'completed', result = p_result, finished_at = pg_catalog.now(),
      progress_words = v_words, error_code = null, error_message = null
  where id = p_job_id;

  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'story_id', v_job.story_id, 'status', 'completed'
  );
end
$$;

-- The attempt p_fence failed: retried later under a new fence while attempts remain and the
-- error is retryable, otherwise failed for good and refunded (once). Returns the job state.
create function public.fail_story_job(
  p_job_id uuid,
  p_fence bigint,
  p_error_code text,
  p_error_message text,
  p_retryable boolean,
  p_retry_delay_seconds double precision default 0
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.lock_running_fence(p_job_id, p_fence);
  return private.job_state(private.fail_attempt(
    p_job_id, p_error_code, p_error_message, p_retryable, p_retry_delay_seconds
  ));
end
$$;

-- A worker that shuts down (or can no longer prove it is alive) hands its running attempt back
-- unused: pending again at once under a new fence, the attempt not counted. Fenced like
-- complete and fail. Returns the job state.
create function public.release_story_job(p_job_id uuid, p_fence bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  perform private.lock_running_fence(p_job_id, p_fence);
  update public.story_jobs
  set status = 'pending', attempts = attempts - 1, heartbeat_at = null,
      fence = pg_catalog.nextval('private.story_job_fence_seq'),
      next_attempt_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  return private.job_state(v_job);
end
$$;

-- The sweeper found the lease of attempt p_fence lapsed in Redis, or its row silent: Postgres
-- decides. Returns the job state with `outcome`:
--   `requeued` / `failed`: the attempt was dead (no heartbeat for p_live_seconds) and counts
--     as a failed, retryable attempt: pending again under a new fence, or failed and refunded;
--   `live`: its heartbeat is fresh, the worker is alive: nothing changes (restore its lease);
--   `unstarted`: the job is pending under this very fence (claimed, never started);
--   `superseded`: the job has a newer fence, or is finished;
--   `gone`: no such job (its row was cleaned).
create function public.requeue_stalled_story_job(
  p_job_id uuid,
  p_fence bigint,
  p_live_seconds double precision,
  p_error_code text default 'worker_lost',
  p_error_message text default 'the worker stopped sending heartbeats',
  p_retry_delay_seconds double precision default 0
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_outcome text;
begin
  if coalesce(p_live_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'live_seconds > 0 is required';
  end if;
  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    return pg_catalog.jsonb_build_object('job_id', p_job_id, 'outcome', 'gone');
  end if;
  if v_job.fence is distinct from p_fence
     or v_job.status in ('completed', 'failed', 'cancelled') then
    v_outcome := 'superseded';
  elsif v_job.status = 'pending' then
    v_outcome := 'unstarted';
  elsif v_job.heartbeat_at >= pg_catalog.now() - pg_catalog.make_interval(secs => p_live_seconds)
  then
    v_outcome := 'live';
  else
    v_job := private.fail_attempt(
      p_job_id, p_error_code, p_error_message, true, p_retry_delay_seconds
    );
    v_outcome := case v_job.status when 'pending' then 'requeued' else 'failed' end;
  end if;
  return private.job_state(v_job) || pg_catalog.jsonb_build_object('outcome', v_outcome);
end
$$;

-- What Redis is rebuilt from, read in one snapshot: the attempts processing (their leases are
-- restored after a flush) and every pending job in queue order (delayed retries with their
-- next_attempt_at). One statement, so a job that starts while it runs is in exactly one list.
create function public.dispatch_snapshot(p_limit integer default 1000)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'running', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'job_id', r.id, 'user_id', r.user_id, 'fence', r.fence, 'attempt', r.attempts,
          'heartbeat_at', r.heartbeat_at
        ) order by r.heartbeat_at, r.id), '[]'::jsonb)
      from (
        select * from public.story_jobs where status = 'processing'
        order by heartbeat_at, id
        limit greatest(coalesce(p_limit, 1000), 0)
      ) r
    ),
    'pending', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'job_id', p.id, 'user_id', p.user_id, 'fence', p.fence, 'attempts', p.attempts,
          'queued_at', p.queued_at, 'next_attempt_at', p.next_attempt_at,
          'priority', p.priority
        ) order by p.queued_at, p.id), '[]'::jsonb)
      from (
        select * from public.story_jobs where status = 'pending'
        order by queued_at, id
        limit greatest(coalesce(p_limit, 1000), 0)
      ) p
    )
  )
$$;

-- Processing attempts silent for longer than p_stalled_for_seconds, oldest heartbeat first.
create function public.stalled_story_jobs(
  p_stalled_for_seconds double precision, p_limit integer default 1000
)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'job_id', j.id, 'user_id', j.user_id, 'fence', j.fence, 'attempt', j.attempts,
      'heartbeat_at', j.heartbeat_at
    ) order by j.heartbeat_at, j.id), '[]'::jsonb)
  from (
    select * from public.story_jobs
    where status = 'processing'
      and heartbeat_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_stalled_for_seconds)
    order by heartbeat_at, id
    limit greatest(coalesce(p_limit, 1000), 0)
  ) j
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
  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
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

-- Delete finished job rows older than the given age: completed, failed or cancelled. Stories
-- stay (they are the user's), and so do idempotency keys (they live out their own TTL).
create or replace function public.clean_story_jobs(
  p_status text, p_older_than_seconds double precision
)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_deleted integer;
begin
  if p_status is null or p_status not in ('completed', 'failed', 'cancelled') then
    raise exception using errcode = 'PT422', message = 'invalid_status',
      detail = 'only completed, failed or cancelled jobs can be cleaned';
  end if;
  if p_older_than_seconds is null or p_older_than_seconds < 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'older_than_seconds must be >= 0';
  end if;
  delete from public.story_jobs
  where status = p_status
    and finished_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_older_than_seconds);
  get diagnostics v_deleted = row_count;
  return v_deleted;
end
$$;

-- Cancel and refund every pending job (delayed retries included); returns their ids. Every row
-- is locked in one statement before any refund locks a balance, so this never holds a balance
-- while waiting on a job row that a failing attempt (which locks the row, then the balance)
-- holds: no lock cycle.
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
    perform private.cancel_pending_job(v_job_id, 'queue emptied');
  end loop;
  return pg_catalog.to_jsonb(v_job_ids);
end
$$;

revoke execute on function
  public.start_story_job(uuid, bigint, integer, double precision),
  public.heartbeat_story_job(uuid, bigint, integer),
  public.complete_story_job(uuid, bigint, text, text, jsonb),
  public.fail_story_job(uuid, bigint, text, text, boolean, double precision),
  public.release_story_job(uuid, bigint),
  public.requeue_stalled_story_job(uuid, bigint, double precision, text, text, double precision),
  public.dispatch_snapshot(integer),
  public.stalled_story_jobs(double precision, integer)
from public, anon, authenticated;

grant execute on function
  public.start_story_job(uuid, bigint, integer, double precision),
  public.heartbeat_story_job(uuid, bigint, integer),
  public.complete_story_job(uuid, bigint, text, text, jsonb),
  public.fail_story_job(uuid, bigint, text, text, boolean, double precision),
  public.release_story_job(uuid, bigint),
  public.requeue_stalled_story_job(uuid, bigint, double precision, text, text, double precision),
  public.dispatch_snapshot(integer),
  public.stalled_story_jobs(double precision, integer)
to service_role;
