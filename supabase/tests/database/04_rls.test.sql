-- Row level security and grants: a signed-in user reads only their own rows, anon reads
-- nothing, and neither may write or call the service functions.
begin;
select plan(33);

insert into auth.users (id) values
  ('00000000-0000-0000-0000-0000000000a1'),
  ('00000000-0000-0000-0000-0000000000b2');
create temp table setup as
select public.grant_credits(u, 5) as balance,
       public.enqueue_story_job(u, 'prompt', null, null, null, 500, 1, 3) as job
from unnest(array['00000000-0000-0000-0000-0000000000a1',
                  '00000000-0000-0000-0000-0000000000b2']::uuid[]) u;
grant select on setup to authenticated, anon;

-- As user A.
set local role authenticated;
select set_config('request.jwt.claims',
  '{"sub": "00000000-0000-0000-0000-0000000000a1", "role": "authenticated"}', true);

select results_eq('select distinct user_id from public.story_jobs',
  $$ values ('00000000-0000-0000-0000-0000000000a1'::uuid) $$, 'A sees only A''s jobs');
select results_eq('select distinct user_id from public.stories',
  $$ values ('00000000-0000-0000-0000-0000000000a1'::uuid) $$, 'A sees only A''s stories');
select results_eq('select user_id, balance from public.credit_balances',
  $$ values ('00000000-0000-0000-0000-0000000000a1'::uuid, 4) $$, 'A sees only A''s balance');
select results_eq('select distinct user_id from public.credit_ledger',
  $$ values ('00000000-0000-0000-0000-0000000000a1'::uuid) $$, 'A sees only A''s ledger');
select is_empty(
  $$ select id from public.story_jobs where user_id = '00000000-0000-0000-0000-0000000000b2' $$,
  'asking for B''s jobs by id returns nothing');

select throws_ok($$ insert into public.stories (user_id, prompt, target_words)
                    values ('00000000-0000-0000-0000-0000000000a1', 'x', 10) $$,
  '42501', null, 'A cannot insert a story');
select throws_ok($$ update public.story_jobs set status = 'completed' $$,
  '42501', null, 'A cannot update a job');
select throws_ok($$ update public.credit_balances set balance = 1000 $$,
  '42501', null, 'A cannot set a balance');
select throws_ok($$ insert into public.credit_ledger (user_id, kind, amount)
                    values ('00000000-0000-0000-0000-0000000000a1', 'grant', 1000) $$,
  '42501', null, 'A cannot write the ledger');
select throws_ok($$ delete from public.story_jobs $$, '42501', null, 'A cannot delete jobs');
select throws_ok(
  $$ select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'x', null, null,
       null, 500, 0, 3) $$,
  '42501', null, 'A cannot call enqueue_story_job');
select throws_ok(
  $$ select public.grant_credits('00000000-0000-0000-0000-0000000000a1', 1000) $$,
  '42501', null, 'A cannot grant credits');
select throws_ok(
  $$ select public.start_story_job((select (job ->> 'job_id')::uuid from setup limit 1),
       (select (job ->> 'fence')::bigint from setup limit 1), 5, 60) $$,
  '42501', null, 'A cannot start a job');
select throws_ok($$ select public.dispatch_snapshot() $$, '42501', null,
  'A cannot read the dispatch snapshot');
select throws_ok($$ select * from public.idempotency_keys $$, '42501', null,
  'A cannot read idempotency keys');
select throws_ok(
  $$ select public.get_story_job((select (job ->> 'job_id')::uuid from setup limit 1)) $$,
  '42501', null, 'A cannot read through the service functions');
select throws_ok($$ select * from public.queue_overview $$, '42501', null,
  'A cannot read the dashboard view');

-- As user B.
select set_config('request.jwt.claims',
  '{"sub": "00000000-0000-0000-0000-0000000000b2", "role": "authenticated"}', true);
select results_eq('select distinct user_id from public.story_jobs',
  $$ values ('00000000-0000-0000-0000-0000000000b2'::uuid) $$, 'B sees only B''s jobs');
select results_eq('select distinct user_id from public.stories',
  $$ values ('00000000-0000-0000-0000-0000000000b2'::uuid) $$, 'B sees only B''s stories');
select results_eq('select user_id from public.credit_balances',
  $$ values ('00000000-0000-0000-0000-0000000000b2'::uuid) $$, 'B sees only B''s balance');
select results_eq('select distinct user_id from public.credit_ledger',
  $$ values ('00000000-0000-0000-0000-0000000000b2'::uuid) $$, 'B sees only B''s ledger');

-- Authenticated without a subject (a malformed token) sees nothing.
select set_config('request.jwt.claims', '{"role": "authenticated"}', true);
select is_empty('select id from public.story_jobs', 'no subject: no jobs');
select is_empty('select user_id from public.credit_balances', 'no subject: no balance');

-- As anon.
reset role;
set local role anon;
select set_config('request.jwt.claims', '{"role": "anon"}', true);
select throws_ok($$ select * from public.story_jobs $$, '42501', null, 'anon cannot read jobs');
select throws_ok($$ select * from public.stories $$, '42501', null, 'anon cannot read stories');
select throws_ok($$ select * from public.credit_balances $$, '42501', null,
  'anon cannot read balances');
select throws_ok($$ select * from public.credit_ledger $$, '42501', null,
  'anon cannot read the ledger');
select throws_ok(
  $$ select public.credit_balance('00000000-0000-0000-0000-0000000000a1') $$,
  '42501', null, 'anon cannot call the service functions');
select throws_ok($$ select public.queue_counts() $$, '42501', null,
  'anon cannot read queue counts');
select throws_ok($$ select * from public.idempotency_keys $$, '42501', null,
  'anon cannot read idempotency keys');

-- As the service role (what the API and worker use): functions and reads work.
reset role;
set local role service_role;
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 4,
  'the service role calls the functions');
select is((select (pending)::int from public.queue_overview), 2,
  'the service role reads the dashboard view');
select throws_ok($$ update public.story_jobs set status = 'completed' $$, '42501', null,
  'even the service role changes jobs only through the functions');

reset role;
select * from finish();
rollback;
