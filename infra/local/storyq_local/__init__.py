"""The local stack, with no cloud: `emulators` (Upstash's and Supabase's REST APIs over a real
Redis and PostgreSQL), `stack` (putting the services, emulators, API and workers together, for
`storyq dev`, the tests and the benchmarks alike), and the `storyq` CLI (`cli`, `cli_worker`,
`cli_admin`, `devstack`).

Nothing here ships to Lambda.
"""
