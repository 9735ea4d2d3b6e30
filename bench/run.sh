#!/usr/bin/env bash
# The benchmarks in one command; prints the tables bench/README.md keeps.
#
#   bash bench/run.sh                  # default sizes: a few minutes
#   BENCH_BIG=1 bash bench/run.sh      # verify timed at 10k and at 1,000,000 challenges
#   bash bench/run.sh --render-only    # print the tables of the last run again
#
# Needs PostgreSQL (SMS2FA_PG_HOST/PORT/USER/PASSWORD, default 127.0.0.1:5432,
# user postgres) and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14);
# BENCH_DATABASES=sqlite runs the SQLite part alone. The benchmarks make their
# own database, BENCH_PG_NAME (default sms2fa_bench_steps), and empty its
# sms2fa tables on every run. bench/run.py lists the other knobs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SMS2FA_VENV:-$root/.venv}"

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import django_sms2fa, gunicorn, psycopg, redis, requests" 2>/dev/null; then
  echo "== installing django-sms2fa[test] into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
fi
exec "$venv/bin/python" -m bench.run "$@"
