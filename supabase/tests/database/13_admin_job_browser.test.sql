-- The operator's job browser: every user's jobs filtered and keyset-paged
-- (list_all_story_jobs), one job with its story and every attempt (story_job_details), the
-- error message each attempt keeps, the indexes and the rights.
begin;
select plan(29);

-- These cases run several jobs of one user at once: the per-user cap of the default plan
-- (12_plans_and_tiers) is lifted for them.
update public.plans set max_active_per_user = null where is_default;

insert into auth.users (id, raw_app_meta_data) values
  ('00000000-0000-0000-0000-0000000000f1', '{}'),
  ('00000000-0000-0000-0000-0000000000f2', '{"tier": "pro"}');
select public.grant_credits(id, 10) from auth.users
where id in ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-0000000000f2');

-- Given six jobs created a day apart (a transaction's now() would give them one instant):
-- 1, 3, 5 of the free user f1, 2, 4, 6 of the pro user f2.
create temp table j as
select n, (public.enqueue_story_job(
    case when n % 2 = 1 then '00000000-0000-0000-0000-0000000000f1'::uuid
         else '00000000-0000-0000-0000-0000000000f2'::uuid end,
    'prompt ' || n, 'title ' || n, 'genre ' || n, 'en', 500, 1, 3) ->> 'job_id')::uuid as id
from generate_series(1, 6) n;
update public.story_jobs set created_at = '2026-01-01T00:00:00Z'::timestamptz
  + pg_catalog.make_interval(days => j.n)
from j where story_jobs.id = j.id;
create function pg_temp.job(p_n int) returns uuid language sql
as $$ select id from j where n = p_n $$;
create function pg_temp.fence(p_n int) returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job(p_n) $$;
-- The job numbers of a listing, in its order.
create function pg_temp.listed(p_jobs jsonb) returns int[] language sql
as $$ select coalesce(array_agg(j.n order by e.i), '{}')
      from jsonb_array_elements(p_jobs) with ordinality e(job, i)
      join j on j.id = (e.job ->> 'job_id')::uuid $$;

-- Job 2 completes; job 3 fails once (retried), then again for good; job 4 is writing.
do $$
begin
  perform public.start_story_job(pg_temp.job(2), pg_temp.fence(2), 50, 60);
  perform public.complete_story_job(pg_temp.job(2), pg_temp.fence(2), 'the end', null, '{}');
  perform public.start_story_job(pg_temp.job(3), pg_temp.fence(3), 50, 60);
  perform public.fail_story_job(pg_temp.job(3), pg_temp.fence(3), 'upstream_timeout',
    'no answer in 60 s', true);
  perform public.start_story_job(pg_temp.job(3), pg_temp.fence(3), 50, 60);
  perform public.fail_story_job(pg_temp.job(3), pg_temp.fence(3), 'content_filter',
    'the model refused', false);
  perform public.start_story_job(pg_temp.job(4), pg_temp.fence(4), 50, 60);
  perform public.write_story_texts(jsonb_build_array(jsonb_build_object(
    'job_id', pg_temp.job(4), 'fence', pg_temp.fence(4), 'text_from', 0,
    'text', 'Once upon a time')));
end
$$;
-- Job 6 was enqueued before tiers.
update public.story_jobs set tier = null where id = pg_temp.job(6);

-- Rights and indexes.
select ok(not has_function_privilege('authenticated',
  'public.list_all_story_jobs(text[], uuid, text, timestamptz, timestamptz, integer, '
  'timestamptz, uuid)', 'execute'), 'users may not list every job');
select ok(not has_function_privilege('anon', 'public.story_job_details(uuid)', 'execute'),
  'nor read any job''s details');
select ok(has_function_privilege('service_role', 'public.story_job_details(uuid)', 'execute'),
  'the service role may');
select has_index('public', 'story_jobs', 'story_jobs_created_at_idx',
  'an index serves the default order');
select has_index('public', 'story_jobs', 'story_jobs_status_created_at_idx',
  'and one the status filter');

-- Listing.
select is(pg_temp.listed(public.list_all_story_jobs()), array[6, 5, 4, 3, 2, 1],
  'every user''s jobs, newest first');
select is(pg_temp.listed(public.list_all_story_jobs(p_statuses => array['failed'])), array[3],
  'one status');
select is(pg_temp.listed(public.list_all_story_jobs(
    p_statuses => array['pending', 'completed'])), array[6, 5, 2, 1],
  'any of several statuses');
select is(pg_temp.listed(public.list_all_story_jobs(p_statuses => array[]::text[])),
  array[6, 5, 4, 3, 2, 1], 'no status at all is no filter');
select throws_ok($$ select public.list_all_story_jobs(p_statuses => array['pending', 'done']) $$,
  'PT422', 'invalid_status', 'an unknown status is refused');
select is(pg_temp.listed(public.list_all_story_jobs(
    p_user_id => '00000000-0000-0000-0000-0000000000f1')), array[5, 3, 1], 'one user''s');
select is(pg_temp.listed(public.list_all_story_jobs(p_tier => 'pro')), array[4, 2],
  'one tier (at enqueue)');
select is(pg_temp.listed(public.list_all_story_jobs(p_tier => '(none)')), array[6],
  '(none): the jobs from before tiers');
select is(pg_temp.listed(public.list_all_story_jobs(
    p_created_after => '2026-01-03T00:00:00Z', p_created_before => '2026-01-05T00:00:00Z')),
  array[3, 2], 'created_after includes its instant (job 2), created_before excludes its own '
  '(job 4)');
select is(pg_temp.listed(public.list_all_story_jobs(
    p_user_id => '00000000-0000-0000-0000-0000000000f2', p_statuses => array['processing'],
    p_tier => 'pro')), array[4], 'the filters combine');
select is(pg_temp.listed(public.list_all_story_jobs(p_limit => 2)), array[6, 5],
  'a page holds at most the limit');
select is(pg_temp.listed(public.list_all_story_jobs(p_limit => 2,
    p_cursor_created_at => (select created_at from public.story_jobs where id = pg_temp.job(5)),
    p_cursor_id => pg_temp.job(5))), array[4, 3], 'the cursor continues after its job');
select is(pg_temp.listed(public.list_all_story_jobs(p_statuses => array['pending'],
    p_cursor_created_at => (select created_at from public.story_jobs where id = pg_temp.job(5)),
    p_cursor_id => pg_temp.job(5))), array[1], 'within the filters');
select is((select array_agg((e ->> 'words')::int order by (e ->> 'created_at')::timestamptz)
           from jsonb_array_elements(public.list_all_story_jobs(
             p_user_id => '00000000-0000-0000-0000-0000000000f2')) e),
  array[2, 4, null], 'each job with its story''s words so far (the completed one''s, the '
  'written one''s, none yet)');

-- One job: the story and every attempt, oldest first, each with its own error.
select is(public.story_job_details(pg_temp.job(3)) - 'attempt_history'
            - array['created_at', 'queued_at', 'started_at', 'heartbeat_at', 'finished_at',
                    'next_attempt_at', 'updated_at', 'fence', 'request_hash', 'job_id',
                    'story_id', 'user_id'],
  jsonb_build_object('title', 'title 3', 'target_words', 500, 'status', 'failed',
    'attempts', 2, 'max_attempts', 3, 'priority', 0, 'tier', 'free', 'idempotency_key', null,
    'error_code', 'content_filter', 'error_message', 'the model refused', 'result', null,
    'refunded', true, 'progress_words', 0, 'cost', 1, 'cancel_requested', false,
    'cancel_requested_at', null, 'cancel_reason', null, 'prompt', 'prompt 3',
    'genre', 'genre 3', 'language', 'en', 'story_status', 'failed', 'content', null,
    'words', null),
  'the job, its request and its story');
select is((select array_agg(e ->> 'outcome' order by i)
           from jsonb_array_elements(public.story_job_details(pg_temp.job(3)) -> 'attempt_history')
             with ordinality a(e, i)),
  array['retrying', 'failed'], 'its attempts, oldest first');
select is((select array_agg((e ->> 'error_code') || ': ' || (e ->> 'error_message') order by i)
           from jsonb_array_elements(public.story_job_details(pg_temp.job(3)) -> 'attempt_history')
             with ordinality a(e, i)),
  array['upstream_timeout: no answer in 60 s', 'content_filter: the model refused'],
  'each attempt with its own error and message');
select is((select array_agg(e ->> 'attempt' order by i)
           from jsonb_array_elements(public.story_job_details(pg_temp.job(3)) -> 'attempt_history')
             with ordinality a(e, i)),
  array['1', '2'], 'numbered in order');
select is((select pg_catalog.array_agg(k order by k) from jsonb_object_keys(
             public.story_job_details(pg_temp.job(3)) -> 'attempt_history' -> 0) k),
  array['attempt', 'completion_tokens', 'cost_usd', 'ended_at', 'error_code', 'error_message',
        'fence', 'model', 'outcome', 'prompt_tokens', 'started_at', 'usage_estimated',
        'usage_recorded_at'],
  'an attempt carries its times, outcome, error and usage');
select is(public.story_job_details(pg_temp.job(4)) -> 'attempt_history' -> 0 -> 'outcome',
  'null'::jsonb, 'a running attempt has no outcome yet');
select is((public.story_job_details(pg_temp.job(4)) ->> 'content')
            || ' / ' || (public.story_job_details(pg_temp.job(4)) ->> 'story_status'),
  'Once upon a time / writing', 'a running job shows the text written so far');
select is(public.story_job_details(pg_temp.job(2)) ->> 'content', 'the end',
  'a completed one its story');
select is(public.story_job_details(pg_temp.job(1)) -> 'attempt_history', '[]'::jsonb,
  'a job never started has no attempts');
select throws_ok($$ select public.story_job_details('00000000-0000-0000-0000-000000000000') $$,
  'PT404', 'job_not_found', 'an unknown job is not found');

select * from finish();
rollback;
