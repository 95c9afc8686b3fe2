-- Watch it write: what the generator has written reaches the story row while it writes
-- (issue 19). A story is `pending` (no text yet), `writing` (content is the text so far, only
-- ever appended to within one attempt), then `ready`, `failed` or `cancelled` (both keep the
-- text written so far). An attempt that fails and is retried starts the text afresh.

alter table public.stories drop constraint stories_status_check;
alter table public.stories add constraint stories_status_check
  check (status in ('pending', 'writing', 'ready', 'failed', 'cancelled'));
comment on column public.stories.content is
  'The story: the text so far while writing (appended to by write_story_texts), the whole of it once ready.';

-- Each write (`{"job_id", "fence", "text_from", "text"}`) puts `text` at character
-- `text_from` of the story of the job, when the attempt `fence` still runs it (processing
-- under that fence) and the story is pending or writing: the story becomes `writing` with
-- content = its first `text_from` characters || text (so a write repeated after a lost answer
-- changes nothing), and `words` counts it (as complete_story_job does). A write whose
-- `text_from` is beyond the stored text, or that would make it shorter, is not applied.
-- Returns, for each job whose attempt still runs, the characters its story now holds
-- (`{"job_id", "chars"}`): the writer's next write starts there. Rows are locked job before
-- story, each in id order, as the other writers of these rows do.
create function public.write_story_texts(p_writes jsonb)
returns jsonb
language sql
volatile
security definer
set search_path = ''
as $$
  with writes as (
    select w.job_id, w.fence, w.text_from, w.text
    from pg_catalog.jsonb_to_recordset(coalesce(p_writes, '[]'::jsonb))
      as w(job_id uuid, fence bigint, text_from integer, text text)
    where w.text_from >= 0 and w.text is not null
  ),
  owned as (
    -- Locked (shared, in id order: job before story, as every other writer does) and checked
    -- again under the lock: a write that waited for a fail, release or requeue of its
    -- attempt to commit finds the job no longer running it and writes nothing.
    select j.id as job_id, j.story_id, w.text_from, w.text
    from public.story_jobs j
    join writes w on w.job_id = j.id and w.fence = j.fence
    where j.status = 'processing'
    order by j.id
    for share of j
  ),
  locked as (
    select s.id from public.stories s
    where s.id in (select story_id from owned) and s.status in ('pending', 'writing')
    order by s.id
    for update of s
  ),
  written as (
    update public.stories s
    set content = pg_catalog.substr(coalesce(s.content, ''), 1, o.text_from) || o.text,
        words = pg_catalog.regexp_count(
          pg_catalog.substr(coalesce(s.content, ''), 1, o.text_from) || o.text, '\S+'),
        status = 'writing',
        updated_at = pg_catalog.now()
    from owned o
    where s.id = o.story_id and s.id in (select id from locked)
      and s.status in ('pending', 'writing')
      and pg_catalog.length(coalesce(s.content, '')) >= o.text_from
      -- never shorter: a write that lost a race with a later one of the same attempt
      and o.text_from + pg_catalog.length(o.text) >= pg_catalog.length(coalesce(s.content, ''))
    returning o.job_id, pg_catalog.length(s.content) as chars
  )
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'job_id', a.job_id, 'chars', a.chars) order by a.job_id), '[]'::jsonb)
  from (
    select job_id, chars from written
    union all
    select o.job_id, pg_catalog.length(coalesce(s.content, ''))
    from owned o join public.stories s on s.id = o.story_id
    where o.job_id not in (select job_id from written)
  ) a
$$;

revoke all on function public.write_story_texts(jsonb) from public, anon, authenticated;
grant execute on function public.write_story_texts(jsonb) to service_role;

-- A job that goes back to waiting (a retry, a lost or released attempt, an admin retry)
-- starts its text afresh: its story is pending again, without the text of the attempt before.
create function private.story_text_afresh()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  update public.stories
  set status = 'pending', content = null, words = null, completed_at = null,
      updated_at = pg_catalog.now()
  where id = new.story_id and status in ('writing', 'failed', 'pending')
    and (content is not null or status <> 'pending');
  return null;
end
$$;

create trigger story_jobs_text_afresh
  after update of status on public.story_jobs
  for each row
  when (new.status = 'pending' and old.status is distinct from 'pending')
  execute function private.story_text_afresh();
