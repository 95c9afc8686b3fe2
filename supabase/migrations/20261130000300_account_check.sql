-- Whether a token's subject still has an account. Supabase access tokens stay valid until they
-- expire (an hour by default) after the user is deleted; the API asks this before it serves a
-- user, so a deleted account gets one answer on every route (401 user_not_found).
create function public.user_exists(p_user_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (select from auth.users where id = p_user_id)
$$;

revoke execute on function public.user_exists(uuid) from public, anon, authenticated;
grant execute on function public.user_exists(uuid) to service_role;
