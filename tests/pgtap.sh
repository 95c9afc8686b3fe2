#!/usr/bin/env bash
# Runs supabase/tests/database/*.test.sql with pg_prove against a scratch database that has
# every migration applied (never the database `make dev` uses), then drops it.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
files=(supabase/tests/database/*.test.sql)
if [ ${#files[@]} -eq 0 ]; then
  echo "pgtap: no test files"; exit 0
fi
server="${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
db="storyq_pgtap_$$"
url="${server%/*}/$db"
trap '.venv/bin/python -c "import sys; from storyq_local.stack.postgres import drop_database; drop_database(sys.argv[1])" "$url"' EXIT
.venv/bin/storyq migrate --database-url "$url" >/dev/null
psql -q -v ON_ERROR_STOP=1 "$url" -c "create extension if not exists pgtap"
pg_prove --dbname "$db" --host 127.0.0.1 --username postgres --failures "${files[@]}"
