-- The job state machine as functions: enqueue, start, heartbeat, complete, fail.
-- (cancel and the sweeper's calls follow in cancel_and_sweep.)
--
-- Each transition is one transaction and locks the job row first (then, when credits move, the
-- balance row), so concurrent calls serialise instead of interleaving. Writes made on behalf of
-- an attempt are fenced by its number: only the attempt that `start_story_job` recorded may
-- heartbeat, complete or fail the job, so a worker whose lease expired cannot overwrite its
-- successor. Errors carry a stable message (the code clients switch on) and a PTnnn SQLSTATE
-- that PostgREST turns into HTTP status nnn.
--
-- Every function here is `security definer` with an empty search_path and is executable by the
-- service role only; the API checks ownership by passing p_user_id where a user is involved.

-- The job as clients see it: the row (id renamed job_id) plus its story's title.
create function private.job_json(p_job public.story_jobs)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select (pg_catalog.to_jsonb(p_job) - 'id')
    || pg_catalog.jsonb_build_object(
      'job_id', p_job.id,
      'title', (select s.title from public.stories s where s.id = p_job.story_id)
    )
$$;

-- Give a job's credits back, at most once: the unique refund index decides, so a second call
-- (a retried job failing again, a race with an admin action) changes nothing.
-- Returns the job's refunded flag afterwards. The caller holds the job row lock.
create function private.refund_job(p_job_id uuid, p_reason text)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into strict v_job from public.story_jobs where id = p_job_id;
  if v_job.refunded or v_job.cost = 0 then
    return v_job.refunded;
  end if;
  insert into public.credit_ledger (user_id, job_id, kind, amount, reason)
  values (v_job.user_id, v_job.id, 'refund', v_job.cost, p_reason)
  on conflict (job_id) where kind = 'refund' do nothing;
  if found then
    update public.credit_balances
    set balance = balance + v_job.cost
    where user_id = v_job.user_id;
  end if;
  update public.story_jobs set refunded = true where id = v_job.id;
  return true;
end
$$;

-- pending -> cancelled with the story, refunded. The caller holds the job row lock.
create function private.cancel_pending_job(p_job_id uuid, p_reason text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_story_id uuid;
begin
  update public.story_jobs
  set status = 'cancelled', finished_at = pg_catalog.now()
  where id = p_job_id and status = 'pending'
  returning story_id into strict v_story_id;
  update public.stories set status = 'cancelled' where id = v_story_id;
  perform private.refund_job(p_job_id, p_reason);
end
$$;

revoke all on function private.job_json(public.story_jobs),
  private.refund_job(uuid, text), private.cancel_pending_job(uuid, text) from public;

create function public.enqueue_story_job(
  p_user_id uuid,
  p_prompt text,
  p_title text,
  p_genre text,
  p_language text,
  p_target_words integer,
  p_cost integer,
  p_max_attempts integer,
  p_idempotency_key text default null,
  p_request_hash text default null,
  p_free_credits integer default 0
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_story_id uuid;
  v_balance integer;
begin
  if p_user_id is null or coalesce(pg_catalog.btrim(p_prompt), '') = ''
     or coalesce(p_target_words, 0) <= 0 or coalesce(p_cost, -1) < 0
     or coalesce(p_max_attempts, 0) < 1 or coalesce(p_free_credits, 0) < 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'user, prompt, target_words > 0, cost >= 0, max_attempts >= 1 are required';
  end if;

  if p_idempotency_key is not null then
    -- Concurrent calls with one key queue up here; once the first commits, the others (each
    -- statement takes a fresh snapshot under read committed) find its job below. The unique
    -- (user_id, idempotency_key) constraint stays the backstop: never a second debit.
    perform pg_catalog.pg_advisory_xact_lock(
      pg_catalog.hashtextextended(p_user_id::text || '/' || p_idempotency_key, 0)
    );
    select * into v_job from public.story_jobs
    where user_id = p_user_id and idempotency_key = p_idempotency_key;
    if found then
      if v_job.request_hash is distinct from p_request_hash then
        raise exception using errcode = 'PT409', message = 'idempotency_conflict',
          detail = 'this Idempotency-Key was used with a different request';
      end if;
      select balance into v_balance from public.credit_balances where user_id = p_user_id;
      return pg_catalog.jsonb_build_object(
        'job_id', v_job.id, 'story_id', v_job.story_id, 'status', v_job.status,
        'attempts', v_job.attempts, 'created_at', v_job.created_at,
        'replayed', true, 'balance', coalesce(v_balance, 0)
      );
    end if;
  end if;

  -- Lock the balance row (created empty on first sight) before reading or moving credits.
  select balance into v_balance from public.credit_balances
  where user_id = p_user_id for update;
  if not found then
    if not exists (select from auth.users where id = p_user_id) then
      raise exception using errcode = 'PT404', message = 'user_not_found';
    end if;
    insert into public.credit_balances (user_id, balance) values (p_user_id, 0)
    on conflict (user_id) do nothing;
    select balance into strict v_balance from public.credit_balances
    where user_id = p_user_id for update;
  end if;

  -- The sign-up grant (FREE_CREDITS), once per user: the ledger's unique signup index is the
  -- record that it was given, so a user credited by an admin first still receives it.
  if coalesce(p_free_credits, 0) > 0 and not exists (
    select from public.credit_ledger where user_id = p_user_id and kind = 'signup'
  ) then
    insert into public.credit_ledger (user_id, kind, amount, reason)
    values (p_user_id, 'signup', p_free_credits, 'sign-up grant');
    update public.credit_balances set balance = balance + p_free_credits
    where user_id = p_user_id
    returning balance into v_balance;
  end if;

  if v_balance < p_cost then
    -- Raising rolls back everything above, the sign-up grant included: nothing is written.
    raise exception using errcode = 'PT402', message = 'insufficient_credits',
      detail = pg_catalog.format('balance %s, cost %s', v_balance, p_cost);
  end if;

  update public.credit_balances set balance = balance - p_cost
  where user_id = p_user_id
  returning balance into v_balance;

  -- The story exists before any generation starts.
  insert into public.stories (user_id, title, prompt, genre, language, target_words)
  values (p_user_id, p_title, p_prompt, p_genre, coalesce(p_language, 'en'), p_target_words)
  returning id into v_story_id;

  insert into public.story_jobs (
    story_id, user_id, max_attempts, idempotency_key, request_hash, cost
  )
  values (
    v_story_id, p_user_id, p_max_attempts, p_idempotency_key, p_request_hash, p_cost
  )
  returning * into v_job;

  if p_cost > 0 then
    insert into public.credit_ledger (user_id, job_id, kind, amount, reason)
    values (p_user_id, v_job.id, 'debit', -p_cost, 'story generation');
  end if;

  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'story_id', v_story_id, 'status', v_job.status,
    'attempts', v_job.attempts, 'created_at', v_job.created_at,
    'replayed', false, 'balance', v_balance
  );
end
$$;

-- Claim: pending -> processing under attempt p_attempt (the dispatcher's "attempts + 1").
create function public.start_story_job(p_job_id uuid, p_attempt integer)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_story public.stories;
begin
  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  if v_job.status in ('completed', 'failed', 'cancelled') then
    raise exception using errcode = 'PT409', message = 'job_not_startable',
      detail = pg_catalog.format('job is %s', v_job.status);
  end if;
  if v_job.status <> 'pending' or v_job.attempts <> p_attempt - 1 then
    raise exception using errcode = 'PT409', message = 'stale_attempt',
      detail = pg_catalog.format('job is %s after %s attempts; attempt %s cannot start',
        v_job.status, v_job.attempts, p_attempt);
  end if;

  update public.story_jobs
  set status = 'processing', attempts = p_attempt, started_at = pg_catalog.now(),
      heartbeat_at = pg_catalog.now(), progress_words = 0
  where id = p_job_id;

  select * into strict v_story from public.stories where id = v_job.story_id;
  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'story_id', v_story.id, 'user_id', v_job.user_id,
    'prompt', v_story.prompt, 'title', v_story.title, 'genre', v_story.genre,
    'language', v_story.language, 'target_words', v_story.target_words,
    'attempt', p_attempt, 'max_attempts', v_job.max_attempts
  );
end
$$;

-- Liveness and progress of a running attempt; false tells the worker it lost the job.
create function public.heartbeat_story_job(
  p_job_id uuid, p_attempt integer, p_words integer default null
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.story_jobs
  set heartbeat_at = pg_catalog.now(), progress_words = coalesce(p_words, progress_words)
  where id = p_job_id and status = 'processing' and attempts = p_attempt;
  return found;
end
$$;

-- Lock the job and check that p_attempt is its running attempt; the fence for complete/fail.
create function private.lock_running_attempt(p_job_id uuid, p_attempt integer)
returns public.story_jobs
language plpgsql
set search_path = ''
as $$
declare
  v_job public.story_jobs;
begin
  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  if v_job.status <> 'processing' or v_job.attempts <> p_attempt then
    raise exception using errcode = 'PT409', message = 'stale_attempt',
      detail = pg_catalog.format('job is %s after %s attempts; attempt %s may not write',
        v_job.status, v_job.attempts, p_attempt);
  end if;
  return v_job;
end
$$;

revoke all on function private.lock_running_attempt(uuid, integer) from public;

create function public.complete_story_job(
  p_job_id uuid, p_attempt integer, p_content text, p_title text, p_result jsonb
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_words integer := pg_catalog.regexp_count(coalesce(p_content, ''), '\S+');
begin
  v_job := private.lock_running_attempt(p_job_id, p_attempt);

  update public.stories
  set content = p_content, words = v_words, status = 'ready',
      completed_at = pg_catalog.now(), title = coalesce(nullif(p_title, ''), title)
  where id = v_job.story_id;

  update public.story_jobs
  set status = 'completed', result = p_result, finished_at = pg_catalog.now(),
      progress_words = v_words, error_code = null, error_message = null
  where id = p_job_id;

  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'story_id', v_job.story_id, 'status', 'completed'
  );
end
$$;

-- An attempt failed: retry later while attempts remain and the error is retryable, otherwise
-- the job fails for good and its credits go back (once).
create function public.fail_story_job(
  p_job_id uuid,
  p_attempt integer,
  p_error_code text,
  p_error_message text,
  p_retryable boolean,
  p_retry_delay_seconds double precision default 0
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_refunded boolean;
begin
  v_job := private.lock_running_attempt(p_job_id, p_attempt);

  if coalesce(p_retryable, false) and v_job.attempts < v_job.max_attempts then
    update public.story_jobs
    set status = 'pending', error_code = p_error_code, error_message = p_error_message,
        heartbeat_at = null,
        next_attempt_at = pg_catalog.now()
          + pg_catalog.make_interval(secs => greatest(coalesce(p_retry_delay_seconds, 0), 0))
    where id = p_job_id
    returning * into v_job;
  else
    update public.story_jobs
    set status = 'failed', error_code = p_error_code, error_message = p_error_message,
        finished_at = pg_catalog.now()
    where id = p_job_id
    returning * into v_job;
    update public.stories set status = 'failed' where id = v_job.story_id;
    v_refunded := private.refund_job(p_job_id, 'generation failed: ' || coalesce(p_error_code, ''));
    v_job.refunded := v_refunded;
  end if;

  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'status', v_job.status, 'attempts', v_job.attempts,
    'next_attempt_at', case when v_job.status = 'pending' then v_job.next_attempt_at end,
    'refunded', v_job.refunded
  );
end
$$;

revoke execute on function
  public.enqueue_story_job(uuid, text, text, text, text, integer, integer, integer, text, text,
    integer),
  public.start_story_job(uuid, integer),
  public.heartbeat_story_job(uuid, integer, integer),
  public.complete_story_job(uuid, integer, text, text, jsonb),
  public.fail_story_job(uuid, integer, text, text, boolean, double precision)
from public, anon, authenticated;

grant execute on function
  public.enqueue_story_job(uuid, text, text, text, text, integer, integer, integer, text, text,
    integer),
  public.start_story_job(uuid, integer),
  public.heartbeat_story_job(uuid, integer, integer),
  public.complete_story_job(uuid, integer, text, text, jsonb),
  public.fail_story_job(uuid, integer, text, text, boolean, double precision)
to service_role;
