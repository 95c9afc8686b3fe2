"""The local stack: emulators for Upstash and Supabase, the Postgres bootstrap, the `storyq` CLI.

Nothing here ships to Lambda.
"""
