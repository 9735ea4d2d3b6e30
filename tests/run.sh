#!/usr/bin/env bash
# The test command from README.md: installs the app with its test extras into
# ./.venv (created on first run) and runs the whole suite on each database in
# SMS2FA_TEST_DATABASES (default: "sqlite postgres").
#
# PostgreSQL: a local server with trust auth for user "postgres" on
# 127.0.0.1:5432, or set SMS2FA_PG_HOST/PORT/USER/PASSWORD/NAME.
# Without PostgreSQL: SMS2FA_TEST_DATABASES=sqlite bash tests/run.sh
# Extra arguments go to pytest: bash tests/run.sh -k flows -x
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SMS2FA_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
echo "== installing django-sms2fa[test,lint] into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,lint]"

status=0
for db in ${SMS2FA_TEST_DATABASES:-sqlite postgres}; do
  if [ "$db" = postgres ]; then
    if ! "$venv/bin/python" - <<'PY'
import os, sys
import psycopg
try:
    psycopg.connect(
        host=os.environ.get("SMS2FA_PG_HOST", "127.0.0.1"),
        port=os.environ.get("SMS2FA_PG_PORT", "5432"),
        user=os.environ.get("SMS2FA_PG_USER", "postgres"),
        password=os.environ.get("SMS2FA_PG_PASSWORD", ""),
        dbname="postgres",
        connect_timeout=5,
    ).close()
except Exception as err:
    sys.exit(f"PostgreSQL is not reachable ({err}).\n"
             "Start it, set SMS2FA_PG_* to point at one, or run only SQLite with "
             "SMS2FA_TEST_DATABASES=sqlite.")
PY
    then
      status=1
      continue
    fi
  fi
  echo "== pytest on $db"
  SMS2FA_TEST_DB="$db" "$venv/bin/python" -m pytest "$@" || status=$?
done
exit "$status"
