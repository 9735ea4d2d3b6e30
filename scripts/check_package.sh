#!/usr/bin/env bash
# The package as PyPI would get it, checked end to end before a release:
#
#   1. build the sdist and, from it, the wheel with the LOWEST setuptools that
#      pyproject's [build-system] allows (77.0.3: the first with PEP 639's
#      license expression and license-files), without build isolation;
#   2. twine check --strict both, and the classifiers against PyPI's list;
#   3. list what each carries: the wheel only the package (templates, .po and
#      .mo catalogs, py.typed, migrations), the sdist the docs, tests, example
#      site and scripts too, and neither any build artefact;
#   4. install the wheel into a clean venv with the LOWEST versions of the
#      dependencies (scripts/lowest-requirements.txt as pip constraints);
#   5. import it, and run `check`, `migrate` and one page of a minimal site.
#
#   bash scripts/check_package.sh          # PYTHON=python3.12 to use another interpreter
#
# It builds from a copy of the working tree, so it never writes into the
# checkout (no build/, no egg-info), and removes everything it made on exit.
# Exits non-zero, naming the failed step, on the first failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lowest_setuptools="77.0.3"

# The interpreter the project's .venv was made with (python3.11 here), so the
# package is checked under the Python the tests run on.
python="${PYTHON:-}"
if [ -z "$python" ] && [ -x "$root/.venv/bin/python" ]; then
  python="$("$root/.venv/bin/python" -c 'import sys; print(sys._base_executable)')"
fi
python="${python:-python3}"

work="$(mktemp -d "${TMPDIR:-/tmp}/sms2fa-package.XXXXXX")"
# SMS2FA_KEEP_PACKAGE_DIR=1 keeps it (the built files, build.log) to look at.
if [ -n "${SMS2FA_KEEP_PACKAGE_DIR:-}" ]; then
  trap 'echo "kept $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
step=""
trap 'status=$?; if [ $status -ne 0 ]; then echo "check_package: FAILED at: $step (exit $status)" >&2; fi' ERR
start=$SECONDS

begin() {
  step="$1"
  echo "-- $1 ($((SECONDS - start)) s)"
}

# pip's output goes to a log, shown only when the install fails.
pip_install() {
  local py="$1"
  shift
  "$py" -m pip install --quiet --disable-pip-version-check --no-input "$@" >"$work/pip.log" 2>&1 || {
    grep -v "neither a file nor a directory" "$work/pip.log" >&2
    return 1
  }
}

begin "copy the working tree"
# Everything but the VCS, virtualenvs and earlier build output, so MANIFEST.in's
# prune rules meet the __pycache__, screenshots and SQLite files they are for.
mkdir "$work/src"
tar -C "$root" \
  --exclude=./.git --exclude=./.venv --exclude=./.tox --exclude=./build --exclude=./dist \
  --exclude='*.egg-info' --exclude=./.hypothesis --exclude=./.ruff_cache \
  --exclude=./.pytest_cache --exclude=./bench/.data --exclude='.venv' \
  -cf - . | tar -C "$work/src" -xf -

begin "build venv: $($python --version) with setuptools==$lowest_setuptools, build, twine"
"$python" -m venv "$work/build-venv"
bpy="$work/build-venv/bin/python"
pip_install "$bpy" "setuptools==$lowest_setuptools" build twine trove-classifiers packaging
"$bpy" -c "import setuptools, sys; v = setuptools.__version__; print('setuptools', v); sys.exit(v != '$lowest_setuptools')"

begin "python -m build --no-isolation (the sdist, then the wheel from the sdist)"
# --no-isolation: build with the setuptools installed above, not the newest one
# pip would fetch; build still checks it satisfies [build-system] requires.
"$bpy" -m build --no-isolation --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2
  false
}
# Setuptools' warnings (deprecations, files left out), without the expected
# "no previously-included files" of the exclude rules.
grep -i "warning" "$work/build.log" | grep -v "no previously-included files" | sort -u || true
ls -l "$work/dist"

begin "twine check --strict"
"$bpy" -m twine check --strict "$work"/dist/*

begin "the classifiers, the metadata and what the sdist and the wheel carry"
"$bpy" - "$work/dist" "$work/src" <<'PY'
import ast
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from trove_classifiers import classifiers as known_classifiers

dist, src = Path(sys.argv[1]), Path(sys.argv[2])
problems = []


def need(ok, message):
    if not ok:
        problems.append(message)


init = (src / "django_sms2fa" / "__init__.py").read_text()
version = next(
    node.value.value
    for node in ast.parse(init).body
    if isinstance(node, ast.Assign) and node.targets[0].id == "__version__"
)
wheels = sorted(dist.glob("*.whl"))
sdists = sorted(dist.glob("*.tar.gz"))
need([w.name for w in wheels] == [f"django_sms2fa-{version}-py3-none-any.whl"], f"wheel: {wheels}")
need([s.name for s in sdists] == [f"django_sms2fa-{version}.tar.gz"], f"sdist: {sdists}")
if problems:
    sys.exit("\n".join(problems))

# -- the wheel
wheel_files = zipfile.ZipFile(wheels[0]).namelist()
info = f"django_sms2fa-{version}.dist-info/"
meta = HeaderParser().parsestr(zipfile.ZipFile(wheels[0]).read(info + "METADATA").decode())
need(meta["Version"] == version, f"wheel metadata version {meta['Version']} != {version}")
need(meta["License-Expression"] == "MIT", f"License-Expression: {meta['License-Expression']}")
need(meta.get_all("License-File") == ["LICENSE"], f"License-File: {meta.get_all('License-File')}")
need(info + "licenses/LICENSE" in wheel_files, "the wheel lacks dist-info/licenses/LICENSE")
urls = {u.split(",")[0] for u in meta.get_all("Project-URL") or []}
for label in ("Homepage", "Documentation", "Source", "Changelog", "Issues"):
    need(label in urls, f"no Project-URL {label}")
for classifier in meta.get_all("Classifier") or []:
    # PyPI refuses an upload with a classifier it does not know.
    need(classifier in known_classifiers, f"unknown classifier: {classifier}")
    need(not classifier.startswith("License ::"), f"{classifier}: PEP 639 uses License-Expression")

outside = [f for f in wheel_files if not f.startswith(("django_sms2fa/", info))]
need(not outside, f"the wheel carries files outside the package: {outside[:10]}")
need(not any(f.endswith((".pyc", ".pyo")) or "__pycache__" in f for f in wheel_files),
     "the wheel carries bytecode")
need("django_sms2fa/py.typed" in wheel_files, "the wheel lacks py.typed")
need(any(f.startswith("django_sms2fa/migrations/0001_") for f in wheel_files),
     "the wheel lacks the migrations")
need(any(f.startswith("django_sms2fa/templates/") and f.endswith(".html") for f in wheel_files),
     "the wheel lacks the templates")
for lang in ("ru", "pt_BR", "sv"):
    for ext in ("po", "mo"):
        name = f"django_sms2fa/locale/{lang}/LC_MESSAGES/django.{ext}"
        need(name in wheel_files, f"the wheel lacks {name}")
# Every file of the package in the source tree is in the wheel: a new kind of
# data file (say static/) that package-data does not name would be lost.
package_files = {
    p.relative_to(src).as_posix()
    for p in (src / "django_sms2fa").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
}
lost = sorted(package_files - set(wheel_files))
need(not lost, f"package files missing from the wheel: {lost[:10]}")

# -- the sdist
top = f"django_sms2fa-{version}/"
with tarfile.open(sdists[0]) as tar:
    sdist_files = [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]
need(all(f.startswith(top) for f in sdist_files), "the sdist has files outside its top directory")
rel = [f[len(top):] for f in sdist_files if f.startswith(top)]
for name in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "MANIFEST.in", "tox.ini",
             "scripts/check_package.sh", "scripts/lowest-requirements.txt",
             "django_sms2fa/py.typed", "example_project/manage.py", "tests/settings.py"):
    need(name in rel, f"the sdist lacks {name}")
for folder in ("docs/", "tests/", "example_project/", "scripts/", "bench/",
               "django_sms2fa/templates/", "django_sms2fa/locale/"):
    need(any(f.startswith(folder) and not f.endswith("/") for f in rel),
         f"the sdist lacks {folder}")
junk = [
    f for f in rel
    if "__pycache__" in f or f.endswith((".pyc", ".pyo", ".sqlite3", ".sqlite3-journal", ".jsonl"))
    or f.startswith(("build/", "dist/", ".venv/", ".tox/", ".git/", "docs/_build/",
                     "tests/e2e/screenshots/", "bench/.data/"))
    or "/.venv/" in f or (".egg-info/" in f and not f.startswith("django_sms2fa.egg-info/"))
]
need(not junk, f"the sdist carries build artefacts or local state: {junk[:10]}")

if problems:
    sys.exit("\n".join(f"  {p}" for p in problems))
print(f"  wheel: {len(wheel_files)} files, only django_sms2fa/ and its dist-info")
print(f"  sdist: {len(rel)} entries, with docs/ tests/ example_project/ scripts/ bench/")
PY

begin "the constraints in scripts/lowest-requirements.txt match [project].dependencies"
# Read pyproject from the copy: a dependency added since must be pinned too.
"$bpy" - "$work/src/pyproject.toml" "$work/src/scripts/lowest-requirements.txt" <<'PY'
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
pins = {}
for line in open(sys.argv[2]):
    line = line.split("#")[0].strip()
    if line:
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"not a pin: {line}"
        pins[canonicalize_name(req.name)] = Version(spec[0].version)
problems = []
for dep in map(Requirement, deps):
    if dep.marker and not dep.marker.evaluate():
        continue
    name = canonicalize_name(dep.name)
    lower = [Version(s.version) for s in dep.specifier if s.operator in (">=", "~=", "==")]
    if name not in pins:
        problems.append(f"{dep.name} is not pinned: add {dep.name}=={lower[0] if lower else '?'}")
        continue
    pin = pins[name]
    if not dep.specifier.contains(pin, prereleases=True):
        problems.append(f"{dep.name}=={pin} is outside pyproject's {dep.specifier}")
    elif not lower:
        problems.append(f"{dep}: no lower bound in pyproject")
    elif pin.release[: len(lower[0].release)] != lower[0].release:
        # 1.5.2 for ">=1.5" is the lowest release of that series; 1.6 is not.
        problems.append(f"{dep.name}=={pin} is not the lower bound of {dep.specifier}")
    print(f"  {dep}  ->  {dep.name}=={pin}")
if problems:
    sys.exit("\n".join(f"  {p}" for p in problems))
PY

begin "a clean venv: the wheel with the lowest dependencies"
"$python" -m venv "$work/site-venv"
spy="$work/site-venv/bin/python"
# No --no-deps: pip resolves the wheel's own requirements, within the pins.
pip_install "$spy" -c "$work/src/scripts/lowest-requirements.txt" "$work"/dist/*.whl
"$spy" - "$work/src/scripts/lowest-requirements.txt" <<'PY'
import sys
from importlib.metadata import version

from pip._vendor.packaging.requirements import Requirement

wrong = []
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        req = Requirement(line)
        pinned = next(iter(req.specifier)).version
        installed = version(req.name)
        print(f"  {req.name} {installed}")
        if installed != pinned and installed != pinned + ".0":
            wrong.append(f"{req.name}: {installed} installed, {pinned} wanted")
sys.exit("\n".join(wrong) or None)
PY

mkdir "$work/site"
cd "$work/site"

begin "import django_sms2fa from the installed wheel"
"$spy" -c "
import sys, django_sms2fa
print('  django_sms2fa', django_sms2fa.__version__, 'from', django_sms2fa.__file__)
sys.exit(not django_sms2fa.__file__.startswith('$work/site-venv/'))
"

begin "a minimal site: django-admin check, migrate, one page in each language"
cat >"$work/site/settings.py" <<'PY'
"""A minimal site on the installed wheel, as README.md and docs/install.md set it up."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "check-package-site-key-not-a-secret-7c1e9a0b52d4"
DEBUG = True
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_otp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "django_sms2fa",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django_sms2fa.middleware.SecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
LOGIN_URL = "sms2fa:login"
SMS2FA = {
    "PROVIDERS": {"default": {"BACKEND": "django_sms2fa.providers.console.ConsoleProvider"}},
    "DEFAULT_REGION": "SE",
    "ALLOWED_REGIONS": ["SE"],
}
PY
cat >"$work/site/urls.py" <<'PY'
from django.contrib import admin
from django.urls import include, path

from django_sms2fa.admin.site import use_sms2fa_login

use_sms2fa_login(admin.site)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("2fa/", include("django_sms2fa.urls")),
    path("api/2fa/", include("django_sms2fa.api.urls")),
]
PY
export DJANGO_SETTINGS_MODULE=settings PYTHONPATH="$work/site"
admin="$work/site-venv/bin/django-admin"
# Warnings fail too: this is the setup the docs recommend, so it must be clean.
"$admin" check --fail-level WARNING
"$admin" migrate --noinput -v 0
"$admin" makemigrations --check --dry-run django_sms2fa
"$spy" - <<'PY'
import sys

import django

django.setup()

from django.test import Client
from django.urls import reverse

client = Client()
problems = []
english = "The request is not valid."
for lang in ("en", "ru", "pt-br", "sv"):
    page = client.get(reverse("sms2fa:login"), HTTP_ACCEPT_LANGUAGE=lang)
    if page.status_code != 200 or "<form" not in page.content.decode():
        problems.append(f"GET {reverse('sms2fa:login')} [{lang}]: {page.status_code}")
    # An API error in the request's language: the app's own catalog (a text that
    # Django and DRF do not have), so the shipped .mo files are the ones loaded.
    answer = client.post(
        reverse("sms2fa_api:login"), {}, content_type="application/json",
        HTTP_ACCEPT_LANGUAGE=lang,
    )
    error = answer.json().get("error", {}) if answer.status_code == 400 else {}
    message = error.get("message", "")
    if error.get("code") != "invalid":
        problems.append(f"API login without fields [{lang}]: {answer.status_code}")
    elif (message == english) != (lang == "en"):
        problems.append(f"[{lang}] {message!r}: the catalog for {lang} is not loaded")
    print(f"  [{lang}] login page {page.status_code}; API {answer.status_code} {message!r}")
sys.exit("\n".join(problems) or None)
PY

step="done"
echo "== the package is fine: built with setuptools $lowest_setuptools, installed with the lowest" \
  "dependencies, checked and migrated ($((SECONDS - start)) s)"
