#!/usr/bin/env bash
# The peers' virtualenv: Django 5.2, this app and the peer apps, from PyPI.
#   bash bench/peers/setup.sh            # makes bench/peers/.venv
#   PEERS_VENV=/tmp/peers bash bench/peers/setup.sh
# django-phone-verify pulls in phonenumberslite, and this app phonenumbers: both
# install the same `phonenumbers` module (the metadata of both, one set of files).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PEERS_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q \
    'Django>=5.2,<5.3' \
    django-two-factor-auth \
    django-otp \
    django-phone-verify \
    django-trench \
    djangorestframework \
    'psycopg[binary]' \
    redis \
    -e "$repo"
"$venv/bin/pip" list 2>/dev/null | grep -i -E '^(django|djangorestframework|psycopg|redis|phonenumbers|pyotp) '
