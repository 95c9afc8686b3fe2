-- Issue 21, second step: dispatch now reads a plan's priority and running cap (the Redis claim
-- script holds the jobs of a user at their cap, and a priority is a head start in the
-- fair-share order; see README "Plans and tiers"). Only the descriptions change here.

comment on table public.plans is
  'What each tier (auth.users app_metadata.tier) gets: its fair-share weight, a priority and a running cap. Edited by the operator; users whose tier names no plan get the default one. Edits reach jobs already queued at the next sweeps.';
comment on column public.plans.priority is
  'Priority (-100 to 100), stamped on each job at enqueue (story_jobs.priority): a head start in the fair-share order of about that many weight-1 jobs (counted up to 10 either way) for a user who starts waiting again. It never starves anyone: once backlogged, the weight rules.';
comment on column public.plans.max_active_per_user is
  'Running cap per user: while anyone under their own cap waits, at most this many of the user''s jobs run (counted in Redis at each claim; held jobs go back as the user''s jobs end). When nobody else waits, the user''s jobs may use the free slots (work-conserving). Null: no cap of its own.';
comment on column public.story_jobs.priority is
  'The plan''s priority at enqueue (plans.priority): the job''s head start in the fair-share order.';
