-- Plans and tiers (issue 21), the Postgres side: a user's tier sets its fair-share weight (and
-- carries a priority and a running cap, stored for the next step: neither is enforced yet).
--
-- The tier is `app_metadata.tier` of the user (auth.users.raw_app_meta_data ->> 'tier', which
-- only the project can write: a user cannot promote themselves). What a tier means is a row of
-- public.plans, which an operator edits in the dashboard; a user whose tier names no plan (or
-- who has none) is on the default plan. private.plan_of(user) is that rule, in one place.
--
-- - enqueue_story_job stamps the job with its user's tier and priority and answers with the
--   plan's figures (the API hands the weight to Redis, whose waiting set orders by fair share);
-- - dispatch_snapshot and retry_failed_story_job carry the plan's weight (and its cap, unused
--   yet), so Redis is rebuilt (or re-fed) with the weight;
-- - queue_by_tier (and queue_counts' `by_tier`) count waiting and running jobs per tier.
--
-- Weights are read from the plan when a job is queued (or put back after a flush or an admin
-- retry); a job's tier and priority are those of enqueue.

create table public.plans (
  tier text primary key check (tier ~ '^[a-z0-9_-]{1,32}$'),
  weight double precision not null default 1 check (weight between 0.01 and 1000),
  priority integer not null default 0 check (priority between -100 and 100),
  max_active_per_user integer check (max_active_per_user >= 1),
  is_default boolean not null default false,
  description text,
  updated_at timestamptz not null default now()
);

comment on table public.plans is
  'What each tier (auth.users app_metadata.tier) gets: its fair-share weight (and a priority and a running cap, stored, not enforced yet). Edited by the operator; users whose tier names no plan get the default one.';
comment on column public.plans.tier is
  'The name app_metadata.tier holds: lowercase letters, digits, _ and -, at most 32.';
comment on column public.plans.weight is
  'Fair-share weight (0.01 to 1000): while both wait, a user of weight 2 gets twice the slots of a user of weight 1. Read when a job is queued (or put back after a flush or a retry).';
comment on column public.plans.priority is
  'Priority (-100 to 100), stamped on each job at enqueue (story_jobs.priority). Dispatch does not use it yet: the fair-share weight orders the queue.';
comment on column public.plans.max_active_per_user is
  'Reserved for the per-user running cap (issue 21, next step): returned with the plan, not enforced yet. Null: no cap of its own.';
comment on column public.plans.is_default is
  'The plan of users without a tier, or whose tier names no plan. At most one.';
comment on column public.plans.description is
  'What the tier is, for people (pricing page, dashboard).';

create unique index plans_one_default on public.plans (is_default) where is_default;

create trigger plans_touch_updated_at
  before update on public.plans
  for each row execute function private.touch_updated_at();

-- Tiers are public pricing facts: a signed-in user may read them all. Only the service role
-- and the dashboard's owner write.
alter table public.plans enable row level security;
create policy "signed-in users read the plans" on public.plans
  for select to authenticated
  using (true);
revoke all on public.plans from anon, authenticated;
grant select on public.plans to authenticated;

insert into public.plans (tier, weight, priority, max_active_per_user, is_default, description)
values
  ('free', 1, 0, null, true, 'An equal share of the queue.'),
  ('plus', 2, 1, null, false, 'Twice the share of free.'),
  ('pro', 4, 2, null, false, 'Four times the share of free.');

-- The job remembers its tier at enqueue, for reporting (no foreign key: a plan may be renamed
-- or deleted while its jobs stay).
alter table public.story_jobs add column tier text;
comment on column public.story_jobs.tier is
  'The user''s plan tier when the job was enqueued (null: enqueued before tiers).';
comment on column public.story_jobs.priority is
  'The plan''s priority at enqueue (plans.priority). Dispatch does not use it yet.';

-- The plan of a user: the one their app_metadata.tier names (trimmed, lowercased) when it
-- exists, else the default plan, else, when the operator removed the default, a built-in free
-- plan (weight 1, priority 0, no cap of its own), so enqueue and start never fail for want of
-- a plan. An unknown user gets the default too.
create function private.plan_of(p_user_id uuid)
returns public.plans
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_plan public.plans;
begin
  select p.* into v_plan
  from auth.users u
  join public.plans p
    on p.tier = pg_catalog.lower(pg_catalog.btrim(u.raw_app_meta_data ->> 'tier'))
  where u.id = p_user_id;
  if found then
    return v_plan;
  end if;
  select p.* into v_plan from public.plans p where p.is_default;
  if found then
    return v_plan;
  end if;
  v_plan.tier := 'free';
  v_plan.weight := 1;
  v_plan.priority := 0;
  v_plan.max_active_per_user := null;
  v_plan.is_default := true;
  v_plan.description := 'built in: no default plan is set';
  v_plan.updated_at := pg_catalog.now();
  return v_plan;
end
$$;

revoke all on function private.plan_of(uuid) from public;

-- A replay answers with the plan too: the job's tier and priority (those of its enqueue; the
-- plan's when the row was cleaned) and the weight and cap the user's plan has now (what the job
-- is dispatched with now).
create or replace function private.replay_key(p_key public.idempotency_keys, p_balance integer)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'job_id', p_key.job_id, 'story_id', p_key.story_id,
    'status', coalesce(j.status, case s.status
      when 'ready' then 'completed' when 'failed' then 'failed' else 'cancelled' end),
    'attempts', coalesce(j.attempts, 0), 'fence', j.fence,
    'created_at', coalesce(j.created_at, p_key.created_at),
    'replayed', true, 'balance', p_balance,
    'tier', case when j.id is null then pl.tier else j.tier end,
    'weight', pl.weight, 'priority', coalesce(j.priority, pl.priority),
    'max_active_per_user', pl.max_active_per_user
  )
  from (select 1) as one
  left join public.story_jobs j on j.id = p_key.job_id
  left join public.stories s on s.id = p_key.story_id
  cross join private.plan_of(p_key.user_id) pl
$$;

-- As in 20261130000200_idempotency_keys.sql, with the job stamped with the user's tier and
-- priority, and the plan's figures in the answer (`tier`, `weight`, `priority`,
-- `max_active_per_user`).
create or replace function public.enqueue_story_job(
  p_user_id uuid,
  p_prompt text,
  p_title text,
  p_genre text,
  p_language text,
  p_target_words integer,
  p_cost integer,
  p_max_attempts integer,
  p_idempotency_key text default null,
  p_request_hash text default null,
  p_free_credits integer default 0,
  p_idempotency_ttl_seconds double precision default 86400
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_key public.idempotency_keys;
  v_story_id uuid;
  v_balance integer;
  v_plan public.plans;
begin
  if p_user_id is null or coalesce(pg_catalog.btrim(p_prompt), '') = ''
     or coalesce(p_target_words, 0) <= 0 or coalesce(p_cost, -1) < 0
     or coalesce(p_max_attempts, 0) < 1 or coalesce(p_free_credits, 0) < 0
     or coalesce(p_idempotency_ttl_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'user, prompt, target_words > 0, cost >= 0, max_attempts >= 1, ttl > 0 are required';
  end if;

  if p_idempotency_key is not null then
    -- Concurrent calls with one key queue up here; once the first commits, the others (each
    -- statement takes a fresh snapshot under read committed) find its key below. The primary
    -- key of idempotency_keys stays the backstop: never a second debit.
    perform pg_catalog.pg_advisory_xact_lock(
      pg_catalog.hashtextextended(p_user_id::text || '/' || p_idempotency_key, 0)
    );
    select * into v_key from public.idempotency_keys
    where user_id = p_user_id and key = p_idempotency_key;
    if found and v_key.created_at <= pg_catalog.now()
        - pg_catalog.make_interval(secs => p_idempotency_ttl_seconds) then
      -- Expired: the key is free again.
      delete from public.idempotency_keys where user_id = p_user_id and key = p_idempotency_key;
    elsif found then
      if v_key.request_hash is distinct from p_request_hash then
        raise exception using errcode = 'PT409', message = 'idempotency_conflict',
          detail = 'this Idempotency-Key was used with a different request';
      end if;
      select balance into v_balance from public.credit_balances where user_id = p_user_id;
      return private.replay_key(v_key, coalesce(v_balance, 0));
    end if;
  end if;

  -- Lock the balance row (created empty on first sight) before reading or moving credits.
  select balance into v_balance from public.credit_balances
  where user_id = p_user_id for update;
  if not found then
    if not exists (select from auth.users where id = p_user_id) then
      raise exception using errcode = 'PT404', message = 'user_not_found';
    end if;
    insert into public.credit_balances (user_id, balance) values (p_user_id, 0)
    on conflict (user_id) do nothing;
    select balance into strict v_balance from public.credit_balances
    where user_id = p_user_id for update;
  end if;

  -- The sign-up grant (FREE_CREDITS), once per user: the ledger's unique signup index is the
  -- record that it was given, so a user credited by an admin first still receives it.
  if coalesce(p_free_credits, 0) > 0 and not exists (
    select from public.credit_ledger where user_id = p_user_id and kind = 'signup'
  ) then
    insert into public.credit_ledger (user_id, kind, amount, reason)
    values (p_user_id, 'signup', p_free_credits, 'sign-up grant');
    update public.credit_balances set balance = balance + p_free_credits
    where user_id = p_user_id
    returning balance into v_balance;
  end if;

  if v_balance < p_cost then
    -- Raising rolls back everything above, the sign-up grant included: nothing is written.
    raise exception using errcode = 'PT402', message = 'insufficient_credits',
      detail = pg_catalog.format('balance %s, cost %s', v_balance, p_cost);
  end if;

  update public.credit_balances set balance = balance - p_cost
  where user_id = p_user_id
  returning balance into v_balance;

  -- The story exists before any generation starts.
  insert into public.stories (user_id, title, prompt, genre, language, target_words)
  values (p_user_id, p_title, p_prompt, p_genre, coalesce(p_language, 'en'), p_target_words)
  returning id into v_story_id;

  v_plan := private.plan_of(p_user_id);
  insert into public.story_jobs (
    story_id, user_id, max_attempts, idempotency_key, request_hash, cost, tier, priority
  )
  values (
    v_story_id, p_user_id, p_max_attempts, p_idempotency_key, p_request_hash, p_cost,
    v_plan.tier, v_plan.priority
  )
  returning * into v_job;

  if p_idempotency_key is not null then
    insert into public.idempotency_keys (user_id, key, request_hash, job_id, story_id)
    values (p_user_id, p_idempotency_key, p_request_hash, v_job.id, v_story_id);
  end if;

  if p_cost > 0 then
    insert into public.credit_ledger (user_id, job_id, kind, amount, reason)
    values (p_user_id, v_job.id, 'debit', -p_cost, 'story generation');
  end if;

  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'story_id', v_story_id, 'status', v_job.status,
    'attempts', v_job.attempts, 'fence', v_job.fence, 'created_at', v_job.created_at,
    'replayed', false, 'balance', v_balance,
    'tier', v_plan.tier, 'weight', v_plan.weight, 'priority', v_plan.priority,
    'max_active_per_user', v_plan.max_active_per_user
  );
end
$$;

-- As in 20261130000600_dispatch_snapshot_pages.sql, each pending job also carrying its user's
-- plan's `weight` and `max_active_per_user` (read now: an operator's edit reaches Redis with
-- the next snapshot).
create or replace function public.dispatch_snapshot(
  p_limit integer default 1000,
  p_recent_seconds double precision default null,
  p_page integer default null,
  p_recent_limit integer default null,
  p_after jsonb default null
)
returns jsonb
language sql
volatile
security definer
set search_path = ''
as $$
  with cursor_row as (
    select c.queued_at, c.job_id from private.dispatch_cursor c
    where c.only_row and p_page is not null and p_after is null
    for update
  ),
  walk_from as (
    select
      coalesce(case when p_after is null then (select queued_at from cursor_row)
                    else (p_after ->> 'queued_at')::timestamptz end,
               '-infinity'::timestamptz) as queued_at,
      coalesce(case when p_after is null then (select job_id from cursor_row)
                    else (p_after ->> 'job_id')::uuid end,
               '00000000-0000-0000-0000-000000000000'::uuid) as job_id
  ),
  page as (
    select j.id, j.queued_at from public.story_jobs j
    where p_page is not null and j.status = 'pending'
      and (j.queued_at, j.id) > ((select queued_at from walk_from), (select job_id from walk_from))
    order by j.queued_at, j.id
    limit greatest(coalesce(p_page, 0), 0)
  ),
  page_end as (
    select p.queued_at, p.id from page p order by p.queued_at desc, p.id desc limit 1
  ),
  moved as (
    update private.dispatch_cursor c
    set queued_at = case when (select count(*) from page) < p_page then null
                         else (select queued_at from page_end) end,
        job_id = case when (select count(*) from page) < p_page then null
                      else (select id from page_end) end
    where p_page is not null and p_after is null and c.only_row
    returning c.queued_at is null as wrapped
  ),
  recent as (
    select j.id from public.story_jobs j
    where p_recent_seconds is not null and j.status = 'pending'
      and j.next_attempt_at >= pg_catalog.now()
        - pg_catalog.make_interval(secs => greatest(p_recent_seconds, 0))
    order by j.next_attempt_at, j.id
    limit greatest(coalesce(p_recent_limit, p_limit, 1000), 0)
  ),
  head as (
    select j.id from public.story_jobs j
    where p_page is null and p_recent_seconds is null and j.status = 'pending'
    order by j.queued_at, j.id
    limit greatest(coalesce(p_limit, 1000), 0)
  ),
  chosen as (
    select id from page union select id from recent union select id from head
  )
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
          'priority', p.priority, 'weight', pl.weight,
          'max_active_per_user', pl.max_active_per_user
        ) order by p.queued_at, p.id), '[]'::jsonb)
      from public.story_jobs p
      cross join lateral private.plan_of(p.user_id) pl
      where p.id in (select id from chosen) and p.status = 'pending'
    ),
    'wrapped', coalesce(
      (select wrapped from moved),
      p_page is not null and (select count(*) from page) < p_page
    ),
    'last', (select pg_catalog.jsonb_build_object('queued_at', e.queued_at, 'job_id', e.id)
             from page_end e)
  )
$$;

-- As in 20261130000400_lock_job_helper.sql; the job JSON it answers (which the caller puts
-- back into Redis under the new fence) also carries the user's plan's `weight` and
-- `max_active_per_user`. The job keeps the tier and priority of its enqueue.
create or replace function public.retry_failed_story_job(p_job_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_plan public.plans;
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
  v_plan := private.plan_of(v_job.user_id);
  return private.job_json(v_job) || pg_catalog.jsonb_build_object(
    'weight', v_plan.weight, 'max_active_per_user', v_plan.max_active_per_user
  );
end
$$;

-- Waiting and running jobs per tier (the tier stamped at enqueue; `(none)` for jobs enqueued
-- before tiers). Like queue_overview: the reader's rights, the service role only.
create view public.queue_by_tier
with (security_invoker = true)
as
select
  coalesce(tier, '(none)') as tier,
  count(*) filter (where status = 'pending') as pending,
  count(*) filter (where status = 'processing') as processing
from public.story_jobs
where status in ('pending', 'processing')
group by coalesce(tier, '(none)');

comment on view public.queue_by_tier is
  'Pending and processing jobs per tier at enqueue ((none): enqueued before tiers); tiers with neither are left out.';

revoke all on public.queue_by_tier from public, anon, authenticated, service_role;
grant select on public.queue_by_tier to service_role;

-- queue_overview's figures, and `by_tier`: [{tier, pending, processing}] by tier name (bytewise,
-- so `(none)` comes first whatever the database's collation).
create or replace function public.queue_counts()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select pg_catalog.to_jsonb(o) || pg_catalog.jsonb_build_object(
    'by_tier', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'tier', t.tier, 'pending', t.pending, 'processing', t.processing
        ) order by t.tier collate "C"), '[]'::jsonb)
      from public.queue_by_tier t
    )
  )
  from public.queue_overview o
$$;
