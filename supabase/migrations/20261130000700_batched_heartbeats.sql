-- One heartbeat request per worker process and tick, whatever the number of attempts it runs:
-- at MAX_ACTIVE_JOBS = 500 a heartbeat per attempt every 2 s was 250 PostgREST calls (and
-- Postgres transactions) a second. Same rule as heartbeat_story_job, row by row.

-- Each beat (`{"job_id", "fence", "words"}`, words optional) records liveness and progress
-- of the attempt `fence` when it still owns its job (processing under that fence). Returns
-- the beats recorded, as `{"job_id", "fence"}` objects: an attempt missing from the answer no
-- longer owns its job (superseded, or finished by someone else) and its worker must stop. Rows are locked in
-- id order, so two batches never wait on each other in a cycle.
create function public.heartbeat_story_jobs(p_beats jsonb)
returns jsonb
language sql
volatile
security definer
set search_path = ''
as $$
  with beats as (
    select b.job_id, b.fence, b.words
    from pg_catalog.jsonb_to_recordset(coalesce(p_beats, '[]'::jsonb))
      as b(job_id uuid, fence bigint, words integer)
  ),
  owned as (
    select j.id from public.story_jobs j
    join beats b on b.job_id = j.id and b.fence = j.fence
    where j.status = 'processing'
    order by j.id
    for update of j
  ),
  beat as (
    update public.story_jobs j
    set heartbeat_at = pg_catalog.clock_timestamp(),
        progress_words = coalesce(b.words, j.progress_words)
    from beats b
    where j.id = b.job_id and j.fence = b.fence and j.status = 'processing'
      and j.id in (select id from owned)
    returning j.id, j.fence
  )
  select coalesce(pg_catalog.jsonb_agg(
      pg_catalog.jsonb_build_object('job_id', id, 'fence', fence) order by id), '[]'::jsonb)
  from beat
$$;

revoke all on function public.heartbeat_story_jobs(jsonb) from public, anon, authenticated;
grant execute on function public.heartbeat_story_jobs(jsonb) to service_role;
