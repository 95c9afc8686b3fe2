-- Stories and their generation jobs: the source of truth the Redis queue is rebuilt from.
--
-- A story row exists from the moment of enqueue (content null until ready), so a user who
-- closes the browser finds it later. A job row carries the state machine:
--   pending -> processing -> completed | failed;  processing -> pending (retry);
--   pending -> cancelled;  failed -> pending (admin retry).
-- `attempts` counts claims (start_story_job) and fences every write of an attempt.

create table public.stories (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  title text,
  prompt text not null,
  genre text,
  language text not null default 'en',
  target_words integer not null check (target_words > 0),
  status text not null default 'pending'
    check (status in ('pending', 'ready', 'failed', 'cancelled')),
  content text,
  words integer check (words >= 0),
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  updated_at timestamptz not null default now()
);

comment on table public.stories is
  'One generated story per request; written at enqueue, filled in by complete_story_job.';

create index stories_user_id_created_at_idx on public.stories (user_id, created_at desc, id desc);

create table public.story_jobs (
  id uuid primary key default gen_random_uuid(),
  story_id uuid not null references public.stories (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  status text not null default 'pending'
    check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
  attempts integer not null default 0 check (attempts >= 0),
  max_attempts integer not null default 3 check (max_attempts >= 1),
  priority integer not null default 0,
  idempotency_key text,
  request_hash text,
  error_code text,
  error_message text,
  result jsonb,
  refunded boolean not null default false,
  progress_words integer,
  cost integer not null default 0 check (cost >= 0),
  created_at timestamptz not null default now(),
  queued_at timestamptz not null default now(),
  started_at timestamptz,
  heartbeat_at timestamptz,
  finished_at timestamptz,
  next_attempt_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint story_jobs_attempts_within_max check (attempts <= max_attempts),
  -- The idempotency scope is the user: two users may pick the same key. Rows without a key
  -- never collide (nulls are distinct).
  constraint story_jobs_user_id_idempotency_key_key unique (user_id, idempotency_key),
  constraint story_jobs_finished_have_finished_at check (
    status not in ('completed', 'failed', 'cancelled') or finished_at is not null
  )
);

comment on table public.story_jobs is
  'Generation jobs. Changed only through the storyq functions; Redis only mirrors pending ones.';

-- A user's jobs, newest first, optionally by status, paged by the (created_at, id) keyset.
create index story_jobs_user_id_created_at_idx
  on public.story_jobs (user_id, created_at desc, id desc);
create index story_jobs_user_id_status_created_at_idx
  on public.story_jobs (user_id, status, created_at desc, id desc);
-- The job of a story (get_story).
create index story_jobs_story_id_idx on public.story_jobs (story_id);
-- The sweeper: pending jobs to (re)dispatch, in queue order and by due time.
create index story_jobs_pending_queued_at_idx on public.story_jobs (queued_at, id)
  where status = 'pending';
create index story_jobs_pending_next_attempt_at_idx on public.story_jobs (next_attempt_at)
  where status = 'pending';
-- The sweeper: processing jobs whose worker stopped sending heartbeats.
create index story_jobs_processing_heartbeat_at_idx on public.story_jobs (heartbeat_at)
  where status = 'processing';
-- Admin clean and the mean generation time: finished jobs by status and age.
create index story_jobs_status_finished_at_idx on public.story_jobs (status, finished_at)
  where status in ('completed', 'failed', 'cancelled');

create trigger stories_touch_updated_at
  before update on public.stories
  for each row execute function private.touch_updated_at();

create trigger story_jobs_touch_updated_at
  before update on public.story_jobs
  for each row execute function private.touch_updated_at();

-- RLS: a signed-in user reads their own stories and jobs (also what Realtime delivers to them).
alter table public.stories enable row level security;
alter table public.story_jobs enable row level security;

create policy "users read their own stories" on public.stories
  for select to authenticated
  using ((select auth.uid()) = user_id);

create policy "users read their own jobs" on public.story_jobs
  for select to authenticated
  using ((select auth.uid()) = user_id);

-- Undo the default ALL grants; writes happen only inside the functions (which run as owner).
revoke all on public.stories, public.story_jobs from anon, authenticated;
revoke insert, update, delete, truncate on public.stories, public.story_jobs from service_role;
grant select on public.stories, public.story_jobs to authenticated;
