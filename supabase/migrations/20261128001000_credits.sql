-- Credits: a balance per user (never negative) and the append-only ledger that explains it.
--
-- Invariant kept by every function that touches credits: for each user,
--   credit_balances.balance = sum(credit_ledger.amount)
-- Debits are negative, everything else positive; a job is refunded at most once (unique index).

-- Helpers the service functions share live in `private`, a schema PostgREST does not expose
-- and no API role may use: they are called only from `security definer` functions.
create schema if not exists private;
revoke all on schema private from public;

-- updated_at follows every update, whoever makes it.
create function private.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := pg_catalog.now();
  return new;
end
$$;

create table public.credit_balances (
  user_id uuid primary key references auth.users (id) on delete cascade,
  balance integer not null default 0 check (balance >= 0),
  updated_at timestamptz not null default now()
);

comment on table public.credit_balances is
  'Spendable credits per user. Changed only by the storyq functions, always with a ledger row.';

create trigger credit_balances_touch_updated_at
  before update on public.credit_balances
  for each row execute function private.touch_updated_at();

create table public.credit_ledger (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  -- No foreign key: finished job rows may be cleaned away, their credit history may not.
  job_id uuid,
  kind text not null check (kind in ('grant', 'signup', 'debit', 'refund')),
  amount integer not null,
  reason text,
  created_at timestamptz not null default now(),
  constraint credit_ledger_amount_sign check (
    case kind when 'debit' then amount < 0 else amount > 0 end
  ),
  constraint credit_ledger_job_entries_name_a_job check (
    kind not in ('debit', 'refund') or job_id is not null
  )
);

comment on table public.credit_ledger is
  'Append-only history of credit movements; sum(amount) per user equals the balance.';

create index credit_ledger_user_id_created_at_idx on public.credit_ledger (user_id, created_at);
-- One debit and at most one refund per job, whatever retries, cancellations or races happen.
create unique index credit_ledger_one_debit_per_job on public.credit_ledger (job_id)
  where kind = 'debit';
create unique index credit_ledger_one_refund_per_job on public.credit_ledger (job_id)
  where kind = 'refund';
-- The sign-up grant is given once per user.
create unique index credit_ledger_one_signup_per_user on public.credit_ledger (user_id)
  where kind = 'signup';

-- Append-only even for the table owner (the security definer functions run as the owner).
-- Deleting stays possible so that deleting a user (on delete cascade) still works.
create function private.refuse_ledger_update()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'P0001',
    message = 'credit_ledger_is_append_only',
    detail = 'credit ledger rows are never updated; write a compensating entry instead';
end
$$;

create trigger credit_ledger_append_only
  before update on public.credit_ledger
  for each row execute function private.refuse_ledger_update();

-- RLS: a signed-in user reads their own balance and history; nobody writes through the API.
alter table public.credit_balances enable row level security;
alter table public.credit_ledger enable row level security;

create policy "users read their own balance" on public.credit_balances
  for select to authenticated
  using ((select auth.uid()) = user_id);

create policy "users read their own ledger" on public.credit_ledger
  for select to authenticated
  using ((select auth.uid()) = user_id);

-- The bootstrap's default privileges (as on Supabase) grant ALL to the API roles: take it back.
-- Even the service role only reads: credits move through the functions, which keep the ledger.
revoke all on public.credit_balances, public.credit_ledger from anon, authenticated;
revoke insert, update, delete, truncate on public.credit_balances, public.credit_ledger
  from service_role;
grant select on public.credit_balances, public.credit_ledger to authenticated;
revoke all on sequence public.credit_ledger_id_seq from anon, authenticated;
