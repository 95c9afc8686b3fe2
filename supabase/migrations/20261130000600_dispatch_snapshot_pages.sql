-- The sweep's snapshot no longer re-reads the head of the queue (up to 1,000 pending rows, each
-- then checked in Redis) on every worker invocation: its work would grow with the backlog.
-- It reads the pending jobs changed recently (new, requeued or retried: where an enqueue lost
-- between Postgres and Redis would be) and one page of a walk over every pending job, which
-- goes on where the last snapshot stopped (private.dispatch_cursor) and starts again at the
-- head once it reached the tail. A sweep after a Redis flush walks every page.

create table private.dispatch_cursor (
  only_row boolean primary key default true check (only_row),
  queued_at timestamptz,
  job_id uuid
);
comment on table private.dispatch_cursor is
  'Where the dispatch snapshot''s walk over pending jobs goes on (null: at the head).';
insert into private.dispatch_cursor default values;

drop function public.dispatch_snapshot(integer);

-- What Redis follows, read in one statement (so a job that starts while it runs is in exactly
-- one list): the attempts processing (their leases are restored after a flush), and pending
-- jobs in queue order (delayed retries with their next_attempt_at):
-- - p_recent_seconds: those whose next attempt is due from that many seconds ago on (new jobs,
--   requeued and retried ones, delayed ones), oldest first, at most p_recent_limit (default
--   p_limit);
-- - p_page: the next p_page of the walk over every pending job in queue order, going on where
--   the last call stopped (private.dispatch_cursor, locked while it moves); `wrapped` says the
--   walk reached the tail (it starts again at the head next time);
-- - p_page with p_after (`{}` for the head, or the `last` of the previous page): the caller's
--   own walk, the next p_page after that place; the shared cursor is left alone (a rebuild
--   after a flush walks from the head this way);
-- - both p_recent_seconds and p_page null: the first p_limit pending jobs (the head).
-- `last` is the page's last job ({queued_at, job_id}, null for an empty page). Costs
-- O(p_limit + p_recent_limit + p_page) rows, whatever the backlog (indexes on queued_at and
-- next_attempt_at of pending rows).
create function public.dispatch_snapshot(
  p_limit integer default 1000,
  p_recent_seconds double precision default null,
  p_page integer default null,
  p_recent_limit integer default null,
  p_after jsonb default null
)
returns jsonb
language sql
volatile
security definer
set search_path = ''
as $$
  with cursor_row as (
    select c.queued_at, c.job_id from private.dispatch_cursor c
    where c.only_row and p_page is not null and p_after is null
    for update
  ),
  walk_from as (
    select
      coalesce(case when p_after is null then (select queued_at from cursor_row)
                    else (p_after ->> 'queued_at')::timestamptz end,
               '-infinity'::timestamptz) as queued_at,
      coalesce(case when p_after is null then (select job_id from cursor_row)
                    else (p_after ->> 'job_id')::uuid end,
               '00000000-0000-0000-0000-000000000000'::uuid) as job_id
  ),
  page as (
    select j.id, j.queued_at from public.story_jobs j
    where p_page is not null and j.status = 'pending'
      and (j.queued_at, j.id) > ((select queued_at from walk_from), (select job_id from walk_from))
    order by j.queued_at, j.id
    limit greatest(coalesce(p_page, 0), 0)
  ),
  page_end as (
    select p.queued_at, p.id from page p order by p.queued_at desc, p.id desc limit 1
  ),
  moved as (
    update private.dispatch_cursor c
    set queued_at = case when (select count(*) from page) < p_page then null
                         else (select queued_at from page_end) end,
        job_id = case when (select count(*) from page) < p_page then null
                      else (select id from page_end) end
    where p_page is not null and p_after is null and c.only_row
    returning c.queued_at is null as wrapped
  ),
  recent as (
    select j.id from public.story_jobs j
    where p_recent_seconds is not null and j.status = 'pending'
      and j.next_attempt_at >= pg_catalog.now()
        - pg_catalog.make_interval(secs => greatest(p_recent_seconds, 0))
    order by j.next_attempt_at, j.id
    limit greatest(coalesce(p_recent_limit, p_limit, 1000), 0)
  ),
  head as (
    select j.id from public.story_jobs j
    where p_page is null and p_recent_seconds is null and j.status = 'pending'
    order by j.queued_at, j.id
    limit greatest(coalesce(p_limit, 1000), 0)
  ),
  chosen as (
    select id from page union select id from recent union select id from head
  )
  select pg_catalog.jsonb_build_object(
    'running', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'job_id', r.id, 'user_id', r.user_id, 'fence', r.fence, 'attempt', r.attempts,
          'heartbeat_at', r.heartbeat_at
        ) order by r.heartbeat_at, r.id), '[]'::jsonb)
      from (
        select * from public.story_jobs where status = 'processing'
        order by heartbeat_at, id
        limit greatest(coalesce(p_limit, 1000), 0)
      ) r
    ),
    'pending', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'job_id', p.id, 'user_id', p.user_id, 'fence', p.fence, 'attempts', p.attempts,
          'queued_at', p.queued_at, 'next_attempt_at', p.next_attempt_at,
          'priority', p.priority
        ) order by p.queued_at, p.id), '[]'::jsonb)
      from public.story_jobs p
      where p.id in (select id from chosen) and p.status = 'pending'
    ),
    'wrapped', coalesce(
      (select wrapped from moved),
      p_page is not null and (select count(*) from page) < p_page
    ),
    'last', (select pg_catalog.jsonb_build_object('queued_at', e.queued_at, 'job_id', e.id)
             from page_end e)
  )
$$;

revoke all on function public.dispatch_snapshot(integer, double precision, integer, integer, jsonb)
  from public, anon, authenticated;
grant execute on function public.dispatch_snapshot(integer, double precision, integer, integer, jsonb)
  to service_role;
