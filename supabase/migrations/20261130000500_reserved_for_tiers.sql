-- story_jobs.priority is kept, unused, for plan tiers: nothing sets it and dispatch does not
-- read it yet (Redis orders the waiting set by fair-share tags; see storyq.queue.dispatch).
comment on column public.story_jobs.priority is
  'Reserved for plan tiers: always 0 today; neither enqueue nor dispatch reads it yet.';
