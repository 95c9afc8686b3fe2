-- Seed data for `supabase db reset` on a local Supabase. storyq needs none: users come from
-- sign-up (or `storyq token` locally) and credits from `storyq credits add`.
select 1;
