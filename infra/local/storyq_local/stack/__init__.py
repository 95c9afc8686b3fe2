"""The local stack: everything the Lambda code talks to, on this machine.

`builder` puts a stack together from a `StackSpec` (what `storyq dev`, the tests and the
benchmarks each need) out of these parts: `services` (find, start or embed Redis and
PostgreSQL), `postgres` (scratch databases, a private cluster), `redis_server` (a private
redis-server), `migrate` and `bootstrap.sql` (the Supabase-compatible schema), `apps` and
`servers` (the emulators and the API as ASGI apps, on threads), `processes` and `serve` (the
same apps in processes of their own), `workers` (the queue worker on a thread or in a process),
`web` (the reference page at /), `users` and `tokens` (what Supabase Auth would do).

Nothing is imported here: a CLI verb that needs one part loads only that part.
"""
