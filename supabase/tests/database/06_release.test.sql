-- release: a worker shutting down gives its running attempt back without using it up, and the
-- job goes back to pending under a new fence.
begin;
select plan(12);

insert into auth.users (id) values ('00000000-0000-0000-0000-0000000000c3');
select public.grant_credits('00000000-0000-0000-0000-0000000000c3', 5);
create temp table j as
select (public.enqueue_story_job('00000000-0000-0000-0000-0000000000c3',
  'a prompt', 'a title', null, 'en', 500, 1, 3) ->> 'job_id')::uuid as id;
create function pg_temp.job() returns uuid language sql as $$ select id from j $$;
create function pg_temp.fence() returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job() $$;
create temp table fences (attempt int primary key, fence bigint not null);

select throws_ok(format('select public.release_story_job(%L, %s)', pg_temp.job(), pg_temp.fence()),
  'PT409', 'stale_attempt', 'a pending job has no running attempt to release');

-- Given its third and last attempt running
insert into fences values (1, pg_temp.fence());
select public.start_story_job(pg_temp.job(), pg_temp.fence(), 5, 60);
select public.fail_story_job(pg_temp.job(), pg_temp.fence(), 'timeout', 'slow', true, 0);
insert into fences values (2, pg_temp.fence());
select public.start_story_job(pg_temp.job(), pg_temp.fence(), 5, 60);
select public.fail_story_job(pg_temp.job(), pg_temp.fence(), 'timeout', 'slow', true, 0);
insert into fences values (3, pg_temp.fence());
select public.start_story_job(pg_temp.job(), pg_temp.fence(), 5, 60);

select throws_ok(format('select public.release_story_job(%L, %s)', pg_temp.job(),
    (select fence from fences where attempt = 2)),
  'PT409', 'stale_attempt', 'an older attempt may not release the job');

-- When its worker releases it
create temp table released as
select public.release_story_job(pg_temp.job(), (select fence from fences where attempt = 3)) r;
select is((select r ->> 'status' from released), 'pending', 'the released job is pending again');
select cmp_ok((select (r ->> 'fence')::bigint from released), '>',
  (select fence from fences where attempt = 3), 'under a new, greater fence');
select is((select (r ->> 'fence')::bigint from released), pg_temp.fence(),
  'the answer carries the job''s new fence');

-- Then the attempt is not used up: the job is neither failed nor refunded
select results_eq(
  format('select status, attempts, refunded, heartbeat_at is null, next_attempt_at <= now()
          from public.story_jobs where id = %L', pg_temp.job()),
  $$ values ('pending'::text, 2, false, true, true) $$,
  'attempts are back to 2, due at once, and nothing was refunded');
select is((select count(*)::int from public.credit_ledger where job_id = pg_temp.job()
           and kind = 'refund'), 0, 'no refund row');

-- And the next claim, under the new fence, runs attempt 3 again; the old fence is spent
select is(public.start_story_job(pg_temp.job(), (select fence from fences where attempt = 3),
    5, 60) ->> 'reason',
  'stale', 'the released fence cannot start the job again');
select is(public.start_story_job(pg_temp.job(), pg_temp.fence(), 5, 60) ->> 'attempt', '3',
  'the next claim runs attempt 3 again');
select throws_ok(format('select public.release_story_job(%L, %s)', pg_temp.job(),
    (select fence from fences where attempt = 3)),
  'PT409', 'stale_attempt', 'the released attempt cannot release the job a second time');

-- Only the service role may call it
select ok(not has_function_privilege('authenticated',
  'public.release_story_job(uuid, bigint)', 'execute'),
  'authenticated may not execute release_story_job');
select ok(not has_function_privilege('anon',
  'public.release_story_job(uuid, bigint)', 'execute'),
  'anon may not execute release_story_job');

select * from finish();
rollback;
