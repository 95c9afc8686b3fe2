-- Reads the API serves: one job, a user's jobs (newest first, keyset-paged), one story.
-- With p_user_id given, another user's row is reported as missing (404, never 403), so the
-- API cannot reveal that it exists. Service role only, like every storyq function.

create function public.get_story_job(p_job_id uuid, p_user_id uuid default null)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into v_job from public.story_jobs
  where id = p_job_id and (p_user_id is null or user_id = p_user_id);
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  return private.job_json(v_job);
end
$$;

-- Newest first. The cursor is the (created_at, job_id) of the last job of the previous page;
-- created_at alone is not unique, the id breaks ties.
create function public.list_story_jobs(
  p_user_id uuid,
  p_status text default null,
  p_limit integer default 20,
  p_cursor_created_at timestamptz default null,
  p_cursor_id uuid default null
)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_jobs jsonb;
begin
  if p_status is not null
     and p_status not in ('pending', 'processing', 'completed', 'failed', 'cancelled') then
    raise exception using errcode = 'PT422', message = 'invalid_status',
      detail = pg_catalog.format('unknown job status %L', p_status);
  end if;
  select coalesce(pg_catalog.jsonb_agg(private.job_json(j) order by j.created_at desc, j.id desc),
                  '[]'::jsonb)
  into v_jobs
  from (
    select * from public.story_jobs
    where user_id = p_user_id
      and (p_status is null or status = p_status)
      and (
        p_cursor_created_at is null
        -- A cursor without an id means "older than this instant" (the max uuid sorts last).
        or (created_at, id) < (p_cursor_created_at,
                               coalesce(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
      )
    order by created_at desc, id desc
    -- The API pages by at most 100 (it asks for one more to know whether a next page exists).
    limit least(greatest(coalesce(p_limit, 20), 1), 1000)
  ) j;
  return v_jobs;
end
$$;

create function public.get_story(p_story_id uuid, p_user_id uuid default null)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_story public.stories;
begin
  select * into v_story from public.stories
  where id = p_story_id and (p_user_id is null or user_id = p_user_id);
  if not found then
    raise exception using errcode = 'PT404', message = 'story_not_found';
  end if;
  return (pg_catalog.to_jsonb(v_story) - 'id')
    || pg_catalog.jsonb_build_object(
      'story_id', v_story.id,
      -- One job per story; the newest wins should that ever change.
      'job_id', (select j.id from public.story_jobs j where j.story_id = v_story.id
                 order by j.created_at desc limit 1)
    );
end
$$;

revoke execute on function
  public.get_story_job(uuid, uuid),
  public.list_story_jobs(uuid, text, integer, timestamptz, uuid),
  public.get_story(uuid, uuid)
from public, anon, authenticated;

grant execute on function
  public.get_story_job(uuid, uuid),
  public.list_story_jobs(uuid, text, integer, timestamptz, uuid),
  public.get_story(uuid, uuid)
to service_role;
