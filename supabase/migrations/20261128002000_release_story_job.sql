-- A worker that shuts down (SIGTERM, a deploy) hands its running attempt back without using it
-- up: the interruption says nothing about the job, so it must not cost the job one of its
-- attempts, nor (on a last attempt) fail and refund it. Fenced like complete and fail.
create function public.release_story_job(p_job_id uuid, p_attempt integer)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_running_attempt(p_job_id, p_attempt);

  update public.story_jobs
  set status = 'pending', attempts = attempts - 1, heartbeat_at = null,
      next_attempt_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;

  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'status', v_job.status, 'attempts', v_job.attempts,
    'next_attempt_at', v_job.next_attempt_at, 'refunded', v_job.refunded
  );
end
$$;

revoke execute on function public.release_story_job(uuid, integer)
  from public, anon, authenticated;
grant execute on function public.release_story_job(uuid, integer) to service_role;
