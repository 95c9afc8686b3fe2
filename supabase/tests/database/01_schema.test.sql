-- The shape every caller relies on: tables, constraints, indexes, RLS, grants, realtime.
begin;
select plan(59);

select has_table('public', t, t || ' exists')
from unnest(array['credit_balances', 'credit_ledger', 'stories', 'story_jobs',
                  'idempotency_keys']) t;

-- RLS is on for every storyq table.
select is(
  (select array_agg(c.relname::text order by c.relname) from pg_class c
   join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity),
  null,
  'every table in public has row level security enabled'
);

select col_has_check('public', 'credit_balances', 'balance', 'a balance cannot go negative');
select has_index('public', 'credit_ledger', 'credit_ledger_one_refund_per_job',
  'at most one refund per job');
select has_index('public', 'credit_ledger', 'credit_ledger_one_signup_per_user',
  'at most one sign-up grant per user');
select has_index('public', 'credit_ledger', 'credit_ledger_one_debit_per_job',
  'at most one debit per job');
select col_is_pk('public', 'idempotency_keys', array['user_id', 'key'],
  'an idempotency key is unique per user, in a table of its own');
select is_empty(
  $$ select conname from pg_constraint
     where conrelid = 'public.story_jobs'::regclass and contype = 'u' $$,
  'story_jobs no longer holds the key''s uniqueness (a key outlives its job row)');
select has_index('public', 'idempotency_keys', 'idempotency_keys_created_at_idx',
  'idempotency keys by age, for the purge');
select is_empty(
  $$ select c.conname from pg_constraint c
     join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
     where c.conrelid = 'public.idempotency_keys'::regclass and c.contype = 'f'
       and a.attname = 'job_id' $$,
  'an idempotency key has no foreign key to its job (the job row may be cleaned)');
select col_is_fk('public', 'idempotency_keys', 'story_id', 'an idempotency key names its story');
select has_sequence('private', 'story_job_fence_seq', 'the fence sequence exists');
select col_not_null('public', 'story_jobs', 'fence', 'every job has a fence');
select col_type_is('public', 'story_jobs', 'fence', 'bigint', 'the fence is a bigint');
select col_default_is('public', 'story_jobs', 'fence',
  $$nextval('private.story_job_fence_seq'::regclass)$$,
  'a new job draws its fence from the sequence');
select has_index('public', 'story_jobs', 'story_jobs_user_id_created_at_idx',
  'a user''s jobs, newest first');
select has_index('public', 'story_jobs', 'story_jobs_user_id_status_created_at_idx',
  'a user''s jobs by status');
select has_index('public', 'story_jobs', 'story_jobs_pending_next_attempt_at_idx',
  'pending jobs by due time');
select has_index('public', 'story_jobs', 'story_jobs_pending_queued_at_idx',
  'pending jobs in queue order');
select has_index('public', 'story_jobs', 'story_jobs_processing_heartbeat_at_idx',
  'processing jobs by heartbeat');
select has_index('public', 'story_jobs', 'story_jobs_status_finished_at_idx',
  'finished jobs by status and age');
select col_is_fk('public', 'story_jobs', 'story_id', 'a job belongs to a story');

-- Every storyq function (extensions such as pgTAP aside) is a security definer with an empty
-- search_path, executable by the service role and by nobody else.
create temp view storyq_functions as
select p.oid, p.proname, p.prosecdef, p.proconfig
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname = 'public'
  and not exists (select from pg_depend d where d.objid = p.oid and d.deptype = 'e');

select cmp_ok((select count(*) from storyq_functions), '>=', 21::bigint,
  'the storyq functions are installed');

-- The fenced state machine: attempts are named by their fence (bigint), not a number.
select has_function('public', f, a, f || '(' || array_to_string(a, ', ') || ') exists')
from (values
  ('start_story_job', array['uuid', 'bigint', 'integer', 'double precision']),
  ('heartbeat_story_job', array['uuid', 'bigint', 'integer']),
  ('heartbeat_story_jobs', array['jsonb']),
  ('complete_story_job', array['uuid', 'bigint', 'text', 'text', 'jsonb']),
  ('fail_story_job', array['uuid', 'bigint', 'text', 'text', 'boolean', 'double precision']),
  ('release_story_job', array['uuid', 'bigint']),
  ('requeue_stalled_story_job',
    array['uuid', 'bigint', 'double precision', 'text', 'text', 'double precision']),
  ('dispatch_snapshot', array['integer', 'double precision', 'integer', 'integer', 'jsonb']),
  ('stalled_story_jobs', array['double precision', 'integer']),
  ('enqueue_story_job', array['uuid', 'text', 'text', 'text', 'text', 'integer', 'integer',
    'integer', 'text', 'text', 'integer', 'double precision']),
  ('purge_idempotency_keys', array['double precision', 'integer'])
) as x(f, a);
select is_empty(
  $$ select p.oid::regprocedure::text from pg_proc p
     join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'public' and (
       p.proname = 'dispatchable_story_jobs'
       or (p.proname in ('start_story_job', 'heartbeat_story_job', 'complete_story_job',
                         'fail_story_job', 'release_story_job', 'requeue_stalled_story_job')
           and p.proargtypes[1] = 'integer'::regtype)
       or (p.proname = 'enqueue_story_job' and p.pronargs <> 12)) $$,
  'no function of the old, attempt-numbered interface is left');
select is_empty(
  $$ select proname from storyq_functions
     where proname <> 'health_check' and not prosecdef $$,
  'every state-changing function is security definer'
);
select is_empty(
  $$ select proname from storyq_functions
     where proconfig is null or not ('search_path=""' = any (proconfig)) $$,
  'every function pins search_path to empty'
);
select is_empty(
  $$ select proname || ' by ' || r from storyq_functions,
       unnest(array['anon', 'authenticated']) r
     where has_function_privilege(r, oid, 'execute') $$,
  'anon and authenticated execute no storyq function'
);
select is_empty(
  $$ select proname from storyq_functions
     where not has_function_privilege('service_role', oid, 'execute') $$,
  'the service role executes every storyq function'
);

-- Table privileges: the API roles read (under RLS) at most; nobody writes directly.
select table_privs_are('public', t, 'anon', array[]::text[], 'anon has no rights on ' || t)
from unnest(array['credit_balances', 'credit_ledger', 'stories', 'story_jobs']) t;
select table_privs_are('public', t, 'authenticated', array['SELECT'],
  'authenticated may only select from ' || t)
from unnest(array['credit_balances', 'credit_ledger', 'stories', 'story_jobs']) t;

select table_privs_are('public', 'idempotency_keys', r, array[]::text[],
  r || ' has no rights on idempotency_keys')
from unnest(array['anon', 'authenticated']) r;
select is_empty(
  $$ select p from unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
     where has_table_privilege('service_role', 'public.idempotency_keys', p) $$,
  'the service role writes idempotency keys only through the functions');

select table_privs_are('public', 'queue_overview', 'service_role', array['SELECT'],
  'the dashboard view is readable by the service role');
select is_empty(
  $$ select r from unnest(array['anon', 'authenticated']) r
     where has_table_privilege(r, 'public.queue_overview', 'select') $$,
  'the dashboard view is hidden from the API roles'
);
select ok(
  (select 'security_invoker=true' = any (reloptions) from pg_class
   where oid = 'public.queue_overview'::regclass),
  'the dashboard view runs with the reader''s rights'
);

-- Realtime: job and story changes are published with the old row.
select set_eq(
  $$ select tablename::text from pg_publication_tables
     where pubname = 'supabase_realtime' and schemaname = 'public' $$,
  array['stories', 'story_jobs'],
  'stories and story_jobs are in the supabase_realtime publication'
);
select is((select relreplident::text from pg_class where oid = 'public.story_jobs'::regclass),
  'f', 'story_jobs has replica identity full');

select * from finish();
rollback;
