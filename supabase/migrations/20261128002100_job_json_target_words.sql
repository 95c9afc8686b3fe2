-- GET /api/job shows a processing job's progress as a share of the story's target length:
-- carry target_words in the job JSON so that takes one round trip, not a second read.
create or replace function private.job_json(p_job public.story_jobs)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select (pg_catalog.to_jsonb(p_job) - 'id')
    || pg_catalog.jsonb_build_object(
      'job_id', p_job.id, 'title', s.title, 'target_words', s.target_words
    )
  from (select 1) as one
  left join public.stories s on s.id = p_job.story_id
$$;
