-- The rest of the state machine: cancel (the user's), and the sweeper's view of Postgres —
-- stalled attempts to requeue, pending jobs to (re)dispatch into Redis after a flush.
-- Same rules as job_functions: security definer, empty search_path, service role only.

-- A processing attempt known dead (lease expired, heartbeats stopped): it counts as a failed,
-- retryable attempt, so a job whose worker keeps dying still ends after max_attempts.
create function public.requeue_stalled_story_job(
  p_job_id uuid,
  p_attempt integer,
  p_error_code text default 'worker_lost',
  p_error_message text default 'the worker stopped sending heartbeats',
  p_retry_delay_seconds double precision default 0
)
returns jsonb
language sql
security definer
set search_path = ''
as $$
  select public.fail_story_job(
    p_job_id, p_attempt, p_error_code, p_error_message, true, p_retry_delay_seconds
  )
$$;

-- The user (or an admin, p_user_id null) withdraws a job that has not started.
create function public.cancel_story_job(p_job_id uuid, p_user_id uuid default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into v_job from public.story_jobs
  where id = p_job_id and (p_user_id is null or user_id = p_user_id)
  for update;
  if not found then
    -- Another user's job is reported as missing: its existence is not revealed.
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  if v_job.status <> 'pending' then
    raise exception using errcode = 'PT409', message = 'job_not_cancellable',
      detail = pg_catalog.format('job is %s', v_job.status);
  end if;
  perform private.cancel_pending_job(p_job_id, 'cancelled');
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return private.job_json(v_job);
end
$$;

-- Every pending job (due or delayed) in queue order: what the sweeper re-dispatches into Redis
-- after a flush or eviction. Delayed retries carry their next_attempt_at.
create function public.dispatchable_story_jobs(p_limit integer default 1000)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'job_id', j.id, 'user_id', j.user_id, 'attempts', j.attempts, 'queued_at', j.queued_at,
      'next_attempt_at', j.next_attempt_at, 'priority', j.priority
    ) order by j.queued_at, j.id), '[]'::jsonb)
  from (
    select * from public.story_jobs
    where status = 'pending'
    order by queued_at, id
    limit greatest(coalesce(p_limit, 1000), 0)
  ) j
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
      'job_id', j.id, 'user_id', j.user_id, 'attempt', j.attempts,
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

revoke execute on function
  public.requeue_stalled_story_job(uuid, integer, text, text, double precision),
  public.cancel_story_job(uuid, uuid),
  public.dispatchable_story_jobs(integer),
  public.stalled_story_jobs(double precision, integer)
from public, anon, authenticated;

grant execute on function
  public.requeue_stalled_story_job(uuid, integer, text, text, double precision),
  public.cancel_story_job(uuid, uuid),
  public.dispatchable_story_jobs(integer),
  public.stalled_story_jobs(double precision, integer)
to service_role;
