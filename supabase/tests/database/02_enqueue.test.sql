-- enqueue_story_job: debit, story, job and ledger entry in one transaction; idempotency keys.
begin;
select plan(30);

insert into auth.users (id) values
  ('00000000-0000-0000-0000-0000000000a1'),
  ('00000000-0000-0000-0000-0000000000b2');

-- Given a user without credits, when they enqueue, then 402 and nothing is written.
select throws_ok(
  $$ select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'a dragon', 'T',
       null, null, 800, 1, 3) $$,
  'PT402', 'insufficient_credits', 'no credits: insufficient_credits (402)'
);
select is((select count(*) from public.stories
           where user_id = '00000000-0000-0000-0000-0000000000a1'), 0::bigint,
  'a refused enqueue leaves no story');
select is((select count(*) from public.credit_ledger
           where user_id = '00000000-0000-0000-0000-0000000000a1'), 0::bigint,
  'a refused enqueue leaves no ledger entry');

-- Given two credits, when the user enqueues with an idempotency key, then one is debited.
select is(public.grant_credits('00000000-0000-0000-0000-0000000000a1', 2), 2, 'granted 2');
create temp table first_call as
select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'a dragon', 'Dragons',
  'fantasy', 'en', 800, 1, 3, 'key-1', 'hash-1') as r;
select is((select (r ->> 'replayed')::boolean from first_call), false, 'first call is not a replay');
select is((select (r ->> 'balance')::int from first_call), 1, 'the answer carries the new balance');
select is((select r ->> 'status' from first_call), 'pending', 'the job is pending');
select is((select (r ->> 'attempts')::int from first_call), 0, 'no attempt yet');
select is((select (r ->> 'fence')::bigint from first_call),
  (select fence from public.story_jobs where id = (select (r ->> 'job_id')::uuid from first_call)),
  'the answer carries the fence of the job''s first attempt');
select results_eq(
  $$ select k.request_hash, k.job_id, k.story_id, k.created_at = now()
     from public.idempotency_keys k
     where k.user_id = '00000000-0000-0000-0000-0000000000a1' and k.key = 'key-1' $$,
  $$ select 'hash-1'::text, (r ->> 'job_id')::uuid, (r ->> 'story_id')::uuid, true
     from first_call $$,
  'the key is remembered with its request hash, job and story');

select results_eq(
  $$ select s.status, s.prompt, s.title, s.content, s.target_words from public.stories s
     where s.id = (select (r ->> 'story_id')::uuid from first_call) $$,
  $$ values ('pending'::text, 'a dragon'::text, 'Dragons'::text, null::text, 800) $$,
  'the story is saved, pending, before any generation'
);
select results_eq(
  $$ select j.status, j.cost, j.max_attempts, j.queued_at is not null,
            j.next_attempt_at <= now(), j.user_id
     from public.story_jobs j where j.id = (select (r ->> 'job_id')::uuid from first_call) $$,
  $$ values ('pending'::text, 1, 3, true, true, '00000000-0000-0000-0000-0000000000a1'::uuid) $$,
  'the job is pending, due now, priced and limited to 3 attempts'
);
select results_eq(
  $$ select kind, amount from public.credit_ledger
     where job_id = (select (r ->> 'job_id')::uuid from first_call) $$,
  $$ values ('debit'::text, -1) $$,
  'the ledger records the debit against the job'
);

-- When the same key and request arrive again, then the first job comes back, no second debit.
create temp table second_call as
select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'a dragon', 'Dragons',
  'fantasy', 'en', 800, 1, 3, 'key-1', 'hash-1') as r;
select is((select r ->> 'job_id' from second_call), (select r ->> 'job_id' from first_call),
  'a replay returns the same job');
select is((select (r ->> 'replayed')::boolean from second_call), true, 'flagged as a replay');
select is((select r -> 'fence' from second_call), (select r -> 'fence' from first_call),
  'a replay answers the job''s current fence');
select is(public.credit_balance('00000000-0000-0000-0000-0000000000a1'), 1,
  'a replay debits nothing');
select is((select count(*) from public.story_jobs
           where user_id = '00000000-0000-0000-0000-0000000000a1'), 1::bigint,
  'a replay creates no job');

-- When the same key comes with another request, then 409.
select throws_ok(
  $$ select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'a unicorn', null,
       null, null, 800, 1, 3, 'key-1', 'hash-2') $$,
  'PT409', 'idempotency_conflict', 'same key, other request: idempotency_conflict (409)'
);

-- Keys are scoped per user; a first enqueue receives the sign-up grant once.
create temp table other_user as
select public.enqueue_story_job('00000000-0000-0000-0000-0000000000b2', 'a knight', null,
  null, null, 800, 1, 3, 'key-1', 'hash-9', 3) as r;
select is((select (r ->> 'replayed')::boolean from other_user), false,
  'another user may use the same key');
select is((select (r ->> 'balance')::int from other_user), 2, 'sign-up grant 3, minus 1');
select is(
  (public.enqueue_story_job('00000000-0000-0000-0000-0000000000b2', 'a knight', null,
     null, null, 800, 1, 3, null, null, 3) ->> 'balance')::int,
  1, 'the sign-up grant is given only once'
);
select is((select count(*) from public.credit_ledger
           where user_id = '00000000-0000-0000-0000-0000000000b2' and kind = 'signup'),
  1::bigint, 'one signup ledger entry');

-- A free story (cost 0) moves no credits and writes no debit.
select is(
  (public.enqueue_story_job('00000000-0000-0000-0000-0000000000b2', 'free', null,
     null, null, 800, 0, 3) ->> 'balance')::int,
  1, 'cost 0 leaves the balance alone'
);

select throws_ok(
  $$ select public.enqueue_story_job('00000000-0000-0000-0000-0000000000ff', 'x', null,
       null, null, 800, 1, 3) $$,
  'PT404', 'user_not_found', 'an unknown user: user_not_found (404)'
);
select throws_ok(
  $$ select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', '  ', null,
       null, null, 800, 1, 3) $$,
  'PT422', 'invalid_argument', 'a blank prompt: invalid_argument (422)'
);
select throws_ok(
  $$ select public.enqueue_story_job('00000000-0000-0000-0000-0000000000a1', 'x', null,
       null, null, 800, 1, 3, 'key-ttl', 'h', 0, 0) $$,
  'PT422', 'invalid_argument', 'an idempotency TTL of 0: invalid_argument (422)'
);
select throws_ok(
  $$ update public.credit_balances set balance = -1
     where user_id = '00000000-0000-0000-0000-0000000000a1' $$,
  '23514', null, 'a balance can never be negative'
);
select throws_ok(
  $$ update public.credit_ledger set amount = 100 $$,
  'P0001', 'credit_ledger_is_append_only', 'ledger rows cannot be rewritten'
);

-- The invariant: ledger sums equal balances.
select is_empty(
  $$ select b.user_id from public.credit_balances b
     where b.balance <> (select coalesce(sum(l.amount), 0) from public.credit_ledger l
                         where l.user_id = b.user_id) $$,
  'every balance equals the sum of its ledger'
);

select * from finish();
rollback;
