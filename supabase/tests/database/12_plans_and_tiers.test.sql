-- Plans and tiers: the plans table, a user's plan (private.plan_of), what enqueue stamps and
-- answers, the cap carried but not enforced yet at start, the plan's figures in the dispatch snapshot and an
-- admin retry, and the counts per tier.
begin;
select plan(42);

-- Users: on plus, on pro (spelt loosely), on a tier no plan names, without a tier, without
-- any app_metadata.
insert into auth.users (id, raw_app_meta_data) values
  ('00000000-0000-0000-0000-0000000000a1', '{"provider": "email", "tier": "plus"}'),
  ('00000000-0000-0000-0000-0000000000b2', '{"tier": " Pro"}'),
  ('00000000-0000-0000-0000-0000000000c3', '{"tier": "gold"}'),
  ('00000000-0000-0000-0000-0000000000d4', '{"provider": "email"}'),
  ('00000000-0000-0000-0000-0000000000e5', null);
select public.grant_credits(u, 50)
from unnest(array['00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b2',
  '00000000-0000-0000-0000-0000000000c3', '00000000-0000-0000-0000-0000000000d4',
  '00000000-0000-0000-0000-0000000000e5']::uuid[]) u;

create function pg_temp.plan(p_user uuid) returns text language sql
as $$
  select pg_catalog.format('%s %s %s %s', p.tier, p.weight, p.priority,
    coalesce(p.max_active_per_user::text, 'uncapped'))
  from private.plan_of(p_user) p
$$;
-- Jobs by name.
create temp table jobs (name text primary key, id uuid not null, answer jsonb not null);
create procedure pg_temp.enqueue(p_name text, p_user uuid, p_key text default null) language sql
as $$
  insert into jobs
  select p_name, (r ->> 'job_id')::uuid, r
  from public.enqueue_story_job(p_user, 'prompt ' || p_name, p_name, null, 'en', 500, 1, 3,
    p_key, p_key) r
$$;
create function pg_temp.job(p_name text) returns uuid language sql
as $$ select id from jobs where name = p_name $$;
create function pg_temp.fence(p_name text) returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job(p_name) $$;
-- A worker's start of the job's current attempt; the global cap is 5 unless given.
create function pg_temp.start(p_name text, p_max_active int default 5) returns jsonb language sql
as $$ select public.start_story_job(pg_temp.job(p_name), pg_temp.fence(p_name), p_max_active, 60) $$;

------------------------------------------------------------------------------------------
-- The plans table.
------------------------------------------------------------------------------------------
select has_table('public', 'plans', 'plans exists');
select results_eq(
  $$ select tier, weight, priority, max_active_per_user, is_default
     from public.plans order by weight $$,
  $$ values ('free'::text, 1::double precision, 0, null::int, true), ('plus', 2, 1, null, false),
            ('pro', 4, 2, null, false) $$,
  'three plans are seeded: free (the default), plus and pro, with no running cap (not enforced yet)');
select ok((select relrowsecurity from pg_class where oid = 'public.plans'::regclass),
  'plans has row level security enabled');
select table_privs_are('public', 'plans', 'authenticated', array['SELECT'],
  'authenticated may only select from plans');
select table_privs_are('public', 'plans', 'anon', array[]::text[], 'anon has no rights on plans');
select throws_ok($$ insert into public.plans (tier) values ('Gold Plan') $$, '23514', null,
  'a tier name is lowercase letters, digits, _ and -');
select throws_ok($$ insert into public.plans (tier, weight) values ('gold', 0) $$, '23514', null,
  'a weight is at least 0.01');
select throws_ok($$ insert into public.plans (tier, weight) values ('gold', 1001) $$, '23514',
  null, 'a weight is at most 1000');
select throws_ok($$ insert into public.plans (tier, priority) values ('gold', 101) $$, '23514',
  null, 'a priority is within -100..100');
select throws_ok($$ insert into public.plans (tier, max_active_per_user) values ('gold', 0) $$,
  '23514', null, 'a running cap is at least 1');
select throws_ok($$ insert into public.plans (tier, is_default) values ('gold', true) $$, '23505',
  null, 'at most one plan is the default');

set local role authenticated;
select set_config('request.jwt.claims',
  '{"sub": "00000000-0000-0000-0000-0000000000a1", "role": "authenticated"}', true);
select results_eq($$ select tier from public.plans order by tier $$,
  $$ values ('free'::text), ('plus'), ('pro') $$, 'a signed-in user reads every plan');
select throws_ok($$ update public.plans set max_active_per_user = null $$, '42501', null,
  'a signed-in user cannot change a plan');
reset role;
-- This test's own plans carry caps, to show they travel (and are not enforced yet).
update public.plans set max_active_per_user = case tier when 'free' then 1 when 'plus' then 2
  when 'pro' then 3 end;

------------------------------------------------------------------------------------------
-- A user's plan.
------------------------------------------------------------------------------------------
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000a1'), 'plus 2 1 2',
  'app_metadata.tier names the plan');
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000b2'), 'pro 4 2 3',
  'the tier is read trimmed and lowercased');
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000c3'), 'free 1 0 1',
  'a tier no plan names: the default plan');
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000d4'), 'free 1 0 1',
  'no tier: the default plan');
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000e5'), 'free 1 0 1',
  'no app_metadata at all: the default plan');
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000ff'), 'free 1 0 1',
  'an unknown user: the default plan');
update public.plans set is_default = (tier = 'plus');
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000c3'), 'plus 2 1 2',
  'the operator makes plus the default: tierless users are on plus');
delete from public.plans where tier = 'free';
update public.plans set is_default = false;
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000d4'), 'free 1 0 uncapped',
  'no default plan: a built-in free plan (weight 1, priority 0, only the global cap)');
select is(pg_temp.plan('00000000-0000-0000-0000-0000000000a1'), 'plus 2 1 2',
  '... and users on an existing plan keep it');
insert into public.plans (tier, weight, priority, max_active_per_user, is_default)
values ('free', 1, 0, 1, true);
select ok(not has_function_privilege(r, 'private.plan_of(uuid)', 'execute'),
  r || ' cannot call plan_of')
from unnest(array['anon', 'authenticated']) r;

------------------------------------------------------------------------------------------
-- Enqueue stamps the job and answers with the plan.
------------------------------------------------------------------------------------------
call pg_temp.enqueue('plus 1', '00000000-0000-0000-0000-0000000000a1', 'key-1');
call pg_temp.enqueue('plus 2', '00000000-0000-0000-0000-0000000000a1');
call pg_temp.enqueue('plus 3', '00000000-0000-0000-0000-0000000000a1');
call pg_temp.enqueue('pro 1', '00000000-0000-0000-0000-0000000000b2');
call pg_temp.enqueue('gold 1', '00000000-0000-0000-0000-0000000000c3');
call pg_temp.enqueue('gold 2', '00000000-0000-0000-0000-0000000000c3');

select is(
  (select answer - array['job_id', 'story_id', 'fence', 'created_at'] from jobs
   where name = 'plus 1'),
  '{"status": "pending", "attempts": 0, "replayed": false, "balance": 49, "tier": "plus",
    "weight": 2, "priority": 1, "max_active_per_user": 2}'::jsonb,
  'enqueue answers with the plan''s tier, weight, priority and running cap');
select is(
  (select answer - array['job_id', 'story_id', 'fence', 'created_at', 'balance'] from jobs
   where name = 'gold 1'),
  '{"status": "pending", "attempts": 0, "replayed": false, "tier": "free", "weight": 1,
    "priority": 0, "max_active_per_user": 1}'::jsonb,
  '... the default plan''s for a tier no plan names');
select results_eq(
  $$ select j.tier, j.priority from public.story_jobs j
     where j.id in (pg_temp.job('plus 1'), pg_temp.job('pro 1'), pg_temp.job('gold 1'))
     order by j.priority desc $$,
  $$ values ('pro'::text, 2), ('plus', 1), ('free', 0) $$,
  'the job keeps the tier and priority of its enqueue');

update public.plans set weight = 3, priority = 5 where tier = 'plus';
select is(
  public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'prompt plus 1', 'plus 1',
    null, 'en', 500, 1, 3, 'key-1', 'key-1')
    - array['job_id', 'story_id', 'fence', 'created_at', 'balance', 'status', 'attempts'],
  '{"replayed": true, "tier": "plus", "weight": 3, "priority": 1,
    "max_active_per_user": 2}'::jsonb,
  'a replay carries the job''s tier and priority and the plan''s weight and cap now');
update public.plans set weight = 2, priority = 1 where tier = 'plus';

------------------------------------------------------------------------------------------
-- Starts: the plan's cap is carried, not enforced yet.
------------------------------------------------------------------------------------------
select is(pg_temp.start('gold 1') ->> 'started', 'true', 'a default-plan user starts one');
select is(pg_temp.start('gold 2') ->> 'started', 'true',
  '... and a second while others wait: the cap (1 here) is not enforced yet');
select is(
  (select count(*) from (select pg_temp.start(n) ->> 'started' as started
   from unnest(array['plus 2', 'plus 3', 'pro 1']) n) s where started = 'true'),
  3::bigint, 'the others start under the global cap');
-- Running now: plus 2, plus 3, gold 1, gold 2, pro 1; plus 1 waits.

------------------------------------------------------------------------------------------
-- The plan's figures where Redis is fed: the dispatch snapshot, an admin retry.
------------------------------------------------------------------------------------------
call pg_temp.enqueue('free 1', '00000000-0000-0000-0000-0000000000d4');
call pg_temp.enqueue('pro 2', '00000000-0000-0000-0000-0000000000b2');
create temp table snap as select public.dispatch_snapshot() as s;
create temp view snap_pending as
select (e ->> 'job_id')::uuid as id, e from snap, jsonb_array_elements(s -> 'pending') e;
select results_eq(
  $$ select (e ->> 'priority')::int, (e ->> 'weight')::double precision,
            (e ->> 'max_active_per_user')::int
     from snap_pending
     where id in (pg_temp.job('plus 1'), pg_temp.job('free 1'), pg_temp.job('pro 2'))
     order by (e ->> 'weight')::double precision $$,
  $$ values (0, 1::double precision, 1), (1, 2, 2), (2, 4, 3) $$,
  'each pending job in the snapshot carries its priority and its user''s weight and cap');
select is((select count(*) from snap_pending), 3::bigint,
  'the snapshot holds the three pending jobs');

update public.plans set max_active_per_user = null, weight = 0.5 where tier = 'free';
select is(
  (select e - array['job_id', 'user_id', 'fence', 'attempts', 'queued_at', 'next_attempt_at']
   from jsonb_array_elements(public.dispatch_snapshot() -> 'pending') e
   where (e ->> 'job_id')::uuid = pg_temp.job('free 1')),
  '{"priority": 0, "weight": 0.5, "max_active_per_user": null}'::jsonb,
  'an operator''s edit reaches the next snapshot (null: only the global cap)');
update public.plans set max_active_per_user = 1, weight = 1 where tier = 'free';

select public.fail_story_job(pg_temp.job('pro 1'), pg_temp.fence('pro 1'), 'content_policy',
  'no', false);
create temp table retried as select public.retry_failed_story_job(pg_temp.job('pro 1')) as r;
select results_eq(
  $$ select r ->> 'status', r ->> 'tier', (r ->> 'priority')::int,
            (r ->> 'weight')::double precision, (r ->> 'max_active_per_user')::int,
            (r ->> 'fence')::bigint
     from retried $$,
  $$ select 'pending'::text, 'pro'::text, 2, 4::double precision, 3, pg_temp.fence('pro 1') $$,
  'an admin retry answers the job under its new fence with its user''s weight and cap');

------------------------------------------------------------------------------------------
-- Waiting and running per tier.
------------------------------------------------------------------------------------------
-- Pending: plus 1, free 1, pro 1 (retried), pro 2. Running: plus 2, plus 3, gold 1, gold 2.
-- One of the running, enqueued before tiers, has no tier.
update public.story_jobs set tier = null where id = pg_temp.job('gold 2');
select results_eq(
  $$ select tier, pending, processing from public.queue_by_tier order by tier $$,
  $$ values ('(none)'::text, 0::bigint, 1::bigint), ('free', 1, 1), ('plus', 1, 2),
            ('pro', 2, 0) $$,
  'queue_by_tier: waiting and running jobs per tier at enqueue');
select is(public.queue_counts() -> 'by_tier',
  '[{"tier": "(none)", "pending": 0, "processing": 1},
    {"tier": "free", "pending": 1, "processing": 1},
    {"tier": "plus", "pending": 1, "processing": 2},
    {"tier": "pro", "pending": 2, "processing": 0}]'::jsonb,
  'queue_counts carries them as by_tier, by tier name');
select is(public.queue_counts() - 'by_tier', (select to_jsonb(o) from public.queue_overview o),
  '... beside queue_overview''s figures');
select table_privs_are('public', 'queue_by_tier', 'service_role', array['SELECT'],
  'the per-tier view is readable by the service role');
select ok(not has_table_privilege(r, 'public.queue_by_tier', 'select'),
  'the per-tier view is hidden from ' || r)
from unnest(array['anon', 'authenticated']) r;
select ok(
  (select 'security_invoker=true' = any (reloptions) from pg_class
   where oid = 'public.queue_by_tier'::regclass),
  'the per-tier view runs with the reader''s rights');

select * from finish();
rollback;
