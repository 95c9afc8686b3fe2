"""storyq's benchmarks: `python -m bench` (what `make bench` runs) measures everything in one go,
prints one table with each number beside its target, and writes bench/results/*.json.

They run on a private stack: a redis-server and a scratch PostgreSQL database of their own (never
the ones `make dev` uses), the two emulators and the API each in a process of its own (uvicorn),
and the load generator in this one. Benchmarks are not tests: nothing here is part of `make test`.
"""
