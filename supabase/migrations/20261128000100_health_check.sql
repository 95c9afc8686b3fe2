-- A cheap round trip the API's /api/health makes through PostgREST: it proves the database
-- answers and that the service role can execute functions.
create or replace function public.health_check()
returns text
language sql
stable
set search_path = ''
as $$
  select 'ok'::text
$$;

revoke execute on function public.health_check() from public, anon, authenticated;
grant execute on function public.health_check() to service_role;
