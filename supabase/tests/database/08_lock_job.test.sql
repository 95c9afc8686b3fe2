-- private.lock_job: the one "lock the job row or raise job_not_found" of the job functions.
begin;
select plan(20);

insert into auth.users (id) values
  ('00000000-0000-0000-0000-0000000000a1'),
  ('00000000-0000-0000-0000-0000000000b2');
create temp table granted as
select public.grant_credits('00000000-0000-0000-0000-0000000000a1', 10) as balance;
create temp table j as
select (public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'a prompt', 'a title',
  null, null, 500, 1, 3) ->> 'job_id')::uuid as id;
create function pg_temp.job() returns uuid language sql as $$ select id from j $$;

-- Its shape: a private helper like the others in `private`, for the security definer
-- functions only.
select has_function('private', 'lock_job', array['uuid', 'uuid'],
  'private.lock_job(uuid, uuid) exists');
select is((select prorettype::regtype from pg_proc
           where oid = 'private.lock_job(uuid, uuid)'::regprocedure),
  'public.story_jobs'::regtype, 'it returns the job row');
select is((select pronargdefaults from pg_proc
           where oid = 'private.lock_job(uuid, uuid)'::regprocedure), 1::int2,
  'the user is optional');
select isnt_definer('private', 'lock_job', array['uuid', 'uuid'],
  'it runs with its caller''s rights (its callers are the security definers)');
select ok((select 'search_path=""' = any (proconfig) from pg_proc
           where oid = 'private.lock_job(uuid, uuid)'::regprocedure),
  'it pins search_path to empty');
select is_empty(
  $$ select r from unnest(array['public', 'anon', 'authenticated', 'service_role']) r
     where has_function_privilege(r, 'private.lock_job(uuid, uuid)', 'execute') $$,
  'no API role may execute it');

-- What it does.
select is((private.lock_job(pg_temp.job())).id, pg_temp.job(), 'it returns the job''s row');
select ok((select xmax = pg_current_xact_id()::xid from public.story_jobs
           where id = pg_temp.job()),
  'the row is locked by this transaction');
select is((private.lock_job(pg_temp.job(), '00000000-0000-0000-0000-0000000000a1')).status,
  'pending', 'the owner''s job is found when the user is given');
select throws_ok(
  format('select private.lock_job(%L, %L)', pg_temp.job(), '00000000-0000-0000-0000-0000000000b2'),
  'PT404', 'job_not_found', 'another user''s job is reported as missing');
select throws_ok($$ select private.lock_job('00000000-0000-0000-0000-000000000000') $$,
  'PT404', 'job_not_found', 'an unknown job: job_not_found');

-- Its callers refuse an unknown job as they did before the helper.
select throws_ok(
  $$ select public.start_story_job('00000000-0000-0000-0000-000000000000', 1, 5, 60) $$,
  'PT404', 'job_not_found', 'start: unknown job');
select throws_ok(
  $$ select public.complete_story_job('00000000-0000-0000-0000-000000000000', 1, 'x', null,
     '{}') $$,
  'PT404', 'job_not_found', 'complete: unknown job');
select throws_ok(
  $$ select public.fail_story_job('00000000-0000-0000-0000-000000000000', 1, 'e', 'm', true) $$,
  'PT404', 'job_not_found', 'fail: unknown job');
select throws_ok(
  $$ select public.release_story_job('00000000-0000-0000-0000-000000000000', 1) $$,
  'PT404', 'job_not_found', 'release: unknown job');
select throws_ok(
  $$ select public.retry_failed_story_job('00000000-0000-0000-0000-000000000000') $$,
  'PT404', 'job_not_found', 'retry: unknown job');
select throws_ok(
  $$ select public.cancel_story_job('00000000-0000-0000-0000-000000000000') $$,
  'PT404', 'job_not_found', 'cancel: unknown job');
select throws_ok(
  format('select public.cancel_story_job(%L, %L)', pg_temp.job(),
    '00000000-0000-0000-0000-0000000000b2'),
  'PT404', 'job_not_found', 'cancel: another user''s job');
select is(
  public.requeue_stalled_story_job('00000000-0000-0000-0000-000000000000', 1, 60) ->> 'outcome',
  'gone', 'the sweeper''s requeue still answers `gone` for an unknown job, without raising');
select is(public.cancel_story_job(pg_temp.job(), '00000000-0000-0000-0000-0000000000a1')
          ->> 'status',
  'cancelled', 'the owner cancels their job through the helper');

select * from finish();
rollback;
