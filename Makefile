# Two commands on a fresh machine: `make dev` runs the whole service locally, `make test` runs
# every check CI runs. Each installs what it needs first (a venv; Debian packages when missing).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13, the functions' Lambda runtime: on PATH or through pyenv (find-python.sh says what
# to install when there is none).
PYTHON ?= $(shell bash infra/local/find-python.sh 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
# The SAM CLI pins its own dependencies, so it lives in a venv of its own.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
# CI builds for this machine's architecture so the build can be imported and invoked here.
HOST_ARCH := $(shell uname -m | sed -e 's/aarch64/arm64/')

.PHONY: help dev test check lint typecheck pytest pgtap system-deps services venv bench clean \
	sam-validate sam-build build lambda-image sam-local reliability-results stress schema bench-runtimes node-deps web \
	bench-sam-local bench-cost bench-scale bench-stream bench-backpressure bench-tiers

help:
	@echo "make dev    run the whole service locally (API on http://127.0.0.1:8000)"
	@echo "make test   install what is missing, start what is needed, run every check"
	@echo "make bench  run the benchmarks and print the tables"
	@echo "make stress the Redis-loss and worker-kill scenarios 20 times with every core busy"
	@echo "make build  the deployable build (arm64) for sam deploy, with bytecode compiled"
	@echo "make web    the page for a static host: web/ with web/vendor/supabase.js"
	@echo "make schema regenerate supabase/schema.sql after adding a migration"
	@echo "make sam-local        the whole service as Lambda functions (API :3000, page :3080)"
	@echo "make bench-runtimes   cold imports on python3.13 beside the last python3.11 build"
	@echo "make bench-sam-local  cold and warm invoke durations through sam's Lambda emulation"
	@echo "make bench-cost       billed Upstash commands per story and idle hour, beside BullMQ"
	@echo "make bench-scale      sweep, enqueue, lookups and slot refill at 0 to 100,000 waiting jobs"
	@echo "make bench-stream     DELETE -> stop and -> next start; Postgres writes per streamed story"
	@echo "make bench-backpressure  a provider answering 429 for 30 s: attempts and requests spent"
	@echo "make bench-tiers      each user's share of the slots against their plan"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || bash infra/local/find-python.sh
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))'; then \
		echo "$(VENV) is not on Python 3.13: making it again"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# The npm packages, pinned in package-lock.json: the Supabase CLI (the README's deploy steps,
# tests/deploy/test_supabase_cli.py) and supabase-js, whose UMD bundle the page loads from its
# own origin; BullMQ and ioredis for `make bench-cost`'s comparison. `npm ci` installs exactly
# the lockfile, again only when it changes.
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json | md5sum | cut -c1-12)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || bash infra/local/install-system-deps.sh dev
	npm ci --prefer-offline --no-audit --no-fund
	@touch $@

node-deps: $(NODE_STAMP)

# The page for a static host: web/ with supabase-js's UMD bundle copied into web/vendor/
# (gitignored) from the pinned npm package; publish web/ as it then is (web/README.md).
web: node-deps
	mkdir -p web/vendor
	cp node_modules/@supabase/supabase-js/dist/umd/supabase.js web/vendor/supabase.js

system-deps:
	@bash infra/local/install-system-deps.sh

services:
	@bash infra/local/ensure-services.sh

$(SAM):
	@test -n "$(PYTHON)" || bash infra/local/find-python.sh
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli==1.170.0'

sam-validate: $(SAM) venv
	AWS_DEFAULT_REGION=eu-central-1 $(SAM) validate --lint
	$(BIN)/cfn-lint template.yaml

# `sam build` ships no bytecode and /var/task is read-only, so Lambda would compile every
# module at every cold start: compile it at build time (unchecked-hash survives zip mtimes).
# sam build's python3.13 workflow needs python3.13 on PATH: the venv's.
build: $(SAM) venv
	PATH="$(abspath $(BIN)):$$PATH" $(SAM) build $(if $(ARCH),--parameter-overrides Architecture=$(ARCH))
	$(BIN)/python -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

# CI builds for this machine so that the build can be imported and invoked in-process.
sam-build: ARCH = $(HOST_ARCH)
sam-build: build

# The Lambda emulation image for python3.13 (Debian trixie, awslambdaric, boto3), cached by a
# hash of its recipe; stops the dockerd it started (infra/local/lambda-image.sh).
lambda-image: venv
	bash infra/local/lambda-image.sh build

# The whole service as Lambda functions: `sam local start-api` on http://127.0.0.1:3000 and
# `start-lambda` (the kick) against the local stack, the page on :3080, the schedule every 60 s;
# Ctrl-C stops the containers, sam, the stack and the dockerd it started (storyq_local.sam_local).
sam-local: $(SAM) venv sam-build
	$(BIN)/python -m storyq_local.sam_local

dev: venv node-deps
	@bash infra/local/install-system-deps.sh dev
	$(BIN)/storyq dev

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: venv services
	@set +e; $(BIN)/python -m pytest -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

pgtap: venv services
	bash tests/pgtap.sh

test: system-deps venv node-deps services lint typecheck sam-validate sam-build pytest pgtap

check: test

# supabase/schema.sql, the schema the migrations create, from pg_dump of scratch databases
# (never the one `make dev` uses); tests/core/store/test_schema_snapshot.py checks it.
schema: venv services
	$(BIN)/python -m storyq_local.schema_dump

bench: venv services
	$(BIN)/python -m bench

# Cold imports on python3.13 beside the last python3.11 build (builds both; a few minutes).
bench-runtimes: venv sam-build
	$(BIN)/python -m bench.cold_runtimes

# Cold (`sam local invoke`) and warm (start-api, start-lambda) invoke durations through the
# Lambda emulation, beside the in-process API; needs root, like sam-local (a few minutes).
bench-sam-local: $(SAM) venv services sam-build
	$(BIN)/python -m bench.sam_local

# Billed Upstash commands per 270 s story (worker + API, then with the reference client's
# polls) and per idle hour, beside BullMQ (the pinned npm package) on its own redis-server;
# into bench/results/cost.json and bench.json's `cost` (about five minutes).
bench-cost: venv services node-deps
	$(BIN)/python -m bench.cost

# Does anything grow with the backlog? The sweep (time, billed Redis commands), POST
# /api/generate, status lookups at 0 to 100,000 waiting jobs (seeded in bulk), then slot refill
# with MAX_ACTIVE_JOBS = 500 across worker processes; into bench/results/scale.json and
# bench.json's `scale` (a few minutes; `python -m bench.scale --quick` to try it out).
bench-scale: venv services
	$(BIN)/python -m bench.scale

# Issue 19's figures through the API and real worker processes at MAX_ACTIVE_JOBS = 2: DELETE of
# a running job -> its generation's stop and -> the next job's start (10 cancels), then the
# Postgres requests, bytes, row versions and WAL, and billed Upstash commands, per streamed story
# (20 s template stories); into bench/results/stream_cancel.json and bench.json's `stream`
# (about a minute and a half).
bench-stream: venv services
	$(BIN)/python -m bench.stream_cancel

bench-backpressure: venv services
	$(BIN)/python -m bench.backpressure

bench-tiers: venv services
	$(BIN)/python -m bench.tiers

# Re-measure the README's Reliability table into bench/results/reliability.json.
reliability-results: venv services
	STORYQ_RECORD_RESULTS=1 $(BIN)/python -m pytest -p no:cacheprovider tests/reliability

# The flush, restart and kill scenarios 20 times in a row with every core busy (about half an
# hour; not part of `make test`). Figures in bench/results/stress.json.
stress: venv services
	$(BIN)/python -m tests.reliability.stress --rounds $(or $(ROUNDS),20)

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache .storyq
