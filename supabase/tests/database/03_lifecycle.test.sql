-- The job state machine: start, heartbeat, complete, fail (retry and final), requeue, cancel,
-- and the reads the API and the sweeper use. Every write of an attempt is fenced.
begin;
select plan(76);

insert into auth.users (id) values
  ('00000000-0000-0000-0000-0000000000a1'),
  ('00000000-0000-0000-0000-0000000000b2');
create temp table granted as
select public.grant_credits('00000000-0000-0000-0000-0000000000a1', 10) as balance;

create temp table j as
select n, (r ->> 'job_id')::uuid as id, (r ->> 'story_id')::uuid as story_id
from generate_series(1, 6) n,
  lateral (select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1',
    'prompt ' || n, 'title ' || n, 'fantasy', 'en', 500, 1, 3) as r) e;
create function pg_temp.job(p_n int) returns uuid language sql
as $$ select id from j where n = p_n $$;
-- The job's fence now, and fences kept by name to replay an old attempt later.
create function pg_temp.fence(p_n int) returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job(p_n) $$;
create temp table fences (name text primary key, fence bigint not null);
create procedure pg_temp.keep(p_name text, p_n int) language sql
as $$ insert into fences select p_name, pg_temp.fence(p_n) $$;
create function pg_temp.f(p_name text) returns bigint language sql
as $$ select fence from fences where name = p_name $$;

-- start: pending -> processing under the job's fence.
call pg_temp.keep('j1 first', 1);
select is(public.start_story_job(pg_temp.job(1), pg_temp.fence(2), 5, 60) ->> 'reason', 'stale',
  'start refuses a fence that is not the job''s');
select is(public.start_story_job(pg_temp.job(1), pg_temp.f('j1 first'), 5, 60)
          - 'job_id' - 'story_id',
  jsonb_build_object('started', true, 'user_id', '00000000-0000-0000-0000-0000000000a1',
    'prompt', 'prompt 1', 'title', 'title 1', 'genre', 'fantasy', 'language', 'en',
    'target_words', 500, 'fence', pg_temp.f('j1 first'), 'attempt', 1, 'max_attempts', 3),
  'start returns what the worker needs, with its fence and attempt number');
select results_eq(
  format('select status, attempts, fence, started_at is not null, heartbeat_at is not null
          from public.story_jobs where id = %L', pg_temp.job(1)),
  format('values (%L::text, 1, %s::bigint, true, true)', 'processing', pg_temp.f('j1 first')),
  'the job is processing its attempt 1 under the same fence');
select is(public.start_story_job(pg_temp.job(1), pg_temp.f('j1 first'), 5, 60)
          - 'next_attempt_at' - 'job_id' - 'user_id',
  jsonb_build_object('started', false, 'reason', 'running', 'status', 'processing',
    'fence', pg_temp.f('j1 first'), 'attempts', 1, 'max_attempts', 3, 'refunded', false),
  'a second start of the same fence is refused as running, with the job''s state');
select is((select attempts from public.story_jobs where id = pg_temp.job(1)), 1,
  'the refused start counted no attempt');
select throws_ok(format('select public.start_story_job(%L, %s, 0, 60)', pg_temp.job(2),
    pg_temp.fence(2)),
  'PT422', 'invalid_argument', 'start needs max_active >= 1');

-- heartbeat: only the running attempt.
select is(public.heartbeat_story_job(pg_temp.job(1), pg_temp.f('j1 first'), 120), true,
  'heartbeat of the attempt');
select is((select progress_words from public.story_jobs where id = pg_temp.job(1)), 120,
  'heartbeat records progress');
select is(public.heartbeat_story_job(pg_temp.job(1), pg_temp.fence(2)), false,
  'heartbeat under another fence');
select is(public.heartbeat_story_job(pg_temp.job(2), pg_temp.fence(2)), false,
  'heartbeat of a pending job');

-- fail, retryable: back to pending with a delay, under a new fence.
select throws_ok(format($$select public.complete_story_job(%L, %s, 'x', null, '{}')$$,
    pg_temp.job(1), pg_temp.fence(2)),
  'PT409', 'stale_attempt', 'complete refuses a fence that is not the running one');
create temp table retry1 as
select public.fail_story_job(pg_temp.job(1), pg_temp.f('j1 first'), 'upstream_timeout',
  'took too long', true, 30) r;
select is((select r - 'next_attempt_at' - 'job_id' - 'user_id' - 'fence' from retry1),
  '{"status": "pending", "attempts": 1, "max_attempts": 3, "refunded": false}'::jsonb,
  'a retryable failure puts the job back to pending');
select is((select (r ->> 'next_attempt_at')::timestamptz from retry1),
  now() + interval '30 seconds', 'the retry is due after the delay');
select cmp_ok((select (r ->> 'fence')::bigint from retry1), '>', pg_temp.f('j1 first'),
  'the retry runs under a new, greater fence');
select is((select (r ->> 'fence')::bigint from retry1), pg_temp.fence(1),
  'the answer carries the job''s new fence');
select results_eq(
  format('select error_code, error_message, refunded, heartbeat_at is null
          from public.story_jobs where id = %L', pg_temp.job(1)),
  $$ values ('upstream_timeout'::text, 'took too long'::text, false, true) $$,
  'the error of the attempt is recorded');

-- The old attempt has been superseded: it can neither start, complete nor fail the job.
select is(public.start_story_job(pg_temp.job(1), pg_temp.f('j1 first'), 5, 60) ->> 'reason',
  'stale', 'the old fence cannot start the retry');
call pg_temp.keep('j1 second', 1);
select is((public.start_story_job(pg_temp.job(1), pg_temp.f('j1 second'), 5, 60)
           ->> 'attempt')::int, 2, 'the new fence starts attempt 2');
select throws_ok(format($$select public.complete_story_job(%L, %s, 'late', null, '{}')$$,
    pg_temp.job(1), pg_temp.f('j1 first')),
  'PT409', 'stale_attempt', 'the stale attempt cannot complete');
select throws_ok(format($$select public.fail_story_job(%L, %s, 'late', 'late', false)$$,
    pg_temp.job(1), pg_temp.f('j1 first')),
  'PT409', 'stale_attempt', 'the stale attempt cannot fail');

-- complete: the story becomes ready.
select is(public.complete_story_job(pg_temp.job(1), pg_temp.f('j1 second'), 'one two  three',
    'A new title', '{"quality": 0.9}'),
  jsonb_build_object('job_id', pg_temp.job(1), 'story_id',
    (select story_id from j where n = 1), 'status', 'completed'),
  'complete answers with the job and story');
select results_eq(
  format('select status, content, words, title, completed_at is not null
          from public.stories where id = %L', (select story_id from j where n = 1)),
  $$ values ('ready'::text, 'one two  three'::text, 3, 'A new title'::text, true) $$,
  'the story holds the content, word count and title');
select results_eq(
  format('select status, result, finished_at is not null, error_code
          from public.story_jobs where id = %L', pg_temp.job(1)),
  $$ values ('completed'::text, '{"quality": 0.9}'::jsonb, true, null::text) $$,
  'the job is completed with its result');
select is(public.start_story_job(pg_temp.job(1), pg_temp.fence(1), 5, 60) ->> 'reason',
  'finished', 'a completed job cannot start again');
select throws_ok(format($$select public.complete_story_job(%L, %s, 'again', null, '{}')$$,
    pg_temp.job(1), pg_temp.f('j1 second')),
  'PT409', 'stale_attempt', 'a completed attempt cannot complete twice');
select throws_ok(format('select public.cancel_story_job(%L)', pg_temp.job(1)),
  'PT409', 'job_not_cancellable', 'a completed job cannot be cancelled');

-- Three retryable failures: failed, refunded exactly once; each attempt has a fence of its own.
call pg_temp.keep('j2 a1', 2);
select ok(public.start_story_job(pg_temp.job(2), pg_temp.fence(2), 5, 60) ->> 'started' = 'true',
  'job 2 attempt 1');
select is(public.fail_story_job(pg_temp.job(2), pg_temp.fence(2), 'e', 'm', true) ->> 'status',
  'pending', 'attempt 1 of 3 fails: retry');
call pg_temp.keep('j2 a2', 2);
select ok(public.start_story_job(pg_temp.job(2), pg_temp.fence(2), 5, 60) ->> 'started' = 'true',
  'job 2 attempt 2');
select is(public.fail_story_job(pg_temp.job(2), pg_temp.fence(2), 'e', 'm', true) ->> 'status',
  'pending', 'attempt 2 of 3 fails: retry');
call pg_temp.keep('j2 a3', 2);
select ok(pg_temp.f('j2 a1') < pg_temp.f('j2 a2') and pg_temp.f('j2 a2') < pg_temp.f('j2 a3'),
  'every retry draws a greater fence');
select is((public.start_story_job(pg_temp.job(2), pg_temp.fence(2), 5, 60) ->> 'attempt')::int,
  3, 'job 2 attempt 3');
select is(public.fail_story_job(pg_temp.job(2), pg_temp.fence(2), 'e', 'm', true)
          - 'job_id' - 'user_id' - 'fence',
  '{"status": "failed", "attempts": 3, "max_attempts": 3, "refunded": true,
    "next_attempt_at": null}'::jsonb,
  'attempt 3 of 3 fails: failed and refunded');
select is((select status from public.stories where id = (select story_id from j where n = 2)),
  'failed', 'the story is failed');
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 5,
  '10 granted, 6 debited, 1 refunded');
select is(private.refund_job(pg_temp.job(2), 'again'), true, 'a second refund is a no-op');
select is((select count(*) from public.credit_ledger
           where job_id = pg_temp.job(2) and kind = 'refund'), 1::bigint,
  'exactly one refund in the ledger');
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 5,
  'the balance did not move twice');

-- A non-retryable failure ends the job at once.
select ok(public.start_story_job(pg_temp.job(3), pg_temp.fence(3), 5, 60) ->> 'started' = 'true',
  'job 3 attempt 1');
select is(public.fail_story_job(pg_temp.job(3), pg_temp.fence(3), 'content_policy', 'no', false)
          ->> 'status',
  'failed', 'a non-retryable failure fails the job on its first attempt');

-- requeue a stalled attempt: a dead attempt counts as a failed one.
call pg_temp.keep('j4 a1', 4);
select ok(public.start_story_job(pg_temp.job(4), pg_temp.fence(4), 5, 60) ->> 'started' = 'true',
  'job 4 attempt 1');
update public.story_jobs set heartbeat_at = now() - interval '10 minutes' where id = pg_temp.job(4);
select is(public.stalled_story_jobs(60),
  jsonb_build_array(jsonb_build_object('job_id', pg_temp.job(4), 'attempt', 1,
    'fence', pg_temp.f('j4 a1'), 'user_id', '00000000-0000-0000-0000-0000000000a1',
    'heartbeat_at', now() - interval '10 minutes')),
  'a silent processing job is reported as stalled, with its fence');
select is(public.stalled_story_jobs(3600), '[]'::jsonb, 'not stalled for an hour');
select is(public.requeue_stalled_story_job(pg_temp.job(4), pg_temp.f('j4 a1'), 60)
          - 'next_attempt_at' - 'job_id' - 'user_id' - 'fence',
  '{"status": "pending", "attempts": 1, "max_attempts": 3, "refunded": false,
    "outcome": "requeued"}'::jsonb,
  'the stalled attempt is requeued');
select cmp_ok(pg_temp.fence(4), '>', pg_temp.f('j4 a1'), 'the requeued job has a new fence');
select is((select error_code from public.story_jobs where id = pg_temp.job(4)), 'worker_lost',
  'recorded as worker_lost');
select is(public.requeue_stalled_story_job(pg_temp.job(4), pg_temp.f('j4 a1'), 60) ->> 'outcome',
  'superseded', 'a requeued attempt cannot be requeued twice');
select throws_ok(format('select public.requeue_stalled_story_job(%L, %s, 0)', pg_temp.job(4),
    pg_temp.fence(4)),
  'PT422', 'invalid_argument', 'requeue needs live_seconds > 0');

-- dispatch_snapshot: what Redis is rebuilt from; pending jobs in queue order.
select is(
  (select jsonb_agg(e ->> 'job_id' order by ord) from
     jsonb_array_elements(public.dispatch_snapshot() -> 'pending') with ordinality x(e, ord)),
  (select jsonb_agg(id::text order by queued_at, id) from public.story_jobs
   where status = 'pending'),
  'the snapshot lists the pending jobs in queue order');
select is(
  (select (e ->> 'fence')::bigint
   from jsonb_array_elements(public.dispatch_snapshot() -> 'pending') e
   where e ->> 'job_id' = pg_temp.job(4)::text),
  pg_temp.fence(4), 'the requeued job is dispatchable under its new fence');
select is(public.dispatch_snapshot() -> 'running', '[]'::jsonb, 'nothing is running');
select is(jsonb_array_length(public.dispatch_snapshot(1) -> 'pending'), 1,
  'the snapshot obeys p_limit');
-- The walk over every pending job: one page per call, in queue order, going on where the
-- last call stopped, and `wrapped` once it reached the tail.
create temp table walk as
  select n, public.dispatch_snapshot(0, null, 1) as s
  from generate_series(1, (select count(*)::int + 1 from public.story_jobs
                           where status = 'pending')) n;
select is(
  (select jsonb_agg(s -> 'pending' -> 0 ->> 'job_id' order by n) from walk
   where jsonb_array_length(s -> 'pending') = 1),
  (select jsonb_agg(id::text order by queued_at, id) from public.story_jobs
   where status = 'pending'),
  'the walk visits every pending job once, a page at a time, in queue order');
select is((select array_agg((s ->> 'wrapped')::boolean order by n) from walk),
  (select array_agg(n = (select max(n) from walk) order by n) from walk),
  'the walk says it wrapped only at the call past the tail');
-- A walk of the caller's own (a rebuild after a flush): from the head ('{}'), each page after
-- the last one's end; the shared cursor stays where it was.
create temp table cursor_before as select queued_at, job_id from private.dispatch_cursor;
create temp table own_walk (n integer, s jsonb);
do $$
declare
  v_after jsonb := '{}';
  v_s jsonb;
  v_n integer := 0;
begin
  loop
    v_n := v_n + 1;
    v_s := public.dispatch_snapshot(0, null, 2, null, v_after);
    insert into own_walk values (v_n, v_s);
    exit when (v_s ->> 'wrapped')::boolean or v_n > 1000;
    v_after := v_s -> 'last';
  end loop;
end
$$;
select is(
  (select jsonb_agg(e ->> 'job_id' order by n, ord)
   from own_walk, jsonb_array_elements(s -> 'pending') with ordinality x(e, ord)),
  (select jsonb_agg(id::text order by queued_at, id) from public.story_jobs
   where status = 'pending'),
  'a walk of its own from the head visits every pending job once, in queue order');
select is((select (queued_at, job_id)::text from private.dispatch_cursor),
  (select (queued_at, job_id)::text from cursor_before),
  'a walk of its own leaves the shared cursor where it was');
select is(
  (select count(*)::int from jsonb_array_elements(
     public.dispatch_snapshot(1000, 3600, null) -> 'pending')),
  (select count(*)::int from public.story_jobs
   where status = 'pending' and next_attempt_at >= now() - interval '1 hour'),
  'the recent part lists the pending jobs due within the window');
select is(jsonb_array_length(public.dispatch_snapshot(1000, 3600, null, 1) -> 'pending'), 1,
  'p_recent_limit bounds the recent part (the walk finds the rest)');

-- cancel: by its owner; a pending job at once, refunded.
select throws_ok(format($$select public.cancel_story_job(%L, '00000000-0000-0000-0000-0000000000b2')$$,
    pg_temp.job(5)),
  'PT404', 'job_not_found', 'another user''s job is not found');
select is(public.cancel_story_job(pg_temp.job(5), '00000000-0000-0000-0000-0000000000a1')
          ->> 'status', 'cancelled', 'the owner cancels a pending job');
select results_eq(
  format('select j.refunded, s.status from public.story_jobs j join public.stories s
          on s.id = j.story_id where j.id = %L', pg_temp.job(5)),
  $$ values (true, 'cancelled'::text) $$,
  'a cancelled job is refunded and its story cancelled');
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 7,
  'two refunds so far (job 2, job 3) and the cancellation');
select is(public.cancel_story_job(pg_temp.job(5)) ->> 'status', 'cancelled',
  'cancelling a cancelled job again answers the job as it is');
select is(public.start_story_job(pg_temp.job(5), pg_temp.fence(5), 5, 60) ->> 'reason',
  'finished', 'a cancelled job cannot start');
select is((select status from public.story_jobs where id = pg_temp.job(5)), 'cancelled',
  'the refused start left it cancelled');
select ok(public.start_story_job(pg_temp.job(6), pg_temp.fence(6), 5, 60) ->> 'started' = 'true',
  'job 6 attempt 1');
select is(public.cancel_story_job(pg_temp.job(6)) -> 'cancel_requested', 'true'::jsonb,
  'a processing job''s cancel is requested (its worker ends it)');

-- Unknown ids.
select throws_ok(
  $$ select public.start_story_job('00000000-0000-0000-0000-000000000000', 1, 5, 60) $$,
  'PT404', 'job_not_found', 'start: unknown job');
select throws_ok(
  $$ select public.complete_story_job('00000000-0000-0000-0000-000000000000', 1, '', null, null) $$,
  'PT404', 'job_not_found', 'complete: unknown job');

-- Reads.
select throws_ok(format($$select public.get_story_job(%L, '00000000-0000-0000-0000-0000000000b2')$$,
    pg_temp.job(1)),
  'PT404', 'job_not_found', 'get_story_job hides another user''s job');
select is(public.get_story_job(pg_temp.job(1), '00000000-0000-0000-0000-0000000000a1')
          ->> 'title', 'A new title', 'get_story_job includes the story title');
select is(public.get_story((select story_id from j where n = 1)) ->> 'job_id',
  pg_temp.job(1)::text, 'get_story names its job');
select throws_ok($$ select public.get_story('00000000-0000-0000-0000-000000000000') $$,
  'PT404', 'story_not_found', 'get_story: unknown story');

-- list_story_jobs: newest first, keyset pages that neither skip nor repeat (ties on
-- created_at, as here inside one transaction, are broken by id).
create temp table everything as
select e ->> 'job_id' as id, ord from jsonb_array_elements(
  public.list_story_jobs('00000000-0000-0000-0000-0000000000a1', null, 100)
) with ordinality x(e, ord);
create temp table page1 as
select public.list_story_jobs('00000000-0000-0000-0000-0000000000a1', null, 4) as r;
select is(
  (select jsonb_agg(e ->> 'job_id') from page1, jsonb_array_elements(r) e) ||
  (select jsonb_agg(e ->> 'job_id') from page1, jsonb_array_elements(
     public.list_story_jobs('00000000-0000-0000-0000-0000000000a1', null, 4,
       (r -> 3 ->> 'created_at')::timestamptz, (r -> 3 ->> 'job_id')::uuid)) e),
  (select jsonb_agg(id order by ord) from everything),
  'two pages of 4 list all 6 jobs once, newest first');
select is(
  (select count(*) from jsonb_array_elements(
     public.list_story_jobs('00000000-0000-0000-0000-0000000000a1', 'failed'))),
  2::bigint, 'the status filter keeps the 2 failed jobs');
select throws_ok(
  $$ select public.list_story_jobs('00000000-0000-0000-0000-0000000000a1', 'lost') $$,
  'PT422', 'invalid_status', 'an unknown status filter is refused');

select * from finish();
rollback;
