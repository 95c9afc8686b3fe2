"""A local stand-in for Supabase's REST API (PostgREST) over a real PostgreSQL: `create_app`.

`app` (routes), `emulator` (the pool and the handlers), `routines` (RPC resolution and calls),
`tables` (table reads), `errors` (PostgREST's error answers), `auth` (JWT checks and roles).
"""

from storyq_local.emulators.supabase.app import create_app

__all__ = ["create_app"]
