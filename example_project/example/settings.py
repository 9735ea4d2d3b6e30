"""Settings for the django-sms2fa example site.

Everything has a working default: no environment variables are needed to run
it on SQLite with the console SMS provider. Every SMS goes through a task queue
in the database; ``run.sh`` starts the server and the task worker that sends
them, so the codes are printed in the terminal that runs ``run.sh``.

Optional environment variables:

* ``EXAMPLE_DEBUG=0``        turn DEBUG off (it is on by default).
* ``DJANGO_SECRET_KEY``      replace the fixed development key below.
* ``EXAMPLE_ALLOWED_HOSTS``  comma-separated host names (default: local ones).
* ``EXAMPLE_DB``             path of the SQLite database (default: example_project/db.sqlite3).
* ``EXAMPLE_OUTBOX``         path of the dev outbox file (default: next to the database,
                             ``db.outbox.jsonl``).

This is a development example, not a production configuration.
"""

import os
from pathlib import Path

import django

# example_project/
BASE_DIR = Path(__file__).resolve().parent.parent

# DEVELOPMENT ONLY. This key is public (it is in the repository): never use it
# for a site anyone else can reach. Set DJANGO_SECRET_KEY to override it.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY",
    "django-insecure-sms2fa-example-DEV-ONLY-do-not-use-in-production",
)

DEBUG = os.environ.get("EXAMPLE_DEBUG", "1").strip().lower() not in {"0", "false", "no", "off"}

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("EXAMPLE_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    # Django's admin, its default site replaced by one whose login is the
    # sms2fa pages (example/admin_site.py).
    "example.admin_site.ExampleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_otp",
    # recovery codes and authenticator apps (TOTP) are these django-otp devices
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "django_sms2fa",
    # The task queue every SMS goes through (SMS2FA["SEND_VIA_TASKS"] below):
    # django-tasks-db keeps it in this site's database, and its worker
    # (`manage.py db_worker`, which run.sh starts next to the server) sends.
    "django_tasks_db",
    # Django 5.2 has no django.tasks: the backport provides it.
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
    "example",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Pages, API errors and SMS in the browser's language (Accept-Language).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Must come after AuthenticationMiddleware: it adds request.user.is_verified().
    "django_otp.middleware.OTPMiddleware",
    # A password alone never makes a logged-in session for a user with a phone.
    "django_sms2fa.middleware.SecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # templates/django_sms2fa/base.html gives the sms2fa pages this site's layout.
        "DIRS": [BASE_DIR / "templates"],
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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # EXAMPLE_DB moves it, e.g. for tests that run the site on a scratch copy.
        "NAME": os.environ.get("EXAMPLE_DB") or BASE_DIR / "db.sqlite3",
        # Two processes write here: the server and the task worker. IMMEDIATE
        # transactions wait for each other (up to "timeout" seconds) instead of
        # failing with "database is locked".
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
}

# The dev outbox (/dev/outbox/, DEBUG only): the worker process sends the SMS,
# so the server reads them from a file both processes share, next to the
# database (EXAMPLE_OUTBOX moves it). Codes are in it in clear: development only.
EXAMPLE_OUTBOX_FILE = os.environ.get("EXAMPLE_OUTBOX") or str(
    Path(DATABASES["default"]["NAME"]).with_suffix(".outbox.jsonl")
)

# The task backend SMS2FA["TASK_BACKEND"] names: a queue in the database above.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# Local memory is fine for one development process. In production the limit
# counters need a cache shared by every process (see SMS2FA["CACHE"]).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The sms2fa pages: password, then the code (or the phone alone).
LOGIN_URL = "/2fa/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
# Where @otp_required sends a user who has not passed a second factor yet:
# the sms2fa login page asks for the password and then for the SMS code.
OTP_LOGIN_URL = "/2fa/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-sms2fa: the console provider prints each SMS (code included) to the
# server's standard output; this subclass also keeps the last ones in memory
# for the DEBUG-only page /dev/outbox/. Development only.
SMS2FA = {
    "PROVIDERS": {"default": {"BACKEND": "example.sms.ConsoleOutboxProvider"}},
    "DEFAULT_REGION": "SE",
    # Codes go only to the countries the site's users are in (sms2fa.W005):
    # the demo user's phone and every number the demo pages suggest are Swedish.
    # A real site lists its own; SMS pumping targets the countries it never serves.
    "ALLOWED_REGIONS": ["SE"],
    # Passwordless login (the phone's code alone) is opt-in; it also needs
    # PhoneCodeBackend in AUTHENTICATION_BACKENDS below.
    "PASSWORDLESS_LOGIN": True,
    # The documented passwordless setup: the request only queues the SMS and a
    # worker sends it, so a passwordless answer takes the same time whether or
    # not the number has an account (sent in the request, the provider's
    # latency would show for known numbers only). Check sms2fa.W041.
    "SEND_VIA_TASKS": True,
    "TASK_BACKEND": "default",
}

if os.environ.get("EXAMPLE_SEND_LIMITS") == "off":
    # Only for the automated tests that drive the example site: they send many
    # codes to one phone from one address.
    SMS2FA["LIMITS"] = {scope: [] for scope in ("phone", "ip", "user", "country", "global")}
    SMS2FA["PUMPING"] = {"MIN_SENDS": 10**9}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"simple": {"format": "{levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "simple"}},
    "loggers": {
        "django_sms2fa": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    # Passwordless phone login: authenticate(request, challenge=..., code=...).
    "django_sms2fa.backends.PhoneCodeBackend",
]

try:  # The OpenAPI schema at /api/schema/ needs the "openapi" extra.
    import drf_spectacular  # noqa: F401

    INSTALLED_APPS.append("drf_spectacular")
    REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
    SPECTACULAR_SETTINGS = {
        "TITLE": "django-sms2fa API",
        "DESCRIPTION": "Phone codes: challenges, password-then-code login, passwordless "
        "login and phone enrolment.",
        "VERSION": "1",
        "SERVE_INCLUDE_SCHEMA": False,
    }
except ImportError:
    pass
