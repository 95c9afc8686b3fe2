-- Idempotency keys outlive job rows: a key is remembered for its TTL (IDEMPOTENCY_TTL_SECONDS,
-- 24 h by default) in a table of its own, so cleaning finished jobs never lets the same key
-- and body debit a second time. The story a key created is kept, so a replay whose job row
-- was cleaned still answers with the job's ids and its final status.

create table public.idempotency_keys (
  user_id uuid not null references auth.users (id) on delete cascade,
  key text not null,
  request_hash text,
  -- No foreign key: the job row may be cleaned while the key lives on.
  job_id uuid not null,
  story_id uuid not null references public.stories (id) on delete cascade,
  created_at timestamptz not null default now(),
  primary key (user_id, key)
);

comment on table public.idempotency_keys is
  'Idempotency-Key of POST /api/generate per user, kept for its TTL whatever happens to jobs.';

-- The sweeper forgets expired keys oldest first.
create index idempotency_keys_created_at_idx on public.idempotency_keys (created_at);

alter table public.idempotency_keys enable row level security;
revoke all on public.idempotency_keys from anon, authenticated;
revoke insert, update, delete, truncate on public.idempotency_keys from service_role;

insert into public.idempotency_keys (user_id, key, request_hash, job_id, story_id, created_at)
select user_id, idempotency_key, request_hash, id, story_id, created_at
from public.story_jobs
where idempotency_key is not null;

-- The key's scope is the user and its lifetime the TTL: the job column stays as a record.
alter table public.story_jobs drop constraint story_jobs_user_id_idempotency_key_key;

drop function public.enqueue_story_job(
  uuid, text, text, text, text, integer, integer, integer, text, text, integer
);

-- What a replayed key answers: the job as it is now; when its row was cleaned, the status its
-- story ended with.
create function private.replay_key(p_key public.idempotency_keys, p_balance integer)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'job_id', p_key.job_id, 'story_id', p_key.story_id,
    'status', coalesce(j.status, case s.status
      when 'ready' then 'completed' when 'failed' then 'failed' else 'cancelled' end),
    'attempts', coalesce(j.attempts, 0), 'fence', j.fence,
    'created_at', coalesce(j.created_at, p_key.created_at),
    'replayed', true, 'balance', p_balance
  )
  from (select 1) as one
  left join public.story_jobs j on j.id = p_key.job_id
  left join public.stories s on s.id = p_key.story_id
$$;

revoke all on function private.replay_key(public.idempotency_keys, integer) from public;

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
  p_free_credits integer default 0,
  p_idempotency_ttl_seconds double precision default 86400
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.story_jobs;
  v_key public.idempotency_keys;
  v_story_id uuid;
  v_balance integer;
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

  insert into public.story_jobs (
    story_id, user_id, max_attempts, idempotency_key, request_hash, cost
  )
  values (
    v_story_id, p_user_id, p_max_attempts, p_idempotency_key, p_request_hash, p_cost
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
    'replayed', false, 'balance', v_balance
  );
end
$$;

-- Forget keys older than their TTL, at most p_limit (oldest first); how many went.
create function public.purge_idempotency_keys(
  p_ttl_seconds double precision, p_limit integer default 1000
)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
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

revoke execute on function
  public.enqueue_story_job(uuid, text, text, text, text, integer, integer, integer, text, text,
    integer, double precision),
  public.purge_idempotency_keys(double precision, integer)
from public, anon, authenticated;

grant execute on function
  public.enqueue_story_job(uuid, text, text, text, text, integer, integer, integer, text, text,
    integer, double precision),
  public.purge_idempotency_keys(double precision, integer)
to service_role;
