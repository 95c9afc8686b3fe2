-- write_story_texts: the text a running attempt has written reaches its story while it
-- writes; a retried job starts its text afresh (issue 19).
begin;
select plan(14);

insert into auth.users (id) values ('00000000-0000-0000-0000-0000000000a1');
select public.grant_credits('00000000-0000-0000-0000-0000000000a1', 10);
create temp table j as
select (public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'a prompt', 'a title',
  null, null, 500, 1, 3) ->> 'job_id')::uuid as id;
create function pg_temp.job() returns uuid language sql as $$ select id from j $$;
create function pg_temp.fence() returns bigint language sql
as $$ select fence from public.story_jobs where id = pg_temp.job() $$;
create function pg_temp.story() returns public.stories language sql
as $$ select s.* from public.stories s join public.story_jobs j on j.story_id = s.id
      where j.id = pg_temp.job() $$;
create function pg_temp.write(p_fence bigint, p_from int, p_text text)
returns jsonb language sql as $$
  select public.write_story_texts(pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
    'job_id', pg_temp.job(), 'fence', p_fence, 'text_from', p_from, 'text', p_text)))
$$;

select has_function('public', 'write_story_texts', array['jsonb'],
  'write_story_texts(jsonb) exists');
select is(pg_temp.write(pg_temp.fence(), 0, 'Once'), '[]'::jsonb,
  'a job that is not running takes no text');
select is((pg_temp.story()).status, 'pending', 'its story is still pending');

create temp table first_attempt as select pg_temp.fence() as fence;
select is(public.start_story_job(pg_temp.job(), pg_temp.fence(), 5, 60) ->> 'started',
  'true', 'the attempt starts');
select is(pg_temp.write((select fence from first_attempt), 0, 'Once upon'),
  jsonb_build_array(jsonb_build_object('job_id', pg_temp.job(), 'chars', 9)),
  'the first words go in; the answer says how many characters the story holds');
select results_eq($$ select status, content, words from pg_temp.story() $$,
  $$ values ('writing'::text, 'Once upon'::text, 2) $$,
  'the story is writing, with the text so far and its words');
select is(pg_temp.write((select fence from first_attempt), 9, ' a time') -> 0 -> 'chars',
  '16'::jsonb, 'the next write appends at the character it names');
select is(pg_temp.write((select fence from first_attempt), 9, ' a time') -> 0 -> 'chars',
  '16'::jsonb, 'the same write again (an answer lost) changes nothing');
select is(pg_temp.write((select fence from first_attempt), 40, 'gap') -> 0 -> 'chars',
  '16'::jsonb, 'a write beyond the stored text is refused; the answer says where to start');
select is((pg_temp.story()).content, 'Once upon a time', 'the story holds the text in order');
select is(pg_temp.write((select fence from first_attempt) + 1000, 16, ' there'), '[]'::jsonb,
  'a write under another fence is ignored');

-- A retry starts afresh: the story is pending again, without the failed attempt's text.
select is(public.fail_story_job(pg_temp.job(), (select fence from first_attempt), 'e', 'm',
  true) ->> 'status', 'pending', 'the attempt fails and the job waits for its retry');
select results_eq($$ select status, content, words from pg_temp.story() $$,
  $$ values ('pending'::text, null::text, null::int) $$,
  'the story is pending again, its text gone');
select is(pg_temp.write((select fence from first_attempt), 16, ' there'), '[]'::jsonb,
  'the failed attempt can no longer write');

select * from finish();
rollback;
