-- The job state machine: start, heartbeat, complete, fail (retry and final), requeue, cancel,
-- and the reads the API and the sweeper use. Every write of an attempt is fenced.
begin;
select plan(59);

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

-- start: pending -> processing under the fenced attempt number.
select throws_ok(format('select public.start_story_job(%L, 2)', pg_temp.job(1)),
  'PT409', 'stale_attempt', 'start refuses an attempt that skips one');
select is(public.start_story_job(pg_temp.job(1), 1) - 'job_id' - 'story_id',
  jsonb_build_object('user_id', '00000000-0000-0000-0000-0000000000a1', 'prompt', 'prompt 1',
    'title', 'title 1', 'genre', 'fantasy', 'language', 'en', 'target_words', 500,
    'attempt', 1, 'max_attempts', 3),
  'start returns what the worker needs');
select results_eq(
  format('select status, attempts, started_at is not null, heartbeat_at is not null
          from public.story_jobs where id = %L', pg_temp.job(1)),
  $$ values ('processing'::text, 1, true, true) $$,
  'the job is processing under attempt 1');
select throws_ok(format('select public.start_story_job(%L, 1)', pg_temp.job(1)),
  'PT409', 'stale_attempt', 'a second start of the same attempt is refused');

-- heartbeat: only the running attempt.
select is(public.heartbeat_story_job(pg_temp.job(1), 1, 120), true, 'heartbeat of the attempt');
select is((select progress_words from public.story_jobs where id = pg_temp.job(1)), 120,
  'heartbeat records progress');
select is(public.heartbeat_story_job(pg_temp.job(1), 2), false, 'heartbeat of another attempt');
select is(public.heartbeat_story_job(pg_temp.job(2), 1), false, 'heartbeat of a pending job');

-- fail, retryable: back to pending with a delay.
select throws_ok(format($$select public.complete_story_job(%L, 2, 'x', null, '{}')$$,
    pg_temp.job(1)),
  'PT409', 'stale_attempt', 'complete refuses a future attempt');
create temp table retry1 as
select public.fail_story_job(pg_temp.job(1), 1, 'upstream_timeout', 'took too long', true, 30) r;
select is((select r - 'next_attempt_at' - 'job_id' from retry1),
  '{"status": "pending", "attempts": 1, "refunded": false}'::jsonb,
  'a retryable failure puts the job back to pending');
select is((select (r ->> 'next_attempt_at')::timestamptz from retry1),
  now() + interval '30 seconds', 'the retry is due after the delay');
select results_eq(
  format('select error_code, error_message, refunded from public.story_jobs where id = %L',
    pg_temp.job(1)),
  $$ values ('upstream_timeout'::text, 'took too long'::text, false) $$,
  'the error of the attempt is recorded');

-- The old attempt has been superseded: it can neither complete nor fail the job.
select ok(public.start_story_job(pg_temp.job(1), 2) is not null, 'attempt 2 starts');
select throws_ok(format($$select public.complete_story_job(%L, 1, 'late', null, '{}')$$,
    pg_temp.job(1)),
  'PT409', 'stale_attempt', 'the stale attempt cannot complete');
select throws_ok(format($$select public.fail_story_job(%L, 1, 'late', 'late', false)$$,
    pg_temp.job(1)),
  'PT409', 'stale_attempt', 'the stale attempt cannot fail');

-- complete: the story becomes ready.
select is(public.complete_story_job(pg_temp.job(1), 2, 'one two  three', 'A new title',
    '{"quality": 0.9}'),
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
select throws_ok(format('select public.start_story_job(%L, 3)', pg_temp.job(1)),
  'PT409', 'job_not_startable', 'a completed job cannot start again');
select throws_ok(format('select public.cancel_story_job(%L)', pg_temp.job(1)),
  'PT409', 'job_not_cancellable', 'a completed job cannot be cancelled');

-- Three retryable failures: failed, refunded exactly once.
select ok(public.start_story_job(pg_temp.job(2), 1) is not null, 'job 2 attempt 1');
select is(public.fail_story_job(pg_temp.job(2), 1, 'e', 'm', true) ->> 'status', 'pending',
  'attempt 1 of 3 fails: retry');
select ok(public.start_story_job(pg_temp.job(2), 2) is not null, 'job 2 attempt 2');
select is(public.fail_story_job(pg_temp.job(2), 2, 'e', 'm', true) ->> 'status', 'pending',
  'attempt 2 of 3 fails: retry');
select ok(public.start_story_job(pg_temp.job(2), 3) is not null, 'job 2 attempt 3');
select is(public.fail_story_job(pg_temp.job(2), 3, 'e', 'm', true) - 'job_id',
  '{"status": "failed", "attempts": 3, "refunded": true, "next_attempt_at": null}'::jsonb,
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
select ok(public.start_story_job(pg_temp.job(3), 1) is not null, 'job 3 attempt 1');
select is(public.fail_story_job(pg_temp.job(3), 1, 'content_policy', 'no', false) ->> 'status',
  'failed', 'a non-retryable failure fails the job on its first attempt');

-- requeue a stalled attempt: counts as a failed attempt.
select ok(public.start_story_job(pg_temp.job(4), 1) is not null, 'job 4 attempt 1');
update public.story_jobs set heartbeat_at = now() - interval '10 minutes' where id = pg_temp.job(4);
select is(public.stalled_story_jobs(60),
  jsonb_build_array(jsonb_build_object('job_id', pg_temp.job(4), 'attempt', 1,
    'user_id', '00000000-0000-0000-0000-0000000000a1',
    'heartbeat_at', now() - interval '10 minutes')),
  'a silent processing job is reported as stalled');
select is(public.stalled_story_jobs(3600), '[]'::jsonb, 'not stalled for an hour');
select is(public.requeue_stalled_story_job(pg_temp.job(4), 1) - 'next_attempt_at' - 'job_id',
  '{"status": "pending", "attempts": 1, "refunded": false}'::jsonb,
  'the stalled attempt is requeued');
select is((select error_code from public.story_jobs where id = pg_temp.job(4)), 'worker_lost',
  'recorded as worker_lost');
select throws_ok(format('select public.requeue_stalled_story_job(%L, 1)', pg_temp.job(4)),
  'PT409', 'stale_attempt', 'a requeued attempt cannot be requeued twice');

-- dispatchable: every pending job in queue order (for rebuilding Redis).
select is(
  (select jsonb_agg(e ->> 'job_id' order by ord) from
     jsonb_array_elements(public.dispatchable_story_jobs()) with ordinality x(e, ord)),
  (select jsonb_agg(id::text order by queued_at, id) from public.story_jobs
   where status = 'pending'),
  'dispatchable lists the pending jobs in queue order');
select ok(pg_temp.job(4)::text in (select e ->> 'job_id'
          from jsonb_array_elements(public.dispatchable_story_jobs()) e),
  'the requeued job is dispatchable');
select is(jsonb_array_length(public.dispatchable_story_jobs(1)), 1, 'dispatchable obeys p_limit');

-- cancel: pending only, by its owner, refunded.
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
select throws_ok(format('select public.cancel_story_job(%L)', pg_temp.job(5)),
  'PT409', 'job_not_cancellable', 'a cancelled job cannot be cancelled again');
select throws_ok(format('select public.start_story_job(%L, 1)', pg_temp.job(5)),
  'PT409', 'job_not_startable', 'a cancelled job cannot start');
select ok(public.start_story_job(pg_temp.job(6), 1) is not null, 'job 6 attempt 1');
select throws_ok(format('select public.cancel_story_job(%L)', pg_temp.job(6)),
  'PT409', 'job_not_cancellable', 'a processing job cannot be cancelled');

-- Unknown ids.
select throws_ok($$ select public.start_story_job('00000000-0000-0000-0000-000000000000', 1) $$,
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
