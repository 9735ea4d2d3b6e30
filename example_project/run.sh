#!/usr/bin/env bash
# Run the django-sms2fa example site on SQLite with the console SMS provider.
#
#   bash example_project/run.sh              # serves http://127.0.0.1:8000/
#   EXAMPLE_ADDR=0.0.0.0:8080 bash example_project/run.sh
#
# Makes .venv in the repository root (first run only), installs the package
# into it in editable mode, migrates, creates the demo user, and starts two
# processes: the development server and the task worker that sends the SMS.
# The site uses the documented passwordless setup (SMS2FA["SEND_VIA_TASKS"]):
# a request only queues its SMS, and the worker (django-tasks-db's db_worker)
# sends it a moment later, so a passwordless answer takes the same time
# whether or not the number has an account. SMS codes are printed in this
# terminal and listed on http://127.0.0.1:8000/dev/outbox/ (DEBUG only), so
# you can log in from the browser alone: open the home page, follow "Log in
# with a password, then the code", and read the code there.
# Ctrl-C stops both processes; so does the server stopping.
# Set EXAMPLE_REINSTALL=1 to force `pip install -e .` again, and EXAMPLE_DB
# to run on another SQLite file (e.g. a throw-away copy).
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "==> Creating virtual environment in $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi

# Installed = the distribution is registered in the venv and its dependencies
# import, the task queue's included. (Importing django_sms2fa alone proves
# nothing: from the repo root it imports from the source tree even when it is
# not installed.)
installed() {
    "$PY" - <<'PYEOF' >/dev/null 2>&1
import importlib.metadata
importlib.metadata.version("django-sms2fa")
import django, django_otp, phonenumbers, requests, rest_framework  # noqa: F401
import django_tasks_db  # noqa: F401
if django.VERSION < (6, 0):
    import django_tasks  # noqa: F401  (django.tasks' backport)
PYEOF
}

if [ "${EXAMPLE_REINSTALL:-0}" = "1" ] || ! installed; then
    echo "==> Installing django-sms2fa (editable), its task extra and django-tasks-db into .venv"
    "$PY" -m pip install --quiet --disable-pip-version-check \
        -e "$REPO_ROOT[tasks]" "django-tasks-db>=0.13"
else
    echo "==> django-sms2fa already installed in .venv (EXAMPLE_REINSTALL=1 to reinstall)"
fi

echo "==> Migrating the SQLite database (${EXAMPLE_DB:-example_project/db.sqlite3})"
"$PY" example_project/manage.py migrate --noinput

echo "==> Creating the demo user"
"$PY" example_project/manage.py demo_setup

# Job control: each process below gets a process group of its own, so that
# stopping it stops its children too (runserver's autoreloader runs the server
# in a child process).
set -m
SERVER_PID=""
WORKER_PID=""
stop_all() {
    trap - EXIT INT TERM HUP
    for pid in $SERVER_PID $WORKER_PID; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in $SERVER_PID $WORKER_PID; do
        wait "$pid" 2>/dev/null || true
    done
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

echo "==> Starting the task worker (it sends the SMS the site queues)"
"$PY" example_project/manage.py db_worker --interval 0.2 --no-startup-delay --no-reload &
WORKER_PID=$!

ADDR="${EXAMPLE_ADDR:-127.0.0.1:8000}"
echo "==> Starting the server on http://$ADDR/ (Ctrl-C to stop both)."
echo "    Log in as demo / demo-password at http://$ADDR/2fa/login/; the SMS codes appear"
echo "    below and on http://$ADDR/dev/outbox/."
"$PY" example_project/manage.py runserver "$ADDR" &
SERVER_PID=$!

# Until the server stops (or Ctrl-C, or a TERM to this script): then the EXIT
# trap stops the worker too. The shell's own `wait` returns at once on a signal.
status=0
wait "$SERVER_PID" || status=$?
exit "$status"
