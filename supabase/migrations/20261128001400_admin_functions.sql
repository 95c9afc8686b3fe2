-- Operator actions (the admin API and the `storyq` CLI): queue statistics, cleaning finished
-- jobs, retrying a failed one, emptying the queue, and credits.
-- Same rules as the job functions: security definer, empty search_path, service role only.

create function public.queue_counts()
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select pg_catalog.to_jsonb(o) from public.queue_overview o
$$;

-- Delete finished job rows older than the given age. Stories stay: they are the user's.
create function public.clean_story_jobs(p_status text, p_older_than_seconds double precision)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_deleted integer;
begin
  if p_status is null or p_status not in ('completed', 'failed') then
    raise exception using errcode = 'PT422', message = 'invalid_status',
      detail = 'only completed or failed jobs can be cleaned';
  end if;
  if p_older_than_seconds is null or p_older_than_seconds < 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'older_than_seconds must be >= 0';
  end if;
  delete from public.story_jobs
  where status = p_status
    and finished_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_older_than_seconds);
  get diagnostics v_deleted = row_count;
  return v_deleted;
end
$$;

-- failed -> pending with a fresh set of attempts. Nothing is charged again; and as the refund
-- index is per job, a job that was refunded can never be refunded a second time.
create function public.retry_failed_story_job(p_job_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  if v_job.status <> 'failed' then
    raise exception using errcode = 'PT409', message = 'job_not_retryable',
      detail = pg_catalog.format('job is %s; only failed jobs can be retried', v_job.status);
  end if;
  update public.story_jobs
  set status = 'pending', attempts = 0, error_code = null, error_message = null,
      result = null, progress_words = null, started_at = null, heartbeat_at = null,
      finished_at = null, queued_at = pg_catalog.now(), next_attempt_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  update public.stories set status = 'pending', completed_at = null where id = v_job.story_id;
  return private.job_json(v_job);
end
$$;

-- Cancel and refund every pending job (delayed retries included); returns their ids.
create function public.empty_story_queue()
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job_id uuid;
  v_cancelled jsonb := '[]'::jsonb;
begin
  -- Lock in id order so that two concurrent calls cannot deadlock each other.
  for v_job_id in
    select id from public.story_jobs where status = 'pending' order by id for update
  loop
    perform private.cancel_pending_job(v_job_id, 'queue emptied');
    v_cancelled := v_cancelled || pg_catalog.to_jsonb(v_job_id);
  end loop;
  return v_cancelled;
end
$$;

create function public.grant_credits(
  p_user_id uuid, p_amount integer, p_reason text default 'grant'
)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_balance integer;
begin
  if p_amount is null or p_amount <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_amount',
      detail = 'a grant adds a positive number of credits';
  end if;
  if not exists (select from auth.users where id = p_user_id) then
    raise exception using errcode = 'PT404', message = 'user_not_found';
  end if;
  insert into public.credit_balances as b (user_id, balance)
  values (p_user_id, p_amount)
  on conflict (user_id) do update set balance = b.balance + excluded.balance
  returning b.balance into v_balance;
  insert into public.credit_ledger (user_id, kind, amount, reason)
  values (p_user_id, 'grant', p_amount, coalesce(p_reason, 'grant'));
  return v_balance;
end
$$;

create function public.credit_balance(p_user_id uuid)
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((select balance from public.credit_balances where user_id = p_user_id), 0)
$$;

revoke execute on function
  public.queue_counts(),
  public.clean_story_jobs(text, double precision),
  public.retry_failed_story_job(uuid),
  public.empty_story_queue(),
  public.grant_credits(uuid, integer, text),
  public.credit_balance(uuid)
from public, anon, authenticated;

grant execute on function
  public.queue_counts(),
  public.clean_story_jobs(text, double precision),
  public.retry_failed_story_job(uuid),
  public.empty_story_queue(),
  public.grant_credits(uuid, integer, text),
  public.credit_balance(uuid)
to service_role;
