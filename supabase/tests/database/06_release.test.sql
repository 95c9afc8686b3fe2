-- release: a worker shutting down gives its running attempt back without using it up.
begin;
select plan(9);

insert into auth.users (id) values ('00000000-0000-0000-0000-0000000000c3');
select public.grant_credits('00000000-0000-0000-0000-0000000000c3', 5);
create temp table j as
select (public.enqueue_story_job('00000000-0000-0000-0000-0000000000c3',
  'a prompt', 'a title', null, 'en', 500, 1, 3) ->> 'job_id')::uuid as id;
create function pg_temp.job() returns uuid language sql as $$ select id from j $$;

select throws_ok(format('select public.release_story_job(%L, 1)', pg_temp.job()),
  'PT409', 'stale_attempt', 'a pending job has no running attempt to release');

-- Given its third and last attempt running
select public.start_story_job(pg_temp.job(), 1);
select public.fail_story_job(pg_temp.job(), 1, 'timeout', 'slow', true, 0);
select public.start_story_job(pg_temp.job(), 2);
select public.fail_story_job(pg_temp.job(), 2, 'timeout', 'slow', true, 0);
select public.start_story_job(pg_temp.job(), 3);

select throws_ok(format('select public.release_story_job(%L, 2)', pg_temp.job()),
  'PT409', 'stale_attempt', 'an older attempt may not release the job');

-- When its worker releases it
select is(public.release_story_job(pg_temp.job(), 3) ->> 'status', 'pending',
  'the released job is pending again');

-- Then the attempt is not used up: the job is neither failed nor refunded
select results_eq(
  format('select status, attempts, refunded, heartbeat_at is null
          from public.story_jobs where id = %L', pg_temp.job()),
  $$ values ('pending'::text, 2, false, true) $$,
  'attempts are back to 2 and nothing was refunded');
select is((select count(*)::int from public.credit_ledger where job_id = pg_temp.job()
           and kind = 'refund'), 0, 'no refund row');

-- And the same attempt number starts it again, once
select is(public.start_story_job(pg_temp.job(), 3) ->> 'attempt', '3',
  'the next claim runs attempt 3 again');
select throws_ok(format('select public.release_story_job(%L, 2)', pg_temp.job()),
  'PT409', 'stale_attempt', 'a stale holder still cannot release it');

-- Only the service role may call it
select ok(not has_function_privilege('authenticated',
  'public.release_story_job(uuid, integer)', 'execute'),
  'authenticated may not execute release_story_job');
select ok(not has_function_privilege('anon',
  'public.release_story_job(uuid, integer)', 'execute'),
  'anon may not execute release_story_job');

select * from finish();
rollback;
