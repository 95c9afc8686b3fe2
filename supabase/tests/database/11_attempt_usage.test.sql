-- One row per attempt, written by triggers whatever path a job takes through 'processing';
-- the usage a worker records on it; the sum a completed job's result shows; the day's figures
-- in queue_overview.
begin;
select plan(64);

-- These cases run several jobs of one user at once: the per-user cap of the default plan
-- (12_plans_and_tiers) is lifted for them.
update public.plans set max_active_per_user = null where is_default;

insert into auth.users (id) values ('00000000-0000-0000-0000-0000000000e1');
select lives_ok($$ select public.grant_credits('00000000-0000-0000-0000-0000000000e1', 20) $$,
  'a user with credits');

-- Jobs 1-8 with three attempts each, job 9 with one.
create temp table j as
select n, (public.enqueue_story_job('00000000-0000-0000-0000-0000000000e1', 'prompt ' || n,
    null, null, 'en', 500, 1, case when n = 9 then 1 else 3 end) ->> 'job_id')::uuid as id
from generate_series(1, 9) n;
create function pg_temp.job(p_n int) returns uuid language sql
as $$ select id from j where n = p_n $$;
create function pg_temp.fence(p_n int) returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job(p_n) $$;
create function pg_temp.start(p_n int) returns bigint language sql
as $$ select (public.start_story_job(pg_temp.job(p_n), pg_temp.fence(p_n), 50, 60)
              ->> 'fence')::bigint $$;
create function pg_temp.rows(p_n int) returns table (
  fence bigint, attempt int, outcome text, error_code text, ended boolean
) language sql
as $$ select fence, attempt, outcome, error_code, ended_at is not null
      from public.story_job_attempts where job_id = pg_temp.job(p_n) order by fence $$;
create function pg_temp.usage(
  p_n int, p_fence bigint, p_prompt bigint, p_completion bigint, p_cost numeric,
  p_estimated boolean default false, p_model text default 'gpt-test'
) returns jsonb language sql
as $$ select pg_catalog.jsonb_build_object('job_id', pg_temp.job(p_n), 'fence', p_fence,
        'model', p_model, 'prompt_tokens', p_prompt, 'completion_tokens', p_completion,
        'cost_usd', p_cost, 'estimated', p_estimated) $$;
create function pg_temp.record(variadic p_usages jsonb[]) returns int language sql
as $$ select public.record_story_job_usage(pg_catalog.to_jsonb(p_usages)) $$;
create function pg_temp.refusal(p_usages jsonb) returns text language plpgsql
as $$
declare
  v_detail text;
begin
  perform public.record_story_job_usage(p_usages);
  return null;
exception when others then
  get stacked diagnostics v_detail = pg_exception_detail;
  return sqlerrm || ': ' || v_detail;
end
$$;
create temp table f (n int, attempt int, fence bigint);

-- Shape and rights.
select has_table('public', 'story_job_attempts', 'the attempts table exists');
select col_is_pk('public', 'story_job_attempts', array['job_id', 'fence'],
  'an attempt is named by its job and fence');
select col_is_fk('public', 'story_job_attempts', 'job_id', 'an attempt belongs to a job');
select ok((select relrowsecurity from pg_class where oid = 'public.story_job_attempts'::regclass),
  'row level security is on');
select table_privs_are('public', 'story_job_attempts', r, array[]::text[],
  r || ' has no rights on story_job_attempts')
from unnest(array['anon', 'authenticated']) r;
select is_empty(
  $$ select p from unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
     where has_table_privilege('service_role', 'public.story_job_attempts', p) $$,
  'the service role writes attempts only through the functions and triggers');
select has_function('public', 'record_story_job_usage', array['jsonb'],
  'record_story_job_usage(jsonb) exists');
select function_returns('public', 'record_story_job_usage', array['jsonb'], 'integer',
  'it returns how many attempts it wrote');
select ok(not has_function_privilege('authenticated', 'public.record_story_job_usage(jsonb)',
  'execute'), 'a signed-in user cannot record usage');

-- Job 1: start -> complete. The row is opened under the fence the job had while pending.
insert into f select 1, 1, pg_temp.fence(1);
select is(pg_temp.start(1), (select fence from f where n = 1), 'job 1 starts under its fence');
select results_eq($$ select * from pg_temp.rows(1) $$,
  format('values (%s::bigint, 1, null::text, null::text, false)', (select fence from f where n = 1)),
  'a started attempt has a row, open, numbered 1');
select is(pg_temp.record(pg_temp.usage(1, pg_temp.fence(1), 100, 1500, 0.00099)), 1,
  'its usage is recorded on it');
select is(pg_temp.record(pg_temp.usage(1, pg_temp.fence(1), 100, 1500, 0.00099)), 1,
  'recording the same usage again is answered alike');
select results_eq(
  format('select model, prompt_tokens, completion_tokens, cost_usd, usage_estimated
          from public.story_job_attempts where job_id = %L', pg_temp.job(1)),
  $$ values ('gpt-test'::text, 100::bigint, 1500::bigint, 0.00099::numeric, false) $$,
  'twice is the same as once: the attempt''s totals are set, not added');
select lives_ok(format('select public.heartbeat_story_job(%L, %s, 40)', pg_temp.job(1),
    pg_temp.fence(1)), 'a heartbeat');
select is((select count(*)::int from public.story_job_attempts where job_id = pg_temp.job(1)), 1,
  'a heartbeat writes no attempt row');
select lives_ok(format($$select public.complete_story_job(%L, %s, 'The end.', null,
    '{"quality": "high", "usage": {"promptTokens": 1}}')$$, pg_temp.job(1), pg_temp.fence(1)),
  'job 1 completes');
select results_eq($$ select * from pg_temp.rows(1) $$,
  format($$values (%s::bigint, 1, 'completed'::text, null::text, true)$$,
    (select fence from f where n = 1)),
  'its attempt ends completed');
select is((select result from public.story_jobs where id = pg_temp.job(1)),
  jsonb_build_object('quality', 'high', 'usage', jsonb_build_object('promptTokens', 100,
    'completionTokens', 1500, 'costUsd', 0.00099, 'attempts', 1, 'estimated', false)),
  'the result shows what the story cost, summed by the database (a caller''s usage is replaced)');

-- Job 2: start -> fail (retried) -> start -> complete; the fence grows at the return to pending.
insert into f select 2, 1, pg_temp.start(2);
select is(pg_temp.record(pg_temp.usage(2, (select fence from f where n = 2 and attempt = 1),
    200, 300, 0.0005)), 1, 'the first attempt''s usage is recorded');
select lives_ok(format($$select public.fail_story_job(%L, %s, 'upstream_timeout', 'slow', true)$$,
    pg_temp.job(2), pg_temp.fence(2)), 'the first attempt fails, to be retried');
insert into f select 2, 2, pg_temp.start(2);
select cmp_ok((select fence from f where n = 2 and attempt = 2), '>',
  (select fence from f where n = 2 and attempt = 1), 'the second attempt runs under a new fence');
select is(pg_temp.record(pg_temp.usage(2, (select fence from f where n = 2 and attempt = 2),
    250, 1200, 0.0011, true)), 1, 'the second attempt''s usage is recorded (estimated)');
select lives_ok(format($$select public.complete_story_job(%L, %s, 'The end.', null, '{}')$$,
    pg_temp.job(2), pg_temp.fence(2)), 'the second attempt completes');
select results_eq($$ select * from pg_temp.rows(2) $$,
  format($$values (%s::bigint, 1, 'retrying'::text, 'upstream_timeout'::text, true),
                  (%s, 2, 'completed', null, true)$$,
    (select fence from f where n = 2 and attempt = 1),
    (select fence from f where n = 2 and attempt = 2)),
  'one row per attempt: retrying with its error, then completed');
select is((select result -> 'usage' from public.story_jobs where id = pg_temp.job(2)),
  jsonb_build_object('promptTokens', 450, 'completionTokens', 1500, 'costUsd', 0.0016,
    'attempts', 2, 'estimated', true),
  'the result sums every attempt, the failed one included');

-- Job 3: a failed attempt, then a release: released, without the earlier attempt's error.
select is(pg_temp.start(3), pg_temp.fence(3), 'job 3 starts');
select lives_ok(format($$select public.fail_story_job(%L, %s, 'upstream_timeout', 'slow', true)$$,
    pg_temp.job(3), pg_temp.fence(3)), 'its first attempt fails, to be retried');
insert into f select 3, 2, pg_temp.start(3);
select is((public.release_story_job(pg_temp.job(3), pg_temp.fence(3)) ->> 'status'), 'pending',
  'its second attempt is released');
select results_eq(
  format('select outcome, error_code, attempt from public.story_job_attempts
          where job_id = %L and fence = %s', pg_temp.job(3), (select fence from f where n = 3)),
  $$ values ('released'::text, null::text, 2) $$,
  'the released attempt ends released, with no error of its own');
select is(pg_temp.start(3), pg_temp.fence(3), 'job 3 starts again');
select results_eq(
  format('select attempt, outcome from public.story_job_attempts
          where job_id = %L and fence = %s', pg_temp.job(3), pg_temp.fence(3)),
  $$ values (2, null::text) $$, 'under a new fence, counted 2 again (a release is not counted)');

-- Job 4: cancelled while it runs.
select is(pg_temp.start(4), pg_temp.fence(4), 'job 4 starts');
select lives_ok(format('select public.cancel_story_job(%L)', pg_temp.job(4)),
  'its cancel is requested');
select is((select count(*)::int from public.story_job_attempts
           where job_id = pg_temp.job(4) and outcome is null), 1,
  'a cancel request leaves the attempt running');
select is((public.cancel_running_story_job(pg_temp.job(4), pg_temp.fence(4)) ->> 'status'),
  'cancelled', 'the worker ends it');
select results_eq($$ select outcome, error_code, ended from pg_temp.rows(4) $$,
  $$ values ('cancelled'::text, null::text, true) $$, 'the attempt ends cancelled');

-- Job 5: its worker goes silent and the sweep requeues it; job 9 (one attempt) fails so.
insert into f select 5, 1, pg_temp.start(5);
select is(pg_temp.start(9), pg_temp.fence(9), 'job 9 starts');
update public.story_jobs set heartbeat_at = now() - interval '2 minutes'
where id in (pg_temp.job(5), pg_temp.job(9));
select is((public.requeue_stalled_story_job(pg_temp.job(5), pg_temp.fence(5), 60) ->> 'outcome'),
  'requeued', 'job 5''s silent attempt is requeued');
select results_eq(
  format('select outcome, error_code from public.story_job_attempts where job_id = %L
          and fence = %s', pg_temp.job(5), (select fence from f where n = 5)),
  $$ values ('lost'::text, 'worker_lost'::text) $$, 'the silent attempt ends lost');
select cmp_ok(pg_temp.fence(5), '>', (select fence from f where n = 5),
  'the job waits under a new fence');
select is((public.requeue_stalled_story_job(pg_temp.job(9), pg_temp.fence(9), 60) ->> 'outcome'),
  'failed', 'job 9 had no attempt left: it fails');
select results_eq($$ select outcome, error_code from pg_temp.rows(9) $$,
  $$ values ('lost'::text, 'worker_lost'::text) $$, 'its attempt ends lost too');

-- Job 6: fails for good.
select is(pg_temp.start(6), pg_temp.fence(6), 'job 6 starts');
select lives_ok(format($$select public.fail_story_job(%L, %s, 'content_refused', 'no', false)$$,
    pg_temp.job(6), pg_temp.fence(6)), 'it fails, not retryable');
select results_eq($$ select outcome, error_code from pg_temp.rows(6) $$,
  $$ values ('failed'::text, 'content_refused'::text) $$, 'its attempt ends failed');

-- Job 7 completes with no usage recorded: its result says nothing of usage.
select is(pg_temp.start(7), pg_temp.fence(7), 'job 7 starts');
select lives_ok(format($$select public.complete_story_job(%L, %s, 'x', null, '{"quality": "low"}')$$,
    pg_temp.job(7), pg_temp.fence(7)), 'it completes');
select is((select result from public.story_jobs where id = pg_temp.job(7)),
  '{"quality": "low"}'::jsonb, 'no usage recorded: no usage in the result');

-- record_story_job_usage: what it skips, what it refuses.
select is(public.record_story_job_usage('[]'), 0, 'nothing to record: 0');
select is(pg_temp.record(pg_temp.usage(8, pg_temp.fence(8), 1, 1, 0)), 0,
  'a job never started has no attempt to record on');
select is(pg_temp.record(pg_temp.usage(1, 0, 1, 1, 0),
    jsonb_build_object('job_id', gen_random_uuid(), 'fence', 1, 'model', null,
      'prompt_tokens', 1, 'completion_tokens', 1, 'cost_usd', 0, 'estimated', false)), 0,
  'unknown attempts are skipped');
select is(pg_temp.record(pg_temp.usage(6, pg_temp.fence(6), 7, 8, 0.1),
    pg_temp.usage(6, pg_temp.fence(6), 70, 80, 0.2, p_model => null)), 1,
  'an attempt named twice is written once');
select results_eq(
  format('select model, prompt_tokens, cost_usd from public.story_job_attempts
          where job_id = %L', pg_temp.job(6)),
  $$ values (null::text, 70::bigint, 0.2::numeric) $$, 'the last one wins, a null model too');
select throws_ok($$ select public.record_story_job_usage('{"job_id": 1}') $$,
  'PT422', 'invalid_argument', 'an object instead of an array is refused');
select throws_ok($$ select public.record_story_job_usage(null) $$,
  'PT422', 'invalid_argument', 'null is refused');
select is(pg_temp.refusal(jsonb_build_array(pg_temp.usage(6, pg_temp.fence(6), 1, 1, 0),
    pg_temp.usage(6, pg_temp.fence(6), -1, 1, 0))),
  'invalid_argument: usages[1]: prompt_tokens is negative',
  'the refusal names the element and the field');
select is(array(select private.usage_problem(u) from unnest(array[
        jsonb_set(pg_temp.usage(6, 1, 1, 1, 0), '{completion_tokens}', '1.5'),
        pg_temp.usage(6, 1, 1, 1, -0.5),
        pg_temp.usage(6, 1, 1, 1, 0) - 'estimated',
        jsonb_set(pg_temp.usage(6, 1, 1, 1, 0), '{job_id}', '"not-a-uuid"'),
        jsonb_set(pg_temp.usage(6, 1, 1, 1, 0), '{prompt_tokens}', '"12"'),
        pg_temp.usage(6, 1, 1, 1, 1000000), '[1]'::jsonb, pg_temp.usage(6, 1, 1, 1, 0)]) u),
  array['completion_tokens is not a whole number within bigint', 'cost_usd is negative',
    'estimated is not a boolean', 'job_id is not a uuid', 'prompt_tokens is not a number',
    'cost_usd is 1000000 or more', 'not an object', null],
  'each malformed field is named');
select results_eq(
  format('select prompt_tokens from public.story_job_attempts where job_id = %L', pg_temp.job(6)),
  $$ values (70::bigint) $$, 'a refused call writes nothing, not even its good elements');

-- The day's figures: attempts started today (UTC), whatever became of them.
select results_eq(
  $$ select prompt_tokens_today, completion_tokens_today, cost_usd_today
     from public.queue_overview $$,
  $$ values (100 + 450 + 70::bigint, 1500 + 1500 + 80::bigint, 0.00099 + 0.0016 + 0.2) $$,
  'queue_overview sums the tokens and cost of the attempts started today');
update public.story_job_attempts set started_at = date_trunc('day', now(), 'UTC') - interval '1 second'
where job_id = pg_temp.job(6);
select results_eq(
  $$ select prompt_tokens_today, completion_tokens_today, cost_usd_today
     from public.queue_overview $$,
  $$ values (550::bigint, 3000::bigint, 0.00259) $$,
  'an attempt started before midnight UTC is yesterday''s');
select is(public.queue_counts() - array['pending', 'processing', 'completed', 'failed',
    'cancelled', 'oldest_pending_at', 'avg_generation_seconds', 'by_tier'],
  jsonb_build_object('prompt_tokens_today', 550, 'completion_tokens_today', 3000,
    'cost_usd_today', 0.00259),
  'queue_counts carries them');

select * from finish();
rollback;
