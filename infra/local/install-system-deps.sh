#!/usr/bin/env bash
# Installs the Debian packages storyq needs, only when they are missing: PostgreSQL (server and
# psql), redis-server and Node.js with npm (for `npm ci`: the Supabase CLI and supabase-js) for
# `make dev` (`install-system-deps.sh dev`); for the tests also pgTAP and pg_prove,
# plpgsql_check (`supabase db lint`) and Chromium.
set -euo pipefail
for_dev_only=0
[ "${1:-}" = "dev" ] && for_dev_only=1

pg_major() {
  if [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    ls /etc/postgresql | sort -n | tail -1
  else
    echo 15
  fi
}

major="$(pg_major)"
missing=()
command -v psql >/dev/null 2>&1 || missing+=("postgresql-$major" "postgresql-client-$major")
[ -d "/usr/lib/postgresql/$major/bin" ] || missing+=("postgresql-$major")
command -v redis-server >/dev/null 2>&1 || missing+=("redis-server")
# Node.js 20 or later when the machine has one; Debian's otherwise (npm ci only warns there).
command -v node >/dev/null 2>&1 || missing+=("nodejs")
command -v npm >/dev/null 2>&1 || missing+=("npm")
if [ "$for_dev_only" -eq 0 ]; then
  ls /usr/share/postgresql/"$major"/extension/pgtap.control >/dev/null 2>&1 \
    || missing+=("postgresql-$major-pgtap")
  command -v pg_prove >/dev/null 2>&1 || missing+=("libtap-parser-sourcehandler-pgtap-perl")
  # `supabase db lint` checks the PL/pgSQL functions with the plpgsql_check extension.
  ls /usr/share/postgresql/"$major"/extension/plpgsql_check.control >/dev/null 2>&1 \
    || missing+=("postgresql-$major-plpgsql-check")
  # The browser tests drive Debian's Chromium (Playwright never downloads one here).
  [ -x /usr/bin/chromium ] || missing+=("chromium")
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

# De-duplicate while keeping order.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
echo "installing Debian packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
