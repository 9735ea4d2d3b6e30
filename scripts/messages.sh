#!/usr/bin/env bash
# Regenerate the translation catalogs of django_sms2fa and compile them.
#
#   bash scripts/messages.sh           # update the .po files, then compile the .mo files
#   bash scripts/messages.sh compile   # compile only (after editing a .po file)
#
# Needs GNU gettext (Debian: apt-get install gettext) and the project's .venv
# (or SMS2FA_VENV). New strings arrive with an empty msgstr: translate them,
# remove any "fuzzy" flag msgmerge guessed, then run this again to compile.
# tests/test_i18n.py fails while a shipped catalog has an empty or fuzzy entry,
# or a .mo file that does not match its .po.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SMS2FA_VENV:-$root/.venv}"
languages=(ru pt_BR sv)

cd "$root/django_sms2fa"
mkdir -p locale
args=()
for lang in "${languages[@]}"; do args+=(-l "$lang"); done
if [ "${1:-}" != compile ]; then
  # --no-location: line numbers would churn the catalogs on every edit.
  # Templates: .html pages and the .txt SMS template.
  "$venv/bin/django-admin" makemessages "${args[@]}" -e html,txt,py --no-location \
    --no-obsolete --ignore "migrations/*"
fi
"$venv/bin/django-admin" compilemessages "${args[@]}"
