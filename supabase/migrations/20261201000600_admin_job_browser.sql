-- The operator's job browser (issue 22): every user's jobs, newest first, filtered and
-- keyset-paged, and one job with its story so far and the history of its attempts.
-- Same rules as the other operator functions: security definer, empty search_path, service
-- role only (the API checks that its caller is an admin).

-- An attempt keeps the message it failed with: the job row keeps only the last attempt's.
alter table public.story_job_attempts add column error_message text;
comment on column public.story_job_attempts.error_message is
  'The message of the error the attempt ended with (retrying, failed, lost); null otherwise, and for attempts that ended before it was recorded.';

-- private.track_attempt (20261201000300_attempt_usage.sql) as it was, also closing the row with
-- the error's message.
create or replace function private.track_attempt()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_outcome text;
begin
  if new.status = 'processing' then
    -- No "on conflict": a fence runs at most one attempt, and the key keeps it so.
    insert into public.story_job_attempts (job_id, fence, attempt, started_at)
    values (new.id, new.fence, new.attempts, coalesce(new.started_at, pg_catalog.now()));
    return null;
  end if;
  if old.status <> 'processing' then
    return null;
  end if;
  v_outcome := case
    when new.status = 'cancelled' then 'cancelled'
    -- A release gives the attempt back uncounted (and leaves the job's error as it was).
    when new.status = 'pending' and new.attempts < old.attempts then 'released'
    -- The code the sweep gives an attempt whose heartbeat outlived its lease (fail_attempt
    -- from requeue_stalled_story_job and start_story_job's running_attempts).
    when new.error_code = 'worker_lost' then 'lost'
    when new.status = 'pending' then 'retrying'
    else new.status  -- completed or failed
  end;
  update public.story_job_attempts
  set ended_at = coalesce(new.finished_at, pg_catalog.clock_timestamp()),
      outcome = v_outcome,
      -- Only these outcomes set the job's error; otherwise it may be an earlier attempt's.
      error_code = case when v_outcome in ('retrying', 'failed', 'lost') then new.error_code end,
      error_message = case
        when v_outcome in ('retrying', 'failed', 'lost') then new.error_message
      end
  where job_id = old.id and fence = old.fence;
  return null;
end
$$;

-- The browser's default order (every user's jobs, newest first) and its status filter, read
-- in index order and stopped at the page's end. The user filter has its own indexes
-- (story_jobs_user_id_*); a tier or time filter is read along these.
create index story_jobs_created_at_idx on public.story_jobs (created_at desc, id desc);
create index story_jobs_status_created_at_idx
  on public.story_jobs (status, created_at desc, id desc);

-- Every user's jobs, newest first (created_at desc, id desc), each as private.job_json plus
-- `words` (its story's word count as the story row holds it: null before the first text).
-- Filters, each optional: p_statuses (any of them; null or empty: every status), p_user_id,
-- p_tier (the tier at enqueue; '(none)': jobs enqueued before tiers, as queue_counts names
-- them), p_created_after (inclusive) and p_created_before (exclusive). The cursor is the
-- (created_at, job_id) of the last job of the previous page, as in list_story_jobs.
-- Raises invalid_status (PT422) for a status that does not exist.
create function public.list_all_story_jobs(
  p_statuses text[] default null,
  p_user_id uuid default null,
  p_tier text default null,
  p_created_after timestamptz default null,
  p_created_before timestamptz default null,
  p_limit integer default 25,
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
  v_unknown text;
  v_jobs jsonb;
begin
  select s into v_unknown from pg_catalog.unnest(p_statuses) s
  where s is null or s not in ('pending', 'processing', 'completed', 'failed', 'cancelled')
  limit 1;
  if found then
    raise exception using errcode = 'PT422', message = 'invalid_status',
      detail = pg_catalog.format('unknown job status %L', v_unknown);
  end if;
  select coalesce(pg_catalog.jsonb_agg(
           private.job_json(j) || pg_catalog.jsonb_build_object('words', s.words)
           order by j.created_at desc, j.id desc),
         '[]'::jsonb)
  into v_jobs
  from (
    select * from public.story_jobs
    where (coalesce(pg_catalog.cardinality(p_statuses), 0) = 0 or status = any (p_statuses))
      and (p_user_id is null or user_id = p_user_id)
      and (p_tier is null or tier = p_tier or (p_tier = '(none)' and tier is null))
      and (p_created_after is null or created_at >= p_created_after)
      and (p_created_before is null or created_at < p_created_before)
      and (
        p_cursor_created_at is null
        -- A cursor without an id means "older than this instant" (the max uuid sorts last).
        or (created_at, id) < (p_cursor_created_at,
                               coalesce(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
      )
    order by created_at desc, id desc
    -- The API pages by at most 100 (it asks for one more to know whether a next page exists).
    limit least(greatest(coalesce(p_limit, 25), 1), 1000)
  ) j
  left join public.stories s on s.id = j.story_id;
  return v_jobs;
end
$$;

-- One job for an operator: private.job_json plus its story (`prompt`, `genre`, `language`,
-- `story_status`, `content` and `words` as the story row holds them: the text so far while
-- it is written) and `attempt_history`: every row of story_job_attempts of the job but its
-- job_id, oldest first. A stable function reads all of it in one snapshot, so the story and
-- the attempts are those of the same moment as the job. Raises job_not_found (PT404).
create function public.story_job_details(p_job_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_story public.stories;
begin
  select * into v_job from public.story_jobs where id = p_job_id;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  select * into v_story from public.stories where id = v_job.story_id;
  return private.job_json(v_job) || pg_catalog.jsonb_build_object(
    'prompt', v_story.prompt,
    'genre', v_story.genre,
    'language', v_story.language,
    'story_status', v_story.status,
    'content', v_story.content,
    'words', v_story.words,
    'attempt_history', coalesce(
      (select pg_catalog.jsonb_agg(pg_catalog.to_jsonb(a) - 'job_id'
                                   order by a.started_at, a.fence)
       from public.story_job_attempts a
       where a.job_id = v_job.id),
      '[]'::jsonb)
  );
end
$$;

revoke execute on function
  public.list_all_story_jobs(text[], uuid, text, timestamptz, timestamptz, integer, timestamptz,
                             uuid),
  public.story_job_details(uuid)
from public, anon, authenticated;

grant execute on function
  public.list_all_story_jobs(text[], uuid, text, timestamptz, timestamptz, integer, timestamptz,
                             uuid),
  public.story_job_details(uuid)
to service_role;
