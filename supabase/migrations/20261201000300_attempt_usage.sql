-- What a story cost in LLM tokens (issue 20): one row per attempt that started, with what it
-- came to and, once the worker records them, its tokens and cost.
--
-- Rows are written by triggers on story_jobs, so every path in and out of 'processing' is
-- covered without touching the functions that take it: start_story_job enters it; leaving it
-- are complete_story_job, fail_story_job and the sweep's lost attempts (private.fail_attempt),
-- release_story_job, cancel_running_story_job (and a failed, released or lost attempt whose
-- cancel was requested, which ends cancelled). An attempt is named by its fence: a start keeps
-- the job's fence and every return to pending draws a new one (fail_attempt, release,
-- retry_failed_story_job), so (job, fence) names exactly one attempt, and the row of the
-- attempt leaving 'processing' is the one of the old row's fence.
--
-- The worker measures the tokens and prices them (storyq_worker); record_story_job_usage
-- stores them on the attempt's row. A job that completes shows the sum in result.usage.

create table public.story_job_attempts (
  job_id uuid not null references public.story_jobs (id) on delete cascade,
  fence bigint not null,
  attempt integer not null,
  started_at timestamptz not null,
  ended_at timestamptz,
  outcome text check (
    outcome is null
    or outcome in ('completed', 'retrying', 'failed', 'released', 'cancelled', 'lost')
  ),
  error_code text,
  model text,
  prompt_tokens bigint not null default 0 check (prompt_tokens >= 0),
  completion_tokens bigint not null default 0 check (completion_tokens >= 0),
  cost_usd numeric(14, 8) not null default 0 check (cost_usd >= 0),
  usage_estimated boolean not null default false,
  usage_recorded_at timestamptz,
  primary key (job_id, fence)
);

comment on table public.story_job_attempts is
  'One row per attempt that started (written by triggers on story_jobs), with its outcome and its LLM usage once recorded.';
comment on column public.story_job_attempts.fence is
  'The attempt''s fencing token (story_jobs.fence while it ran): names the attempt.';
comment on column public.story_job_attempts.attempt is
  'story_jobs.attempts when it started (1 to max_attempts; an admin retry counts from 1 again).';
comment on column public.story_job_attempts.started_at is
  'When start_story_job started it.';
comment on column public.story_job_attempts.ended_at is
  'When the job left processing; null while the attempt runs.';
comment on column public.story_job_attempts.outcome is
  'completed; retrying (failed, the job will run again); failed (the job failed for good); released (given back unused by its worker); cancelled; lost (its worker went silent: the job ran again, or failed when no attempt was left). Null while it runs.';
comment on column public.story_job_attempts.error_code is
  'The error the attempt ended with (retrying, failed, lost); null otherwise.';
comment on column public.story_job_attempts.model is
  'The model that wrote the attempt''s text, as the worker recorded it.';
comment on column public.story_job_attempts.prompt_tokens is
  'Prompt tokens of the whole attempt (every model it tried), as recorded by the worker.';
comment on column public.story_job_attempts.completion_tokens is
  'Completion tokens of the whole attempt, as recorded by the worker.';
comment on column public.story_job_attempts.cost_usd is
  'What the attempt''s tokens cost in US dollars at the worker''s configured prices.';
comment on column public.story_job_attempts.usage_estimated is
  'The tokens were counted by the worker because the provider sent no usage (a cut or cancelled stream).';
comment on column public.story_job_attempts.usage_recorded_at is
  'When record_story_job_usage last wrote the usage; null: none recorded (its zeros then mean unknown, not free).';

-- The day's figures in queue_overview read attempts by start time.
create index story_job_attempts_started_at_idx on public.story_job_attempts (started_at);

alter table public.story_job_attempts enable row level security;
revoke all on public.story_job_attempts from anon, authenticated;
revoke insert, update, delete, truncate on public.story_job_attempts from service_role;

-- Attempts running as this migration lands get their row, so their usage can be recorded.
insert into public.story_job_attempts (job_id, fence, attempt, started_at)
select id, fence, attempts, coalesce(started_at, now())
from public.story_jobs
where status = 'processing';

-- Entering processing opens the attempt's row; leaving it closes the row of the old fence with
-- what the attempt came to. Heartbeats do not change the status, so they never get here.
create function private.track_attempt()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_outcome text;
begin
  if new.status = 'processing' then
    -- No "on conflict": a fence runs at most one attempt, and the key keeps it so.
    insert into public.story_job_attempts (job_id, fence, attempt, started_at)
    values (new.id, new.fence, new.attempts, coalesce(new.started_at, pg_catalog.now()));
    return null;
  end if;
  if old.status <> 'processing' then
    return null;
  end if;
  v_outcome := case
    when new.status = 'cancelled' then 'cancelled'
    -- A release gives the attempt back uncounted (and leaves the job's error as it was).
    when new.status = 'pending' and new.attempts < old.attempts then 'released'
    -- The code the sweep gives an attempt whose heartbeat outlived its lease (fail_attempt
    -- from requeue_stalled_story_job and start_story_job's running_attempts).
    when new.error_code = 'worker_lost' then 'lost'
    when new.status = 'pending' then 'retrying'
    else new.status  -- completed or failed
  end;
  update public.story_job_attempts
  set ended_at = coalesce(new.finished_at, pg_catalog.clock_timestamp()),
      outcome = v_outcome,
      -- Only these outcomes set the job's error; otherwise it may be an earlier attempt's.
      error_code = case when v_outcome in ('retrying', 'failed', 'lost') then new.error_code end
  where job_id = old.id and fence = old.fence;
  return null;
end
$$;

revoke all on function private.track_attempt() from public;

create trigger story_jobs_track_attempt
  after update of status on public.story_jobs
  for each row
  when (old.status is distinct from new.status)
  execute function private.track_attempt();

-- A trigger rather than a change to complete_story_job: the usage is the database's to sum
-- (the worker records each attempt's usage, the completing one's before it completes), so a
-- `usage` the caller put in p_result is replaced, and complete_story_job's body stays where it
-- was written instead of being copied here whole.
create function private.result_usage()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_usage jsonb;
begin
  select case when pg_catalog.count(*) > 0 then pg_catalog.jsonb_build_object(
      'promptTokens', pg_catalog.sum(a.prompt_tokens),
      'completionTokens', pg_catalog.sum(a.completion_tokens),
      'costUsd', pg_catalog.sum(a.cost_usd),
      'attempts', pg_catalog.count(*),
      'estimated', pg_catalog.bool_or(a.usage_estimated)
    ) end
  into v_usage
  from public.story_job_attempts a
  where a.job_id = new.id and a.usage_recorded_at is not null;
  new.result := (coalesce(new.result, '{}'::jsonb) - 'usage')
    || case when v_usage is null then '{}'::jsonb
            else pg_catalog.jsonb_build_object('usage', v_usage) end;
  return new;
end
$$;

revoke all on function private.result_usage() from public;

create trigger story_jobs_result_usage
  before update of status on public.story_jobs
  for each row
  when (new.status = 'completed' and old.status is distinct from 'completed')
  execute function private.result_usage();

-- Why an element of record_story_job_usage's argument is refused; null when it is fine.
create function private.usage_problem(p_usage jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_field text;
  v_value jsonb;
  v_number numeric;
begin
  if pg_catalog.jsonb_typeof(p_usage) is distinct from 'object' then
    return 'not an object';
  end if;
  if pg_catalog.jsonb_typeof(p_usage -> 'job_id') is distinct from 'string'
     or (p_usage ->> 'job_id') !~ '^[0-9A-Fa-f]{8}-?([0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}$' then
    return 'job_id is not a uuid';
  end if;
  foreach v_field in array array['fence', 'prompt_tokens', 'completion_tokens', 'cost_usd'] loop
    v_value := p_usage -> v_field;
    if pg_catalog.jsonb_typeof(v_value) is distinct from 'number' then
      return v_field || ' is not a number';
    end if;
    v_number := (v_value #>> '{}')::numeric;
    if v_number < 0 then
      return v_field || ' is negative';
    end if;
    if v_field = 'cost_usd' then
      if v_number >= 1000000 then
        return 'cost_usd is 1000000 or more';
      end if;
    elsif v_number <> pg_catalog.trunc(v_number) or v_number > 9223372036854775807 then
      return v_field || ' is not a whole number within bigint';
    end if;
  end loop;
  if coalesce(pg_catalog.jsonb_typeof(p_usage -> 'model'), 'null') not in ('string', 'null') then
    return 'model is neither a string nor null';
  end if;
  if pg_catalog.jsonb_typeof(p_usage -> 'estimated') is distinct from 'boolean' then
    return 'estimated is not a boolean';
  end if;
  return null;
end
$$;

revoke all on function private.usage_problem(jsonb) from public;

-- Each usage (`{"job_id", "fence", "model", "prompt_tokens", "completion_tokens", "cost_usd",
-- "estimated"}`) sets the usage of the attempt `fence` of the job: the attempt's totals, so a
-- usage recorded twice changes nothing the second time. It may come while the attempt runs or
-- after it ended (a completing attempt records before complete_story_job, so the job's
-- result.usage counts it). Attempts not found are skipped; for one attempt named twice, the
-- last wins. Returns how many attempts were written. Any malformed element refuses the whole
-- call (invalid_argument, naming the element). Rows are locked in key order.
create function public.record_story_job_usage(p_usages jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_index bigint;
  v_problem text;
  v_updated integer;
begin
  if pg_catalog.jsonb_typeof(p_usages) is distinct from 'array' then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'usages is a JSON array of {job_id, fence, model, prompt_tokens, '
        'completion_tokens, cost_usd, estimated}';
  end if;
  select u.i - 1, private.usage_problem(u.usage) into v_index, v_problem
  from pg_catalog.jsonb_array_elements(p_usages) with ordinality as u(usage, i)
  where private.usage_problem(u.usage) is not null
  order by u.i
  limit 1;
  if v_problem is not null then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = pg_catalog.format('usages[%s]: %s', v_index, v_problem);
  end if;

  with given as (
    select distinct on (job_id, fence)
      (u.usage ->> 'job_id')::uuid as job_id,
      (u.usage ->> 'fence')::bigint as fence,
      u.usage ->> 'model' as model,
      (u.usage ->> 'prompt_tokens')::bigint as prompt_tokens,
      (u.usage ->> 'completion_tokens')::bigint as completion_tokens,
      (u.usage ->> 'cost_usd')::numeric as cost_usd,
      (u.usage ->> 'estimated')::boolean as estimated
    from pg_catalog.jsonb_array_elements(p_usages) with ordinality as u(usage, i)
    order by job_id, fence, u.i desc
  ),
  locked as (
    select a.job_id, a.fence from public.story_job_attempts a
    join given g on g.job_id = a.job_id and g.fence = a.fence
    order by a.job_id, a.fence
    for update of a
  )
  update public.story_job_attempts a
  set model = g.model, prompt_tokens = g.prompt_tokens,
      completion_tokens = g.completion_tokens, cost_usd = g.cost_usd,
      usage_estimated = g.estimated, usage_recorded_at = pg_catalog.now()
  from given g
  where a.job_id = g.job_id and a.fence = g.fence
    and (a.job_id, a.fence) in (select job_id, fence from locked);
  get diagnostics v_updated = row_count;
  return v_updated;
end
$$;

revoke all on function public.record_story_job_usage(jsonb) from public, anon, authenticated;
grant execute on function public.record_story_job_usage(jsonb) to service_role;

-- The dashboard view gains the day's usage: attempts started since midnight UTC. (Cleaning
-- finished jobs deletes their attempts too.)
create or replace view public.queue_overview
with (security_invoker = true)
as
select
  count(*) filter (where status = 'pending') as pending,
  count(*) filter (where status = 'processing') as processing,
  count(*) filter (where status = 'completed') as completed,
  count(*) filter (where status = 'failed') as failed,
  count(*) filter (where status = 'cancelled') as cancelled,
  min(queued_at) filter (where status = 'pending') as oldest_pending_at,
  (
    -- The rolling mean over the last 100 completions: what an ETA should be based on.
    select avg(extract(epoch from (recent.finished_at - recent.started_at)))::double precision
    from (
      select finished_at, started_at
      from public.story_jobs
      where status = 'completed' and started_at is not null
      order by finished_at desc
      limit 100
    ) recent
  ) as avg_generation_seconds,
  (
    select coalesce(sum(a.prompt_tokens), 0)::bigint from public.story_job_attempts a
    where a.started_at >= date_trunc('day', now(), 'UTC')
  ) as prompt_tokens_today,
  (
    select coalesce(sum(a.completion_tokens), 0)::bigint from public.story_job_attempts a
    where a.started_at >= date_trunc('day', now(), 'UTC')
  ) as completion_tokens_today,
  (
    select coalesce(sum(a.cost_usd), 0) from public.story_job_attempts a
    where a.started_at >= date_trunc('day', now(), 'UTC')
  ) as cost_usd_today
from public.story_jobs;

comment on view public.queue_overview is
  'Jobs per status, the oldest pending job, the mean generation time of the last 100, and the tokens and cost of the attempts started today (UTC).';
