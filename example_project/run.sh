#!/usr/bin/env bash
# Run the django-sms2fa example site on SQLite with the console SMS provider.
#
#   bash example_project/run.sh              # serves http://127.0.0.1:8000/
#   EXAMPLE_ADDR=0.0.0.0:8080 bash example_project/run.sh
#
# Makes .venv in the repository root (first run only), installs the package
# into it in editable mode, migrates, creates the demo user and starts the
# development server. SMS codes are printed in this terminal and listed on
# http://127.0.0.1:8000/dev/outbox/ (DEBUG only), so you can log in from the
# browser alone: open the home page, follow "Log in with a password, then the
# code", and read the code there.
# Set EXAMPLE_REINSTALL=1 to force `pip install -e .` again.
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
# import. (Importing django_sms2fa alone proves nothing: from the repo root it
# imports from the source tree even when it is not installed.)
installed() {
    "$PY" - <<'PYEOF' >/dev/null 2>&1
import importlib.metadata
importlib.metadata.version("django-sms2fa")
import django, django_otp, phonenumbers, requests, rest_framework  # noqa: F401
PYEOF
}

if [ "${EXAMPLE_REINSTALL:-0}" = "1" ] || ! installed; then
    echo "==> Installing django-sms2fa (editable) and its dependencies into .venv"
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$REPO_ROOT"
else
    echo "==> django-sms2fa already installed in .venv (EXAMPLE_REINSTALL=1 to reinstall)"
fi

echo "==> Migrating the SQLite database (example_project/db.sqlite3)"
"$PY" example_project/manage.py migrate --noinput

echo "==> Creating the demo user"
"$PY" example_project/manage.py demo_setup

ADDR="${EXAMPLE_ADDR:-127.0.0.1:8000}"
echo "==> Starting the server on http://$ADDR/ (Ctrl-C to stop)."
echo "    Log in as demo / demo-password at http://$ADDR/2fa/login/; the SMS codes appear"
echo "    below and on http://$ADDR/dev/outbox/."
exec "$PY" example_project/manage.py runserver "$ADDR"
