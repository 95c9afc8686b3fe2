-- Cancelling a running job (a request the worker ends under its fence), the fence deciding a
-- race with completion, a cancelled attempt never retried, and the waiting TTL.
begin;
select plan(32);

insert into auth.users (id) values
  ('00000000-0000-0000-0000-0000000000c1'),
  ('00000000-0000-0000-0000-0000000000d2');
create temp table granted as
select public.grant_credits('00000000-0000-0000-0000-0000000000c1', 20) as balance;

create temp table j as
select n, (r ->> 'job_id')::uuid as id
from generate_series(1, 8) n,
  lateral (select public.enqueue_story_job('00000000-0000-0000-0000-0000000000c1',
    'prompt ' || n, 'title ' || n, null, 'en', 500, 1, 3) as r) e;
create function pg_temp.job(p_n int) returns uuid language sql
as $$ select id from j where n = p_n $$;
create function pg_temp.fence(p_n int) returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job(p_n) $$;
create function pg_temp.refunds(p_n int) returns int language sql
as $$ select count(*)::int from public.credit_ledger where job_id = pg_temp.job(p_n)
      and kind = 'refund' $$;
create function pg_temp.beat(p_n int) returns jsonb language sql
as $$ select public.heartbeat_story_jobs(pg_catalog.jsonb_build_array(
        pg_catalog.jsonb_build_object('job_id', pg_temp.job(p_n), 'fence', pg_temp.fence(p_n),
          'words', 10))) $$;
create function pg_temp.start(p_n int) returns boolean language sql
as $$ select (public.start_story_job(pg_temp.job(p_n), pg_temp.fence(p_n), 50, 60)
        ->> 'started')::boolean $$;

-- Job 1: cancelled while it runs; the worker hears of it and ends it.
select ok(pg_temp.start(1), 'job 1 starts');
select is(pg_temp.beat(1), jsonb_build_array(jsonb_build_object('job_id', pg_temp.job(1),
    'fence', pg_temp.fence(1), 'cancel', false)), 'the heartbeat answer: owned, no cancel');
select throws_ok(format('select public.cancel_running_story_job(%L, %s)', pg_temp.job(1),
    pg_temp.fence(1)),
  'PT409', 'cancel_not_requested', 'a worker cannot cancel a job nobody asked to cancel');
select throws_ok(format($$select public.cancel_story_job(%L, '00000000-0000-0000-0000-0000000000d2')$$,
    pg_temp.job(1)),
  'PT404', 'job_not_found', 'another user cannot cancel it');
select is(public.cancel_story_job(pg_temp.job(1), '00000000-0000-0000-0000-0000000000c1')
          ->> 'status', 'processing', 'the owner''s cancel of a processing job leaves it processing');
select results_eq(
  format('select cancel_requested_at is not null, cancel_reason, refunded
          from public.story_jobs where id = %L', pg_temp.job(1)),
  $$ values (true, 'user'::text, false) $$,
  'the request is recorded with its reason, nothing refunded yet');
select is(public.cancel_story_job(pg_temp.job(1), '00000000-0000-0000-0000-0000000000c1')
          -> 'cancel_requested', 'true'::jsonb, 'asking again answers the same');
select is(pg_temp.beat(1) -> 0 -> 'cancel', 'true'::jsonb,
  'the next heartbeat answer tells the worker to stop');
select throws_ok(format('select public.cancel_running_story_job(%L, %s)', pg_temp.job(1),
    pg_temp.fence(1) - 1),
  'PT409', 'stale_attempt', 'another fence cannot end it');
select is(public.cancel_running_story_job(pg_temp.job(1), pg_temp.fence(1)) ->> 'status',
  'cancelled', 'the worker ends it cancelled');
select results_eq(
  format('select j.status, j.refunded, s.status from public.story_jobs j
          join public.stories s on s.id = j.story_id where j.id = %L', pg_temp.job(1)),
  $$ values ('cancelled'::text, true, 'cancelled'::text) $$,
  'job and story cancelled, refunded');
select is(pg_temp.refunds(1), 1, 'one refund in the ledger');
select is(public.cancel_story_job(pg_temp.job(1), '00000000-0000-0000-0000-0000000000c1')
          ->> 'cancel_reason', 'user', 'a cancel of a cancelled job answers it, with its reason');
select is(pg_temp.refunds(1), 1, 'still one refund');
select throws_ok(format('select public.cancel_running_story_job(%L, %s)', pg_temp.job(1),
    pg_temp.fence(1)),
  'PT409', 'stale_attempt', 'a second end by the worker is refused');

-- Job 2: the generation completed first; the cancel request loses to the fence.
select ok(pg_temp.start(2), 'job 2 starts');
select is(public.cancel_story_job(pg_temp.job(2)) ->> 'status', 'processing',
  'job 2''s cancel is requested');
select is(public.complete_story_job(pg_temp.job(2), pg_temp.fence(2), 'The end.', null, '{}')
          ->> 'status', 'completed', 'a generation that finished first completes');
select throws_ok(format('select public.cancel_running_story_job(%L, %s)', pg_temp.job(2),
    pg_temp.fence(2)),
  'PT409', 'stale_attempt', 'the cancel after the completion is refused');
select results_eq(
  format('select status, refunded from public.story_jobs where id = %L', pg_temp.job(2)),
  $$ values ('completed'::text, false) $$, 'completed, not refunded');
select throws_ok(format('select public.cancel_story_job(%L)', pg_temp.job(2)),
  'PT409', 'job_not_cancellable', 'a completed job cannot be cancelled');

-- Job 3: an admin's cancel, then the worker dies: the lost attempt ends cancelled.
select ok(pg_temp.start(3), 'job 3 starts');
select is(public.cancel_story_job(pg_temp.job(3)) ->> 'cancel_reason', 'admin',
  'without a user the cancel is an admin''s');
update public.story_jobs set heartbeat_at = now() - interval '2 minutes' where id = pg_temp.job(3);
select is(public.requeue_stalled_story_job(pg_temp.job(3), pg_temp.fence(3), 60) ->> 'status',
  'cancelled', 'the sweep ends a lost attempt whose cancel was requested cancelled, not retried');
select is(pg_temp.refunds(3), 1, 'and refunds it once');

-- Job 4: the cancelled attempt's worker shuts down instead: released means cancelled.
select ok(pg_temp.start(4), 'job 4 starts');
select is(public.cancel_story_job(pg_temp.job(4)) -> 'cancel_requested', 'true'::jsonb,
  'job 4''s cancel is requested');
select is(public.release_story_job(pg_temp.job(4), pg_temp.fence(4)) ->> 'status', 'cancelled',
  'a release of an attempt being cancelled ends the job cancelled');

-- Jobs 5-8: the waiting TTL. 5 and 6 waited two hours, 7 too but started once, 8 is new.
update public.story_jobs set queued_at = now() - interval '2 hours'
where id in (pg_temp.job(5), pg_temp.job(6), pg_temp.job(7));
update public.story_jobs set queued_at = now() - interval '3 hours' where id = pg_temp.job(5);
update public.story_jobs set attempts = 1, started_at = now() - interval '1 hour'
where id = pg_temp.job(7);
select throws_ok('select public.expire_story_jobs(0, 10)', 'PT422', 'invalid_argument',
  'expire needs a ttl');
select is(public.expire_story_jobs(3600, 1), jsonb_build_array(pg_temp.job(5)),
  'the oldest first, the limit bounds a call');
select is(public.expire_story_jobs(3600, 10), jsonb_build_array(pg_temp.job(6)),
  'the next call takes the other one; a retry and a new job stay');
select results_eq(
  format('select status, cancel_reason, refunded from public.story_jobs
          where id in (%L, %L) order by id', pg_temp.job(5), pg_temp.job(6)),
  $$ values ('cancelled'::text, 'expired'::text, true), ('cancelled', 'expired', true) $$,
  'expired jobs are cancelled with reason expired and refunded');

select * from finish();
rollback;
