-- Operator functions: credits, queue counts and the dashboard view, clean, retry, empty.
begin;
select plan(39);

insert into auth.users (id) values
  ('00000000-0000-0000-0000-0000000000a1'),
  ('00000000-0000-0000-0000-0000000000b2');

-- These cases run several jobs of one user at once: the per-user cap of the default plan
-- (12_plans_and_tiers) is lifted for them.
update public.plans set max_active_per_user = null where is_default;

-- Accounts: the API's check that a token's subject still exists.
select ok(public.user_exists('00000000-0000-0000-0000-0000000000a1'), 'a signed-up user exists');
select ok(not public.user_exists('00000000-0000-0000-0000-0000000000c3'),
  'a user not in auth.users does not');
select ok(not has_function_privilege('authenticated', 'public.user_exists(uuid)', 'execute'),
  'only the service role may ask');

-- Credits.
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 0,
  'a user never credited has 0');
select is(public.grant_credits('00000000-0000-0000-0000-0000000000a1', 10, 'welcome'), 10,
  'a grant returns the new balance');
select is(public.grant_credits('00000000-0000-0000-0000-0000000000a1', 5), 15, 'grants add up');
select results_eq(
  $$ select kind, amount, reason from public.credit_ledger
     where user_id = '00000000-0000-0000-0000-0000000000a1' order by id $$,
  $$ values ('grant'::text, 10, 'welcome'::text), ('grant', 5, 'grant') $$,
  'each grant is in the ledger with its reason');
select throws_ok($$ select public.grant_credits('00000000-0000-0000-0000-0000000000a1', 0) $$,
  'PT422', 'invalid_amount', 'a zero grant is refused');
select throws_ok($$ select public.grant_credits('00000000-0000-0000-0000-0000000000a1', -3) $$,
  'PT422', 'invalid_amount', 'a negative grant is refused');
select throws_ok($$ select public.grant_credits('00000000-0000-0000-0000-0000000000ff', 3) $$,
  'PT404', 'user_not_found', 'a grant to an unknown user is refused');

-- Given 7 jobs: 2 completed (4 and 5 minutes), 1 failed, 1 cancelled, 1 processing, 2 pending.
create temp table j as
select n, (public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'p' || n, null,
  null, null, 500, 1, 3) ->> 'job_id')::uuid as id
from generate_series(1, 7) n;
create function pg_temp.job(p_n int) returns uuid language sql
as $$ select id from j where n = p_n $$;
create function pg_temp.fence(p_n int) returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job(p_n) $$;
do $$
begin
  perform public.start_story_job(pg_temp.job(n), pg_temp.fence(n), 5, 60)
  from generate_series(1, 4) n;
  perform public.complete_story_job(pg_temp.job(n), pg_temp.fence(n), 'the end', null, '{}')
  from generate_series(1, 2) n;
  update public.story_jobs set started_at = finished_at - interval '240 seconds'
  where id = pg_temp.job(1);
  update public.story_jobs set started_at = finished_at - interval '300 seconds'
  where id = pg_temp.job(2);
  perform public.fail_story_job(pg_temp.job(3), pg_temp.fence(3), 'boom', 'it broke', false);
  perform public.cancel_story_job(pg_temp.job(5));
end
$$;

select is(public.queue_counts(),
  jsonb_build_object('pending', 2, 'processing', 1, 'completed', 2, 'failed', 1,
    'cancelled', 1, 'avg_generation_seconds', 270,
    'oldest_pending_at', (select min(queued_at) from public.story_jobs where status = 'pending'),
    'prompt_tokens_today', 0, 'completion_tokens_today', 0, 'cost_usd_today', 0,
    'by_tier', jsonb_build_array(
      jsonb_build_object('tier', 'free', 'pending', 2, 'processing', 1))),
  'queue_counts: per status, oldest pending, mean generation time, today''s usage (none '
  'recorded), waiting and running per tier');
select is((select pg_catalog.to_jsonb(o) from public.queue_overview o),
  public.queue_counts() - 'by_tier', 'the dashboard view shows the same numbers');

-- clean: finished rows older than the age go, stories stay.
select throws_ok($$ select public.clean_story_jobs('pending', 0) $$,
  'PT422', 'invalid_status', 'pending jobs cannot be cleaned');
select throws_ok($$ select public.clean_story_jobs('processing', 0) $$,
  'PT422', 'invalid_status', 'processing jobs cannot be cleaned');
select throws_ok($$ select public.clean_story_jobs('completed', -1) $$,
  'PT422', 'invalid_argument', 'a negative age is refused');
select is(public.clean_story_jobs('cancelled', 3600), 0,
  'nothing cancelled an hour ago (cancelled jobs may be cleaned)');
select is(public.clean_story_jobs('completed', 3600), 0, 'nothing completed an hour ago');
update public.story_jobs set finished_at = finished_at - interval '2 hours'
where id = pg_temp.job(1);
create temp table kept_story as
select story_id from public.story_jobs where id = pg_temp.job(1);
select is(public.clean_story_jobs('completed', 3600), 1, 'the old completed job is cleaned');
select ok(not exists (select from public.story_jobs where id = pg_temp.job(1)),
  'its row is gone');
select is(public.get_story((select story_id from kept_story)) ->> 'status', 'ready',
  'its story is kept');
select is(public.get_story((select story_id from kept_story)) -> 'job_id', 'null'::jsonb,
  'a story whose job was cleaned has no job id');

-- retry a failed job: pending again, fresh attempts, no charge, and never a second refund.
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 10,
  '15 - 7 debits + 2 refunds (failed, cancelled)');
create temp table failed_fence as select pg_temp.fence(3) as f;
create temp table retried as select public.retry_failed_story_job(pg_temp.job(3)) as r;
select is((select r ->> 'status' from retried), 'pending', 'the failed job is pending again');
select is((select (r ->> 'attempts')::int from retried), 0, 'its attempts start over');
select cmp_ok((select (r ->> 'fence')::bigint from retried), '>', (select f from failed_fence),
  'its fence does not: the retry runs under a new, greater fence');
select is((select r -> 'error_code' from retried), 'null'::jsonb, 'its error is cleared');
select is((select status from public.stories
           where id = (select (r ->> 'story_id')::uuid from retried)),
  'pending', 'its story is pending again');
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 10,
  'a retry charges nothing');
select is(public.start_story_job(pg_temp.job(3), (select f from failed_fence), 5, 60)
          ->> 'reason', 'stale', 'the failed attempt''s fence cannot start the retried job');
select is(public.start_story_job(pg_temp.job(3), pg_temp.fence(3), 5, 60) ->> 'attempt', '1',
  'the retried job starts, as attempt 1');
select is(public.fail_story_job(pg_temp.job(3), pg_temp.fence(3), 'boom', 'again', false)
          ->> 'refunded',
  'true', 'failing again reports the earlier refund');
select is((select count(*) from public.credit_ledger
           where job_id = pg_temp.job(3) and kind = 'refund'), 1::bigint,
  'still exactly one refund for the job');
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 10,
  'the balance is not refunded twice');
select throws_ok(format('select public.retry_failed_story_job(%L)', pg_temp.job(6)),
  'PT409', 'job_not_retryable', 'a pending job cannot be retried');
select throws_ok($$ select public.retry_failed_story_job('00000000-0000-0000-0000-000000000000') $$,
  'PT404', 'job_not_found', 'retry: unknown job');

-- empty: every pending job cancelled and refunded.
select set_eq(
  $$ select value #>> '{}' from jsonb_array_elements(public.empty_story_queue()) $$,
  array[pg_temp.job(6)::text, pg_temp.job(7)::text],
  'empty cancels the pending jobs and names them');
select is((select count(*) from public.story_jobs where status = 'pending'), 0::bigint,
  'nothing is pending');
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 12,
  'the emptied jobs are refunded');
select is(public.empty_story_queue(), '[]'::jsonb, 'emptying an empty queue does nothing');

select * from finish();
rollback;
