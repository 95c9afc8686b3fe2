-- What the Supabase platform shows: Realtime changes of one's own jobs and stories, and a
-- dashboard view of the queue at a glance.

-- Realtime delivers a row change to a subscriber only when its RLS SELECT policy allows it
-- (the policies in stories_and_jobs). Full replica identity sends the old row on update too,
-- so a client sees which status a job left.
alter table public.story_jobs replica identity full;
alter table public.stories replica identity full;

do $$
begin
  if not exists (
    select from pg_catalog.pg_publication_tables
    where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'story_jobs'
  ) then
    alter publication supabase_realtime add table public.story_jobs;
  end if;
  if not exists (
    select from pg_catalog.pg_publication_tables
    where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'stories'
  ) then
    alter publication supabase_realtime add table public.stories;
  end if;
end
$$;

-- The queue at a glance, for the Table Editor / SQL editor and for queue_counts().
-- security_invoker: whoever reads it needs the rights on story_jobs itself (RLS applies), and
-- only the service role (and the dashboard's owner) may select it at all.
create view public.queue_overview
with (security_invoker = true)
as
select
  count(*) filter (where status = 'pending') as pending,
  count(*) filter (where status = 'processing') as processing,
  count(*) filter (where status = 'completed') as completed,
  count(*) filter (where status = 'failed') as failed,
  count(*) filter (where status = 'cancelled') as cancelled,
  min(queued_at) filter (where status = 'pending') as oldest_pending_at,
  (
    -- The rolling mean over the last 100 completions: what an ETA should be based on.
    select avg(extract(epoch from (recent.finished_at - recent.started_at)))::double precision
    from (
      select finished_at, started_at
      from public.story_jobs
      where status = 'completed' and started_at is not null
      order by finished_at desc
      limit 100
    ) recent
  ) as avg_generation_seconds
from public.story_jobs;

comment on view public.queue_overview is
  'Jobs per status, the oldest pending job and the mean generation time of the last 100.';

revoke all on public.queue_overview from public, anon, authenticated, service_role;
grant select on public.queue_overview to service_role;
