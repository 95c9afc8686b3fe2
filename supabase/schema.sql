-- The schema storyq's migrations create (supabase/migrations), as pg_dump 15 --schema-only
-- prints it, without what the Supabase-compat bootstrap provides. Generated: run
-- `make schema` after adding a migration; tests/core/store/test_schema_snapshot.py
-- fails while this file and the migrations disagree. Do not edit by hand.

--
-- Name: private; Type: SCHEMA; Schema: -
--

CREATE SCHEMA private;


--
-- Name: cancel_pending_job(uuid, text); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.cancel_pending_job(p_job_id uuid, p_reason text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_story_id uuid;
begin
  update public.story_jobs
  set status = 'cancelled', finished_at = pg_catalog.now(), heartbeat_at = null
  where id = p_job_id and status in ('pending', 'processing')
  returning story_id into strict v_story_id;
  update public.stories set status = 'cancelled' where id = v_story_id;
  perform private.refund_job(p_job_id, p_reason);
end
$$;


--
-- Name: story_job_fence_seq; Type: SEQUENCE; Schema: private
--

CREATE SEQUENCE private.story_job_fence_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: story_jobs; Type: TABLE; Schema: public
--

CREATE TABLE public.story_jobs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    story_id uuid NOT NULL,
    user_id uuid NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 3 NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    idempotency_key text,
    request_hash text,
    error_code text,
    error_message text,
    result jsonb,
    refunded boolean DEFAULT false NOT NULL,
    progress_words integer,
    cost integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    queued_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    heartbeat_at timestamp with time zone,
    finished_at timestamp with time zone,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    fence bigint DEFAULT nextval('private.story_job_fence_seq'::regclass) NOT NULL,
    cancel_requested_at timestamp with time zone,
    cancel_reason text,
    tier text,
    CONSTRAINT story_jobs_attempts_check CHECK ((attempts >= 0)),
    CONSTRAINT story_jobs_attempts_within_max CHECK ((attempts <= max_attempts)),
    CONSTRAINT story_jobs_cancel_reason_check CHECK (((cancel_reason IS NULL) OR (cancel_reason = ANY (ARRAY['user'::text, 'admin'::text, 'expired'::text])))),
    CONSTRAINT story_jobs_cost_check CHECK ((cost >= 0)),
    CONSTRAINT story_jobs_finished_have_finished_at CHECK (((status <> ALL (ARRAY['completed'::text, 'failed'::text, 'cancelled'::text])) OR (finished_at IS NOT NULL))),
    CONSTRAINT story_jobs_max_attempts_check CHECK ((max_attempts >= 1)),
    CONSTRAINT story_jobs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'processing'::text, 'completed'::text, 'failed'::text, 'cancelled'::text])))
);

ALTER TABLE ONLY public.story_jobs REPLICA IDENTITY FULL;


--
-- Name: TABLE story_jobs; Type: COMMENT; Schema: public
--

COMMENT ON TABLE public.story_jobs IS 'Generation jobs. Changed only through the storyq functions; Redis only mirrors pending ones.';


--
-- Name: COLUMN story_jobs.attempts; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_jobs.attempts IS 'Attempts started (the retry budget, reset by an admin retry); the fence is separate.';


--
-- Name: COLUMN story_jobs.priority; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_jobs.priority IS 'The plan''s priority at enqueue (plans.priority): the job''s head start in the fair-share order.';


--
-- Name: COLUMN story_jobs.fence; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_jobs.fence IS 'Fencing token of the next (pending) or running (processing) attempt; only ever grows.';


--
-- Name: COLUMN story_jobs.cancel_requested_at; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_jobs.cancel_requested_at IS 'When a user or an admin asked to cancel the job (a processing job ends cancelled once its worker hears of it).';


--
-- Name: COLUMN story_jobs.cancel_reason; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_jobs.cancel_reason IS 'Who cancelled (or asked to): user, admin, or expired (still waiting after JOB_TTL_SECONDS).';


--
-- Name: COLUMN story_jobs.tier; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_jobs.tier IS 'The user''s plan tier when the job was enqueued (null: enqueued before tiers).';


--
-- Name: fail_attempt(uuid, text, text, boolean, double precision); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.fail_attempt(p_job_id uuid, p_error_code text, p_error_message text, p_retryable boolean, p_retry_delay_seconds double precision) RETURNS public.story_jobs
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
begin
  select * into strict v_job from public.story_jobs where id = p_job_id;
  if v_job.cancel_requested_at is not null then
    perform private.cancel_pending_job(p_job_id, 'cancelled: ' || v_job.cancel_reason);
    select * into strict v_job from public.story_jobs where id = p_job_id;
    return v_job;
  end if;
  if coalesce(p_retryable, false) and v_job.attempts < v_job.max_attempts then
    update public.story_jobs
    set status = 'pending', error_code = p_error_code, error_message = p_error_message,
        heartbeat_at = null, fence = pg_catalog.nextval('private.story_job_fence_seq'),
        next_attempt_at = pg_catalog.now()
          + pg_catalog.make_interval(secs => greatest(coalesce(p_retry_delay_seconds, 0), 0))
    where id = p_job_id
    returning * into v_job;
    return v_job;
  end if;
  update public.story_jobs
  set status = 'failed', error_code = p_error_code, error_message = p_error_message,
      finished_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  update public.stories set status = 'failed' where id = v_job.story_id;
  perform private.refund_job(p_job_id, 'generation failed: ' || coalesce(p_error_code, ''));
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return v_job;
end
$$;


--
-- Name: job_json(public.story_jobs); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.job_json(p_job public.story_jobs) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select (pg_catalog.to_jsonb(p_job) - 'id')
    || pg_catalog.jsonb_build_object(
      'job_id', p_job.id, 'title', s.title, 'target_words', s.target_words,
      'cancel_requested', p_job.cancel_requested_at is not null
    )
  from (select 1) as one
  left join public.stories s on s.id = p_job.story_id
$$;


--
-- Name: job_state(public.story_jobs); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.job_state(p_job public.story_jobs) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object(
    'job_id', p_job.id, 'user_id', p_job.user_id, 'status', p_job.status,
    'fence', p_job.fence, 'attempts', p_job.attempts, 'max_attempts', p_job.max_attempts,
    'next_attempt_at', case when p_job.status = 'pending' then p_job.next_attempt_at end,
    'refunded', p_job.refunded
  )
$$;


--
-- Name: lock_job(uuid, uuid); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.lock_job(p_job_id uuid, p_user_id uuid DEFAULT NULL::uuid) RETURNS public.story_jobs
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
begin
  select * into v_job from public.story_jobs
  where id = p_job_id and (p_user_id is null or user_id = p_user_id)
  for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'job_not_found';
  end if;
  return v_job;
end
$$;


--
-- Name: lock_running_fence(uuid, bigint); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.lock_running_fence(p_job_id uuid, p_fence bigint) RETURNS public.story_jobs
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_job(p_job_id);
  if v_job.status <> 'processing' or v_job.fence is distinct from p_fence then
    raise exception using errcode = 'PT409', message = 'stale_attempt',
      detail = pg_catalog.format('job is %s under fence %s; fence %s may not write',
        v_job.status, v_job.fence, p_fence);
  end if;
  return v_job;
end
$$;


--
-- Name: plans; Type: TABLE; Schema: public
--

CREATE TABLE public.plans (
    tier text NOT NULL,
    weight double precision DEFAULT 1 NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    max_active_per_user integer,
    is_default boolean DEFAULT false NOT NULL,
    description text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT plans_max_active_per_user_check CHECK ((max_active_per_user >= 1)),
    CONSTRAINT plans_priority_check CHECK (((priority >= '-100'::integer) AND (priority <= 100))),
    CONSTRAINT plans_tier_check CHECK ((tier ~ '^[a-z0-9_-]{1,32}$'::text)),
    CONSTRAINT plans_weight_check CHECK (((weight >= (0.01)::double precision) AND (weight <= (1000)::double precision)))
);


--
-- Name: TABLE plans; Type: COMMENT; Schema: public
--

COMMENT ON TABLE public.plans IS 'What each tier (auth.users app_metadata.tier) gets: its fair-share weight, a priority and a running cap. Edited by the operator; users whose tier names no plan get the default one. Edits reach jobs already queued at the next sweeps.';


--
-- Name: COLUMN plans.tier; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.plans.tier IS 'The name app_metadata.tier holds: lowercase letters, digits, _ and -, at most 32.';


--
-- Name: COLUMN plans.weight; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.plans.weight IS 'Fair-share weight (0.01 to 1000): while both wait, a user of weight 2 gets twice the slots of a user of weight 1. Read when a job is queued (or put back after a flush or a retry).';


--
-- Name: COLUMN plans.priority; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.plans.priority IS 'Priority (-100 to 100), stamped on each job at enqueue (story_jobs.priority): a head start in the fair-share order of about that many weight-1 jobs (counted up to 10 either way) for a user who starts waiting again. It never starves anyone: once backlogged, the weight rules.';


--
-- Name: COLUMN plans.max_active_per_user; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.plans.max_active_per_user IS 'Running cap per user: while anyone under their own cap waits, at most this many of the user''s jobs run (counted in Redis at each claim; held jobs go back as the user''s jobs end). When nobody else waits, the user''s jobs may use the free slots (work-conserving). Null: no cap of its own.';


--
-- Name: COLUMN plans.is_default; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.plans.is_default IS 'The plan of users without a tier, or whose tier names no plan. At most one.';


--
-- Name: COLUMN plans.description; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.plans.description IS 'What the tier is, for people (pricing page, dashboard).';


--
-- Name: plan_of(uuid); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.plan_of(p_user_id uuid) RETURNS public.plans
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_plan public.plans;
begin
  select p.* into v_plan
  from auth.users u
  join public.plans p
    on p.tier = pg_catalog.lower(pg_catalog.btrim(u.raw_app_meta_data ->> 'tier'))
  where u.id = p_user_id;
  if found then
    return v_plan;
  end if;
  select p.* into v_plan from public.plans p where p.is_default;
  if found then
    return v_plan;
  end if;
  v_plan.tier := 'free';
  v_plan.weight := 1;
  v_plan.priority := 0;
  v_plan.max_active_per_user := null;
  v_plan.is_default := true;
  v_plan.description := 'built in: no default plan is set';
  v_plan.updated_at := pg_catalog.now();
  return v_plan;
end
$$;


--
-- Name: refund_job(uuid, text); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.refund_job(p_job_id uuid, p_reason text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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


--
-- Name: refuse_ledger_update(); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.refuse_ledger_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  raise exception using
    errcode = 'P0001',
    message = 'credit_ledger_is_append_only',
    detail = 'credit ledger rows are never updated; write a compensating entry instead';
end
$$;


--
-- Name: idempotency_keys; Type: TABLE; Schema: public
--

CREATE TABLE public.idempotency_keys (
    user_id uuid NOT NULL,
    key text NOT NULL,
    request_hash text,
    job_id uuid NOT NULL,
    story_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: TABLE idempotency_keys; Type: COMMENT; Schema: public
--

COMMENT ON TABLE public.idempotency_keys IS 'Idempotency-Key of POST /api/generate per user, kept for its TTL whatever happens to jobs.';


--
-- Name: replay_key(public.idempotency_keys, integer); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.replay_key(p_key public.idempotency_keys, p_balance integer) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object(
    'job_id', p_key.job_id, 'story_id', p_key.story_id,
    'status', coalesce(j.status, case s.status
      when 'ready' then 'completed' when 'failed' then 'failed' else 'cancelled' end),
    'attempts', coalesce(j.attempts, 0), 'fence', j.fence,
    'created_at', coalesce(j.created_at, p_key.created_at),
    'replayed', true, 'balance', p_balance,
    'tier', case when j.id is null then pl.tier else j.tier end,
    'weight', pl.weight, 'priority', coalesce(j.priority, pl.priority),
    'max_active_per_user', pl.max_active_per_user
  )
  from (select 1) as one
  left join public.story_jobs j on j.id = p_key.job_id
  left join public.stories s on s.id = p_key.story_id
  cross join private.plan_of(p_key.user_id) pl
$$;


--
-- Name: result_usage(); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.result_usage() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_usage jsonb;
begin
  select case when pg_catalog.count(*) > 0 then pg_catalog.jsonb_build_object(
      'promptTokens', pg_catalog.sum(a.prompt_tokens),
      'completionTokens', pg_catalog.sum(a.completion_tokens),
      'costUsd', pg_catalog.sum(a.cost_usd),
      'attempts', pg_catalog.count(*),
      'estimated', pg_catalog.bool_or(a.usage_estimated)
    ) end
  into v_usage
  from public.story_job_attempts a
  where a.job_id = new.id and a.usage_recorded_at is not null;
  new.result := (coalesce(new.result, '{}'::jsonb) - 'usage')
    || case when v_usage is null then '{}'::jsonb
            else pg_catalog.jsonb_build_object('usage', v_usage) end;
  return new;
end
$$;


--
-- Name: running_attempts(double precision); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.running_attempts(p_live_seconds double precision) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_job_id uuid;
begin
  for v_job_id in
    select id from public.story_jobs
    where status = 'processing' and attempts < max_attempts and cancel_requested_at is null
      and heartbeat_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_live_seconds)
    order by heartbeat_at, id
    for update skip locked
  loop
    perform private.fail_attempt(v_job_id, 'worker_lost',
      pg_catalog.format('no heartbeat for %s s', p_live_seconds), true, 0);
  end loop;
  return (select pg_catalog.count(*) from public.story_jobs where status = 'processing');
end
$$;


--
-- Name: story_text_afresh(); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.story_text_afresh() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  update public.stories
  set status = 'pending', content = null, words = null, completed_at = null,
      updated_at = pg_catalog.now()
  where id = new.story_id and status in ('writing', 'failed', 'pending')
    and (content is not null or status <> 'pending');
  return null;
end
$$;


--
-- Name: touch_updated_at(); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  new.updated_at := pg_catalog.now();
  return new;
end
$$;


--
-- Name: track_attempt(); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.track_attempt() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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


--
-- Name: usage_problem(jsonb); Type: FUNCTION; Schema: private
--

CREATE FUNCTION private.usage_problem(p_usage jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
declare
  v_field text;
  v_value jsonb;
  v_number numeric;
begin
  if pg_catalog.jsonb_typeof(p_usage) is distinct from 'object' then
    return 'not an object';
  end if;
  if pg_catalog.jsonb_typeof(p_usage -> 'job_id') is distinct from 'string'
     or (p_usage ->> 'job_id') !~ '^[0-9A-Fa-f]{8}-?([0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}$' then
    return 'job_id is not a uuid';
  end if;
  foreach v_field in array array['fence', 'prompt_tokens', 'completion_tokens', 'cost_usd'] loop
    v_value := p_usage -> v_field;
    if pg_catalog.jsonb_typeof(v_value) is distinct from 'number' then
      return v_field || ' is not a number';
    end if;
    v_number := (v_value #>> '{}')::numeric;
    if v_number < 0 then
      return v_field || ' is negative';
    end if;
    if v_field = 'cost_usd' then
      if v_number >= 1000000 then
        return 'cost_usd is 1000000 or more';
      end if;
    elsif v_number <> pg_catalog.trunc(v_number) or v_number > 9223372036854775807 then
      return v_field || ' is not a whole number within bigint';
    end if;
  end loop;
  if coalesce(pg_catalog.jsonb_typeof(p_usage -> 'model'), 'null') not in ('string', 'null') then
    return 'model is neither a string nor null';
  end if;
  if pg_catalog.jsonb_typeof(p_usage -> 'estimated') is distinct from 'boolean' then
    return 'estimated is not a boolean';
  end if;
  return null;
end
$_$;


--
-- Name: cancel_running_story_job(uuid, bigint); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.cancel_running_story_job(p_job_id uuid, p_fence bigint) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_running_fence(p_job_id, p_fence);
  if v_job.cancel_requested_at is null then
    raise exception using errcode = 'PT409', message = 'cancel_not_requested',
      detail = 'only a job whose cancel was requested may be cancelled by its worker';
  end if;
  perform private.cancel_pending_job(p_job_id, 'cancelled: ' || v_job.cancel_reason);
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return private.job_state(v_job);
end
$$;


--
-- Name: cancel_story_job(uuid, uuid, text); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.cancel_story_job(p_job_id uuid, p_user_id uuid DEFAULT NULL::uuid, p_reason text DEFAULT NULL::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
  v_reason text := coalesce(p_reason, case when p_user_id is null then 'admin' else 'user' end);
begin
  if v_reason not in ('user', 'admin') then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'reason is user or admin';
  end if;
  v_job := private.lock_job(p_job_id, p_user_id);
  if v_job.status in ('completed', 'failed') then
    raise exception using errcode = 'PT409', message = 'job_not_cancellable',
      detail = pg_catalog.format('job is %s', v_job.status);
  end if;
  if v_job.status <> 'cancelled' and v_job.cancel_requested_at is null then
    update public.story_jobs
    set cancel_requested_at = pg_catalog.now(), cancel_reason = v_reason
    where id = p_job_id;
    if v_job.status = 'pending' then
      perform private.cancel_pending_job(p_job_id, 'cancelled');
    end if;
  end if;
  select * into strict v_job from public.story_jobs where id = p_job_id;
  return private.job_json(v_job);
end
$$;


--
-- Name: clean_story_jobs(text, double precision); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.clean_story_jobs(p_status text, p_older_than_seconds double precision) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_deleted integer;
begin
  if p_status is null or p_status not in ('completed', 'failed', 'cancelled') then
    raise exception using errcode = 'PT422', message = 'invalid_status',
      detail = 'only completed, failed or cancelled jobs can be cleaned';
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


--
-- Name: complete_story_job(uuid, bigint, text, text, jsonb); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.complete_story_job(p_job_id uuid, p_fence bigint, p_content text, p_title text, p_result jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
  v_words integer := pg_catalog.regexp_count(coalesce(p_content, ''), '\S+');
begin
  v_job := private.lock_running_fence(p_job_id, p_fence);

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


--
-- Name: credit_balance(uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.credit_balance(p_user_id uuid) RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce((select balance from public.credit_balances where user_id = p_user_id), 0)
$$;


--
-- Name: dispatch_snapshot(integer, double precision, integer, integer, jsonb); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.dispatch_snapshot(p_limit integer DEFAULT 1000, p_recent_seconds double precision DEFAULT NULL::double precision, p_page integer DEFAULT NULL::integer, p_recent_limit integer DEFAULT NULL::integer, p_after jsonb DEFAULT NULL::jsonb) RETURNS jsonb
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
          'priority', p.priority, 'weight', pl.weight,
          'max_active_per_user', pl.max_active_per_user
        ) order by p.queued_at, p.id), '[]'::jsonb)
      from public.story_jobs p
      cross join lateral private.plan_of(p.user_id) pl
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


--
-- Name: empty_story_queue(); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.empty_story_queue() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job_ids uuid[];
  v_job_id uuid;
begin
  select coalesce(pg_catalog.array_agg(id order by id), '{}') into v_job_ids
  from (select id from public.story_jobs where status = 'pending' order by id for update) j;
  foreach v_job_id in array v_job_ids loop
    update public.story_jobs set cancel_reason = 'admin' where id = v_job_id;
    perform private.cancel_pending_job(v_job_id, 'queue emptied');
  end loop;
  return pg_catalog.to_jsonb(v_job_ids);
end
$$;


--
-- Name: enqueue_story_job(uuid, text, text, text, text, integer, integer, integer, text, text, integer, double precision); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.enqueue_story_job(p_user_id uuid, p_prompt text, p_title text, p_genre text, p_language text, p_target_words integer, p_cost integer, p_max_attempts integer, p_idempotency_key text DEFAULT NULL::text, p_request_hash text DEFAULT NULL::text, p_free_credits integer DEFAULT 0, p_idempotency_ttl_seconds double precision DEFAULT 86400) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
  v_key public.idempotency_keys;
  v_story_id uuid;
  v_balance integer;
  v_plan public.plans;
begin
  if p_user_id is null or coalesce(pg_catalog.btrim(p_prompt), '') = ''
     or coalesce(p_target_words, 0) <= 0 or coalesce(p_cost, -1) < 0
     or coalesce(p_max_attempts, 0) < 1 or coalesce(p_free_credits, 0) < 0
     or coalesce(p_idempotency_ttl_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'user, prompt, target_words > 0, cost >= 0, max_attempts >= 1, ttl > 0 are required';
  end if;

  if p_idempotency_key is not null then
    -- Concurrent calls with one key queue up here; once the first commits, the others (each
    -- statement takes a fresh snapshot under read committed) find its key below. The primary
    -- key of idempotency_keys stays the backstop: never a second debit.
    perform pg_catalog.pg_advisory_xact_lock(
      pg_catalog.hashtextextended(p_user_id::text || '/' || p_idempotency_key, 0)
    );
    select * into v_key from public.idempotency_keys
    where user_id = p_user_id and key = p_idempotency_key;
    if found and v_key.created_at <= pg_catalog.now()
        - pg_catalog.make_interval(secs => p_idempotency_ttl_seconds) then
      -- Expired: the key is free again.
      delete from public.idempotency_keys where user_id = p_user_id and key = p_idempotency_key;
    elsif found then
      if v_key.request_hash is distinct from p_request_hash then
        raise exception using errcode = 'PT409', message = 'idempotency_conflict',
          detail = 'this Idempotency-Key was used with a different request';
      end if;
      select balance into v_balance from public.credit_balances where user_id = p_user_id;
      return private.replay_key(v_key, coalesce(v_balance, 0));
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

  v_plan := private.plan_of(p_user_id);
  insert into public.story_jobs (
    story_id, user_id, max_attempts, idempotency_key, request_hash, cost, tier, priority
  )
  values (
    v_story_id, p_user_id, p_max_attempts, p_idempotency_key, p_request_hash, p_cost,
    v_plan.tier, v_plan.priority
  )
  returning * into v_job;

  if p_idempotency_key is not null then
    insert into public.idempotency_keys (user_id, key, request_hash, job_id, story_id)
    values (p_user_id, p_idempotency_key, p_request_hash, v_job.id, v_story_id);
  end if;

  if p_cost > 0 then
    insert into public.credit_ledger (user_id, job_id, kind, amount, reason)
    values (p_user_id, v_job.id, 'debit', -p_cost, 'story generation');
  end if;

  return pg_catalog.jsonb_build_object(
    'job_id', v_job.id, 'story_id', v_story_id, 'status', v_job.status,
    'attempts', v_job.attempts, 'fence', v_job.fence, 'created_at', v_job.created_at,
    'replayed', false, 'balance', v_balance,
    'tier', v_plan.tier, 'weight', v_plan.weight, 'priority', v_plan.priority,
    'max_active_per_user', v_plan.max_active_per_user
  );
end
$$;


--
-- Name: expire_story_jobs(double precision, integer); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.expire_story_jobs(p_ttl_seconds double precision, p_limit integer) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job_ids uuid[];
  v_job_id uuid;
begin
  if coalesce(p_ttl_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'ttl_seconds > 0 is required';
  end if;
  -- One expiry at a time (sweeps run side by side): two would each refund their own jobs'
  -- users in their own order and could deadlock on the balances. The others skip it.
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('storyq.expire_story_jobs')) then
    return '[]'::jsonb;
  end if;
  select coalesce(pg_catalog.array_agg(id order by queued_at, id), '{}') into v_job_ids
  from (
    select id, queued_at from public.story_jobs
    where status = 'pending' and started_at is null
      and queued_at <= pg_catalog.now() - pg_catalog.make_interval(secs => p_ttl_seconds)
    order by queued_at, id
    limit greatest(coalesce(p_limit, 0), 0)
    for update skip locked
  ) j;
  foreach v_job_id in array v_job_ids loop
    update public.story_jobs set cancel_reason = 'expired' where id = v_job_id;
    perform private.cancel_pending_job(v_job_id, 'expired');
  end loop;
  return pg_catalog.to_jsonb(v_job_ids);
end
$$;


--
-- Name: fail_story_job(uuid, bigint, text, text, boolean, double precision); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.fail_story_job(p_job_id uuid, p_fence bigint, p_error_code text, p_error_message text, p_retryable boolean, p_retry_delay_seconds double precision DEFAULT 0) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  perform private.lock_running_fence(p_job_id, p_fence);
  return private.job_state(private.fail_attempt(
    p_job_id, p_error_code, p_error_message, p_retryable, p_retry_delay_seconds
  ));
end
$$;


--
-- Name: get_story(uuid, uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.get_story(p_story_id uuid, p_user_id uuid DEFAULT NULL::uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: get_story_job(uuid, uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.get_story_job(p_job_id uuid, p_user_id uuid DEFAULT NULL::uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: grant_credits(uuid, integer, text); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.grant_credits(p_user_id uuid, p_amount integer, p_reason text DEFAULT 'grant'::text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: health_check(); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.health_check() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select 'ok'::text
$$;


--
-- Name: heartbeat_story_job(uuid, bigint, integer); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.heartbeat_story_job(p_job_id uuid, p_fence bigint, p_words integer DEFAULT NULL::integer) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  update public.story_jobs
  set heartbeat_at = pg_catalog.clock_timestamp(),
      progress_words = coalesce(p_words, progress_words)
  where id = p_job_id and status = 'processing' and fence = p_fence;
  return found;
end
$$;


--
-- Name: heartbeat_story_jobs(jsonb); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.heartbeat_story_jobs(p_beats jsonb) RETURNS jsonb
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
    returning j.id, j.fence, j.cancel_requested_at is not null as cancel
  )
  select coalesce(
    pg_catalog.jsonb_agg(
      pg_catalog.jsonb_build_object('job_id', id, 'fence', fence, 'cancel', cancel)
      order by id),
    '[]'::jsonb)
  from beat
$$;


--
-- Name: list_all_story_jobs(text[], uuid, text, timestamp with time zone, timestamp with time zone, integer, timestamp with time zone, uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.list_all_story_jobs(p_statuses text[] DEFAULT NULL::text[], p_user_id uuid DEFAULT NULL::uuid, p_tier text DEFAULT NULL::text, p_created_after timestamp with time zone DEFAULT NULL::timestamp with time zone, p_created_before timestamp with time zone DEFAULT NULL::timestamp with time zone, p_limit integer DEFAULT 25, p_cursor_created_at timestamp with time zone DEFAULT NULL::timestamp with time zone, p_cursor_id uuid DEFAULT NULL::uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: list_story_jobs(uuid, text, integer, timestamp with time zone, uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.list_story_jobs(p_user_id uuid, p_status text DEFAULT NULL::text, p_limit integer DEFAULT 20, p_cursor_created_at timestamp with time zone DEFAULT NULL::timestamp with time zone, p_cursor_id uuid DEFAULT NULL::uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: purge_idempotency_keys(double precision, integer); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.purge_idempotency_keys(p_ttl_seconds double precision, p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_deleted integer;
begin
  if coalesce(p_ttl_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'ttl_seconds > 0 is required';
  end if;
  delete from public.idempotency_keys
  where (user_id, key) in (
    select user_id, key from public.idempotency_keys
    where created_at <= pg_catalog.now() - pg_catalog.make_interval(secs => p_ttl_seconds)
    order by created_at
    limit greatest(coalesce(p_limit, 1000), 0)
  );
  get diagnostics v_deleted = row_count;
  return v_deleted;
end
$$;


--
-- Name: queue_counts(); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.queue_counts() RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.to_jsonb(o) || pg_catalog.jsonb_build_object(
    'by_tier', (
      select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
          'tier', t.tier, 'pending', t.pending, 'processing', t.processing
        ) order by t.tier collate "C"), '[]'::jsonb)
      from public.queue_by_tier t
    )
  )
  from public.queue_overview o
$$;


--
-- Name: record_story_job_usage(jsonb); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.record_story_job_usage(p_usages jsonb) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_index bigint;
  v_problem text;
  v_updated integer;
begin
  if pg_catalog.jsonb_typeof(p_usages) is distinct from 'array' then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'usages is a JSON array of {job_id, fence, model, prompt_tokens, '
        'completion_tokens, cost_usd, estimated}';
  end if;
  select u.i - 1, private.usage_problem(u.usage) into v_index, v_problem
  from pg_catalog.jsonb_array_elements(p_usages) with ordinality as u(usage, i)
  where private.usage_problem(u.usage) is not null
  order by u.i
  limit 1;
  if v_problem is not null then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = pg_catalog.format('usages[%s]: %s', v_index, v_problem);
  end if;

  with given as (
    select distinct on (job_id, fence)
      (u.usage ->> 'job_id')::uuid as job_id,
      (u.usage ->> 'fence')::bigint as fence,
      u.usage ->> 'model' as model,
      (u.usage ->> 'prompt_tokens')::bigint as prompt_tokens,
      (u.usage ->> 'completion_tokens')::bigint as completion_tokens,
      (u.usage ->> 'cost_usd')::numeric as cost_usd,
      (u.usage ->> 'estimated')::boolean as estimated
    from pg_catalog.jsonb_array_elements(p_usages) with ordinality as u(usage, i)
    order by job_id, fence, u.i desc
  ),
  locked as (
    select a.job_id, a.fence from public.story_job_attempts a
    join given g on g.job_id = a.job_id and g.fence = a.fence
    order by a.job_id, a.fence
    for update of a
  )
  update public.story_job_attempts a
  set model = g.model, prompt_tokens = g.prompt_tokens,
      completion_tokens = g.completion_tokens, cost_usd = g.cost_usd,
      usage_estimated = g.estimated, usage_recorded_at = pg_catalog.now()
  from given g
  where a.job_id = g.job_id and a.fence = g.fence
    and (a.job_id, a.fence) in (select job_id, fence from locked);
  get diagnostics v_updated = row_count;
  return v_updated;
end
$$;


--
-- Name: release_story_job(uuid, bigint); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.release_story_job(p_job_id uuid, p_fence bigint) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
begin
  v_job := private.lock_running_fence(p_job_id, p_fence);
  if v_job.cancel_requested_at is not null then
    perform private.cancel_pending_job(p_job_id, 'cancelled: ' || v_job.cancel_reason);
    select * into strict v_job from public.story_jobs where id = p_job_id;
    return private.job_state(v_job);
  end if;
  update public.story_jobs
  set status = 'pending', attempts = attempts - 1, heartbeat_at = null,
      fence = pg_catalog.nextval('private.story_job_fence_seq'),
      next_attempt_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  return private.job_state(v_job);
end
$$;


--
-- Name: requeue_stalled_story_job(uuid, bigint, double precision, text, text, double precision); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.requeue_stalled_story_job(p_job_id uuid, p_fence bigint, p_live_seconds double precision, p_error_code text DEFAULT 'worker_lost'::text, p_error_message text DEFAULT 'the worker stopped sending heartbeats'::text, p_retry_delay_seconds double precision DEFAULT 0) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
  v_outcome text;
begin
  if coalesce(p_live_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'live_seconds > 0 is required';
  end if;
  select * into v_job from public.story_jobs where id = p_job_id for update;
  if not found then
    return pg_catalog.jsonb_build_object('job_id', p_job_id, 'outcome', 'gone');
  end if;
  if v_job.fence is distinct from p_fence
     or v_job.status in ('completed', 'failed', 'cancelled') then
    v_outcome := 'superseded';
  elsif v_job.status = 'pending' then
    v_outcome := 'unstarted';
  elsif v_job.heartbeat_at >= pg_catalog.now() - pg_catalog.make_interval(secs => p_live_seconds)
  then
    v_outcome := 'live';
  else
    v_job := private.fail_attempt(
      p_job_id, p_error_code, p_error_message, true, p_retry_delay_seconds
    );
    v_outcome := case v_job.status when 'pending' then 'requeued' else 'failed' end;
  end if;
  return private.job_state(v_job) || pg_catalog.jsonb_build_object('outcome', v_outcome);
end
$$;


--
-- Name: retry_failed_story_job(uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.retry_failed_story_job(p_job_id uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
  v_plan public.plans;
begin
  v_job := private.lock_job(p_job_id);
  if v_job.status <> 'failed' then
    raise exception using errcode = 'PT409', message = 'job_not_retryable',
      detail = pg_catalog.format('job is %s; only failed jobs can be retried', v_job.status);
  end if;
  update public.story_jobs
  set status = 'pending', attempts = 0, fence = pg_catalog.nextval('private.story_job_fence_seq'),
      error_code = null, error_message = null, result = null, progress_words = null,
      started_at = null, heartbeat_at = null, finished_at = null,
      queued_at = pg_catalog.now(), next_attempt_at = pg_catalog.now()
  where id = p_job_id
  returning * into v_job;
  update public.stories set status = 'pending', completed_at = null where id = v_job.story_id;
  v_plan := private.plan_of(v_job.user_id);
  return private.job_json(v_job) || pg_catalog.jsonb_build_object(
    'weight', v_plan.weight, 'max_active_per_user', v_plan.max_active_per_user
  );
end
$$;


--
-- Name: stalled_story_jobs(double precision, integer); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.stalled_story_jobs(p_stalled_for_seconds double precision, p_limit integer DEFAULT 1000) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'job_id', j.id, 'user_id', j.user_id, 'fence', j.fence, 'attempt', j.attempts,
      'heartbeat_at', j.heartbeat_at
    ) order by j.heartbeat_at, j.id), '[]'::jsonb)
  from (
    select * from public.story_jobs
    where status = 'processing'
      and heartbeat_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_stalled_for_seconds)
    order by heartbeat_at, id
    limit greatest(coalesce(p_limit, 1000), 0)
  ) j
$$;


--
-- Name: start_story_job(uuid, bigint, integer, double precision); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.start_story_job(p_job_id uuid, p_fence bigint, p_max_active integer, p_live_seconds double precision) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_job public.story_jobs;
  v_story public.stories;
  v_running integer;
  v_reason text;
begin
  if coalesce(p_max_active, 0) < 1 or coalesce(p_live_seconds, 0) <= 0 then
    raise exception using errcode = 'PT422', message = 'invalid_argument',
      detail = 'max_active >= 1 and live_seconds > 0 are required';
  end if;
  -- The count below must see every start committed before the gate was ours: each statement
  -- takes a fresh snapshot only under read committed.
  if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    raise exception using errcode = 'PT500', message = 'read_committed_required',
      detail = 'start_story_job counts running attempts under its gate: read committed only';
  end if;

  v_job := private.lock_job(p_job_id);
  -- The start gate: one start at a time across the deployment, so two starts cannot both see
  -- a free slot. Taken after the job's own row (so no start waits on a row while holding it)
  -- and held until commit; under it only rows no one else holds are locked (skip locked).
  perform pg_catalog.pg_advisory_xact_lock(1937011313, 1);
  v_reason := case
    when v_job.status in ('completed', 'failed', 'cancelled') then 'finished'
    when v_job.fence is distinct from p_fence then 'stale'
    when v_job.status <> 'pending' then 'running'
  end;
  if v_reason is null then
    v_running := private.running_attempts(p_live_seconds);
    if v_running >= p_max_active then
      v_reason := 'capacity';
    end if;
  end if;
  if v_reason is not null then
    return private.job_state(v_job)
      || pg_catalog.jsonb_build_object('started', false, 'reason', v_reason);
  end if;

  -- The clock, not the transaction's start: the gate may have been waited on.
  update public.story_jobs
  set status = 'processing', attempts = attempts + 1,
      started_at = pg_catalog.clock_timestamp(), heartbeat_at = pg_catalog.clock_timestamp(),
      progress_words = 0
  where id = p_job_id
  returning * into v_job;

  select * into strict v_story from public.stories where id = v_job.story_id;
  return pg_catalog.jsonb_build_object(
    'started', true, 'job_id', v_job.id, 'story_id', v_story.id, 'user_id', v_job.user_id,
    'prompt', v_story.prompt, 'title', v_story.title, 'genre', v_story.genre,
    'language', v_story.language, 'target_words', v_story.target_words,
    'fence', v_job.fence, 'attempt', v_job.attempts, 'max_attempts', v_job.max_attempts
  );
end
$$;


--
-- Name: story_job_details(uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.story_job_details(p_job_id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: user_exists(uuid); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.user_exists(p_user_id uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select exists (select from auth.users where id = p_user_id)
$$;


--
-- Name: write_story_texts(jsonb); Type: FUNCTION; Schema: public
--

CREATE FUNCTION public.write_story_texts(p_writes jsonb) RETURNS jsonb
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: dispatch_cursor; Type: TABLE; Schema: private
--

CREATE TABLE private.dispatch_cursor (
    only_row boolean DEFAULT true NOT NULL,
    queued_at timestamp with time zone,
    job_id uuid,
    CONSTRAINT dispatch_cursor_only_row_check CHECK (only_row)
);


--
-- Name: TABLE dispatch_cursor; Type: COMMENT; Schema: private
--

COMMENT ON TABLE private.dispatch_cursor IS 'Where the dispatch snapshot''s walk over pending jobs goes on (null: at the head).';


--
-- Name: credit_balances; Type: TABLE; Schema: public
--

CREATE TABLE public.credit_balances (
    user_id uuid NOT NULL,
    balance integer DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT credit_balances_balance_check CHECK ((balance >= 0))
);


--
-- Name: TABLE credit_balances; Type: COMMENT; Schema: public
--

COMMENT ON TABLE public.credit_balances IS 'Spendable credits per user. Changed only by the storyq functions, always with a ledger row.';


--
-- Name: credit_ledger; Type: TABLE; Schema: public
--

CREATE TABLE public.credit_ledger (
    id bigint NOT NULL,
    user_id uuid NOT NULL,
    job_id uuid,
    kind text NOT NULL,
    amount integer NOT NULL,
    reason text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT credit_ledger_amount_sign CHECK (
CASE kind
    WHEN 'debit'::text THEN (amount < 0)
    ELSE (amount > 0)
END),
    CONSTRAINT credit_ledger_job_entries_name_a_job CHECK (((kind <> ALL (ARRAY['debit'::text, 'refund'::text])) OR (job_id IS NOT NULL))),
    CONSTRAINT credit_ledger_kind_check CHECK ((kind = ANY (ARRAY['grant'::text, 'signup'::text, 'debit'::text, 'refund'::text])))
);


--
-- Name: TABLE credit_ledger; Type: COMMENT; Schema: public
--

COMMENT ON TABLE public.credit_ledger IS 'Append-only history of credit movements; sum(amount) per user equals the balance.';


--
-- Name: credit_ledger_id_seq; Type: SEQUENCE; Schema: public
--

ALTER TABLE public.credit_ledger ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.credit_ledger_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: queue_by_tier; Type: VIEW; Schema: public
--

CREATE VIEW public.queue_by_tier WITH (security_invoker='true') AS
 SELECT COALESCE(story_jobs.tier, '(none)'::text) AS tier,
    count(*) FILTER (WHERE (story_jobs.status = 'pending'::text)) AS pending,
    count(*) FILTER (WHERE (story_jobs.status = 'processing'::text)) AS processing
   FROM public.story_jobs
  WHERE (story_jobs.status = ANY (ARRAY['pending'::text, 'processing'::text]))
  GROUP BY COALESCE(story_jobs.tier, '(none)'::text);


--
-- Name: VIEW queue_by_tier; Type: COMMENT; Schema: public
--

COMMENT ON VIEW public.queue_by_tier IS 'Pending and processing jobs per tier at enqueue ((none): enqueued before tiers); tiers with neither are left out.';


--
-- Name: story_job_attempts; Type: TABLE; Schema: public
--

CREATE TABLE public.story_job_attempts (
    job_id uuid NOT NULL,
    fence bigint NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    ended_at timestamp with time zone,
    outcome text,
    error_code text,
    model text,
    prompt_tokens bigint DEFAULT 0 NOT NULL,
    completion_tokens bigint DEFAULT 0 NOT NULL,
    cost_usd numeric(14,8) DEFAULT 0 NOT NULL,
    usage_estimated boolean DEFAULT false NOT NULL,
    usage_recorded_at timestamp with time zone,
    error_message text,
    CONSTRAINT story_job_attempts_completion_tokens_check CHECK ((completion_tokens >= 0)),
    CONSTRAINT story_job_attempts_cost_usd_check CHECK ((cost_usd >= (0)::numeric)),
    CONSTRAINT story_job_attempts_outcome_check CHECK (((outcome IS NULL) OR (outcome = ANY (ARRAY['completed'::text, 'retrying'::text, 'failed'::text, 'released'::text, 'cancelled'::text, 'lost'::text])))),
    CONSTRAINT story_job_attempts_prompt_tokens_check CHECK ((prompt_tokens >= 0))
);


--
-- Name: TABLE story_job_attempts; Type: COMMENT; Schema: public
--

COMMENT ON TABLE public.story_job_attempts IS 'One row per attempt that started (written by triggers on story_jobs), with its outcome and its LLM usage once recorded.';


--
-- Name: COLUMN story_job_attempts.fence; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.fence IS 'The attempt''s fencing token (story_jobs.fence while it ran): names the attempt.';


--
-- Name: COLUMN story_job_attempts.attempt; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.attempt IS 'story_jobs.attempts when it started (1 to max_attempts; an admin retry counts from 1 again).';


--
-- Name: COLUMN story_job_attempts.started_at; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.started_at IS 'When start_story_job started it.';


--
-- Name: COLUMN story_job_attempts.ended_at; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.ended_at IS 'When the job left processing; null while the attempt runs.';


--
-- Name: COLUMN story_job_attempts.outcome; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.outcome IS 'completed; retrying (failed, the job will run again); failed (the job failed for good); released (given back unused by its worker); cancelled; lost (its worker went silent: the job ran again, or failed when no attempt was left). Null while it runs.';


--
-- Name: COLUMN story_job_attempts.error_code; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.error_code IS 'The error the attempt ended with (retrying, failed, lost); null otherwise.';


--
-- Name: COLUMN story_job_attempts.model; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.model IS 'The model that wrote the attempt''s text, as the worker recorded it.';


--
-- Name: COLUMN story_job_attempts.prompt_tokens; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.prompt_tokens IS 'Prompt tokens of the whole attempt (every model it tried), as recorded by the worker.';


--
-- Name: COLUMN story_job_attempts.completion_tokens; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.completion_tokens IS 'Completion tokens of the whole attempt, as recorded by the worker.';


--
-- Name: COLUMN story_job_attempts.cost_usd; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.cost_usd IS 'What the attempt''s tokens cost in US dollars at the worker''s configured prices.';


--
-- Name: COLUMN story_job_attempts.usage_estimated; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.usage_estimated IS 'The tokens were counted by the worker because the provider sent no usage (a cut or cancelled stream).';


--
-- Name: COLUMN story_job_attempts.usage_recorded_at; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.usage_recorded_at IS 'When record_story_job_usage last wrote the usage; null: none recorded (its zeros then mean unknown, not free).';


--
-- Name: COLUMN story_job_attempts.error_message; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.story_job_attempts.error_message IS 'The message of the error the attempt ended with (retrying, failed, lost); null otherwise, and for attempts that ended before it was recorded.';


--
-- Name: queue_overview; Type: VIEW; Schema: public
--

CREATE VIEW public.queue_overview WITH (security_invoker='true') AS
 SELECT count(*) FILTER (WHERE (story_jobs.status = 'pending'::text)) AS pending,
    count(*) FILTER (WHERE (story_jobs.status = 'processing'::text)) AS processing,
    count(*) FILTER (WHERE (story_jobs.status = 'completed'::text)) AS completed,
    count(*) FILTER (WHERE (story_jobs.status = 'failed'::text)) AS failed,
    count(*) FILTER (WHERE (story_jobs.status = 'cancelled'::text)) AS cancelled,
    min(story_jobs.queued_at) FILTER (WHERE (story_jobs.status = 'pending'::text)) AS oldest_pending_at,
    ( SELECT (avg(EXTRACT(epoch FROM (recent.finished_at - recent.started_at))))::double precision AS avg
           FROM ( SELECT story_jobs_1.finished_at,
                    story_jobs_1.started_at
                   FROM public.story_jobs story_jobs_1
                  WHERE ((story_jobs_1.status = 'completed'::text) AND (story_jobs_1.started_at IS NOT NULL))
                  ORDER BY story_jobs_1.finished_at DESC
                 LIMIT 100) recent) AS avg_generation_seconds,
    ( SELECT (COALESCE(sum(a.prompt_tokens), (0)::numeric))::bigint AS "coalesce"
           FROM public.story_job_attempts a
          WHERE (a.started_at >= date_trunc('day'::text, now(), 'UTC'::text))) AS prompt_tokens_today,
    ( SELECT (COALESCE(sum(a.completion_tokens), (0)::numeric))::bigint AS "coalesce"
           FROM public.story_job_attempts a
          WHERE (a.started_at >= date_trunc('day'::text, now(), 'UTC'::text))) AS completion_tokens_today,
    ( SELECT COALESCE(sum(a.cost_usd), (0)::numeric) AS "coalesce"
           FROM public.story_job_attempts a
          WHERE (a.started_at >= date_trunc('day'::text, now(), 'UTC'::text))) AS cost_usd_today
   FROM public.story_jobs;


--
-- Name: VIEW queue_overview; Type: COMMENT; Schema: public
--

COMMENT ON VIEW public.queue_overview IS 'Jobs per status, the oldest pending job, the mean generation time of the last 100, and the tokens and cost of the attempts started today (UTC).';


--
-- Name: stories; Type: TABLE; Schema: public
--

CREATE TABLE public.stories (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    title text,
    prompt text NOT NULL,
    genre text,
    language text DEFAULT 'en'::text NOT NULL,
    target_words integer NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    content text,
    words integer,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    completed_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT stories_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'writing'::text, 'ready'::text, 'failed'::text, 'cancelled'::text]))),
    CONSTRAINT stories_target_words_check CHECK ((target_words > 0)),
    CONSTRAINT stories_words_check CHECK ((words >= 0))
);

ALTER TABLE ONLY public.stories REPLICA IDENTITY FULL;


--
-- Name: TABLE stories; Type: COMMENT; Schema: public
--

COMMENT ON TABLE public.stories IS 'One generated story per request; written at enqueue, filled in by complete_story_job.';


--
-- Name: COLUMN stories.content; Type: COMMENT; Schema: public
--

COMMENT ON COLUMN public.stories.content IS 'The story: the text so far while writing (appended to by write_story_texts), the whole of it once ready.';


--
-- Name: dispatch_cursor dispatch_cursor_pkey; Type: CONSTRAINT; Schema: private
--

ALTER TABLE ONLY private.dispatch_cursor
    ADD CONSTRAINT dispatch_cursor_pkey PRIMARY KEY (only_row);


--
-- Name: credit_balances credit_balances_pkey; Type: CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.credit_balances
    ADD CONSTRAINT credit_balances_pkey PRIMARY KEY (user_id);


--
-- Name: credit_ledger credit_ledger_pkey; Type: CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.credit_ledger
    ADD CONSTRAINT credit_ledger_pkey PRIMARY KEY (id);


--
-- Name: idempotency_keys idempotency_keys_pkey; Type: CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (user_id, key);


--
-- Name: plans plans_pkey; Type: CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.plans
    ADD CONSTRAINT plans_pkey PRIMARY KEY (tier);


--
-- Name: stories stories_pkey; Type: CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.stories
    ADD CONSTRAINT stories_pkey PRIMARY KEY (id);


--
-- Name: story_job_attempts story_job_attempts_pkey; Type: CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.story_job_attempts
    ADD CONSTRAINT story_job_attempts_pkey PRIMARY KEY (job_id, fence);


--
-- Name: story_jobs story_jobs_pkey; Type: CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.story_jobs
    ADD CONSTRAINT story_jobs_pkey PRIMARY KEY (id);


--
-- Name: credit_ledger_one_debit_per_job; Type: INDEX; Schema: public
--

CREATE UNIQUE INDEX credit_ledger_one_debit_per_job ON public.credit_ledger USING btree (job_id) WHERE (kind = 'debit'::text);


--
-- Name: credit_ledger_one_refund_per_job; Type: INDEX; Schema: public
--

CREATE UNIQUE INDEX credit_ledger_one_refund_per_job ON public.credit_ledger USING btree (job_id) WHERE (kind = 'refund'::text);


--
-- Name: credit_ledger_one_signup_per_user; Type: INDEX; Schema: public
--

CREATE UNIQUE INDEX credit_ledger_one_signup_per_user ON public.credit_ledger USING btree (user_id) WHERE (kind = 'signup'::text);


--
-- Name: credit_ledger_user_id_created_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX credit_ledger_user_id_created_at_idx ON public.credit_ledger USING btree (user_id, created_at);


--
-- Name: idempotency_keys_created_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX idempotency_keys_created_at_idx ON public.idempotency_keys USING btree (created_at);


--
-- Name: plans_one_default; Type: INDEX; Schema: public
--

CREATE UNIQUE INDEX plans_one_default ON public.plans USING btree (is_default) WHERE is_default;


--
-- Name: stories_user_id_created_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX stories_user_id_created_at_idx ON public.stories USING btree (user_id, created_at DESC, id DESC);


--
-- Name: story_job_attempts_started_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_job_attempts_started_at_idx ON public.story_job_attempts USING btree (started_at);


--
-- Name: story_jobs_created_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_created_at_idx ON public.story_jobs USING btree (created_at DESC, id DESC);


--
-- Name: story_jobs_pending_next_attempt_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_pending_next_attempt_at_idx ON public.story_jobs USING btree (next_attempt_at) WHERE (status = 'pending'::text);


--
-- Name: story_jobs_pending_queued_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_pending_queued_at_idx ON public.story_jobs USING btree (queued_at, id) WHERE (status = 'pending'::text);


--
-- Name: story_jobs_processing_heartbeat_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_processing_heartbeat_at_idx ON public.story_jobs USING btree (heartbeat_at) WHERE (status = 'processing'::text);


--
-- Name: story_jobs_status_created_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_status_created_at_idx ON public.story_jobs USING btree (status, created_at DESC, id DESC);


--
-- Name: story_jobs_status_finished_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_status_finished_at_idx ON public.story_jobs USING btree (status, finished_at) WHERE (status = ANY (ARRAY['completed'::text, 'failed'::text, 'cancelled'::text]));


--
-- Name: story_jobs_story_id_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_story_id_idx ON public.story_jobs USING btree (story_id);


--
-- Name: story_jobs_user_id_created_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_user_id_created_at_idx ON public.story_jobs USING btree (user_id, created_at DESC, id DESC);


--
-- Name: story_jobs_user_id_status_created_at_idx; Type: INDEX; Schema: public
--

CREATE INDEX story_jobs_user_id_status_created_at_idx ON public.story_jobs USING btree (user_id, status, created_at DESC, id DESC);


--
-- Name: credit_balances credit_balances_touch_updated_at; Type: TRIGGER; Schema: public
--

CREATE TRIGGER credit_balances_touch_updated_at BEFORE UPDATE ON public.credit_balances FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();


--
-- Name: credit_ledger credit_ledger_append_only; Type: TRIGGER; Schema: public
--

CREATE TRIGGER credit_ledger_append_only BEFORE UPDATE ON public.credit_ledger FOR EACH ROW EXECUTE FUNCTION private.refuse_ledger_update();


--
-- Name: plans plans_touch_updated_at; Type: TRIGGER; Schema: public
--

CREATE TRIGGER plans_touch_updated_at BEFORE UPDATE ON public.plans FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();


--
-- Name: stories stories_touch_updated_at; Type: TRIGGER; Schema: public
--

CREATE TRIGGER stories_touch_updated_at BEFORE UPDATE ON public.stories FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();


--
-- Name: story_jobs story_jobs_result_usage; Type: TRIGGER; Schema: public
--

CREATE TRIGGER story_jobs_result_usage BEFORE UPDATE OF status ON public.story_jobs FOR EACH ROW WHEN (((new.status = 'completed'::text) AND (old.status IS DISTINCT FROM 'completed'::text))) EXECUTE FUNCTION private.result_usage();


--
-- Name: story_jobs story_jobs_text_afresh; Type: TRIGGER; Schema: public
--

CREATE TRIGGER story_jobs_text_afresh AFTER UPDATE OF status ON public.story_jobs FOR EACH ROW WHEN (((new.status = 'pending'::text) AND (old.status IS DISTINCT FROM 'pending'::text))) EXECUTE FUNCTION private.story_text_afresh();


--
-- Name: story_jobs story_jobs_touch_updated_at; Type: TRIGGER; Schema: public
--

CREATE TRIGGER story_jobs_touch_updated_at BEFORE UPDATE ON public.story_jobs FOR EACH ROW EXECUTE FUNCTION private.touch_updated_at();


--
-- Name: story_jobs story_jobs_track_attempt; Type: TRIGGER; Schema: public
--

CREATE TRIGGER story_jobs_track_attempt AFTER UPDATE OF status ON public.story_jobs FOR EACH ROW WHEN ((old.status IS DISTINCT FROM new.status)) EXECUTE FUNCTION private.track_attempt();


--
-- Name: credit_balances credit_balances_user_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.credit_balances
    ADD CONSTRAINT credit_balances_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;


--
-- Name: credit_ledger credit_ledger_user_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.credit_ledger
    ADD CONSTRAINT credit_ledger_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;


--
-- Name: idempotency_keys idempotency_keys_story_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_story_id_fkey FOREIGN KEY (story_id) REFERENCES public.stories(id) ON DELETE CASCADE;


--
-- Name: idempotency_keys idempotency_keys_user_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;


--
-- Name: stories stories_user_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.stories
    ADD CONSTRAINT stories_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;


--
-- Name: story_job_attempts story_job_attempts_job_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.story_job_attempts
    ADD CONSTRAINT story_job_attempts_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.story_jobs(id) ON DELETE CASCADE;


--
-- Name: story_jobs story_jobs_story_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.story_jobs
    ADD CONSTRAINT story_jobs_story_id_fkey FOREIGN KEY (story_id) REFERENCES public.stories(id) ON DELETE CASCADE;


--
-- Name: story_jobs story_jobs_user_id_fkey; Type: FK CONSTRAINT; Schema: public
--

ALTER TABLE ONLY public.story_jobs
    ADD CONSTRAINT story_jobs_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;


--
-- Name: credit_balances; Type: ROW SECURITY; Schema: public
--

ALTER TABLE public.credit_balances ENABLE ROW LEVEL SECURITY;


--
-- Name: credit_ledger; Type: ROW SECURITY; Schema: public
--

ALTER TABLE public.credit_ledger ENABLE ROW LEVEL SECURITY;


--
-- Name: idempotency_keys; Type: ROW SECURITY; Schema: public
--

ALTER TABLE public.idempotency_keys ENABLE ROW LEVEL SECURITY;


--
-- Name: plans; Type: ROW SECURITY; Schema: public
--

ALTER TABLE public.plans ENABLE ROW LEVEL SECURITY;


--
-- Name: plans signed-in users read the plans; Type: POLICY; Schema: public
--

CREATE POLICY "signed-in users read the plans" ON public.plans FOR SELECT TO authenticated USING (true);


--
-- Name: stories; Type: ROW SECURITY; Schema: public
--

ALTER TABLE public.stories ENABLE ROW LEVEL SECURITY;


--
-- Name: story_job_attempts; Type: ROW SECURITY; Schema: public
--

ALTER TABLE public.story_job_attempts ENABLE ROW LEVEL SECURITY;


--
-- Name: story_jobs; Type: ROW SECURITY; Schema: public
--

ALTER TABLE public.story_jobs ENABLE ROW LEVEL SECURITY;


--
-- Name: credit_balances users read their own balance; Type: POLICY; Schema: public
--

CREATE POLICY "users read their own balance" ON public.credit_balances FOR SELECT TO authenticated USING ((( SELECT auth.uid() AS uid) = user_id));


--
-- Name: story_jobs users read their own jobs; Type: POLICY; Schema: public
--

CREATE POLICY "users read their own jobs" ON public.story_jobs FOR SELECT TO authenticated USING ((( SELECT auth.uid() AS uid) = user_id));


--
-- Name: credit_ledger users read their own ledger; Type: POLICY; Schema: public
--

CREATE POLICY "users read their own ledger" ON public.credit_ledger FOR SELECT TO authenticated USING ((( SELECT auth.uid() AS uid) = user_id));


--
-- Name: stories users read their own stories; Type: POLICY; Schema: public
--

CREATE POLICY "users read their own stories" ON public.stories FOR SELECT TO authenticated USING ((( SELECT auth.uid() AS uid) = user_id));


--
-- Name: supabase_realtime stories; Type: PUBLICATION TABLE; Schema: public
--

ALTER PUBLICATION supabase_realtime ADD TABLE ONLY public.stories;


--
-- Name: supabase_realtime story_jobs; Type: PUBLICATION TABLE; Schema: public
--

ALTER PUBLICATION supabase_realtime ADD TABLE ONLY public.story_jobs;


--
-- Name: FUNCTION cancel_pending_job(p_job_id uuid, p_reason text); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.cancel_pending_job(p_job_id uuid, p_reason text) FROM PUBLIC;


--
-- Name: TABLE story_jobs; Type: ACL; Schema: public
--

GRANT SELECT,REFERENCES,TRIGGER ON TABLE public.story_jobs TO service_role;
GRANT SELECT ON TABLE public.story_jobs TO authenticated;


--
-- Name: FUNCTION fail_attempt(p_job_id uuid, p_error_code text, p_error_message text, p_retryable boolean, p_retry_delay_seconds double precision); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.fail_attempt(p_job_id uuid, p_error_code text, p_error_message text, p_retryable boolean, p_retry_delay_seconds double precision) FROM PUBLIC;


--
-- Name: FUNCTION job_json(p_job public.story_jobs); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.job_json(p_job public.story_jobs) FROM PUBLIC;


--
-- Name: FUNCTION job_state(p_job public.story_jobs); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.job_state(p_job public.story_jobs) FROM PUBLIC;


--
-- Name: FUNCTION lock_job(p_job_id uuid, p_user_id uuid); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.lock_job(p_job_id uuid, p_user_id uuid) FROM PUBLIC;


--
-- Name: FUNCTION lock_running_fence(p_job_id uuid, p_fence bigint); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.lock_running_fence(p_job_id uuid, p_fence bigint) FROM PUBLIC;


--
-- Name: TABLE plans; Type: ACL; Schema: public
--

GRANT ALL ON TABLE public.plans TO service_role;
GRANT SELECT ON TABLE public.plans TO authenticated;


--
-- Name: FUNCTION plan_of(p_user_id uuid); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.plan_of(p_user_id uuid) FROM PUBLIC;


--
-- Name: FUNCTION refund_job(p_job_id uuid, p_reason text); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.refund_job(p_job_id uuid, p_reason text) FROM PUBLIC;


--
-- Name: TABLE idempotency_keys; Type: ACL; Schema: public
--

GRANT SELECT,REFERENCES,TRIGGER ON TABLE public.idempotency_keys TO service_role;


--
-- Name: FUNCTION replay_key(p_key public.idempotency_keys, p_balance integer); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.replay_key(p_key public.idempotency_keys, p_balance integer) FROM PUBLIC;


--
-- Name: FUNCTION result_usage(); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.result_usage() FROM PUBLIC;


--
-- Name: FUNCTION running_attempts(p_live_seconds double precision); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.running_attempts(p_live_seconds double precision) FROM PUBLIC;


--
-- Name: FUNCTION track_attempt(); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.track_attempt() FROM PUBLIC;


--
-- Name: FUNCTION usage_problem(p_usage jsonb); Type: ACL; Schema: private
--

REVOKE ALL ON FUNCTION private.usage_problem(p_usage jsonb) FROM PUBLIC;


--
-- Name: FUNCTION cancel_running_story_job(p_job_id uuid, p_fence bigint); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.cancel_running_story_job(p_job_id uuid, p_fence bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.cancel_running_story_job(p_job_id uuid, p_fence bigint) TO service_role;


--
-- Name: FUNCTION cancel_story_job(p_job_id uuid, p_user_id uuid, p_reason text); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.cancel_story_job(p_job_id uuid, p_user_id uuid, p_reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.cancel_story_job(p_job_id uuid, p_user_id uuid, p_reason text) TO service_role;


--
-- Name: FUNCTION clean_story_jobs(p_status text, p_older_than_seconds double precision); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.clean_story_jobs(p_status text, p_older_than_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.clean_story_jobs(p_status text, p_older_than_seconds double precision) TO service_role;


--
-- Name: FUNCTION complete_story_job(p_job_id uuid, p_fence bigint, p_content text, p_title text, p_result jsonb); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.complete_story_job(p_job_id uuid, p_fence bigint, p_content text, p_title text, p_result jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.complete_story_job(p_job_id uuid, p_fence bigint, p_content text, p_title text, p_result jsonb) TO service_role;


--
-- Name: FUNCTION credit_balance(p_user_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.credit_balance(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.credit_balance(p_user_id uuid) TO service_role;


--
-- Name: FUNCTION dispatch_snapshot(p_limit integer, p_recent_seconds double precision, p_page integer, p_recent_limit integer, p_after jsonb); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.dispatch_snapshot(p_limit integer, p_recent_seconds double precision, p_page integer, p_recent_limit integer, p_after jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.dispatch_snapshot(p_limit integer, p_recent_seconds double precision, p_page integer, p_recent_limit integer, p_after jsonb) TO service_role;


--
-- Name: FUNCTION empty_story_queue(); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.empty_story_queue() FROM PUBLIC;
GRANT ALL ON FUNCTION public.empty_story_queue() TO service_role;


--
-- Name: FUNCTION enqueue_story_job(p_user_id uuid, p_prompt text, p_title text, p_genre text, p_language text, p_target_words integer, p_cost integer, p_max_attempts integer, p_idempotency_key text, p_request_hash text, p_free_credits integer, p_idempotency_ttl_seconds double precision); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.enqueue_story_job(p_user_id uuid, p_prompt text, p_title text, p_genre text, p_language text, p_target_words integer, p_cost integer, p_max_attempts integer, p_idempotency_key text, p_request_hash text, p_free_credits integer, p_idempotency_ttl_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.enqueue_story_job(p_user_id uuid, p_prompt text, p_title text, p_genre text, p_language text, p_target_words integer, p_cost integer, p_max_attempts integer, p_idempotency_key text, p_request_hash text, p_free_credits integer, p_idempotency_ttl_seconds double precision) TO service_role;


--
-- Name: FUNCTION expire_story_jobs(p_ttl_seconds double precision, p_limit integer); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.expire_story_jobs(p_ttl_seconds double precision, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.expire_story_jobs(p_ttl_seconds double precision, p_limit integer) TO service_role;


--
-- Name: FUNCTION fail_story_job(p_job_id uuid, p_fence bigint, p_error_code text, p_error_message text, p_retryable boolean, p_retry_delay_seconds double precision); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.fail_story_job(p_job_id uuid, p_fence bigint, p_error_code text, p_error_message text, p_retryable boolean, p_retry_delay_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.fail_story_job(p_job_id uuid, p_fence bigint, p_error_code text, p_error_message text, p_retryable boolean, p_retry_delay_seconds double precision) TO service_role;


--
-- Name: FUNCTION get_story(p_story_id uuid, p_user_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.get_story(p_story_id uuid, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.get_story(p_story_id uuid, p_user_id uuid) TO service_role;


--
-- Name: FUNCTION get_story_job(p_job_id uuid, p_user_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.get_story_job(p_job_id uuid, p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.get_story_job(p_job_id uuid, p_user_id uuid) TO service_role;


--
-- Name: FUNCTION grant_credits(p_user_id uuid, p_amount integer, p_reason text); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.grant_credits(p_user_id uuid, p_amount integer, p_reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.grant_credits(p_user_id uuid, p_amount integer, p_reason text) TO service_role;


--
-- Name: FUNCTION health_check(); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.health_check() FROM PUBLIC;
GRANT ALL ON FUNCTION public.health_check() TO service_role;


--
-- Name: FUNCTION heartbeat_story_job(p_job_id uuid, p_fence bigint, p_words integer); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.heartbeat_story_job(p_job_id uuid, p_fence bigint, p_words integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.heartbeat_story_job(p_job_id uuid, p_fence bigint, p_words integer) TO service_role;


--
-- Name: FUNCTION heartbeat_story_jobs(p_beats jsonb); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.heartbeat_story_jobs(p_beats jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.heartbeat_story_jobs(p_beats jsonb) TO service_role;


--
-- Name: FUNCTION list_all_story_jobs(p_statuses text[], p_user_id uuid, p_tier text, p_created_after timestamp with time zone, p_created_before timestamp with time zone, p_limit integer, p_cursor_created_at timestamp with time zone, p_cursor_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.list_all_story_jobs(p_statuses text[], p_user_id uuid, p_tier text, p_created_after timestamp with time zone, p_created_before timestamp with time zone, p_limit integer, p_cursor_created_at timestamp with time zone, p_cursor_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.list_all_story_jobs(p_statuses text[], p_user_id uuid, p_tier text, p_created_after timestamp with time zone, p_created_before timestamp with time zone, p_limit integer, p_cursor_created_at timestamp with time zone, p_cursor_id uuid) TO service_role;


--
-- Name: FUNCTION list_story_jobs(p_user_id uuid, p_status text, p_limit integer, p_cursor_created_at timestamp with time zone, p_cursor_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.list_story_jobs(p_user_id uuid, p_status text, p_limit integer, p_cursor_created_at timestamp with time zone, p_cursor_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.list_story_jobs(p_user_id uuid, p_status text, p_limit integer, p_cursor_created_at timestamp with time zone, p_cursor_id uuid) TO service_role;


--
-- Name: FUNCTION purge_idempotency_keys(p_ttl_seconds double precision, p_limit integer); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.purge_idempotency_keys(p_ttl_seconds double precision, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.purge_idempotency_keys(p_ttl_seconds double precision, p_limit integer) TO service_role;


--
-- Name: FUNCTION queue_counts(); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.queue_counts() FROM PUBLIC;
GRANT ALL ON FUNCTION public.queue_counts() TO service_role;


--
-- Name: FUNCTION record_story_job_usage(p_usages jsonb); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.record_story_job_usage(p_usages jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.record_story_job_usage(p_usages jsonb) TO service_role;


--
-- Name: FUNCTION release_story_job(p_job_id uuid, p_fence bigint); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.release_story_job(p_job_id uuid, p_fence bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.release_story_job(p_job_id uuid, p_fence bigint) TO service_role;


--
-- Name: FUNCTION requeue_stalled_story_job(p_job_id uuid, p_fence bigint, p_live_seconds double precision, p_error_code text, p_error_message text, p_retry_delay_seconds double precision); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.requeue_stalled_story_job(p_job_id uuid, p_fence bigint, p_live_seconds double precision, p_error_code text, p_error_message text, p_retry_delay_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.requeue_stalled_story_job(p_job_id uuid, p_fence bigint, p_live_seconds double precision, p_error_code text, p_error_message text, p_retry_delay_seconds double precision) TO service_role;


--
-- Name: FUNCTION retry_failed_story_job(p_job_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.retry_failed_story_job(p_job_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.retry_failed_story_job(p_job_id uuid) TO service_role;


--
-- Name: FUNCTION stalled_story_jobs(p_stalled_for_seconds double precision, p_limit integer); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.stalled_story_jobs(p_stalled_for_seconds double precision, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.stalled_story_jobs(p_stalled_for_seconds double precision, p_limit integer) TO service_role;


--
-- Name: FUNCTION start_story_job(p_job_id uuid, p_fence bigint, p_max_active integer, p_live_seconds double precision); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.start_story_job(p_job_id uuid, p_fence bigint, p_max_active integer, p_live_seconds double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION public.start_story_job(p_job_id uuid, p_fence bigint, p_max_active integer, p_live_seconds double precision) TO service_role;


--
-- Name: FUNCTION story_job_details(p_job_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.story_job_details(p_job_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.story_job_details(p_job_id uuid) TO service_role;


--
-- Name: FUNCTION user_exists(p_user_id uuid); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.user_exists(p_user_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.user_exists(p_user_id uuid) TO service_role;


--
-- Name: FUNCTION write_story_texts(p_writes jsonb); Type: ACL; Schema: public
--

REVOKE ALL ON FUNCTION public.write_story_texts(p_writes jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.write_story_texts(p_writes jsonb) TO service_role;


--
-- Name: TABLE credit_balances; Type: ACL; Schema: public
--

GRANT SELECT,REFERENCES,TRIGGER ON TABLE public.credit_balances TO service_role;
GRANT SELECT ON TABLE public.credit_balances TO authenticated;


--
-- Name: TABLE credit_ledger; Type: ACL; Schema: public
--

GRANT SELECT,REFERENCES,TRIGGER ON TABLE public.credit_ledger TO service_role;
GRANT SELECT ON TABLE public.credit_ledger TO authenticated;


--
-- Name: SEQUENCE credit_ledger_id_seq; Type: ACL; Schema: public
--

GRANT ALL ON SEQUENCE public.credit_ledger_id_seq TO service_role;


--
-- Name: TABLE queue_by_tier; Type: ACL; Schema: public
--

GRANT SELECT ON TABLE public.queue_by_tier TO service_role;


--
-- Name: TABLE story_job_attempts; Type: ACL; Schema: public
--

GRANT SELECT,REFERENCES,TRIGGER ON TABLE public.story_job_attempts TO service_role;


--
-- Name: TABLE queue_overview; Type: ACL; Schema: public
--

GRANT SELECT ON TABLE public.queue_overview TO service_role;


--
-- Name: TABLE stories; Type: ACL; Schema: public
--

GRANT SELECT,REFERENCES,TRIGGER ON TABLE public.stories TO service_role;
GRANT SELECT ON TABLE public.stories TO authenticated;
